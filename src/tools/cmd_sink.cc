// `tessera sink`: a minimal KServe v2 endpoint that answers every inference at once with an
// empty success, for measuring clients and load generators (e.g. how many requests/s
// `tessera bench` sustains on one core) without a server's work in the way.
#include <fmt/core.h>
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <deque>
#include <memory>
#include <mutex>

#include "grpc_service.grpc.pb.h"
#include "server/http_server.h"
#include "tools/commands.h"

namespace tessera::cli {
namespace {

struct Opts {
  int http_port = 9000, grpc_port = 9001, http_threads = 1, features = 16;
};

// Every model name is "there", with one FP32 input [-1, features] and one output.
std::string MetadataJson(const std::string& model, int features) {
  return fmt::format(
      R"({{"name":"{0}","versions":["1"],"platform":"sink","inputs":[{{"name":"INPUT0",)"
      R"("datatype":"FP32","shape":[-1,{1}]}}],"outputs":[{{"name":"OUTPUT0","datatype":"FP32",)"
      R"("shape":[-1,{1}]}}]}})",
      model, features);
}

// A ModelStreamInfer stream that answers every request at once with its id, in order.
class SinkStream final : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                                        inference::ModelStreamInferResponse> {
 public:
  SinkStream() { StartRead(&in_); }
  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    if (!ok) {
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    auto r = std::make_unique<inference::ModelStreamInferResponse>();
    r->mutable_infer_response()->set_model_name(in_.model_name());
    r->mutable_infer_response()->set_id(in_.id());
    pending_.push_back(std::move(r));
    if (!writing_) WriteNextLocked();
    StartRead(&in_);
  }
  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    writing_ = false;
    pending_.pop_front();
    if (!ok) pending_.clear();
    WriteNextLocked();
    MaybeFinishLocked();
  }
  void OnDone() override { delete this; }

 private:
  void WriteNextLocked() {
    if (writing_ || pending_.empty()) return;
    writing_ = true;
    StartWrite(pending_.front().get());
  }
  void MaybeFinishLocked() {
    if (reads_done_ && pending_.empty() && !writing_ && !finished_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }
  inference::ModelInferRequest in_;
  std::mutex mu_;
  std::deque<std::unique_ptr<inference::ModelStreamInferResponse>> pending_;
  bool writing_ = false, reads_done_ = false, finished_ = false;
};

class SinkService final : public inference::GRPCInferenceService::CallbackService {
 public:
  explicit SinkService(int features) : features_(features) {}
  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* c,
                                       const inference::ServerLiveRequest*,
                                       inference::ServerLiveResponse* out) override {
    out->set_live(true);
    return Ok(c);
  }
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* c,
                                          const inference::ModelMetadataRequest* in,
                                          inference::ModelMetadataResponse* out) override {
    out->set_name(in->name());
    out->add_versions("1");
    out->set_platform("sink");
    for (auto [list, name] : {std::pair{out->mutable_inputs(), "INPUT0"},
                              std::pair{out->mutable_outputs(), "OUTPUT0"}}) {
      auto* t = list->Add();
      t->set_name(name);
      t->set_datatype("FP32");
      t->add_shape(-1);
      t->add_shape(features_);
    }
    return Ok(c);
  }
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(grpc::CallbackServerContext*) override {
    return new SinkStream;
  }
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* c,
                                       const inference::ModelInferRequest* in,
                                       inference::ModelInferResponse* out) override {
    out->set_model_name(in->model_name());
    return Ok(c);
  }

 private:
  static grpc::ServerUnaryReactor* Ok(grpc::CallbackServerContext* c) {
    auto* r = c->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  int features_;
};

int RunSink(const Opts& o) {
  std::signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  server::HttpServer::Options ho;
  ho.port = o.http_port;
  ho.threads = o.http_threads;
  const int features = o.features;
  auto http = server::HttpServer::Start(
      ho, [features](server::HttpRequest&& req, std::shared_ptr<server::HttpReplier> rep) {
        server::HttpResponse resp;
        resp.headers.emplace_back("Content-Type", "application/json");
        const std::string prefix = "/v2/models/";
        if (req.method == "POST" && req.path.size() > 6 &&
            req.path.compare(req.path.size() - 6, 6, "/infer") == 0) {
          resp.body = R"({"model_name":"sink","outputs":[]})";
        } else if (req.method == "GET" && req.path.rfind(prefix, 0) == 0) {
          std::string name = req.path.substr(prefix.size());
          name = name.substr(0, name.find('/'));
          resp.body = MetadataJson(name, features);
        } else if (req.path == "/v2/health/live" || req.path == "/v2/health/ready") {
          resp.body = "";
        } else {
          resp.status = 404;
          resp.body = R"({"error":"the sink only answers metadata and infer"})";
        }
        rep->Reply(std::move(resp));
      });
  if (!http.ok()) {
    fmt::print(stderr, "error: {}\n", http.status().ToString());
    return 1;
  }
  SinkService service(o.features);
  grpc::ServerBuilder b;
  int grpc_port = 0;
  b.AddListeningPort("0.0.0.0:" + std::to_string(o.grpc_port), grpc::InsecureServerCredentials(),
                     &grpc_port);
  b.RegisterService(&service);
  b.SetMaxReceiveMessageSize(-1);
  auto grpc_server = b.BuildAndStart();
  if (!grpc_server || grpc_port == 0) {
    fmt::print(stderr, "error: UNAVAILABLE: cannot listen for gRPC on port {}\n", o.grpc_port);
    return 1;
  }
  fmt::print("tessera sink: HTTP on :{}, gRPC on :{} (every model answers at once)\n",
             (*http)->port(), grpc_port);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  grpc_server->Shutdown();
  (*http)->Stop();
  return 0;
}

}  // namespace

Runner SetupSink(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("--http-port", o->http_port, "HTTP port (0: any free one)")->capture_default_str();
  app.add_option("--grpc-port", o->grpc_port, "gRPC port (0: any free one)")->capture_default_str();
  app.add_option("--http-threads", o->http_threads, "HTTP event-loop threads")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--features", o->features, "Width of the advertised input [-1, N]")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  return [o] { return RunSink(*o); };
}

}  // namespace tessera::cli
