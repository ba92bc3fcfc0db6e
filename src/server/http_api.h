// KServe v2 / Triton HTTP routes on top of HttpServer. docs/PROTOCOL.md lists them.
#pragma once

#include <memory>

#include "server/context.h"
#include "server/http_server.h"

namespace tessera::server {

class HttpApi {
 public:
  explicit HttpApi(ServerContext* ctx) : ctx_(ctx) {}
  // HttpServer's handler. Answers every request exactly once (possibly later, from another
  // thread, for inference and repository calls).
  void Handle(HttpRequest&& req, std::shared_ptr<HttpReplier> replier);

 private:
  void Infer(HttpRequest&& req, std::shared_ptr<HttpReplier> replier, const std::string& model,
             int64_t version);
  ServerContext* ctx_;
};

// Statistics of `snaps` as Triton's statistics JSON ({"model_stats": [...]}); shared with tests.
std::string StatsJson(const std::vector<ModelStatsSnapshot>& snaps);

}  // namespace tessera::server
