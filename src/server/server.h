// A running Tessera server: the HTTP, gRPC and metrics frontends over one ModelManager.
#pragma once

#include <memory>

#include "server/context.h"

namespace tessera::server {

class HttpServer;
class HttpApi;
class GrpcServer;

class Server {
 public:
  // Starts every enabled frontend (ports < 0 are off; 0 picks a free port). `manager` must
  // outlive the server. Unavailable when a port cannot be bound.
  static Result<std::unique_ptr<Server>> Start(ModelManager* manager, ServerOptions options);
  ~Server();

  int http_port() const;
  int grpc_port() const;
  int metrics_port() const;
  ServerContext& context() { return *ctx_; }

  // Graceful stop: not ready, new inferences refused, in-flight ones given up to the exit
  // timeout to finish, then the frontends close. Returns the requests still unanswered.
  size_t Shutdown();

 private:
  Server() = default;
  std::unique_ptr<ServerContext> ctx_;
  std::unique_ptr<HttpApi> api_;
  std::unique_ptr<HttpServer> http_, metrics_;
  std::unique_ptr<GrpcServer> grpc_;
  bool stopped_ = false;
};

}  // namespace tessera::server
