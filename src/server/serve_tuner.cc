#include "server/serve_tuner.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "runtime/model_queue.h"
#include "tessera/planner/profile.h"
#include "tessera/runtime/gpu.h"

namespace tessera::server {
namespace {

// Cumulative counts of one model version (summed over the snapshots given).
struct Totals {
  uint64_t arrived = 0;   // answered, failed or refused for a full queue
  uint64_t finished = 0;  // judged against the SLO
  uint64_t within = 0;
  uint64_t batches = 0;
  double compute_ns = 0;
  std::map<uint64_t, uint64_t> rows;  // executed batch rows -> count
};

Totals Sum(const std::vector<ModelStatsSnapshot>& snaps) {
  Totals t;
  for (const auto& s : snaps) {
    const uint64_t full = s.rejects[static_cast<size_t>(RejectReason::kQueueFull)];
    t.arrived += s.success.count + s.fail.count + full;
    t.finished += s.slo_met + s.slo_missed + full;
    t.within += s.slo_met;
    t.batches += s.execution_count;
    t.compute_ns += double(s.compute_input.ns + s.compute_infer.ns + s.compute_output.ns);
    for (const auto& [rows, n] : s.batch_rows) t.rows[rows] += n;
  }
  return t;
}

}  // namespace

struct ServeTuner::Fleet {
  bool gpu = false;
  planner::PlanInput in;
  std::unique_ptr<planner::Tuner> tuner;
  // Interference calibrated from these windows (slices that ran >= 3 batches next to busy
  // neighbours): reported, and used by the tuner only with learn_interference_after > 0.
  planner::LiveInterference live;
  struct Member {
    std::string name;
    int64_t version = 0;           // the newest ready version, whose instances are tuned
    runtime::QueueSettings queue;  // the executables a batch is padded to, as the runtime pads
    Totals last;
    bool have_last = false;
    std::map<int, InstanceSlice> last_instances;  // by instance index, at the last window
  };
  std::vector<Member> members;  // parallel to in.models
};

namespace {
// Splits `total` in proportion to `shares` (summing to 1) in whole counts that add up to it.
std::vector<int64_t> Apportion(int64_t total, const std::vector<double>& shares) {
  std::vector<int64_t> out;
  double cum = 0;
  int64_t given = 0;
  for (size_t k = 0; k < shares.size(); ++k) {
    cum += shares[k];
    const int64_t upto =
        k + 1 == shares.size() ? total : static_cast<int64_t>(std::llround(cum * double(total)));
    out.push_back(std::max<int64_t>(0, upto - given));
    given += out.back();
  }
  return out;
}
}  // namespace

ServeTuner::ServeTuner(ModelManager* manager, ServeTunerOptions options)
    : manager_(manager), opt_(std::move(options)) {
  if (opt_.cpu_cores <= 0)
    opt_.cpu_cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

ServeTuner::~ServeTuner() { Stop(); }

void ServeTuner::Start() {
  thread_ = std::thread([this] {
    auto last = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(stop_mu_);
    while (!stop_) {
      stop_cv_.wait_for(lock, std::chrono::duration<double>(opt_.window_s),
                        [this] { return stop_; });
      if (stop_) break;
      const auto now = std::chrono::steady_clock::now();
      const double window = std::chrono::duration<double>(now - last).count();
      last = now;
      lock.unlock();
      Tick(window);
      lock.lock();
    }
  });
}

void ServeTuner::Stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

// Looks the ready models up; when the set changed (names, versions, engines, eligibility, the
// profile files' paths and modification times), loads the profiles and starts the tuners again
// on it. Called with mu_ held.
void ServeTuner::Rebuild() {
  struct Candidate {
    size_t info;
    std::string path;
    double slo_ms;
    bool gpu;
    runtime::QueueSettings queue;
    int64_t version;  // the version tuned: the newest ready one
    bool several;     // other versions are ready too
  };
  std::vector<ModelInfo> infos;
  std::vector<Candidate> candidates;
  std::string signature;
  std::set<std::string> seen;  // the index lists a model once per version
  for (const auto& e : manager_->Index()) {
    if (e.state != ModelState::kReady) continue;
    // (Every ready version is in the signature; the model is looked at once.)
    if (!seen.insert(e.name).second) {
      signature += fmt::format("{}@{};", e.name, e.version);
      continue;
    }
    auto handle = manager_->Get(e.name);
    auto slice = manager_->Slice(e.name);
    if (!handle.ok() || !slice.ok()) continue;
    const ModelConfig& c = (*handle)->config();
    ModelInfo info{e.name, false, {}};
    // Not which GPU: the tuner's own moves and replicas must not restart it.
    signature += fmt::format("{}@{}:{}:{};", e.name, e.version, slice->engine, slice->gpu >= 0);
    const auto slo_ms = c.SloMs();
    auto prof = c.parameters.find("profile");
    const bool cpu = slice->engine == "cpu";
    if (!slo_ms) {
      info.reason = "no slo_ms parameter";
    } else if (prof == c.parameters.end() || prof->second.empty()) {
      info.reason =
          "no profile parameter (a `tessera profile` file, relative to the model's "
          "directory)";
    } else if (!cpu && !std::all_of(slice->instance_slices.begin(), slice->instance_slices.end(),
                                    [](const InstanceSlice& i) { return i.confined; })) {
      info.reason = "runs unconfined on its GPU (no slice_sms): there is no slice to resize";
    } else {
      const auto path =
          std::filesystem::path(manager_->options().repository) / e.name / prof->second;
      std::error_code ec;
      const auto mtime = std::filesystem::last_write_time(path, ec);
      signature += fmt::format("{}@{};", path.string(),
                               ec ? 0 : static_cast<int64_t>(mtime.time_since_epoch().count()));
      // Several ready versions: the newest is the one whose instances can change live (and the
      // one unversioned requests reach); the older ones keep theirs and are not counted.
      const int64_t newest = slice->versions.empty() ? 0
                                                     : *std::max_element(slice->versions.begin(),
                                                                         slice->versions.end());
      candidates.push_back({infos.size(), path.string(), *slo_ms, !cpu,
                            runtime::QueueSettings::FromConfig(c, 0), newest,
                            slice->versions.size() > 1});
    }
    infos.push_back(std::move(info));
  }
  if (signature == signature_) return;
  signature_ = signature;
  fleets_.clear();
  for (const bool gpu : {false, true}) {
    auto f = std::make_unique<Fleet>();
    f->gpu = gpu;
    planner::GpuSpec& spec = f->in.gpu;
    planner::TunerOptions o = opt_.tuner;
    if (gpu) {
      const auto& gpus = manager_->options().gpus;
      if (gpus.empty() || !gpus.front()) continue;
      spec.kind = gpus.front()->layout().name;
      spec.count = static_cast<int>(gpus.size());
      spec.sms = gpus.front()->layout().sms;
      spec.granularity_sms = gpus.front()->layout().group_sms;
      spec.memory_bytes = gpus.front()->layout().memory_bytes;
    } else {
      spec.kind = "cpu";
      spec.count = 1;
      spec.sms = opt_.cpu_cores;
      spec.granularity_sms = 1;
      o.slice_unit = "thread";
      o.device_name = "CPU";
    }
    // The runtime pads a batch to its smallest executable that holds it: powers of two up to
    // the max batch (and preferred sizes, which the planner's checks do not model).
    f->in.options.pow2_buckets = true;
    for (auto& c : candidates) {
      if (c.gpu != gpu) continue;
      ModelInfo& info = infos[c.info];
      auto p = planner::LoadProfile(c.path);
      if (!p.ok()) {
        info.reason = "profile: " + p.status().message();
        continue;
      }
      info.tuned = true;
      planner::ModelDemand d;
      d.name = info.name;
      d.slo_ms = c.slo_ms;
      d.profile = std::move(p).value();
      if (c.several)
        spdlog::info("tuner: '{}' has several ready versions: tuning version {}, the newest",
                     info.name, c.version);
      f->members.push_back({info.name, c.version, std::move(c.queue), {}, false, {}});
      f->in.models.push_back(std::move(d));
    }
    if (f->members.empty()) continue;
    f->tuner = std::make_unique<planner::Tuner>(f->in, o);
    fleets_.push_back(std::move(f));
  }
  models_ = std::move(infos);
  std::string names;
  for (const auto& f : fleets_)
    for (const auto& m : f->members)
      names += fmt::format("{}{} ({})", names.empty() ? "" : ", ", m.name, f->gpu ? "gpu" : "cpu");
  spdlog::info("tuner: tuning {}", names.empty() ? std::string("no model") : names);
  for (const auto& m : models_)
    if (!m.tuned) spdlog::info("tuner: not tuning '{}': {}", m.name, m.reason);
}

void ServeTuner::Tick(double window_s) {
  // Decided under the lock, applied outside it: a GPU resize or a new instance compiles and
  // warms up executables, and /metrics must not wait for that.
  struct Pending {
    bool gpu;
    std::string model;
    int instance;  // the instance acted on (-1: a new one)
    double from;   // its size before
    planner::TuneAction action;
  };
  std::vector<Pending> pending;
  std::unique_lock<std::mutex> lock(mu_);
  Rebuild();
  for (auto& fleet : fleets_) {
    planner::FleetObservation obs;
    obs.window_s = window_s;
    bool baseline = false;
    int threads_held = 0;
    // Each instance is one slice of the tuner's fleet: obs.slices[k] is instance
    // where[k].second of member where[k].first.
    std::vector<std::pair<size_t, int>> where;
    for (size_t mi = 0; mi < fleet->members.size(); ++mi) {
      auto& m = fleet->members[mi];
      auto stats = manager_->Stats(m.name, m.version);
      auto slice = manager_->Slice(m.name);
      if (!stats.ok() || !slice.ok() || slice->instance_slices.empty()) continue;
      for (const auto& i : slice->instance_slices) threads_held += i.threads;
      const Totals now = Sum(*stats);
      std::map<int, InstanceSlice> instances;
      for (const auto& i : slice->instance_slices) instances[i.index] = i;
      if (!m.have_last) {
        m.last = now;
        m.last_instances = std::move(instances);
        m.have_last = true;
        baseline = true;
        continue;
      }
      const Totals& was = m.last;
      const planner::Profile& p = fleet->in.models[mi].profile;
      // The instances share one queue: each is credited with the model's traffic in proportion
      // to the rows it ran in the window (equal shares when none ran any).
      struct Window {
        const InstanceSlice* now = nullptr;
        uint64_t batches = 0, rows = 0;
        double compute_ns = 0;
        std::map<uint64_t, uint64_t> batch_rows;
      };
      std::vector<Window> win;
      uint64_t rows_all = 0;
      for (const auto& [index, i] : instances) {
        Window w;
        w.now = &i;
        const auto it = m.last_instances.find(index);
        const InstanceSlice* before = it == m.last_instances.end() ? nullptr : &it->second;
        w.batches = i.batches - (before ? before->batches : 0);
        w.rows = i.rows - (before ? before->rows : 0);
        w.compute_ns = i.compute_ns - (before ? before->compute_ns : 0);
        for (const auto& [rows, n] : i.batch_rows) {
          const uint64_t had =
              before && before->batch_rows.count(rows) ? before->batch_rows.at(rows) : 0;
          if (n > had) w.batch_rows[rows] = n - had;
        }
        rows_all += w.rows;
        win.push_back(std::move(w));
      }
      std::vector<double> share;
      for (const Window& w : win)
        share.push_back(rows_all > 0 ? double(w.rows) / double(rows_all)
                                     : 1.0 / double(win.size()));
      const auto finished = Apportion(static_cast<int64_t>(now.finished - was.finished), share);
      const auto within = Apportion(static_cast<int64_t>(now.within - was.within), share);
      const double arrival_rps = double(now.arrived - was.arrived) / window_s;
      for (size_t k = 0; k < win.size(); ++k) {
        const Window& w = win[k];
        planner::SliceObservation so;
        so.id = static_cast<int>(where.size());
        so.gpu = fleet->gpu ? w.now->gpu : 0;
        so.sms = fleet->gpu ? w.now->sms : w.now->threads;
        so.max_batch = p.max_batch();
        so.batches = static_cast<int64_t>(w.batches);
        so.busy = std::clamp(w.compute_ns / (window_s * 1e9), 0.0, 1.0);
        if (so.batches > 0) {
          so.batch_ms = w.compute_ns / 1e6 / double(so.batches);
          double alone = 0;  // the profile's time for the same batches, on their executables
          for (const auto& [rows, n] : w.batch_rows)
            alone +=
                double(n) * p.MeanMs(static_cast<int>(m.queue.BucketFor(int64_t(rows))), so.sms);
          so.alone_ms = alone / double(so.batches);
        }
        so.members.push_back({mi, arrival_rps * share[k], finished[k], within[k], 1.0});
        spdlog::debug(
            "tuner: {} instance {}: {:.1f} req/s, {} of {} within the SLO, {} batches, busy "
            "{:.2f}, on {:g}",
            m.name, w.now->index, so.members[0].arrival_rps, so.members[0].within_slo,
            so.members[0].finished, so.batches, so.busy, so.sms);
        where.emplace_back(mi, w.now->index);
        obs.slices.push_back(std::move(so));
      }
      m.last = now;
      m.last_instances = std::move(instances);
    }
    if (baseline || obs.slices.empty()) continue;
    const int ngpu = fleet->in.gpu.count;
    obs.free_sms.assign(ngpu, 0);
    if (fleet->gpu) {
      const auto& gpus = manager_->options().gpus;
      for (int g = 0; g < ngpu; ++g)
        if (gpus[g]) obs.free_sms[g] = double(gpus[g]->free_groups() * gpus[g]->layout().group_sms);
    } else {
      // Cores are not held the way SMs are: the OS time-shares threads, and the models the
      // tuner does not size share the cores with the ones it does. What the tuned models hold
      // is what the tuner sizes against.
      obs.free_sms[0] = std::max(0, opt_.cpu_cores - threads_held);
    }
    fleet->live.Observe(fleet->in, obs);
    const double alpha_was = fleet->tuner->interference().alpha();
    const auto actions = fleet->tuner->Step(obs);
    if (const double alpha = fleet->tuner->interference().alpha(); alpha != alpha_was)
      spdlog::info(
          "tuner: {}: predicting interference with alpha {:.3g} fitted from {} live "
          "windows (was {:.3g})",
          fleet->gpu ? "gpu" : "cpu", alpha, fleet->tuner->live_interference().size(), alpha_was);
    for (const auto& a : actions) {
      // The instances pull from one queue: there is no routing weight to set.
      if (a.kind == planner::TuneAction::Kind::kRoute) continue;
      if (a.kind == planner::TuneAction::Kind::kAdd) {
        pending.push_back({fleet->gpu, fleet->members.at(a.model).name, -1, 0, a});
        continue;
      }
      if (a.slice < 0 || static_cast<size_t>(a.slice) >= where.size()) continue;
      const auto [mi, index] = where[static_cast<size_t>(a.slice)];
      pending.push_back({fleet->gpu, fleet->members.at(mi).name, index,
                         obs.slices[static_cast<size_t>(a.slice)].sms, a});
    }
  }
  lock.unlock();
  // Resizes and new instances first; an instance is removed only once the model's new ones are
  // serving (make before break), and not at all when one of them could not be made.
  std::stable_partition(pending.begin(), pending.end(), [](const Pending& p) {
    return p.action.kind != planner::TuneAction::Kind::kRemove;
  });
  enum Outcome { kRefused, kGrew, kShrank, kAdded, kRemoved };
  std::vector<Outcome> outcome;
  std::map<std::string, bool> add_failed;
  for (const Pending& p : pending) {
    const planner::TuneAction& a = p.action;
    const int size = static_cast<int>(std::lround(a.sms));
    Result<SliceState> r = Status::Internal("not applied");
    if (a.kind == planner::TuneAction::Kind::kRemove) {
      if (add_failed[p.model]) {
        spdlog::warn("tuner: {} -- not applied: the instance meant to replace it was not made",
                     a.why);
        outcome.push_back(kRefused);
        continue;
      }
      r = manager_->RemoveInstance(p.model, p.instance);
    } else {
      InstanceChange c;
      c.size = size;
      // The batch limit the tuner sized the slice with: the largest batch whose queue meets
      // the SLO there (within the profile's batches), capped by the config.
      if (auto cur = manager_->Slice(p.model);
          cur.ok() && cur->config_max_batch > 0 && a.max_batch > 0)
        c.max_batch = std::min(a.max_batch, cur->config_max_batch);
      if (a.kind == planner::TuneAction::Kind::kAdd) {
        c.gpu = p.gpu ? a.gpu : -1;
        r = manager_->AddInstance(p.model, c);
        if (!r.ok()) add_failed[p.model] = true;
      } else {
        r = manager_->ChangeInstance(p.model, p.instance, c);
      }
    }
    if (!r.ok()) {
      spdlog::warn("tuner: {} -- failed: {}", a.why, r.status().ToString());
      outcome.push_back(kRefused);
      continue;
    }
    spdlog::info("tuner: {}", a.why);
    if (a.kind != planner::TuneAction::Kind::kRemove && a.max_batch > 0)
      for (const auto& i : r->instance_slices)
        if (i.index == (p.instance >= 0 ? p.instance : r->instance_slices.back().index))
          spdlog::info("tuner: {} instance {}: batches of at most {}", p.model, i.index,
                       i.max_batch);
    outcome.push_back(a.kind == planner::TuneAction::Kind::kAdd      ? kAdded
                      : a.kind == planner::TuneAction::Kind::kRemove ? kRemoved
                      : size > p.from                                ? kGrew
                                                                     : kShrank);
  }
  lock.lock();
  for (size_t i = 0; i < pending.size(); ++i) {
    Counts& n = counts_[pending[i].model];
    switch (outcome[i]) {
      case kRefused:
        ++n.refused;
        break;
      case kGrew:
        ++n.grow;
        break;
      case kShrank:
        ++n.shrink;
        break;
      case kAdded:
        ++n.add;
        break;
      case kRemoved:
        ++n.remove;
        break;
    }
  }
}

std::string ServeTuner::PrometheusText() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out =
      "# HELP tessera_tuner_tuned Models the online tuner sizes (1) or does not (0; the log "
      "says why)\n"
      "# TYPE tessera_tuner_tuned gauge\n";
  for (const auto& m : models_)
    out += fmt::format("tessera_tuner_tuned{{model=\"{}\"}} {}\n", m.name, m.tuned ? 1 : 0);
  out +=
      "# HELP tessera_tuner_resizes_total Live changes the online tuner made (grow, shrink: an "
      "instance's size; add, remove: an instance) or could not make (refused)\n"
      "# TYPE tessera_tuner_resizes_total counter\n";
  for (const auto& [name, n] : counts_)
    for (const auto& [dir, v] : {std::pair<const char*, uint64_t>{"grow", n.grow},
                                 {"shrink", n.shrink},
                                 {"add", n.add},
                                 {"remove", n.remove},
                                 {"refused", n.refused}})
      out += fmt::format("tessera_tuner_resizes_total{{model=\"{}\",direction=\"{}\"}} {}\n", name,
                         dir, v);
  // The live interference estimator, by device; each family's lines together.
  std::string samples, alpha, error, used;
  for (const auto& f : fleets_) {
    const std::string dev = f->gpu ? "gpu" : "cpu";
    samples +=
        fmt::format("tessera_interference_live_samples{{device=\"{}\"}} {}\n", dev, f->live.size());
    const auto held = f->live.samples();
    if (auto fit = f->live.Fit(); fit.ok()) {
      alpha +=
          fmt::format("tessera_interference_live_alpha{{device=\"{}\"}} {}\n", dev, fit->alpha());
      error += fmt::format("tessera_interference_live_error{{device=\"{}\",alpha=\"fit\"}} {}\n",
                           dev, fit->Evaluate(held).mean_abs_rel);
      error += fmt::format("tessera_interference_live_error{{device=\"{}\",alpha=\"model\"}} {}\n",
                           dev, f->tuner->interference().Evaluate(held).mean_abs_rel);
    }
    used += fmt::format("tessera_tuner_interference_alpha{{device=\"{}\"}} {}\n", dev,
                        f->tuner->interference().alpha());
  }
  out +=
      "# HELP tessera_interference_live_samples Slice windows the live interference estimator "
      "holds, by device (a slice's batch time next to busy neighbours against the profile's "
      "time alone)\n"
      "# TYPE tessera_interference_live_samples gauge\n" +
      samples +
      "# HELP tessera_interference_live_alpha Interference alpha fitted from those samples "
      "(latency x (1 + alpha x neighbours' pressure)); absent until a sample has neighbours\n"
      "# TYPE tessera_interference_live_alpha gauge\n" +
      alpha +
      "# HELP tessera_interference_live_error Mean |predicted - observed| / observed batch time "
      "on those samples, of the fitted alpha (fit) and of the tuner's (model)\n"
      "# TYPE tessera_interference_live_error gauge\n" +
      error +
      "# HELP tessera_tuner_interference_alpha The alpha the tuner predicts interference with, "
      "by device: the planner's default, or the live fit once --tune-learn-interference-after "
      "samples are held\n"
      "# TYPE tessera_tuner_interference_alpha gauge\n" +
      used;
  return out;
}

}  // namespace tessera::server
