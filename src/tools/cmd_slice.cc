// `tessera slice get|set|add|remove|apply`: a running server's model slices, through its admin
// API (HTTP: GET / POST /v2/models/MODEL/slice and /instances; gRPC: tessera.admin.Admin). On
// the CPU engine a slice is the compute threads an instance runs a batch with; on a sliced GPU
// it is the SMs of an instance's slice.
//   set MODEL [N] [--max-batch B] [--instance I]   asks the server which kind the model has,
//       then sends N as threads or SMs for every instance (or, with --instance, for one); the
//       change applies at the next batch boundary (on a GPU, make before break: the call
//       returns once the old slices are drained). --max-batch caps the rows a batch gathers.
//   add MODEL N [--gpu G]   an instance on its own slice;  remove MODEL I   instance I.
//   apply PLAN.json   lays a `tessera plan` onto the server: each planned model gets one
//       instance per dedicated slice (its GPU, SMs and batch limit), by resizing the instances
//       it has on that GPU, adding the missing ones, then removing the rest.
#include <fmt/core.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <variant>

#include "bench/transport.h"
#include "tessera/runtime/model_manager.h"
#include "tessera_admin.grpc.pb.h"
#include "tools/commands.h"

namespace tessera::cli {
namespace {

struct Opts {
  std::string url, token, model, protocol = "http", plan, policy = "tessera";
  std::string action;  // get, set, add, remove, apply
  int size = 0;
  int max_batch = -1;  // -1: not given
  int instance = -1;   // set --instance, remove: the instance (-1: every instance)
  int gpu = -1;        // add --gpu
  bool dry_run = false;
};

std::string Token(const Opts& o) {
  if (!o.token.empty()) return o.token;
  const char* t = std::getenv("TESSERA_ADMIN_TOKEN");
  return t ? t : "";
}

// A model's slice as the server reports it.
struct View {
  std::string model, engine, sharing;
  int threads = 0, instances = 0, gpu = -1, sms = 0, gpu_sms = 0;
  int max_batch = 0, config_max_batch = 0;
  bool confined = false;
  double resize_ms = 0, resize_gap_us = -1;
  struct Instance {
    int index = 0, gpu = -1, sms = 0, threads = 0, max_batch = 0;
    uint64_t batches = 0;
    bool confined = false;
    int size() const { return gpu >= 0 ? sms : threads; }
  };
  std::vector<Instance> instances_detail;
};

// A failed call: the message, and whether the request itself was wrong (exit code 2).
struct Failure {
  std::string message;
  bool bad_request = false;
};
using Reply = std::variant<View, Failure>;

// The admin calls over one protocol.
class Admin {
 public:
  virtual ~Admin() = default;
  virtual Reply Get(const std::string& model) = 0;
  // A model-wide change (SetSlice): a size (threads or SMs, as `gpu` says) and / or a limit.
  virtual Reply Set(const std::string& model, bool gpu, int size, int max_batch) = 0;
  virtual Reply Add(const std::string& model, int size, int gpu, int max_batch) = 0;
  virtual Reply Change(const std::string& model, int index, int size, int max_batch) = 0;
  virtual Reply Remove(const std::string& model, int index) = 0;
};

class HttpAdmin final : public Admin {
 public:
  explicit HttpAdmin(const Opts& o) : url_(o.url), token_(Token(o)) {}
  Reply Get(const std::string& m) override { return Call("GET", m, "/slice", ""); }
  Reply Set(const std::string& m, bool gpu, int size, int max_batch) override {
    nlohmann::json body = nlohmann::json::object();
    if (size > 0) body[gpu ? "sms" : "threads"] = size;
    if (max_batch >= 0) body["max_batch"] = max_batch;
    return Call("POST", m, "/slice", body.dump());
  }
  Reply Add(const std::string& m, int size, int gpu, int max_batch) override {
    nlohmann::json body = {{"size", size}};
    if (gpu >= 0) body["gpu"] = gpu;
    if (max_batch >= 0) body["max_batch"] = max_batch;
    return Call("POST", m, "/instances", body.dump());
  }
  Reply Change(const std::string& m, int index, int size, int max_batch) override {
    nlohmann::json body = nlohmann::json::object();
    if (size > 0) body["size"] = size;
    if (max_batch >= 0) body["max_batch"] = max_batch;
    return Call("POST", m, fmt::format("/instances/{}", index), body.dump());
  }
  Reply Remove(const std::string& m, int index) override {
    return Call("POST", m, fmt::format("/instances/{}/remove", index), "");
  }

