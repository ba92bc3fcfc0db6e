#include "server/server.h"

#include <spdlog/spdlog.h>

#include <thread>

#include "server/grpc_server.h"
#include "server/http_api.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "tessera/core/clock.h"

namespace tessera::server {

Result<std::unique_ptr<Server>> Server::Start(ModelManager* manager, ServerOptions options) {
  std::unique_ptr<Server> s(new Server());
  s->ctx_ = std::make_unique<ServerContext>(manager, options);
  s->api_ = std::make_unique<HttpApi>(s->ctx_.get());
  HttpServer::Options ho;
  ho.address = options.address;
  ho.threads = options.http_threads;
  ho.max_body_bytes = options.max_request_bytes;
  if (options.http_port >= 0) {
    ho.port = options.http_port;
    HttpApi* api = s->api_.get();
    auto http = HttpServer::Start(ho, [api](HttpRequest&& r, std::shared_ptr<HttpReplier> rep) {
      api->Handle(std::move(r), rep);
    });
    if (!http.ok()) return http.status().WithContext("HTTP");
    s->http_ = std::move(http).value();
  }
  if (options.metrics_port >= 0) {
    HttpServer::Options mo = ho;
    mo.port = options.metrics_port;
    mo.threads = 1;
    mo.max_body_bytes = 1 << 20;
    auto metrics = HttpServer::Start(mo, [manager, extra = options.extra_metrics](
                                             HttpRequest&& r, std::shared_ptr<HttpReplier> rep) {
      if (r.path != "/metrics") {
        rep->Reply(ErrorResponse(Status::NotFound("metrics are at /metrics")));
        return;
      }
      HttpResponse out;
      out.headers.emplace_back("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
      out.body = PrometheusText(*manager);
      if (extra) out.body += extra();
      rep->Reply(std::move(out));
    });
    if (!metrics.ok()) return metrics.status().WithContext("metrics");
    s->metrics_ = std::move(metrics).value();
  }
  if (options.grpc_port >= 0) {
    auto grpc = GrpcServer::Start(s->ctx_.get(), options.address, options.grpc_port);
    if (!grpc.ok()) return grpc.status();
    s->grpc_ = std::move(grpc).value();
  }
  return s;
}

int Server::http_port() const { return http_ ? http_->port() : -1; }
int Server::grpc_port() const { return grpc_ ? grpc_->port() : -1; }
int Server::metrics_port() const { return metrics_ ? metrics_->port() : -1; }

size_t Server::Shutdown() {
  if (stopped_) return 0;
  stopped_ = true;
  ctx_->BeginShutdown();
  ctx_->manager().StopAccepting();
  const int64_t deadline =
      SystemClock::Default()->NowNs() + int64_t{ctx_->options().exit_timeout_s} * 1000000000;
  size_t left = ctx_->manager().InFlight();
  int64_t last_log = 0;
  while (left > 0 && SystemClock::Default()->NowNs() < deadline) {
    const int64_t now = SystemClock::Default()->NowNs();
    if (now - last_log > 1000000000) {
      spdlog::info("shutdown: waiting for {} in-flight request(s)", left);
      last_log = now;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    left = ctx_->manager().InFlight();
  }
  if (left) spdlog::warn("shutdown: {} request(s) still running after the exit timeout", left);
  // Answers already produced must reach their clients before the frontends close.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (grpc_) grpc_->Shutdown(1000);
  if (http_) http_->Stop();
  if (metrics_) metrics_->Stop();
  return left;
}

Server::~Server() { Shutdown(); }

}  // namespace tessera::server
