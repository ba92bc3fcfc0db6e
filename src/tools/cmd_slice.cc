// `tessera slice get|set MODEL [N] [--max-batch B]`: a running server's model slices, through
// its admin API (HTTP: GET / POST /v2/models/MODEL/slice; gRPC: tessera.admin.Admin). On the
// CPU engine a slice is the compute threads each instance runs a batch with; on a sliced GPU it
// is the SMs of each instance's slice. `set` asks the server which one the model has first,
// then sends N as threads or SMs; the change applies at the next batch boundary (on a GPU, make
// before break: the call returns once the old slices are drained). --max-batch caps the rows a
// batch gathers (0: the config's max_batch_size again).
#include <fmt/core.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <variant>

#include "bench/transport.h"
#include "tessera_admin.grpc.pb.h"
#include "tools/commands.h"

namespace tessera::cli {
namespace {

struct Opts {
  std::string url, token, model, protocol = "http";
  int size = 0;
  int max_batch = -1;  // -1: not given
};

std::string Token(const Opts& o) {
  if (!o.token.empty()) return o.token;
  const char* t = std::getenv("TESSERA_ADMIN_TOKEN");
  return t ? t : "";
}

struct View {
  std::string model, engine, sharing;
  int threads = 0, instances = 0, gpu = -1, sms = 0, gpu_sms = 0;
  int max_batch = 0, config_max_batch = 0;
  bool confined = false;
  double resize_ms = 0, resize_gap_us = -1;
};

int Print(const View& v, bool set, bool resized) {
  const std::string batches =
      v.config_max_batch == 0 ? "no batching"
      : v.max_batch < v.config_max_batch
          ? fmt::format("batches of at most {} (limited; max_batch_size {})", v.max_batch,
                        v.config_max_batch)
          : fmt::format("batches of at most {}", v.max_batch);
  if (v.gpu < 0) {
    fmt::print("model {}: {} engine, {} compute thread(s) per instance, {} instance(s), {}\n",
               v.model, v.engine, v.threads, v.instances, batches);
    return 0;
  }
  if (v.confined)
    fmt::print("model {}: GPU {}, {} of {} SMs ({:.0f}%) per instance ({}), {} instance(s), {}\n",
               v.model, v.gpu, v.sms, v.gpu_sms, 100.0 * v.sms / std::max(1, v.gpu_sms), v.sharing,
               v.instances, batches);
  else
    fmt::print("model {}: GPU {}, unconfined on all {} SMs ({}), {} instance(s), {}\n", v.model,
               v.gpu, v.gpu_sms, v.sharing, v.instances, batches);
  if (set && resized)
    fmt::print(
        "resized live in {:.1f} ms; gap between the old slice's last batch and the new "
        "one's first: {}\n",
        v.resize_ms,
        v.resize_gap_us < 0 ? std::string("not known yet (it needs a batch on each side of the "
                                          "flip; `tessera slice get` shows it later)")
                            : fmt::format("{:.0f} us", v.resize_gap_us));
  return 0;
}

int CallGrpc(const Opts& o, bool set) {
  auto stub = tessera::admin::Admin::NewStub(
      grpc::CreateChannel(o.url, grpc::InsecureChannelCredentials()));
  auto call = [&](bool change, tessera::admin::SliceResponse* out, bool gpu) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(change ? 120 : 10));
    if (const std::string t = Token(o); !t.empty()) ctx.AddMetadata("authorization", "Bearer " + t);
    if (change) {
      tessera::admin::SetSliceRequest in;
      in.set_model_name(o.model);
      if (o.size > 0 && gpu)
        in.set_sms(o.size);
      else if (o.size > 0)
        in.set_threads(o.size);
      if (o.max_batch >= 0) in.set_max_batch(o.max_batch);
      return stub->SetSlice(&ctx, in, out);
    }
    tessera::admin::GetSliceRequest in;
    in.set_model_name(o.model);
    return stub->GetSlice(&ctx, in, out);
  };
  tessera::admin::SliceResponse out;
  grpc::Status st = call(false, &out, false);
  if (st.ok() && set) st = call(true, &out, out.gpu() >= 0);
  if (!st.ok()) {
    fmt::print(stderr, "error: gRPC {}: {}\n", static_cast<int>(st.error_code()),
               st.error_message());
    return st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 1;
  }
  View v;
  v.model = out.model_name();
  v.engine = out.engine();
  v.sharing = out.sharing();
  v.threads = out.threads();
  v.instances = out.instances();
  v.gpu = out.gpu();
  v.sms = out.sms();
  v.gpu_sms = out.gpu_sms();
  v.max_batch = out.max_batch();
  v.config_max_batch = out.config_max_batch();
  v.confined = out.confined();
  v.resize_ms = out.resize_ms();
  v.resize_gap_us = out.resize_gap_us();
  return Print(v, set, o.size > 0);
}