 private:
  Reply Call(const std::string& method, const std::string& model, const std::string& path,
             const std::string& body) {
    auto r = bench::HttpRequest(url_, method, "/v2/models/" + model + path, body,
                                token_.empty() ? "" : "Bearer " + token_);
    if (!r.ok()) return Failure{r.status().ToString()};
    auto j = nlohmann::json::parse(r->second, nullptr, false);
    if (r->first != 200) {
      const std::string msg = j.is_object() && j.contains("error") && j["error"].is_string()
                                  ? j["error"].get<std::string>()
                                  : r->second;
      return Failure{fmt::format("HTTP {}: {}", r->first, msg), r->first == 400};
    }
    if (!j.is_object()) return Failure{"the server's answer is not JSON: " + r->second};
    View v;
    v.model = j.value("name", model);
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
    return v;
  }
  std::string url_, token_;
};

class GrpcAdmin final : public Admin {
 public:
  explicit GrpcAdmin(const Opts& o)
      : stub_(tessera::admin::Admin::NewStub(
            grpc::CreateChannel(o.url, grpc::InsecureChannelCredentials()))),
        token_(Token(o)) {}
  Reply Get(const std::string& m) override {
    tessera::admin::GetSliceRequest in;
    in.set_model_name(m);
    return Call(false, [&](grpc::ClientContext* c, tessera::admin::SliceResponse* out) {
      return stub_->GetSlice(c, in, out);
    });
  }
  Reply Set(const std::string& m, bool gpu, int size, int max_batch) override {
    tessera::admin::SetSliceRequest in;
    in.set_model_name(m);
    if (size > 0 && gpu)
      in.set_sms(size);
    else if (size > 0)
      in.set_threads(size);
    if (max_batch >= 0) in.set_max_batch(max_batch);
    return Call(true, [&](grpc::ClientContext* c, tessera::admin::SliceResponse* out) {
      return stub_->SetSlice(c, in, out);
    });
  }
  Reply Add(const std::string& m, int size, int gpu, int max_batch) override {
    tessera::admin::AddInstanceRequest in;
    in.set_model_name(m);
    in.set_size(size);
    if (gpu >= 0) in.set_gpu(gpu);
    if (max_batch >= 0) in.set_max_batch(max_batch);
    return Call(true, [&](grpc::ClientContext* c, tessera::admin::SliceResponse* out) {
      return stub_->AddInstance(c, in, out);
    });
  }
  Reply Change(const std::string& m, int index, int size, int max_batch) override {
    tessera::admin::ChangeInstanceRequest in;
    in.set_model_name(m);
    in.set_index(index);
    if (size > 0) in.set_size(size);
    if (max_batch >= 0) in.set_max_batch(max_batch);
    return Call(true, [&](grpc::ClientContext* c, tessera::admin::SliceResponse* out) {
      return stub_->ChangeInstance(c, in, out);
    });
  }
  Reply Remove(const std::string& m, int index) override {
    tessera::admin::RemoveInstanceRequest in;
    in.set_model_name(m);
    in.set_index(index);
    return Call(true, [&](grpc::ClientContext* c, tessera::admin::SliceResponse* out) {
      return stub_->RemoveInstance(c, in, out);
    });
  }

