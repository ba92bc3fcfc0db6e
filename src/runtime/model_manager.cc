#include "tessera/runtime/model_manager.h"

#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <thread>

#include "runtime/served_model.h"
#include "tessera/core/clock.h"
#include "tessera/model/repository.h"
#include "tessera/runtime/slices.h"

namespace tessera {

using runtime::ServedModel;
namespace fs = std::filesystem;

const char* ModelStateName(ModelState s) {
  switch (s) {
    case ModelState::kUnavailable:
      return "UNAVAILABLE";
    case ModelState::kLoading:
      return "LOADING";
    case ModelState::kReady:
      return "READY";
    case ModelState::kUnloading:
      return "UNLOADING";
  }
  return "UNAVAILABLE";
}

struct ModelManager::Entry {
  std::mutex load_mu;  // one load / unload of this model at a time
  // Guarded by Impl::mu.
  std::map<int64_t, std::shared_ptr<ServedModel>> versions;
  ModelState state = ModelState::kUnavailable;
  std::string reason;
  std::string stamp;         // what the files looked like at the last load (poll mode)
  int threads = 0;           // a slice set live (tessera slice set); 0: the configured size
  int sms = 0;               // a GPU slice set live, in SMs; 0: the configured size
  int batch_limit = 0;       // a batch limit set live; 0: the config's max_batch_size
  bool wanted = false;       // the server was told to serve it
  double resize_ms = 0;      // the last live GPU resize (its gap is read from the versions)
  bool live_layout = false;  // instances were added, removed or changed live: a reload keeps them
};

struct ModelManager::Impl {
  // Per device ("cpu", "cuda:0"): what the loaded versions hold. Guarded by mu.
  std::map<std::string, runtime::MemoryBudget> budgets;
  // Reserves a started version's memory on every device it uses; a refusal names who holds
  // the budget and reserves nothing.
  Status Reserve(const ManagerOptions& o, ServedModel& m) {
    return ReserveBytes(o, m, m.memory_by_device(), Owner(m), "loading");
  }
  // A live resize's second set of arenas, held from before the new slices are made until the
  // old ones are gone.
  Status ReserveResize(const ManagerOptions& o, ServedModel& m, int sms, int instance = -1) {
    return ReserveBytes(o, m, m.resize_bytes_by_device(instance), ResizeOwner(m),
                        "resizing to " + std::to_string(sms) + " SMs:");
  }
  void ReleaseResize(ServedModel& m) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [dev, b] : budgets) b.Release(ResizeOwner(m));
  }
  static std::string ResizeOwner(const ServedModel& m) { return Owner(m) + " (resize)"; }
  Status ReserveBytes(const ManagerOptions& o, ServedModel& m,
                      const std::map<std::string, size_t>& by_device, const std::string& owner,
                      const std::string& doing) {
    std::lock_guard<std::mutex> lock(mu);
    const auto engines = m.engines_by_device();
    std::vector<std::string> done;
    for (const auto& [dev, bytes] : by_device) {
      auto e = engines.find(dev);
      const int64_t cap = dev == "cpu"         ? o.cpu_memory_budget_bytes
                          : e != engines.end() ? e->second->memory_capacity_bytes()
                                               : 0;
      if (cap <= 0) continue;
      auto it = budgets.find(dev);
      if (it == budgets.end())
        it = budgets
                 .emplace(dev, runtime::MemoryBudget(
                                   dev == "cpu" ? "the CPU" : "GPU " + dev.substr(5), cap))
                 .first;
      Status st = it->second.Reserve(owner, static_cast<int64_t>(bytes), doing);
      if (!st.ok()) {
        for (const auto& d : done) budgets.at(d).Release(owner);
        return st;
      }
      done.push_back(dev);
    }
    return Status::OK();
  }
  void Release(ServedModel& m) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [dev, b] : budgets) {
      b.Release(Owner(m));
      b.ReleasePrefix(InstanceOwnerPrefix(m));
    }
  }
  // What an instance added live holds, reserved apart from its version's.
  static std::string InstanceOwnerPrefix(const ServedModel& m) { return Owner(m) + " instance "; }
  static std::string InstanceOwner(const ServedModel& m, int index) {
    return InstanceOwnerPrefix(m) + std::to_string(index);
  }
  void ReleaseInstance(ServedModel& m, int index) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [dev, b] : budgets) b.Release(InstanceOwner(m, index));
  }
  static std::string Owner(const ServedModel& m) {
    return m.name() + " v" + std::to_string(m.version());
  }
  mutable std::mutex mu;
  std::map<std::string, std::shared_ptr<Entry>> models;
  bool accepting = true;

  std::shared_ptr<Entry> EntryFor(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu);
    auto& e = models[name];
    if (!e) e = std::make_shared<Entry>();
    return e;
  }
  std::shared_ptr<Entry> Find(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu);
    auto it = models.find(name);
    return it == models.end() ? nullptr : it->second;
  }
  // A reload's new version `to` is given the instances of the version it replaces, `from`
  // (their GPUs, sizes and own batch limits, as changed live), before it takes requests: the
  // config's instances are matched by GPU and resized, the rest added (with their memory
  // reserved) and unmatched ones removed. Only while the config's instance groups are the same;
  // returns false (and changes nothing) when they changed. What cannot be made is logged and
  // left as the config has it: the reload itself does not fail.
  bool KeepLayout(const ManagerOptions& o, const std::string& name, ServedModel& from,
                  ServedModel& to) {
    if (from.config().InstanceGpus() != to.config().InstanceGpus()) {
      spdlog::info(
          "model '{}': the config's instance groups changed: version {} starts from them "
          "(instances changed live are not kept)",
          name, to.version());
      return false;
    }
    std::vector<InstanceTarget> want;
    for (const auto& i : from.instance_slices())
      want.push_back({i.gpu, i.gpu < 0 ? i.threads : i.confined ? i.sms : 0, i.own_max_batch});
    auto warn = [&](const Status& st) {
      spdlog::warn("model '{}' version {}: keeping the live instances: {}", name, to.version(),
                   st.ToString());
    };
    for (const LayoutStep& step : LayoutSteps(to.instance_slices(), want)) {
      Status st;
      switch (step.kind) {
        case LayoutStep::Kind::kChange:
          if (step.target.size > 0) st = to.ResizeInstance(step.index, step.target.size).status();
          if (st.ok()) st = to.SetInstanceBatchCap(step.index, step.target.own_max_batch);
          break;
        case LayoutStep::Kind::kAdd: {
          const int index = to.next_instance_index();
          st = ReserveBytes(o, to, to.add_bytes_by_device(step.target.gpu),
                            InstanceOwner(to, index), "adding an instance:");
          if (st.ok()) {
            st = to.AddInstance(step.target.size, step.target.gpu, step.target.own_max_batch)
                     .status();
            if (!st.ok()) ReleaseInstance(to, index);
          }
          break;
        }
        case LayoutStep::Kind::kRemove:
          st = to.RemoveInstance(step.index);
          if (st.ok()) ReleaseInstance(to, step.index);
          break;
      }
      if (!st.ok()) warn(st);
    }
    spdlog::info("model '{}' version {}: kept the {} instance(s) changed live", name, to.version(),
                 to.instance_slices().size());
    return true;
  }
  // A live instance change: the model's entry, locked against reloads and unloads while the
  // change runs, and its newest ready version.
  struct Locked {
    std::shared_ptr<Entry> entry;
    std::unique_lock<std::mutex> serialize;
    std::shared_ptr<ServedModel> newest;
  };
  void MarkLiveLayout(Entry& e) {
    std::lock_guard<std::mutex> lock(mu);
    e.live_layout = true;
  }
  Result<Locked> LockNewest(const std::string& name) {
    Locked l;
    l.entry = Find(name);
    if (!l.entry) return Status::NotFound("model '" + name + "' is not loaded");
    l.serialize = std::unique_lock<std::mutex>(l.entry->load_mu);
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!l.entry->versions.empty()) l.newest = l.entry->versions.rbegin()->second;
    }
    if (!l.newest) return Status::NotFound("model '" + name + "' is not loaded");
    return l;
  }
};

