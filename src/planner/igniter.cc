// iGniter's greedy provisioning (Xu et al., TPDS'23) as a baseline. Each workload gets a batch
// that fills half its SLO at its rate and the smallest GPU share, in 2.5% steps, whose predicted
// (mean) latency fits the other half; workloads bigger than a GPU take whole GPUs first. The
// rest, largest share first, try every open GPU: neighbours whose latency breaks under the
// newcomer's interference are raised 2.5% at a time; the GPU that needs the least added share
// wins, else a new GPU opens. iGniter's fitted latency model is replaced by the same profiles
// and interference model the other policies use, so only the provisioning logic differs.
#include <algorithm>
#include <cmath>

#include "sizing.h"

namespace tessera::planner::detail {
namespace {

struct Work {
  size_t model;
  double rate;
  int batch;
  double share;  // SMs, a multiple of the step
};

}  // namespace

Plan PlanIgniter(const PlanInput& in) {
  const GpuSpec& gpu = in.gpu;
  const double S = gpu.sms;
  const double step = 0.025 * S;
  Plan plan;
  plan.policy = Policy::kIgniter;
  plan.gpu = gpu;
  plan.models.resize(in.models.size());

  auto latency = [&](const Work& w, double f) {
    return in.models[w.model].profile.MeanMs(w.batch, w.share) * f;
  };
  auto busy = [&](const Work& w, double f) {
    return std::min(1.0, w.rate * latency(w, f) / (1000.0 * w.batch));
  };
  auto pressure = [&](const Work& w) {
    return SlicePressure(in.models[w.model].profile.mem_intensity, w.share, S, busy(w, 1));
  };
  // Latency must fit SLO/2 and, when the batch is capped by the profile, still carry the rate.
  auto fits = [&](const Work& w, double f) {
    const double l = latency(w, f);
    return l <= in.models[w.model].slo_ms / 2 && w.batch * 1000.0 / l >= w.rate * (1 - 1e-9);
  };
  // The smallest share (in steps) that fits at inflation f; 0 when none does.
  auto min_share = [&](Work w, double f) {
    for (int k = 1; k <= 40; ++k) {
      w.share = k * step;
      if (fits(w, f)) return w.share;
    }
    return 0.0;
  };

  std::vector<Work> works;
  for (size_t mi = 0; mi < in.models.size(); ++mi) {
    const ModelDemand& m = in.models[mi];
    const Profile& p = m.profile;
    ModelPlan& mp = plan.models[mi];
    mp.model = m.name;
    const double half = m.slo_ms / 2;
    auto batch_for = [&](double rate) {
      return std::clamp(static_cast<int>(std::ceil(rate * half / 1000.0)), 1, p.max_batch());
    };
    Work w{mi, m.rate_rps, batch_for(m.rate_rps), 0};
    w.share = min_share(w, 1);
    if (w.share == 0) {
      // Over 100%: whole GPUs at the largest batch within the budget, then the remainder.
      int b_full = 0;
      for (int b = 1; b <= p.max_batch() && p.MeanMs(b, S) <= half; ++b) b_full = b;
      if (b_full == 0) {
        plan.unplaced.push_back(
            {m.name, Fmt("batch-1 latency %.2f ms on a whole GPU exceeds SLO/2 = %.2f ms",
                         p.MeanMs(1, S), half)});
        mp.why = "unplaced: SLO too tight for this GPU";
        continue;
      }
      const double cap = b_full * 1000.0 / p.MeanMs(b_full, S);
      const int n = static_cast<int>(std::floor(m.rate_rps / cap));
      for (int k = 0; k < n; ++k) works.push_back({mi, cap, b_full, S});
      const double rest = m.rate_rps - n * cap;
      mp.why = Fmt("%d whole GPU(s) at batch %d", n, b_full);
      if (rest > 1e-9) {
        Work r{mi, rest, batch_for(rest), 0};
        r.share = min_share(r, 1);
        if (r.share == 0) r = {mi, rest, b_full, S};
        works.push_back(r);
        mp.why += Fmt(" and %.1f%% of another for %.1f req/s", 100 * r.share / S, rest);
      }
    } else {
      works.push_back(w);
      mp.why = Fmt("%.1f%% of a GPU at batch %d", 100 * w.share / S, w.batch);
    }
  }
  std::stable_sort(works.begin(), works.end(), [&](const Work& a, const Work& b) {
    if (a.share != b.share) return a.share > b.share;
    return in.models[a.model].name < in.models[b.model].name;
  });

  // Raises shares on a GPU until every workload meets its budget under its neighbours'
  // pressure; false when the GPU runs out of share.
  auto settle = [&](std::vector<Work>& ws) {
    for (int iter = 0; iter < 400; ++iter) {
      double total = 0, P = 0;
      for (const Work& w : ws) {
        total += w.share;
        P += pressure(w);
      }
      if (total > S + 1e-9) return false;
      bool raised = false;
      for (Work& w : ws) {
        const double f = in.interference.Inflation(P - pressure(w));
        if (!fits(w, f)) {
          if (w.share + step > S + 1e-9) return false;
          w.share += step;
          raised = true;
        }
      }
      if (!raised) return true;
    }
    return false;
  };
  std::vector<std::vector<Work>> bins;
  std::vector<double> used;
  for (const Work& w : works) {
    int pick = -1;
    double pick_added = 0;
    std::vector<Work> pick_ws;
    for (size_t bi = 0; bi < bins.size(); ++bi) {
      if (used[bi] + w.share > S + 1e-9) continue;
      int64_t mem = in.models[w.model].profile.memory_bytes;
      for (const Work& o : bins[bi]) mem += in.models[o.model].profile.memory_bytes;
      if (mem > gpu.memory_bytes) continue;
      std::vector<Work> ws = bins[bi];
      ws.push_back(w);
      if (!settle(ws)) continue;
      double total = 0;
      for (const Work& o : ws) total += o.share;
      const double added = total - used[bi];
      if (pick < 0 || added < pick_added - 1e-9) {
        pick = static_cast<int>(bi);
        pick_added = added;
        pick_ws = std::move(ws);
      }
    }
    if (pick < 0) {
      if (static_cast<int>(bins.size()) >= gpu.count) {
        plan.unplaced.push_back(
            {in.models[w.model].name, Fmt("needs more than the %d GPUs given", gpu.count)});
        continue;
      }
      bins.push_back({});
      used.push_back(0);
      pick = static_cast<int>(bins.size()) - 1;
      pick_ws = {w};
      pick_added = w.share;
    }
    bins[pick] = std::move(pick_ws);
    used[pick] += pick_added;
  }

  for (size_t bi = 0; bi < bins.size(); ++bi) {
    GpuPlan gp;
    gp.index = static_cast<int>(bi);
    double P = 0;
    for (const Work& w : bins[bi]) P += pressure(w);
    for (const Work& w : bins[bi]) {
      const ModelDemand& m = in.models[w.model];
      Slice s;
      s.sms = w.share;
      s.inflation = in.interference.Inflation(P - pressure(w));
      s.busy = busy(w, s.inflation);
      s.pressure = pressure(w);
      s.memory_bytes = m.profile.memory_bytes;
      const double exec = latency(w, s.inflation);
      const double fill = (w.batch - 1) * 1000.0 / w.rate;
      s.members.push_back({m.name, w.rate, m.slo_ms, w.batch, std::min(fill, m.slo_ms / 2) + exec});
      s.why =
          Fmt("%.1f%% of the GPU at batch %d: predicted %.2f ms <= SLO/2 = %.2f ms at "
              "inflation %.2f",
              100 * w.share / S, w.batch, exec, m.slo_ms / 2, s.inflation);
      gp.sms_used += s.sms;
      gp.memory_bytes += s.memory_bytes;
      gp.slices.push_back(std::move(s));
      plan.models[w.model].slices += 1;
      plan.models[w.model].planned_rps += w.batch * 1000.0 / exec;
    }
    plan.gpus.push_back(std::move(gp));
  }
  return plan;
}

}  // namespace tessera::planner::detail