// One HTTP call; the parsed answer, or the exit code after printing the error.
std::variant<nlohmann::json, int> Http(const Opts& o, const std::string& method,
                                       const std::string& body) {
  const std::string token = Token(o);
  auto r = bench::HttpRequest(o.url, method, "/v2/models/" + o.model + "/slice", body,
                              token.empty() ? "" : "Bearer " + token);
  if (!r.ok()) {
    fmt::print(stderr, "error: {}\n", r.status().ToString());
    return 1;
  }
  auto j = nlohmann::json::parse(r->second, nullptr, false);
  if (r->first != 200) {
    const std::string msg = j.is_object() && j.contains("error") && j["error"].is_string()
                                ? j["error"].get<std::string>()
                                : r->second;
    fmt::print(stderr, "error: HTTP {}: {}\n", r->first, msg);
    return r->first == 400 ? 2 : 1;
  }
  if (!j.is_object()) {
    fmt::print(stderr, "error: the server's answer is not JSON: {}\n", r->second);
    return 1;
  }
  return j;
}

int CallHttp(const Opts& o, bool set) {
  auto got = Http(o, "GET", "");
  if (set && std::holds_alternative<nlohmann::json>(got)) {
    const bool gpu = std::get<nlohmann::json>(got).value("gpu", -1) >= 0;
    nlohmann::json body = nlohmann::json::object();
    if (o.size > 0) body[gpu ? "sms" : "threads"] = o.size;
    if (o.max_batch >= 0) body["max_batch"] = o.max_batch;
    got = Http(o, "POST", body.dump());
  }
  if (std::holds_alternative<int>(got)) return std::get<int>(got);
  const auto& j = std::get<nlohmann::json>(got);
  View v;
  v.model = j.value("name", o.model);
  v.engine = j.value("engine", "?");
  v.threads = j.value("threads", 0);
  v.instances = j.value("instances", 0);
  v.max_batch = j.value("max_batch", 0);
  v.config_max_batch = j.value("config_max_batch", 0);
  v.gpu = j.value("gpu", -1);
  v.sms = j.value("sms", 0);
  v.gpu_sms = j.value("gpu_sms", 0);
  v.confined = j.value("confined", false);
  v.sharing = j.value("sharing", "");
  v.resize_ms = j.value("resize_ms", 0.0);
  v.resize_gap_us = j.value("resize_gap_us", -1.0);
  return Print(v, set, o.size > 0);
}

}  // namespace

Runner SetupSlice(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.require_subcommand(1);
  app.add_option("--url", o->url,
                 "The server's address, host:port (default: localhost:8000 for HTTP, "
                 "localhost:8001 for gRPC)");
  app.add_option("--protocol", o->protocol, "http or grpc")
      ->default_val("http")
      ->check(CLI::IsMember({"http", "grpc"}));
  app.add_option("--admin-token", o->token,
                 "Bearer token of the server's admin API (default: $TESSERA_ADMIN_TOKEN)");
  auto* get = app.add_subcommand("get", "Show a model's slice");
  get->add_option("model", o->model, "Model name")->required();
  auto* set = app.add_subcommand("set", "Change a model's slice live (admin)");
  set->add_option("model", o->model, "Model name")->required();
  set->add_option("size", o->size,
                  "CPU models: compute threads per instance; GPU models: SMs per instance (a "
                  "multiple of the GPU's SM group, 8 on Hopper); optional with --max-batch")
      ->check(CLI::PositiveNumber);
  set->add_option("--max-batch", o->max_batch,
                  "Cap the rows each batch gathers: 1 to the model's max_batch_size, 0 for "
                  "max_batch_size (the executables stay; from the next batch on)")
      ->check(CLI::NonNegativeNumber);
  return [o, get, set] {
    if (set->parsed() && o->size == 0 && o->max_batch < 0) {
      fmt::print(stderr, "error: slice set needs a size, --max-batch, or both\n");
      return 2;
    }
    if (o->url.empty()) o->url = o->protocol == "grpc" ? "localhost:8001" : "localhost:8000";
    if (o->protocol == "grpc") return CallGrpc(*o, set->parsed());
    (void)get;
    return CallHttp(*o, set->parsed());
  };
}

}  // namespace tessera::cli