namespace {

// A fingerprint of a model directory: config and model files with their sizes and times.
std::string Stamp(const ModelLocation& loc) {
  std::string s;
  std::error_code ec;
  auto add = [&](const fs::path& p) {
    if (!fs::exists(p, ec)) return;
    s += p.string() + ":" + std::to_string(fs::file_size(p, ec)) + ":" +
         std::to_string(fs::last_write_time(p, ec).time_since_epoch().count()) + ";";
  };
  add(fs::path(loc.dir) / "config.pbtxt");
  for (int64_t v : loc.versions)
    for (const auto& f : fs::directory_iterator(fs::path(loc.dir) / std::to_string(v), ec))
      add(f.path());
  return s;
}

std::string Join(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

}  // namespace

ModelManager::ModelManager(ManagerOptions options)
    : opts_(std::move(options)), impl_(std::make_unique<Impl>()) {}

ModelManager::~ModelManager() {
  std::map<std::string, std::shared_ptr<Entry>> models;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    models = impl_->models;
  }
  for (auto& [_, e] : models) {
    std::map<int64_t, std::shared_ptr<ServedModel>> versions;
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      versions.swap(e->versions);
    }
    for (auto& [v, m] : versions) m->Stop(false);
  }
}

std::vector<std::pair<std::string, Status>> ModelManager::LoadStartupModels() {
  std::vector<std::string> names;
  auto scan = ScanRepository(opts_.repository);
  const bool all = opts_.mode != ModelControlMode::kExplicit ||
                   std::find(opts_.startup_models.begin(), opts_.startup_models.end(), "*") !=
                       opts_.startup_models.end();
  if (all && scan.ok())
    for (const auto& m : *scan) names.push_back(m.name);
  if (!all) names = opts_.startup_models;
  std::vector<std::pair<std::string, Status>> results;
  if (!scan.ok()) results.emplace_back("", scan.status());
  for (const auto& n : names) {
    impl_->EntryFor(n)->wanted = true;
    Status st = Load(n);
    if (!st.ok()) spdlog::error("failed to load model '{}': {}", n, st.ToString());
    results.emplace_back(n, st);
  }
  return results;
}