 private:
  template <typename F>
  Reply Call(bool change, F call) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(change ? 120 : 10));
    if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
    tessera::admin::SliceResponse out;
    const grpc::Status st = call(&ctx, &out);
    if (!st.ok())
      return Failure{
          fmt::format("gRPC {}: {}", static_cast<int>(st.error_code()), st.error_message()),
          st.error_code() == grpc::StatusCode::INVALID_ARGUMENT};
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
          {i.index(), i.gpu(), i.sms(), i.threads(), i.max_batch(), i.batches(), i.confined()});
    return v;
  }
  std::unique_ptr<tessera::admin::Admin::Stub> stub_;
  std::string token_;
};

void Print(const View& v, bool set, bool resized) {
  const std::string batches =
      v.config_max_batch == 0 ? "no batching"
      : v.max_batch < v.config_max_batch
          ? fmt::format("batches of at most {} (limited; max_batch_size {})", v.max_batch,
                        v.config_max_batch)
          : fmt::format("batches of at most {}", v.max_batch);
  bool uniform = true;  // every instance the same size (else the lines below say each one's)
  for (const auto& i : v.instances_detail)
    uniform = uniform && i.size() == v.instances_detail.front().size();
  if (v.gpu < 0 && !uniform)
    fmt::print("model {}: {} engine, instances of different sizes, {} instance(s), {}\n", v.model,
               v.engine, v.instances, batches);
  else if (v.gpu < 0)
    fmt::print("model {}: {} engine, {} compute thread(s) per instance, {} instance(s), {}\n",
               v.model, v.engine, v.threads, v.instances, batches);
  else if (v.confined && !uniform)
    fmt::print("model {}: GPU slices of different sizes ({}), {} instance(s), {}\n", v.model,
               v.sharing, v.instances, batches);
  else if (v.confined)
    fmt::print("model {}: GPU {}, {} of {} SMs ({:.0f}%) per instance ({}), {} instance(s), {}\n",
               v.model, v.gpu, v.sms, v.gpu_sms, 100.0 * v.sms / std::max(1, v.gpu_sms), v.sharing,
               v.instances, batches);
  else
    fmt::print("model {}: GPU {}, unconfined on all {} SMs ({}), {} instance(s), {}\n", v.model,
               v.gpu, v.gpu_sms, v.sharing, v.instances, batches);
  for (const auto& i : v.instances_detail)
    fmt::print("  instance {}: {}, batches of at most {}, {} batch(es) run\n", i.index,
               i.gpu >= 0 ? fmt::format("{} SMs on GPU {}", i.sms, i.gpu)
                          : fmt::format("{} compute thread(s)", i.threads),
               i.max_batch, i.batches);
  if (v.gpu >= 0 && set && resized)
    fmt::print(
        "resized live in {:.1f} ms; gap between the old slice's last batch and the new "
        "one's first: {}\n",
        v.resize_ms,
        v.resize_gap_us < 0 ? std::string("not known yet (it needs a batch on each side of the "
                                          "flip; `tessera slice get` shows it later)")
                            : fmt::format("{:.0f} us", v.resize_gap_us));
}

int Fail(const Failure& f) {
  fmt::print(stderr, "error: {}\n", f.message);
  return f.bad_request ? 2 : 1;
}

// One model's dedicated slices in a plan: where, how large, and the batch limit.
struct Target {
  int gpu = 0, sms = 0, max_batch = 0;
};

