// KServe v2 gRPC (package `inference`, GRPCInferenceService) on gRPC's callback API: no
// thread waits on an inference; the runtime's completion finishes the call. ModelStreamInfer
// answers each request of the stream as it completes.
#pragma once

#include <memory>

#include "server/context.h"

namespace grpc {
class Server;
}

namespace tessera::server {

class GrpcService;   // grpc_server.cc
class AdminService;  // grpc_server.cc

class GrpcServer {
 public:
  // Binds address:port (port 0: any; see port()). Unavailable when binding fails.
  static Result<std::unique_ptr<GrpcServer>> Start(ServerContext* ctx, const std::string& address,
                                                   int port);
  ~GrpcServer();
  int port() const { return port_; }
  // Stops accepting calls, lets running ones finish until `deadline_ms` from now, then cancels.
  void Shutdown(int64_t deadline_ms);

 private:
  GrpcServer() = default;
  std::unique_ptr<GrpcService> service_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<grpc::Server> server_;  // last: stops before the services go
  int port_ = 0;
};

}  // namespace tessera::server