Status ModelManager::Load(const std::string& name) {
  auto entry = impl_->EntryFor(name);
  std::lock_guard<std::mutex> serialize(entry->load_mu);
  bool serving;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    serving = !entry->versions.empty();
    if (!serving) entry->state = ModelState::kLoading;
    entry->wanted = true;
  }
  auto fail = [&](const Status& st) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (entry->versions.empty()) {
      entry->state = ModelState::kUnavailable;
      entry->reason = st.message();
    }
    return st;
  };
  const int64_t t0 = SystemClock::Default()->NowNs();
  auto loc = FindModel(opts_.repository, name);
  if (!loc.ok()) return fail(loc.status());
  ModelConfig base;
  if (loc->has_config) {
    auto c = ReadModelConfig(*loc);
    if (!c.ok()) return fail(c.status());
    base = std::move(c).value();
  }
  std::vector<int64_t> versions = loc->versions;
  if (loc->has_config) {
    auto sel = base.version_policy.Select(loc->versions);
    if (!sel.ok()) return fail(sel.status().WithContext("model '" + name + "'"));
    versions = *sel;
  } else {
    versions = {loc->version};
  }
  std::map<int64_t, std::shared_ptr<ServedModel>> fresh;
  for (int64_t v : versions) {
    Status st;
    auto graph = LoadModelGraph(*loc, v, loc->has_config ? base : ModelConfig{});
    if (!graph.ok()) {
      st = graph.status();  // names model and version already
    } else {
      ModelConfig cfg = loc->has_config ? base : DeriveModelConfig(name, *graph, 8);
      st = CompleteModelConfig(*graph, &cfg);
      if (st.ok()) {
        auto m = std::make_shared<ServedModel>(std::move(cfg), std::move(graph).value(), v,
                                               loc->dir, opts_);
        {
          std::lock_guard<std::mutex> lock(impl_->mu);
          m->set_slice_sms(entry->sms);  // a reload keeps a live resize
        }
        st = m->Start();
        if (st.ok()) {
          st = impl_->Reserve(opts_, *m);
          if (!st.ok()) m->Stop(false);
        }
        if (st.ok()) {
          std::lock_guard<std::mutex> lock(impl_->mu);
          if (entry->threads > 0) m->set_compute_threads(entry->threads);  // a reload keeps it
          if (entry->batch_limit > 0) m->set_batch_limit(entry->batch_limit);
          fresh[v] = m;
        }
      }
      if (!st.ok() && versions.size() > 1) st = st.WithContext("version " + std::to_string(v));
    }
    if (!st.ok()) {
      for (auto& [_, m] : fresh) {
        m->Stop(false);
        impl_->Release(*m);
      }
      return fail(st);
    }
  }
  // The instances changed live carry over to the newest new version.
  std::shared_ptr<ServedModel> was;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (entry->live_layout && !entry->versions.empty()) was = entry->versions.rbegin()->second;
  }
  if (was && !fresh.empty()) {
    const bool kept = impl_->KeepLayout(opts_, name, *was, *fresh.rbegin()->second);
    std::lock_guard<std::mutex> lock(impl_->mu);
    entry->live_layout = kept;
  }
  // Flip: new requests go to the new versions; the old ones finish what they hold.
  std::map<int64_t, std::shared_ptr<ServedModel>> old;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    old.swap(entry->versions);
    entry->versions = fresh;
    entry->state = ModelState::kReady;
    entry->reason.clear();
    entry->stamp = Stamp(*loc);
  }
  for (auto& [v, m] : old) {
    m->Stop(true);
    impl_->Release(*m);
  }
  spdlog::info("model '{}' ready: version(s) {} ({:.1f} s{})", name, Join(versions),
               (SystemClock::Default()->NowNs() - t0) / 1e9, serving ? ", replaced the old" : "");
  return Status::OK();
}

