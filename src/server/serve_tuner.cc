#include "server/serve_tuner.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <thread>

#include "runtime/model_queue.h"
#include "tessera/planner/profile.h"
#include "tessera/runtime/gpu.h"

namespace tessera::server {
namespace {

// Cumulative counts of one model over its ready versions.
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
    int device = 0;                // GPU index (0 on the CPU)
    runtime::QueueSettings queue;  // the executables a batch is padded to, as the runtime pads
    Totals last;
    bool have_last = false;
  };
  std::vector<Member> members;  // parallel to in.models
};

ServeTuner::ServeTuner(ModelManager* manager, ServeTunerOptions options)
    : manager_(manager), opt_(std::move(options)) {
  // The server's models keep the instances their configs give them.
  opt_.tuner.add_slices = false;
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

// Looks the ready models up; when the set changed (names, versions, devices, eligibility, the
// profile files' paths and modification times), loads the profiles and starts the tuners again
// on it. Called with mu_ held.
void ServeTuner::Rebuild() {
  struct Candidate {
    size_t info;
    std::string path;
    double slo_ms;
    bool gpu;
    int device;
    runtime::QueueSettings queue;
  };
  std::vector<ModelInfo> infos;
  std::vector<Candidate> candidates;
  std::string signature;
  for (const auto& e : manager_->Index()) {
    if (e.state != ModelState::kReady) continue;
    auto handle = manager_->Get(e.name);
    auto slice = manager_->Slice(e.name);
    if (!handle.ok() || !slice.ok()) continue;
    const ModelConfig& c = (*handle)->config();
    ModelInfo info{e.name, false, {}};
    signature += fmt::format("{}@{}:{}:{};", e.name, e.version, slice->engine, slice->gpu);
    const auto slo_ms = c.SloMs();
    auto prof = c.parameters.find("profile");
    const bool cpu = slice->engine == "cpu";
    if (!slo_ms) {
      info.reason = "no slo_ms parameter";
    } else if (prof == c.parameters.end() || prof->second.empty()) {
      info.reason =
          "no profile parameter (a `tessera profile` file, relative to the model's "
          "directory)";
    } else if (c.InstanceCount() != 1) {
      info.reason =
          fmt::format("{} instances: the tuner sizes single-instance models", c.InstanceCount());
    } else if (!cpu && !(slice->gpu >= 0 && slice->confined)) {
      info.reason = "runs unconfined on its GPU (no slice_sms): there is no slice to resize";
    } else {
      const auto path =
          std::filesystem::path(manager_->options().repository) / e.name / prof->second;
      std::error_code ec;
      const auto mtime = std::filesystem::last_write_time(path, ec);
      signature += fmt::format("{}@{};", path.string(),
                               ec ? 0 : static_cast<int64_t>(mtime.time_since_epoch().count()));
      candidates.push_back({infos.size(), path.string(), *slo_ms, !cpu, cpu ? 0 : slice->gpu,
                            runtime::QueueSettings::FromConfig(c, 0)});
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
      f->members.push_back({info.name, c.device, std::move(c.queue), {}, false});
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
      names += fmt::format("{}{} ({})", names.empty() ? "" : ", ", m.name,
                           f->gpu ? fmt::format("gpu {}", m.device) : std::string("cpu"));
  spdlog::info("tuner: tuning {}", names.empty() ? std::string("no model") : names);
  for (const auto& m : models_)
    if (!m.tuned) spdlog::info("tuner: not tuning '{}': {}", m.name, m.reason);
}

void ServeTuner::Tick(double window_s) {
  // Decided under the lock, applied outside it: a GPU resize compiles and warms up the new
  // slice's executables, and /metrics must not wait for that.
  struct Pending {
    bool gpu;
    std::string model;
    double from;
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
    for (size_t mi = 0; mi < fleet->members.size(); ++mi) {
      auto& m = fleet->members[mi];
      auto stats = manager_->Stats(m.name, 0);
      auto slice = manager_->Slice(m.name);
      if (!stats.ok() || !slice.ok()) continue;
      threads_held += slice->threads;
      const Totals now = Sum(*stats);
      if (!m.have_last) {
        m.last = now;
        m.have_last = true;
        baseline = true;
        continue;
      }
      const Totals& was = m.last;
      planner::SliceObservation so;
      so.id = static_cast<int>(mi);
      so.gpu = m.device;
      so.sms = fleet->gpu ? slice->sms : slice->threads;
      const planner::Profile& p = fleet->in.models[mi].profile;
      so.max_batch = p.max_batch();
      so.batches = static_cast<int64_t>(now.batches - was.batches);
      const double compute = now.compute_ns - was.compute_ns;
      so.busy = std::clamp(compute / (window_s * 1e9), 0.0, 1.0);
      if (so.batches > 0) {
        so.batch_ms = compute / 1e6 / double(so.batches);
        double alone = 0;  // the profile's time for the same batches, on their executables
        for (const auto& [rows, n] : now.rows) {
          const auto it = was.rows.find(rows);
          const uint64_t k = n - (it == was.rows.end() ? 0 : it->second);
          if (k > 0)
            alone +=
                double(k) * p.MeanMs(static_cast<int>(m.queue.BucketFor(int64_t(rows))), so.sms);
        }
        so.alone_ms = alone / double(so.batches);
      }
      so.members.push_back({mi, double(now.arrived - was.arrived) / window_s,
                            static_cast<int64_t>(now.finished - was.finished),
                            static_cast<int64_t>(now.within - was.within), 1.0});
      spdlog::debug(
          "tuner: {}: {:.1f} req/s, {} of {} within the SLO, {} batches, busy {:.2f}, on {:g}",
          m.name, so.members[0].arrival_rps, so.members[0].within_slo, so.members[0].finished,
          so.batches, so.busy, so.sms);
      obs.slices.push_back(std::move(so));
      m.last = now;
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
      if (a.kind == planner::TuneAction::Kind::kRoute) continue;  // one slice per model
      const size_t mi = static_cast<size_t>(a.slice >= 0 ? a.slice : 0);
      double from = 0;
      for (const auto& o : obs.slices)
        if (o.id == a.slice) from = o.sms;
      pending.push_back({fleet->gpu, fleet->members.at(mi).name, from, a});
    }
  }
  lock.unlock();
  std::vector<int> outcome;  // 1 grew, -1 shrank, 0 refused
  for (const Pending& p : pending) {
    const planner::TuneAction& a = p.action;
    if (a.kind != planner::TuneAction::Kind::kResize) {
      spdlog::info("tuner: not applied (the server does not add or remove instances): {}", a.why);
      outcome.push_back(0);
      continue;
    }
    const int size = static_cast<int>(std::lround(a.sms));
    auto r =
        p.gpu ? manager_->SetSliceSms(p.model, size) : manager_->SetSliceThreads(p.model, size);
    if (r.ok())
      spdlog::info("tuner: {}", a.why);
    else
      spdlog::warn("tuner: {} -- failed: {}", a.why, r.status().ToString());
    // The batch limit the tuner sized the slice with: the largest batch whose queue meets the
    // SLO on the new size (within the profile's batches), capped by the config.
    if (r.ok() && a.max_batch > 0 && r->config_max_batch > 0) {
      const int want = std::min(a.max_batch, r->config_max_batch);
      if (want != r->max_batch) {
        auto b = manager_->SetBatchLimit(p.model, want == r->config_max_batch ? 0 : want);
        if (b.ok())
          spdlog::info("tuner: {}: batches of at most {} (was {}) on the new slice", p.model, want,
                       r->max_batch);
        else
          spdlog::warn("tuner: {}: batch limit {} -- failed: {}", p.model, want,
                       b.status().ToString());
      }
    }
    outcome.push_back(!r.ok() ? 0 : size > p.from ? 1 : -1);
  }
  lock.lock();
  for (size_t i = 0; i < pending.size(); ++i) {
    Counts& n = counts_[pending[i].model];
    ++(outcome[i] > 0 ? n.grow : outcome[i] < 0 ? n.shrink : n.refused);
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
      "# HELP tessera_tuner_resizes_total Live resizes the online tuner made (grow, shrink) or "
      "could not make (refused)\n"
      "# TYPE tessera_tuner_resizes_total counter\n";
  for (const auto& [name, n] : counts_)
    for (const auto& [dir, v] : {std::pair<const char*, uint64_t>{"grow", n.grow},
                                 {"shrink", n.shrink},
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