// The plan to apply: `tessera plan --json` output (one of its "plans", by policy) or a plan
// object itself. Fills the dedicated slices per model and the models planned only onto shared
// (time-sliced) slices, which a server cannot realize (each model has its own instances).
Status ReadPlan(const Opts& o, std::map<std::string, std::vector<Target>>* dedicated,
                std::map<std::string, int>* shared) {
  std::ifstream f(o.plan);
  if (!f) return Status::NotFound("cannot read plan file " + o.plan);
  std::stringstream ss;
  ss << f.rdbuf();
  auto doc = nlohmann::json::parse(ss.str(), nullptr, false);
  if (!doc.is_object()) return Status::InvalidArgument(o.plan + " is not a JSON object");
  const nlohmann::json* plan = &doc;
  if (doc.contains("plans")) {
    const auto& plans = doc["plans"];
    if (!plans.is_object() || !plans.contains(o.policy)) {
      std::string have;
      if (plans.is_object())
        for (const auto& [k, _] : plans.items()) have += (have.empty() ? "" : ", ") + k;
      return Status::InvalidArgument(o.plan + " has no \"" + o.policy + "\" plan (it has: " +
                                     (have.empty() ? "none" : have) + "); see --policy");
    }
    plan = &plans[o.policy];
  }
  if (!plan->contains("gpus") || !(*plan)["gpus"].is_array())
    return Status::InvalidArgument(o.plan +
                                   ": expected a plan with \"gpus\" (write it with `tessera plan "
                                   "--json FILE --verbose` where the input is synthetic)");
  for (const auto& g : (*plan)["gpus"]) {
    const int gpu = g.value("index", -1);
    if (gpu < 0 || !g.contains("slices") || !g["slices"].is_array())
      return Status::InvalidArgument(o.plan + ": a GPU without an \"index\" or \"slices\"");
    for (const auto& s : g["slices"]) {
      const auto& members = s.value("members", nlohmann::json::array());
      const int sms = static_cast<int>(s.value("sms", 0.0));
      if (!members.is_array() || members.empty() || sms <= 0)
        return Status::InvalidArgument(o.plan + ": a slice on GPU " + std::to_string(gpu) +
                                       " without \"sms\" or \"members\"");
      for (const auto& m : members) {
        const std::string name = m.value("model", "");
        if (name.empty()) return Status::InvalidArgument(o.plan + ": a member without \"model\"");
        if (members.size() == 1)
          (*dedicated)[name].push_back({gpu, sms, m.value("max_batch", 0)});
        else
          ++(*shared)[name];
      }
    }
  }
  return Status::OK();
}

// Lays the plan onto the server, model by model: resize the instances already on a planned
// GPU, add the missing ones, then remove the rest (make before break).
int Apply(const Opts& o, Admin& admin) {
  std::map<std::string, std::vector<Target>> dedicated;
  std::map<std::string, int> shared;
  if (Status st = ReadPlan(o, &dedicated, &shared); !st.ok()) {
    fmt::print(stderr, "error: {}\n", st.ToString());
    return st.code() == StatusCode::kNotFound ? 3 : 2;
  }
  int failed = 0, changes = 0;
  for (const auto& [model, n] : shared)
    if (!dedicated.count(model))
      fmt::print(
          "{}: not applied: the plan puts it on {} shared (time-sliced) slice(s); a server gives "
          "each model instances of its own\n",
          model, n);
  for (const auto& [model, targets] : dedicated) {
    Reply got = admin.Get(model);
    if (auto* f = std::get_if<Failure>(&got)) {
      fmt::print("{}: not applied: {}\n", model, f->message);
      ++failed;
      continue;
    }
    const View v = std::get<View>(got);
    const bool cpu = v.gpu < 0;
    auto limit = [&](int mb) { return mb <= 0 || mb >= v.config_max_batch ? 0 : mb; };
    auto step = [&](const std::string& what, auto call) {
      fmt::print("{}: {}{}\n", model, what, o.dry_run ? " (dry run)" : "");
      ++changes;
      if (o.dry_run) return;
      Reply r = call();
      if (auto* f = std::get_if<Failure>(&r)) {
        fmt::print("{}:   failed: {}\n", model, f->message);
        ++failed;
      }
    };
    // The server's instances and the plan's, as LayoutSteps (shared with reloads) sees them.
    std::vector<InstanceSlice> have;
    for (const auto& i : v.instances_detail) {
      InstanceSlice h;
      h.index = i.index;
      h.gpu = i.gpu;
      h.sms = i.sms;
      h.threads = i.threads;
      h.confined = i.confined;
      h.own_max_batch = limit(i.max_batch);
      have.push_back(h);
    }
    std::vector<InstanceTarget> want;
    for (const Target& t : targets) want.push_back({cpu ? -1 : t.gpu, t.sms, limit(t.max_batch)});
    const char* unit = cpu ? "threads" : "SMs";
    for (const LayoutStep& s : LayoutSteps(have, want)) {
      const InstanceTarget& t = s.target;
      const int batches = t.own_max_batch ? t.own_max_batch : v.config_max_batch;
      switch (s.kind) {
        case LayoutStep::Kind::kChange:
          step(fmt::format("instance {}: {} -> {} {}, batches of at most {}", s.index, s.size_was,
                           t.size ? t.size : s.size_was, unit, batches),
               [&] { return admin.Change(model, s.index, t.size, t.own_max_batch); });
          break;
        case LayoutStep::Kind::kAdd:
          step(fmt::format("add an instance of {} {}{}, batches of at most {}", t.size, unit,
                           cpu ? "" : fmt::format(" on GPU {}", t.gpu), batches),
               [&] { return admin.Add(model, t.size, t.gpu, t.own_max_batch); });
          break;
        case LayoutStep::Kind::kRemove:
          step(fmt::format("remove instance {} (not in the plan)", s.index),
               [&] { return admin.Remove(model, s.index); });
          break;
      }
    }
  }
  fmt::print("plan {}: {} change(s){}, {} failed\n", o.plan, changes,
             o.dry_run ? " to make" : " made", failed);
  return failed ? 1 : 0;
}