Status ModelManager::Unload(const std::string& name) {
  auto entry = impl_->Find(name);
  if (!entry) return Status::NotFound("model '" + name + "' is not loaded");
  std::lock_guard<std::mutex> serialize(entry->load_mu);
  std::map<int64_t, std::shared_ptr<ServedModel>> old;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (entry->versions.empty()) return Status::NotFound("model '" + name + "' is not loaded");
    old.swap(entry->versions);
    entry->state = ModelState::kUnloading;
    entry->wanted = false;
    entry->live_layout = false;  // a later load starts from the config
  }
  for (auto& [v, m] : old) {
    m->Stop(true);
    impl_->Release(*m);
  }
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    entry->state = ModelState::kUnavailable;
    entry->reason = "unloaded";
  }
  spdlog::info("model '{}' unloaded", name);
  return Status::OK();
}

void ModelManager::Poll() {
  auto scan = ScanRepository(opts_.repository);
  if (!scan.ok()) return;
  std::set<std::string> present;
  for (const auto& loc : *scan) {
    present.insert(loc.name);
    auto e = impl_->Find(loc.name);
    std::string stamp;
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      if (e) stamp = e->stamp;
    }
    if (!e || Stamp(loc) != stamp) {
      Status st = Load(loc.name);
      if (!st.ok()) spdlog::error("poll: model '{}': {}", loc.name, st.ToString());
    }
  }
  std::vector<std::string> gone;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (const auto& [name, e] : impl_->models)
      if (!present.count(name) && !e->versions.empty()) gone.push_back(name);
  }
  for (const auto& n : gone) (void)Unload(n);
}

