// What the HTTP, gRPC and metrics frontends share: the model manager, the shared-memory
// registries, options, authentication of admin calls, and a worker for blocking repository
// operations (so a model load never stalls a frontend's event loop).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/shm.h"
#include "tessera/runtime/model_manager.h"

namespace tessera::server {

struct ServerOptions {
  std::string address = "0.0.0.0";
  int http_port = 8000, grpc_port = 8001, metrics_port = 8002;  // -1: that frontend is off
  int http_threads = 2;
  size_t max_request_bytes = size_t{256} << 20;
  // When set, repository load/unload, shared-memory register/unregister and log settings need
  // "Authorization: Bearer <token>" (HTTP) or the same in "authorization" metadata (gRPC).
  std::string admin_token;
  int exit_timeout_s = 30;  // graceful shutdown: how long in-flight requests may take
  // Page-lock system shared-memory regions at registration (the server slices GPUs), so their
  // tensors reach the GPU by DMA without a staging copy.
  bool pin_system_shm = false;
  // More Prometheus text appended to /metrics (the online tuner's series); may be empty.
  std::function<std::string()> extra_metrics;
};

class ServerContext {
 public:
  ServerContext(ModelManager* manager, ServerOptions options);
  ~ServerContext();

  ModelManager& manager() { return *manager_; }
  const ServerOptions& options() const { return opts_; }
  SystemShmRegistry& system_shm() { return system_shm_; }
  CudaShmRegistry& cuda_shm() { return cuda_shm_; }

  // OK when no token is configured or `authorization` is "Bearer <token>"; Unauthenticated
  // otherwise.
  Status CheckAdmin(const std::string* authorization) const;
  // The protocol extensions this server really supports (server metadata lists them).
  std::vector<std::string> Extensions() const;
  bool Live() const { return !stopping_.load(); }
  bool Ready() const;
  void BeginShutdown() { stopping_ = true; }
  bool stopping() const { return stopping_.load(); }

  // Runs `work` on the admin thread (one at a time, in order).
  void RunAdmin(std::function<void()> work);

  // Log settings (Triton's logging extension): verbose level and which severities print.
  struct LogSettings {
    uint32_t verbose_level = 0;
    bool info = true, warning = true, error = true;
    std::string format = "default";
  };
  LogSettings log_settings() const;
  Status SetLogSettings(const LogSettings& s);

 private:
  void AdminLoop();
  ModelManager* manager_;
  ServerOptions opts_;
  SystemShmRegistry system_shm_;
  CudaShmRegistry cuda_shm_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex log_mu_;
  LogSettings log_;

  std::mutex admin_mu_;
  std::condition_variable admin_cv_;
  std::deque<std::function<void()>> admin_queue_;
  bool admin_stop_ = false;
  std::thread admin_thread_;
};

}  // namespace tessera::server
