// `tessera slice get|set|add|remove`: a running server's model slices, through its admin API
// (HTTP: GET / POST /v2/models/MODEL/slice and /instances; gRPC: tessera.admin.Admin). On the
// CPU engine a slice is the compute threads an instance runs a batch with; on a sliced GPU it
// is the SMs of an instance's slice. `set MODEL [N] [--max-batch B]` asks the server which one
// the model has first, then sends N as threads or SMs for every instance (or, with --instance I,
// for one); the change applies at the next batch boundary (on a GPU, make before break: the
// call returns once the old slices are drained). --max-batch caps the rows a batch gathers (0:
// the config's max_batch_size again). `add MODEL N [--gpu G]` adds an instance on its own slice;
// `remove MODEL I` removes instance I at its batch boundary.
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
  std::string action;  // get, set, add, remove
  int size = 0;
  int max_batch = -1;  // -1: not given
  int instance = -1;   // set --instance, remove: the instance (-1: every instance)
  int gpu = -1;        // add --gpu
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
  struct Instance {
    int index = 0, gpu = -1, sms = 0, threads = 0, max_batch = 0;
    uint64_t batches = 0;
  };
  std::vector<Instance> instances_detail;
};

int Print(const View& v, bool set, bool resized) {
  const std::string batches =
      v.config_max_batch == 0 ? "no batching"
      : v.max_batch < v.config_max_batch
          ? fmt::format("batches of at most {} (limited; max_batch_size {})", v.max_batch,
                        v.config_max_batch)
          : fmt::format("batches of at most {}", v.max_batch);
  auto each = [&] {
    for (const auto& i : v.instances_detail)
      fmt::print("  instance {}: {}, batches of at most {}, {} batch(es) run\n", i.index,
                 i.gpu >= 0 ? fmt::format("{} SMs on GPU {}", i.sms, i.gpu)
                            : fmt::format("{} compute thread(s)", i.threads),
                 i.max_batch, i.batches);
  };
  if (v.gpu < 0) {
    fmt::print("model {}: {} engine, {} compute thread(s) per instance, {} instance(s), {}\n",
               v.model, v.engine, v.threads, v.instances, batches);
    each();
    return 0;
  }
  if (v.confined)
    fmt::print("model {}: GPU {}, {} of {} SMs ({:.0f}%) per instance ({}), {} instance(s), {}\n",
               v.model, v.gpu, v.sms, v.gpu_sms, 100.0 * v.sms / std::max(1, v.gpu_sms), v.sharing,
               v.instances, batches);
  else
    fmt::print("model {}: GPU {}, unconfined on all {} SMs ({}), {} instance(s), {}\n", v.model,
               v.gpu, v.gpu_sms, v.sharing, v.instances, batches);
  each();
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

int CallGrpc(const Opts& o) {
  auto stub = tessera::admin::Admin::NewStub(
      grpc::CreateChannel(o.url, grpc::InsecureChannelCredentials()));
  auto context = [&](grpc::ClientContext* ctx, bool change) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(change ? 120 : 10));
    if (const std::string t = Token(o); !t.empty())
      ctx->AddMetadata("authorization", "Bearer " + t);
  };
  tessera::admin::SliceResponse out;
  grpc::Status st;
  {
    grpc::ClientContext ctx;
    context(&ctx, false);
    tessera::admin::GetSliceRequest in;
    in.set_model_name(o.model);
    st = stub->GetSlice(&ctx, in, &out);
  }
  const bool gpu = out.gpu() >= 0;
  if (st.ok() && o.action != "get") {
    grpc::ClientContext ctx;
    context(&ctx, true);
    if (o.action == "add") {
      tessera::admin::AddInstanceRequest in;
      in.set_model_name(o.model);
      in.set_size(o.size);
      if (o.gpu >= 0) in.set_gpu(o.gpu);
      if (o.max_batch >= 0) in.set_max_batch(o.max_batch);
      st = stub->AddInstance(&ctx, in, &out);
    } else if (o.action == "remove") {
      tessera::admin::RemoveInstanceRequest in;
      in.set_model_name(o.model);
      in.set_index(o.instance);
      st = stub->RemoveInstance(&ctx, in, &out);
    } else if (o.instance >= 0) {
      tessera::admin::ChangeInstanceRequest in;
      in.set_model_name(o.model);
      in.set_index(o.instance);
      if (o.size > 0) in.set_size(o.size);
      if (o.max_batch >= 0) in.set_max_batch(o.max_batch);
      st = stub->ChangeInstance(&ctx, in, &out);
    } else {
      tessera::admin::SetSliceRequest in;
      in.set_model_name(o.model);
      if (o.size > 0 && gpu)
        in.set_sms(o.size);
      else if (o.size > 0)
        in.set_threads(o.size);
      if (o.max_batch >= 0) in.set_max_batch(o.max_batch);
      st = stub->SetSlice(&ctx, in, &out);
    }
  }
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
  for (const auto& i : out.instance_slices())
    v.instances_detail.push_back(
        {i.index(), i.gpu(), i.sms(), i.threads(), i.max_batch(), i.batches()});
  return Print(v, o.action == "set", o.action == "set" && o.size > 0);
}