void ModelManager::Infer(RequestPtr r) {
  auto answer = [&](Status st) {
    InferenceResponse resp;
    resp.status = std::move(st);
    resp.model = r->model;
    resp.version = r->version;
    resp.id = r->id;
    resp.timing = r->timing;
    ResponseCallback done = std::move(r->done);
    r.reset();
    if (done) done(std::move(resp));
  };
  std::shared_ptr<ServedModel> target;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (!impl_->accepting) {
      answer(Status::Unavailable("the server is shutting down"));
      return;
    }
    auto it = impl_->models.find(r->model);
    if (it == impl_->models.end() || it->second->versions.empty()) {
      const bool known = it != impl_->models.end();
      answer(
          known
              ? Status::Unavailable(
                    "model '" + r->model + "' is not ready (" + ModelStateName(it->second->state) +
                    (it->second->reason.empty() ? std::string() : ": " + it->second->reason) + ")")
              : Status::NotFound("unknown model '" + r->model + "'"));
      return;
    }
    auto& versions = it->second->versions;
    if (r->version == 0) {
      target = versions.rbegin()->second;
    } else {
      auto v = versions.find(r->version);
      if (v == versions.end()) {
        std::vector<int64_t> ready;
        for (const auto& [n, _] : versions) ready.push_back(n);
        answer(Status::NotFound("model '" + r->model + "' has no version " +
                                std::to_string(r->version) + " loaded (ready: " + Join(ready) +
                                ")"));
        return;
      }
      target = v->second;
    }
  }
  Status st = target->Enqueue(r);
  if (!st.ok()) answer(st);
}

Result<std::shared_ptr<ModelHandle>> ModelManager::Get(const std::string& name,
                                                       int64_t version) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->models.find(name);
  if (it == impl_->models.end()) return Status::NotFound("unknown model '" + name + "'");
  const auto& versions = it->second->versions;
  if (versions.empty())
    return Status::Unavailable("model '" + name + "' is not ready (" +
                               ModelStateName(it->second->state) + ")");
  if (version == 0) return std::shared_ptr<ModelHandle>(versions.rbegin()->second);
  auto v = versions.find(version);
  if (v == versions.end())
    return Status::NotFound("model '" + name + "' has no version " + std::to_string(version) +
                            " loaded");
  return std::shared_ptr<ModelHandle>(v->second);
}

std::vector<int64_t> ModelManager::ReadyVersions(const std::string& name) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<int64_t> out;
  auto it = impl_->models.find(name);
  if (it != impl_->models.end())
    for (const auto& [v, m] : it->second->versions)
      if (m->ready()) out.push_back(v);
  return out;
}

std::vector<ModelIndexEntry> ModelManager::Index() const {
  std::vector<ModelIndexEntry> out;
  std::set<std::string> listed;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (const auto& [name, e] : impl_->models) {
      listed.insert(name);
      if (e->versions.empty()) {
        out.push_back({name, 0, e->state, e->reason});
        continue;
      }
      for (const auto& [v, m] : e->versions) out.push_back({name, v, e->state, ""});
    }
  }
  if (auto scan = ScanRepository(opts_.repository); scan.ok())
    for (const auto& loc : *scan)
      if (!listed.count(loc.name)) out.push_back({loc.name, 0, ModelState::kUnavailable, ""});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.name != b.name ? a.name < b.name : a.version < b.version;
  });
  return out;
}

Result<std::vector<ModelStatsSnapshot>> ModelManager::Stats(const std::string& name,
                                                            int64_t version) const {
  std::vector<ModelStatsSnapshot> out;
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!name.empty()) {
    auto it = impl_->models.find(name);
    if (it == impl_->models.end() || it->second->versions.empty())
      return Status::NotFound("model '" + name + "' is not loaded");
    for (const auto& [v, m] : it->second->versions)
      if (version == 0 || v == version) out.push_back(m->stats());
    if (out.empty())
      return Status::NotFound("model '" + name + "' has no version " + std::to_string(version) +
                              " loaded");
    return out;
  }
  for (const auto& [_, e] : impl_->models)
    for (const auto& [v, m] : e->versions) out.push_back(m->stats());
  return out;
}

