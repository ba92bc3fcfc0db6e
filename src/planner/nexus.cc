// Nexus' squishy bin packing (Shen et al., SOSP'19) as a baseline: whole GPUs, time-shared.
// Planning latency l(b) = 1.15 x (mean + std) on the whole GPU. A model first fills saturated
// GPUs at the largest batch with l(b) <= SLO/2; its residual rate becomes a session with its
// own duty cycle; sessions merge onto the fullest GPU whose merged cycle still fits (sum of
// l(b_i) <= d, d + l(b_i) <= SLO_i), else a new GPU. No interference: one batch at a time.
#include <algorithm>
#include <cmath>

#include "sizing.h"

namespace tessera::planner::detail {

Plan PlanNexus(const PlanInput& in) {
  const GpuSpec& gpu = in.gpu;
  const double S = gpu.sms;
  auto ell = [&](const Profile& p, int b) { return 1.15 * (p.MeanMs(b, S) + p.StdMs(b, S)); };
  Plan plan;
  plan.policy = Policy::kNexus;
  plan.gpu = gpu;
  plan.models.resize(in.models.size());

  struct Session {
    size_t model;
    DutyMember m;
    int batch;
    double d_ms;
    double occupancy;
  };
  std::vector<Session> sessions;
  auto add_gpu = [&](Slice s) {
    if (plan.gpus_used() >= gpu.count) return false;
    GpuPlan gp;
    gp.index = plan.gpus_used();
    gp.sms_used = S;
    gp.memory_bytes = s.memory_bytes;
    gp.slices.push_back(std::move(s));
    plan.gpus.push_back(std::move(gp));
    return true;
  };

  for (size_t mi = 0; mi < in.models.size(); ++mi) {
    const ModelDemand& m = in.models[mi];
    ModelPlan& mp = plan.models[mi];
    mp.model = m.name;
    int b_sat = 0;
    for (int b = 1; b <= m.profile.max_batch() && ell(m.profile, b) <= m.slo_ms / 2; ++b) b_sat = b;
    if (b_sat == 0) {
      plan.unplaced.push_back(
          {m.name, Fmt("l(1) = %.2f ms exceeds SLO/2 = %.2f ms", ell(m.profile, 1), m.slo_ms / 2)});
      mp.why = "unplaced: SLO too tight for this GPU";
      continue;
    }
    const double l_sat = ell(m.profile, b_sat);
    const double cap = b_sat * 1000.0 / l_sat;
    const int n = static_cast<int>(std::floor(m.rate_rps / cap));
    bool lost = false;
    for (int k = 0; k < n; ++k) {
      Slice s;
      s.sms = S;
      s.duty_cycle_ms = l_sat;
      s.busy = 1;
      s.memory_bytes = m.profile.memory_bytes;
      s.members.push_back({m.name, cap, m.slo_ms, b_sat, 2 * l_sat});
      s.why = Fmt("saturated GPU: batch %d every l(%d) = %.2f ms <= SLO/2 delivers %.1f req/s",
                  b_sat, b_sat, l_sat, cap);
      if (!add_gpu(std::move(s))) {
        lost = true;
        break;
      }
      mp.slices += 1;
      mp.planned_rps += cap;
    }
    if (lost) {
      plan.unplaced.push_back({m.name, Fmt("needs more than the %d GPUs given", gpu.count)});
      continue;
    }
    const double rest = m.rate_rps - n * cap;
    mp.why = Fmt("%d saturated GPU(s) at batch %d", n, b_sat);
    if (rest <= 1e-9) continue;
    Session se{mi, {rest, m.slo_ms, m.profile.max_batch()}, 0, 0, 0};
    auto lat = [&](size_t, int b) { return ell(m.profile, b); };
    if (!SessionAlone(se.m, 0, lat, &se.batch, &se.d_ms)) {
      plan.unplaced.push_back({m.name, "residual rate cannot meet its SLO"});
      continue;
    }
    // A session must also fit its own cycle (occupancy l(b) / d <= 1): where the largest batch
    // within the SLO runs longer than the cycle it leaves, take the largest batch that fits.
    while (se.batch > 0 && ell(m.profile, se.batch) > se.d_ms) {
      --se.batch;
      if (se.batch > 0)
        se.d_ms = std::min(m.slo_ms - ell(m.profile, se.batch), se.batch * 1000.0 / rest);
    }
    if (se.batch == 0) {
      // No cycle fits the residual: it gets a GPU of its own at the saturated batch (which
      // carries more than the residual, since the residual is below one GPU's rate).
      Slice s;
      s.sms = S;
      s.duty_cycle_ms = l_sat;
      s.busy = rest / cap;
      s.memory_bytes = m.profile.memory_bytes;
      s.members.push_back({m.name, rest, m.slo_ms, b_sat, 2 * l_sat});
      s.why = Fmt("residual %.1f req/s fits no shared duty cycle: a GPU of its own at batch %d",
                  rest, b_sat);
      if (!add_gpu(std::move(s))) {
        plan.unplaced.push_back({m.name, Fmt("needs more than the %d GPUs given", gpu.count)});
        continue;
      }
      mp.slices += 1;
      mp.planned_rps += cap;
      continue;
    }
    se.occupancy = ell(m.profile, se.batch) / se.d_ms;
    sessions.push_back(se);
    mp.why += Fmt(" and a residual session of %.1f req/s", rest);
  }

  // Residual sessions, the largest occupancy first, onto the fullest GPU that fits.
  std::sort(sessions.begin(), sessions.end(), [&](const Session& a, const Session& b) {
    if (a.occupancy != b.occupancy) return a.occupancy > b.occupancy;
    return in.models[a.model].name < in.models[b.model].name;
  });
  struct Bin {
    std::vector<const Session*> members;
    DutyPlan duty;
    int64_t memory = 0;
  };
  std::vector<Bin> bins;
  auto merged = [&](const std::vector<const Session*>& ss) {
    std::vector<DutyMember> ms;
    std::vector<double> ds;
    for (const Session* s : ss) {
      ms.push_back(s->m);
      ds.push_back(s->d_ms);
    }
    return MergeSessions(
        ms, ds, [&](size_t i, int b) { return ell(in.models[ss[i]->model].profile, b); }, 1.0);
  };
  const int saturated = plan.gpus_used();
  for (const Session& se : sessions) {
    const int64_t mem = in.models[se.model].profile.memory_bytes;
    int pick = -1;
    DutyPlan pick_plan;
    for (size_t bi = 0; bi < bins.size(); ++bi) {
      if (bins[bi].memory + mem > gpu.memory_bytes) continue;
      auto ms = bins[bi].members;
      ms.push_back(&se);
      DutyPlan dp = merged(ms);
      if (dp.feasible && (pick < 0 || bins[bi].duty.occupancy > bins[pick].duty.occupancy)) {
        pick = static_cast<int>(bi);
        pick_plan = dp;
      }
    }
    if (pick < 0) {
      if (saturated + static_cast<int>(bins.size()) >= gpu.count) {
        plan.unplaced.push_back(
            {in.models[se.model].name, Fmt("needs more than the %d GPUs given", gpu.count)});
        continue;
      }
      pick_plan = merged({&se});
      if (!pick_plan.feasible) {  // cannot happen after the check above; never index past it
        plan.unplaced.push_back({in.models[se.model].name, "residual session fits no cycle"});
        continue;
      }
      bins.push_back({});
      pick = static_cast<int>(bins.size()) - 1;
    }
    bins[pick].members.push_back(&se);
    bins[pick].duty = pick_plan;
    bins[pick].memory += mem;
  }
  for (const Bin& b : bins) {
    Slice s;
    s.sms = S;
    s.duty_cycle_ms = b.duty.d_ms;
    s.busy = b.duty.occupancy;
    s.memory_bytes = b.memory;
    std::string names;
    for (size_t i = 0; i < b.members.size(); ++i) {
      const Session& se = *b.members[i];
      const ModelDemand& m = in.models[se.model];
      const int bt = b.duty.batches[i];
      s.members.push_back({m.name, se.m.rate_rps, m.slo_ms, bt, b.duty.d_ms + ell(m.profile, bt)});
      names += (names.empty() ? "" : ", ") + m.name + Fmt(" (batch %d)", bt);
      plan.models[se.model].slices += 1;
      plan.models[se.model].planned_rps += bt * 1000.0 / b.duty.d_ms;
    }
    s.why = Fmt("%zu session(s) round-robin in a %.2f ms duty cycle (occupancy %.0f%%): ",
                b.members.size(), b.duty.d_ms, 100 * b.duty.occupancy) +
            names;
    add_gpu(std::move(s));
  }
  return plan;
}

}  // namespace tessera::planner::detail
