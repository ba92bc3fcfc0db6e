// GSLICE (Dhakal et al., SoCC'20) as a baseline: its admission, which places the fleet's
// initial shares, and its per-instance self-tuning, which the simulator runs after every batch.
// GSLICE has no interference model and no cross-GPU placement of its own; instances go first
// fit onto GPUs, and it relies on self-tuning to correct what admission got wrong.
#include <algorithm>
#include <cmath>

#include "sizing.h"
#include "tessera/planner/tuner.h"

namespace tessera::planner {
namespace detail {
namespace {

constexpr double kStep = 0.05;  // MPS percentages in 5% steps; GSLICE clamps shares to 5-100%

struct Instance {
  size_t model;
  double rate;
  double share;  // fraction of the GPU
  Dedicated d;
};

}  // namespace

Plan PlanGslice(const PlanInput& in) {
  const GpuSpec& gpu = in.gpu;
  const double S = gpu.sms;
  const double rho = in.options.max_utilization;
  int max_b = 1;
  for (const auto& m : in.models) max_b = std::max(max_b, m.profile.max_batch());
  const PoissonTable pt(in.options.tail_probability, max_b);
  Plan plan;
  plan.policy = Policy::kGslice;
  plan.gpu = gpu;
  plan.models.resize(in.models.size());
  std::vector<Instance> instances;
  for (size_t mi = 0; mi < in.models.size(); ++mi) {
    const ModelDemand& m = in.models[mi];
    const Profile& p = m.profile;
    ModelPlan& mp = plan.models[mi];
    mp.model = m.name;
    // The knee: the smallest share whose batch-1 latency is within 10% of the whole GPU's.
    const double full = p.MeanMs(1, S);
    double knee = 1;
    for (int k = 1; k <= 20; ++k)
      if (p.MeanMs(1, k * kStep * S) <= 1.1 * full) {
        knee = k * kStep;
        break;
      }
    const Dedicated whole = SizeDedicated(p, S, m.rate_rps, m.slo_ms, 1, rho, pt);
    if (whole.max_batch == 0) {
      plan.unplaced.push_back({m.name, Fmt("SLO %.2f ms is below the worst case on a whole GPU "
                                           "(2 x p99(batch 1) = %.2f ms)",
                                           m.slo_ms, 2 * p.P99Ms(1, S))});
      mp.why = "unplaced: SLO too tight for this GPU";
      continue;
    }
    // Instances: as many as a whole GPU each needs, the rate split evenly; each gets its knee,
    // or the smallest 5% step that carries its rate when that is more.
    const int n = std::max(1, static_cast<int>(std::ceil(m.rate_rps / whole.cap_rps - 1e-9)));
    const double r = m.rate_rps / n;
    Instance inst{mi, r, 1, SizeDedicated(p, S, r, m.slo_ms, 1, rho, pt)};
    for (int k = static_cast<int>(std::lround(knee / kStep)); k <= 20; ++k) {
      const Dedicated d = SizeDedicated(p, k * kStep * S, r, m.slo_ms, 1, rho, pt);
      if (d.max_batch > 0 && d.cap_rps >= r) {
        inst = {mi, r, k * kStep, d};
        break;
      }
    }
    for (int i = 0; i < n; ++i) instances.push_back(inst);
    mp.why = Fmt("%d instance(s) at %.0f%% (knee %.0f%%)", n, 100 * inst.share, 100 * knee);
  }
  std::stable_sort(instances.begin(), instances.end(), [&](const Instance& a, const Instance& b) {
    if (a.share != b.share) return a.share > b.share;
    return in.models[a.model].name < in.models[b.model].name;
  });
  // First fit: the first GPU with enough free share and memory.
  std::vector<GpuPlan> gpus;
  std::vector<double> used;
  for (const Instance& it : instances) {
    const ModelDemand& m = in.models[it.model];
    size_t gi = 0;
    while (gi < gpus.size() && (used[gi] + it.share > 1 + 1e-9 ||
                                gpus[gi].memory_bytes + m.profile.memory_bytes > gpu.memory_bytes))
      ++gi;
    if (gi == gpus.size()) {
      if (static_cast<int>(gpus.size()) >= gpu.count) {
        plan.unplaced.push_back({m.name, Fmt("needs more than the %d GPUs given", gpu.count)});
        continue;
      }
      gpus.push_back({});
      gpus.back().index = static_cast<int>(gi);
      used.push_back(0);
    }
    Slice s;
    s.sms = it.share * S;
    s.busy = it.d.busy;
    s.pressure = SlicePressure(m.profile.mem_intensity, s.sms, S, it.d.busy);
    s.memory_bytes = m.profile.memory_bytes;
    s.members.push_back({m.name, it.rate, m.slo_ms, it.d.max_batch, it.d.predicted_ms});
    s.why =
        Fmt("%.0f%% of the GPU (MPS), batch limit %d: carries %.1f req/s of capacity %.1f, "
            "worst case %.2f ms <= SLO %.1f ms without interference; self-tuned while it runs",
            100 * it.share, it.d.max_batch, it.rate, it.d.cap_rps, it.d.predicted_ms, m.slo_ms);
    used[gi] += it.share;
    gpus[gi].sms_used += s.sms;
    gpus[gi].memory_bytes += s.memory_bytes;
    gpus[gi].slices.push_back(std::move(s));
    plan.models[it.model].slices += 1;
    plan.models[it.model].planned_rps += it.d.cap_rps;
  }
  // A model with an unplaced instance is unplaced as a whole (CheckPlan: all its rate or none).
  for (const Unplaced& u : plan.unplaced)
    for (GpuPlan& g : gpus)
      std::erase_if(g.slices, [&](const Slice& s) { return s.members[0].model == u.model; });
  for (const Unplaced& u : plan.unplaced)
    for (ModelPlan& mp : plan.models)
      if (mp.model == u.model) mp.slices = 0, mp.planned_rps = 0;
  for (GpuPlan& g : gpus) {
    g.sms_used = 0;
    g.memory_bytes = 0;
    for (const Slice& s : g.slices) g.sms_used += s.sms, g.memory_bytes += s.memory_bytes;
    if (!g.slices.empty()) plan.gpus.push_back(std::move(g));
  }
  for (size_t i = 0; i < plan.gpus.size(); ++i) plan.gpus[i].index = static_cast<int>(i);
  return plan;
}

}  // namespace detail

GsliceSelfTuner::GsliceSelfTuner(double share, int max_batch, int profile_max_batch)
    : share_(share),
      max_batch_(std::max(1, max_batch)),
      batch_cap_(std::clamp(profile_max_batch, 1, 64)) {}

GsliceSelfTuner::Advice GsliceSelfTuner::OnBatch(double latency_ms, double infer_ms, int batch,
                                                 double arrival_rps, double service_rps,
                                                 double slo_ms) {
  Advice a;
  const double per_request = infer_ms / std::max(1, batch);
  // Share: rate-based when arrival and service differ by more than 10% (arrivals ahead) or
  // 15% (service ahead), else from the SLO overflow or headroom.
  double target = share_;
  if (service_rps > 0 && arrival_rps > 1.10 * service_rps)
    target = share_ * (1 + (arrival_rps - service_rps) / service_rps);
  else if (service_rps > 0 && arrival_rps < service_rps / 1.15)
    target = share_ * (1 - (service_rps - arrival_rps) / service_rps);
  else if (latency_ms > slo_ms)
    target = share_ * (1 + (latency_ms - slo_ms) / latency_ms);
  else
    target = share_ * (1 - (slo_ms - latency_ms) / slo_ms);
  // Recommendations are in GSLICE's 5% steps; one is applied after 5 identical ones in a row,
  // and changes under 3 points are ignored.
  target = std::clamp(std::round(target / 0.05) * 0.05, 0.05, 1.0);
  if (std::fabs(target - share_) < 0.03) {
    streak_ = 0;
  } else if (streak_ > 0 && std::fabs(target - last_target_) < 1e-9) {
    ++streak_;
  } else {
    streak_ = 1;
    last_target_ = target;
  }
  a.share = share_;
  if (streak_ >= 5) {
    a.resize = true;
    a.share = target;
    streak_ = 0;
  }
  // Batch limit: shrink by the overflow, grow by the headroom (>= 10% of the SLO), in
  // requests' worth of inference time; within the 10% band, leave it.
  if (per_request > 0) {
    if (latency_ms > slo_ms) {
      const int cut = static_cast<int>(std::ceil((latency_ms - slo_ms) / per_request));
      max_batch_ = std::max(1, max_batch_ - cut);
    } else if (slo_ms - latency_ms >= 0.1 * slo_ms) {
      const int add =
          std::max(1, static_cast<int>(std::floor((slo_ms - latency_ms) / per_request)));
      max_batch_ = std::min(batch_cap_, max_batch_ + add);
    }
  }
  a.max_batch = max_batch_;
  return a;
}

}  // namespace tessera::planner