std::vector<LayoutStep> LayoutSteps(const std::vector<InstanceSlice>& have,
                                    const std::vector<InstanceTarget>& want) {
  std::vector<LayoutStep> changes, adds, removes;
  std::vector<bool> used(have.size(), false);
  for (const InstanceTarget& w : want) {
    size_t k = 0;
    while (k < have.size() && (used[k] || have[k].gpu != w.gpu)) ++k;
    if (k == have.size()) {
      adds.push_back({LayoutStep::Kind::kAdd, -1, 0, w});
      continue;
    }
    used[k] = true;
    const InstanceSlice& h = have[k];
    const bool sized = h.gpu < 0 || h.confined;
    const int size = h.gpu < 0 ? h.threads : h.sms;
    LayoutStep step{LayoutStep::Kind::kChange, h.index, size, w};
    if (!sized || w.size == size) step.target.size = 0;
    if (step.target.size > 0 || w.own_max_batch != h.own_max_batch) changes.push_back(step);
  }
  for (size_t k = 0; k < have.size(); ++k)
    if (!used[k]) removes.push_back({LayoutStep::Kind::kRemove, have[k].index, 0, {}});
  changes.insert(changes.end(), adds.begin(), adds.end());
  changes.insert(changes.end(), removes.begin(), removes.end());
  return changes;
}

namespace {
// The newest ready version of a model, from a copy or under Impl::mu.
std::shared_ptr<ServedModel> Newest(const std::map<int64_t, std::shared_ptr<ServedModel>>& vs) {
  return vs.empty() ? nullptr : vs.rbegin()->second;
}
}  // namespace

Result<SliceState> ModelManager::Slice(const std::string& name) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->models.find(name);
  if (it == impl_->models.end() || it->second->versions.empty())
    return Status::NotFound("model '" + name + "' is not loaded");
  SliceState s;
  s.model = name;
  for (const auto& [v, m] : it->second->versions) {
    s.engine = m->engine().name();
    s.threads = m->compute_threads();
    s.instances = m->config().InstanceCount();
    s.config_max_batch = static_cast<int>(m->config().max_batch_size);
    s.max_batch = m->batch_limit();
    s.versions.push_back(v);
    if (runtime::GpuSlices* g = m->gpu()) {
      const auto leases = m->leases();
      s.gpu = g->layout().index;
      s.gpu_sms = g->layout().sms;
      s.sharing = g->kind();
      if (!leases.empty()) {
        s.sms = leases.front().sms;
        s.confined = leases.front().id != 0;
      }
    }
  }
  if (auto newest = Newest(it->second->versions)) {
    s.instance_slices = newest->instance_slices();
    s.instances = static_cast<int>(s.instance_slices.size());
    // Instances may differ once resized one by one: the first one's size stands for them.
    if (!s.instance_slices.empty() && s.engine == "cpu") s.threads = s.instance_slices[0].threads;
  }
  s.resize_ms = it->second->resize_ms;
  if (s.resize_ms > 0)
    for (const auto& [v, m] : it->second->versions)
      s.resize_gap_us = std::max(s.resize_gap_us, m->ResizeGapUs());
  return s;
}

Result<SliceState> ModelManager::SetSliceThreads(const std::string& name, int threads) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->models.find(name);
    if (it == impl_->models.end() || it->second->versions.empty())
      return Status::NotFound("model '" + name + "' is not loaded");
    for (const auto& [v, m] : it->second->versions)
      if (m->engine().name() != "cpu")
        return Status::InvalidArgument("model '" + name + "' runs on the " + m->engine().name() +
                                       " engine: its slice is set in SMs ({\"sms\": N}), not "
                                       "threads");
    TESSERA_RETURN_IF_ERROR(runtime::CheckComputeThreads("model '" + name + "'", threads));
    it->second->threads = threads;
    for (const auto& [v, m] : it->second->versions) {
      const int was = m->compute_threads();
      m->set_compute_threads(threads);
      spdlog::info(
          "model '{}' version {}: {} compute thread(s) per instance (was {}), from the "
          "next batch",
          name, v, threads, was);
    }
  }
  return Slice(name);
}