int Run(const Opts& o) {
  std::unique_ptr<Admin> admin;
  if (o.protocol == "grpc")
    admin = std::make_unique<GrpcAdmin>(o);
  else
    admin = std::make_unique<HttpAdmin>(o);
  if (o.action == "apply") return Apply(o, *admin);
  Reply r = admin->Get(o.model);
  if (std::holds_alternative<View>(r) && o.action != "get") {
    const bool gpu = std::get<View>(r).gpu >= 0;
    if (o.action == "add")
      r = admin->Add(o.model, o.size, o.gpu, o.max_batch);
    else if (o.action == "remove")
      r = admin->Remove(o.model, o.instance);
    else if (o.instance >= 0)
      r = admin->Change(o.model, o.instance, o.size, o.max_batch);
    else
      r = admin->Set(o.model, gpu, o.size, o.max_batch);
  }
  if (auto* f = std::get_if<Failure>(&r)) return Fail(*f);
  Print(std::get<View>(r), o.action == "set", o.action == "set" && o.size > 0);
  return 0;
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
  auto* apply = app.add_subcommand(
      "apply",
      "Lay a plan (`tessera plan --json`) onto the server, live (admin): each planned model "
      "gets one instance per dedicated slice, with the slice's GPU, size and batch limit; "
      "existing instances on a planned GPU are resized, missing ones added, the rest removed "
      "after. Models planned onto shared (time-sliced) slices are listed, not applied");
  apply->add_option("plan", o->plan, "The plan file")->required();
  apply->add_option("--policy", o->policy, "Which of the file's plans (default: tessera)");
  apply->add_flag("--dry-run", o->dry_run, "Print the changes without making them");
  return [o, get, set, add, remove] {
    o->action = get->parsed()      ? "get"
                : set->parsed()    ? "set"
                : add->parsed()    ? "add"
                : remove->parsed() ? "remove"
                                   : "apply";
    if (set->parsed() && o->size == 0 && o->max_batch < 0) {
      fmt::print(stderr, "error: slice set needs a size, --max-batch, or both\n");
      return 2;
    }
    if (o->url.empty()) o->url = o->protocol == "grpc" ? "localhost:8001" : "localhost:8000";
    return Run(*o);
  };
}

}  // namespace tessera::cli