// One HTTP call; the parsed answer, or the exit code after printing the error.
std::variant<nlohmann::json, int> Http(const Opts& o, const std::string& method,
                                       const std::string& path, const std::string& body) {
  const std::string token = Token(o);
  auto r = bench::HttpRequest(o.url, method, "/v2/models/" + o.model + path, body,
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

int CallHttp(const Opts& o) {
  auto got = Http(o, "GET", "/slice", "");
  if (o.action != "get" && std::holds_alternative<nlohmann::json>(got)) {
    const bool gpu = std::get<nlohmann::json>(got).value("gpu", -1) >= 0;
    nlohmann::json body = nlohmann::json::object();
    if (o.action == "remove") {
      got = Http(o, "POST", fmt::format("/instances/{}/remove", o.instance), "");
    } else if (o.action == "add" || o.instance >= 0) {
      if (o.size > 0) body["size"] = o.size;
      if (o.gpu >= 0) body["gpu"] = o.gpu;
      if (o.max_batch >= 0) body["max_batch"] = o.max_batch;
      got = Http(
          o, "POST",
          o.action == "add" ? std::string("/instances") : fmt::format("/instances/{}", o.instance),
          body.dump());
    } else {
      if (o.size > 0) body[gpu ? "sms" : "threads"] = o.size;
      if (o.max_batch >= 0) body["max_batch"] = o.max_batch;
      got = Http(o, "POST", "/slice", body.dump());
    }
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
  if (j.contains("instance_slices") && j["instance_slices"].is_array())
    for (const auto& i : j["instance_slices"])
      if (i.is_object())
        v.instances_detail.push_back({i.value("index", 0), i.value("gpu", -1), i.value("sms", 0),
                                      i.value("threads", 0), i.value("max_batch", 0),
                                      i.value("batches", uint64_t{0})});
  return Print(v, o.action == "set", o.action == "set" && o.size > 0);
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
  auto* get = app.add_subcommand("get", "Show a model's slice and its instances");
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
  set->add_option("--instance", o->instance,
                  "Change one instance only (its index, as `slice get` lists them): its size "
                  "and / or its own batch limit (0: the model's)")
      ->check(CLI::NonNegativeNumber);
  auto* add = app.add_subcommand(
      "add", "Add an instance live on its own slice, warmed up before it serves (admin)");
  add->add_option("model", o->model, "Model name")->required();
  add->add_option("size", o->size,
                  "Its size: compute threads (CPU models) or SMs (GPU models, a multiple of the "
                  "SM group)")
      ->required()
      ->check(CLI::PositiveNumber);
  add->add_option("--gpu", o->gpu, "The GPU to put it on (default: the first instance's)")
      ->check(CLI::NonNegativeNumber);
  add->add_option("--max-batch", o->max_batch, "Its own batch limit (0: the model's)")
      ->check(CLI::NonNegativeNumber);
  auto* remove = app.add_subcommand(
      "remove",
      "Remove an instance live: it stops at its batch boundary, its queued requests go to the "
      "others (admin)");
  remove->add_option("model", o->model, "Model name")->required();
  remove->add_option("index", o->instance, "The instance's index (`slice get` lists them)")
      ->required()
      ->check(CLI::NonNegativeNumber);
  return [o, get, set, add, remove] {
    o->action = get->parsed() ? "get" : set->parsed() ? "set" : add->parsed() ? "add" : "remove";
    (void)remove;
    if (set->parsed() && o->size == 0 && o->max_batch < 0) {
      fmt::print(stderr, "error: slice set needs a size, --max-batch, or both\n");
      return 2;
    }
    if (o->url.empty()) o->url = o->protocol == "grpc" ? "localhost:8001" : "localhost:8000";
    return o->protocol == "grpc" ? CallGrpc(*o) : CallHttp(*o);
  };
}

}  // namespace tessera::cli