Result<SliceState> ModelManager::SetSliceSms(const std::string& name, int sms) {
  auto entry = impl_->Find(name);
  if (!entry) return Status::NotFound("model '" + name + "' is not loaded");
  std::lock_guard<std::mutex> serialize(entry->load_mu);  // no reload or unload meanwhile
  std::map<int64_t, std::shared_ptr<ServedModel>> versions;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    versions = entry->versions;
  }
  if (versions.empty()) return Status::NotFound("model '" + name + "' is not loaded");
  for (const auto& [v, m] : versions) {
    runtime::GpuSlices* g = m->gpu();
    if (!g)
      return Status::InvalidArgument(
          "model '" + name + "' runs on the " + m->engine().name() +
          (m->engine().name() == "cpu" ? " engine: its slice is set in threads ({\"threads\": N})"
                                       : " engine on a GPU that is not sliced (serve --sharing)"));
    TESSERA_RETURN_IF_ERROR(runtime::GroupsFor({sms, 0}, g->layout(), name).status());
  }
  // Make-before-break holds two sets of arenas for a while: that must fit the GPU's memory
  // budget next to everything loaded, or nothing changes.
  std::vector<ServedModel*> reserved;
  struct ReleaseAll {
    Impl& impl;
    std::vector<ServedModel*>& models;
    ~ReleaseAll() {
      for (ServedModel* m : models) impl.ReleaseResize(*m);
    }
  } release_all{*impl_, reserved};
  for (const auto& [v, m] : versions) {
    Status st = impl_->ReserveResize(opts_, *m, sms);
    if (!st.ok()) return st.WithContext("model '" + name + "'");
    reserved.push_back(m.get());
  }
  const int64_t t0 = SystemClock::Default()->NowNs();
  double gap_us = -1;
  for (const auto& [v, m] : versions) {
    TESSERA_ASSIGN_OR_RETURN(auto r, m->MoveSlices(sms));
    gap_us = std::max(gap_us, r.gap_us);
  }
  const double ms = (SystemClock::Default()->NowNs() - t0) / 1e6;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    entry->sms = sms;
    entry->resize_ms = ms;
  }
  spdlog::info("model '{}': every instance now on a {}-SM slice ({:.1f} ms, gap {})", name, sms, ms,
               gap_us < 0 ? std::string("not known yet: no batch on both sides of the flip so far")
                          : fmt::format("{:.0f} us", gap_us));
  return Slice(name);
}

namespace {
// The batch limits a model's ready versions take (each batches up to its config's size).
Status CheckLimit(const std::string& name,
                  const std::map<int64_t, std::shared_ptr<ServedModel>>& versions, int max_batch) {
  int most = 0;
  for (const auto& [v, m] : versions)
    most = std::max(most, static_cast<int>(m->config().max_batch_size));
  if (most == 0)
    return Status::FailedPrecondition("model '" + name +
                                      "' does not batch (max_batch_size 0): it has no batch "
                                      "limit to set");
  if (max_batch < 0 || max_batch > most)
    return Status::InvalidArgument(
        "model '" + name + "': a batch limit is 1 to " + std::to_string(most) +
        " (its max_batch_size), or 0 for max_batch_size; got " + std::to_string(max_batch));
  return Status::OK();
}
}  // namespace

Status ModelManager::CheckBatchLimit(const std::string& name, int max_batch) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->models.find(name);
  if (it == impl_->models.end() || it->second->versions.empty())
    return Status::NotFound("model '" + name + "' is not loaded");
  return CheckLimit(name, it->second->versions, max_batch);
}

Result<SliceState> ModelManager::SetBatchLimit(const std::string& name, int max_batch) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->models.find(name);
    if (it == impl_->models.end() || it->second->versions.empty())
      return Status::NotFound("model '" + name + "' is not loaded");
    TESSERA_RETURN_IF_ERROR(CheckLimit(name, it->second->versions, max_batch));
    it->second->batch_limit = max_batch;
    for (const auto& [v, m] : it->second->versions) {
      const int was = m->batch_limit();
      m->set_batch_limit(max_batch);
      spdlog::info("model '{}' version {}: batches of at most {} (was {}), from the next batch",
                   name, v, m->batch_limit(), was);
    }
  }
  return Slice(name);
}

Result<SliceState> ModelManager::ChangeSlice(const std::string& name, const SliceChange& change) {
  if (!change.threads && !change.sms && !change.max_batch)
    return Status::InvalidArgument("model '" + name +
                                   "': a slice change needs a size (threads or SMs), a batch "
                                   "limit, or both");
  if (change.max_batch) TESSERA_RETURN_IF_ERROR(CheckBatchLimit(name, *change.max_batch));
  if (change.sms) TESSERA_RETURN_IF_ERROR(SetSliceSms(name, *change.sms).status());
  if (change.threads) TESSERA_RETURN_IF_ERROR(SetSliceThreads(name, *change.threads).status());
  if (change.max_batch) return SetBatchLimit(name, *change.max_batch);
  return Slice(name);
}

Result<SliceState> ModelManager::AddInstance(const std::string& name,
                                             const InstanceChange& change) {
  TESSERA_ASSIGN_OR_RETURN(auto locked, impl_->LockNewest(name));
  ServedModel* m = locked.newest.get();
  if (!change.size)
    return Status::InvalidArgument("model '" + name +
                                   "': a new instance needs a size (threads on the CPU, SMs on "
                                   "a sliced GPU)");
  const int index = m->next_instance_index();
  // Its arenas (and weights on a GPU the model is not on yet) must fit the device's budget.
  Status st = impl_->ReserveBytes(opts_, *m, m->add_bytes_by_device(change.gpu),
                                  Impl::InstanceOwner(*m, index), "adding an instance:");
  if (!st.ok()) return st.WithContext("model '" + name + "'");
  auto added = m->AddInstance(*change.size, change.gpu, change.max_batch.value_or(0));
  if (!added.ok()) {
    impl_->ReleaseInstance(*m, index);
    return added.status();
  }
  impl_->MarkLiveLayout(*locked.entry);
  return Slice(name);
}

Result<SliceState> ModelManager::RemoveInstance(const std::string& name, int index) {
  TESSERA_ASSIGN_OR_RETURN(auto locked, impl_->LockNewest(name));
  ServedModel* m = locked.newest.get();
  TESSERA_RETURN_IF_ERROR(m->RemoveInstance(index));
  impl_->ReleaseInstance(*m, index);  // (the config's instances are held with the version)
  impl_->MarkLiveLayout(*locked.entry);
  return Slice(name);
}

Result<SliceState> ModelManager::ChangeInstance(const std::string& name, int index,
                                                const InstanceChange& change) {
  if (!change.size && !change.max_batch)
    return Status::InvalidArgument("model '" + name +
                                   "': an instance change needs a size, a batch limit, or both");
  TESSERA_ASSIGN_OR_RETURN(auto locked, impl_->LockNewest(name));
  ServedModel* m = locked.newest.get();
  // The limit is checked before the size changes: a bad one changes nothing.
  if (change.max_batch) TESSERA_RETURN_IF_ERROR(m->CheckInstanceBatchCap(*change.max_batch));
  if (change.size) {
    // A GPU instance holds a second set of its arenas until its old slice is gone.
    Status st = impl_->ReserveResize(opts_, *m, *change.size, index);
    if (!st.ok()) return st.WithContext("model '" + name + "'");
    auto r = m->ResizeInstance(index, *change.size);
    impl_->ReleaseResize(*m);
    if (!r.ok()) return r.status();
    if (r->ms > 0) {
      std::lock_guard<std::mutex> lock(impl_->mu);
      locked.entry->resize_ms = r->ms;
    }
  }
  if (change.max_batch) TESSERA_RETURN_IF_ERROR(m->SetInstanceBatchCap(index, *change.max_batch));
  impl_->MarkLiveLayout(*locked.entry);
  return Slice(name);
}

bool ModelManager::AllReady() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->accepting) return false;
  for (const auto& [_, e] : impl_->models)
    if (e->wanted && e->state != ModelState::kReady) return false;
  return true;
}

void ModelManager::StopAccepting() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->accepting = false;
}

size_t ModelManager::InFlight() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  size_t n = 0;
  for (const auto& [_, e] : impl_->models)
    for (const auto& [v, m] : e->versions) n += m->in_flight();
  return n;
}

}  // namespace tessera
