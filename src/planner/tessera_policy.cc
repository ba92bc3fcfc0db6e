// Tessera's planner: spatial slices sized per model, low-rate models sharing a slice, slices
// packed best-fit under an interference check. See plan.h and docs/PLANNER.md.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "sizing.h"
#include "tessera/core/random.h"

namespace tessera::planner::detail {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// A slice's queues for a queue check: members (indices into in.models), their rates and batch
// limits (0: the largest batch whose p99 fits the SLO). `split`: the slice is one of that many
// equal replicas of its (single) model, fed round-robin as the runtime's router feeds them, so
// it sees every split-th arrival: for a renewal process whose gaps have coefficient of variation
// cv, its gaps are sums of `split` of them, cv / sqrt(split).
struct Check {
  std::vector<size_t> models;
  std::vector<double> rates;
  std::vector<int> limits;
  int split = 1;
};

// A slice waiting to be placed, with what is needed to re-predict it on its GPU.
struct Item {
  Slice slice;
  bool checked = false;  // sized by a queue check (else by the closed-form bound)
  double f_max = 1;
  std::vector<size_t> models;  // indices into in.models, one per member
  std::vector<int> batches;    // per member (shared slices)
};

struct Bin {
  double free_sms = 0;
  int64_t free_mem = 0;
  double pressure = 0;  // sum over its slices
  double limit = kInf;  // min over slices of (own slack + own pressure)
  std::vector<size_t> items;
};

// A multi-replica model's checked options (n replicas of a fitted size each) and the items of
// the one in the plan.
struct Alternatives {
  size_t model = 0;
  std::vector<std::pair<int, size_t>> options;  // (n, index into the fits)
  size_t chosen = 0;                            // index into options
  std::vector<size_t> items;                    // the chosen option's items
};

struct Choice {
  int sms = 0;           // slice size of the replicas
  int count = 0;         // replicas of that size
  int residual_sms = 0;  // one more, smaller slice for the rest of the rate (0: none)
  double residual_rps = 0;
  int64_t cost = 0;
};

}  // namespace

Plan PlanTessera(const PlanInput& in) {
  const GpuSpec& gpu = in.gpu;
  const int g = gpu.granularity_sms;
  const int usable = UsableSms(gpu, Policy::kTessera);
  const double rho = in.options.max_utilization;
  const double alpha = in.interference.alpha();
  // Slices are sized for a typical neighbourhood (the GPU around them 70% busy with models of
  // average memory intensity); the packing then checks the real neighbours.
  double mean_intensity = 0;
  for (const auto& m : in.models) mean_intensity += m.profile.mem_intensity;
  mean_intensity /= std::max<size_t>(1, in.models.size());
  const double f0 = in.interference.Inflation(0.7 * mean_intensity);
  int max_b = 1;
  for (const auto& m : in.models) max_b = std::max(max_b, m.profile.max_batch());
  // Batches are sized for each model's arrival burstiness (Poisson when cv = 1).
  PoissonTables tables(in.options.tail_probability, max_b);
  auto slack = [&](double f_max) { return alpha > 0 ? (f_max - 1) / alpha : kInf; };

  Plan plan;
  plan.policy = Policy::kTessera;
  plan.gpu = gpu;
  plan.models.resize(in.models.size());
  std::vector<Item> items;
  std::vector<size_t> share;                      // models that may share a slice
  std::vector<int> own_sms(in.models.size(), 0);  // for those: their own slice's size

  // Queue checks (options.check_attainment > 0): a slice's queues simulated with the runtime's
  // batching rule (SimulateSlice) decide its size: the fewest granules at which every member
  // answers the target share within SLO at the typical inflation, and the largest inflation at
  // which that still holds (the packing's interference bound). The same random draws for every
  // size of one slice, so the sizes compare like for like. Without budget left, a slice keeps
  // its closed-form size.
  const double target = in.options.check_attainment;
  int64_t budget = target > 0 ? in.options.check_budget : 0;
  const int per_check = in.options.check_arrivals;
  // The target must hold at rate / rho: max_utilization's headroom for what the checks do not
  // model (the neighbours' load changing from moment to moment, rates drifting).
  const double load = 1 / rho;
  // One check: the slice's members at `scale` x their rates and inflation f; the latency at
  // `quantile` when > 0 (a full run), else a run that may stop early at the target.
  auto simulate = [&](const Check& c, int sms, double f, double scale, double quantile = 0) {
    std::vector<QueueTables> t;
    t.reserve(c.models.size());
    std::vector<QueueMember> q;
    uint64_t seed = kFnvOffset;  // FNV-1a of the member names
    for (size_t k = 0; k < c.models.size(); ++k) {
      const ModelDemand& m = in.models[c.models[k]];
      t.emplace_back(m.profile, sms, f, m.slo_ms, in.options.pow2_buckets);
      q.push_back({&t.back(), c.limits[k] ? c.limits[k] : t.back().max_batch, c.rates[k] * scale,
                   m.arrival_cv / std::sqrt(static_cast<double>(c.split))});
      seed = Fnv1a(m.name, seed);
    }
    SliceOutcome o = SimulateSlice(q, per_check, seed, quantile, quantile > 0 ? 0 : target);
    budget -= o.drawn;
    return o;
  };
  struct Fit {
    int sms = 0;  // 0: no size up to the GPU passes (or no budget): keep the closed form
    double f_max = 1;
    SliceOutcome worst;    // at f_max and rate / rho, with the latency quantile
    bool minimal = false;  // one granule less was checked and fell short
  };
  auto fit = [&](const Check& c, int start) {
    Fit out;
    // A fit takes about a dozen checks; one that could not finish keeps the closed form.
    if (budget < 12 * int64_t{per_check}) return out;
    auto ok = [&](const SliceOutcome& o) { return o.attainment >= target; };
    auto pass = [&](int sms) { return ok(simulate(c, sms, f0, load)); };
    int hi = std::max(1, start / g);  // in granules; passes once found
    int lo = 1;                       // below it, everything checked fell short
    if (!pass(hi * g)) {
      // Up from the closed form, one granule at a time (a bursty model may need more).
      do {
        if (++hi * g > usable || budget <= 0) return out;
      } while (!pass(hi * g));
      lo = hi;
    }
    while (lo < hi && budget > 0) {
      const int mid = (lo + hi) / 2;
      if (pass(mid * g))
        hi = mid;
      else
        lo = mid + 1;
    }
    out.sms = hi * g;
    out.minimal = lo == hi && hi > 1;
    // The inflation it tolerates, to within an eighth of f0, up to 1.5 f0: a lower bound, which
    // is what the packing needs.
    double flo = f0, step = 0.25 * f0;
    for (int it = 0; it < 2 && budget > 0; ++it, step /= 2)
      if (ok(simulate(c, out.sms, flo + step, load))) flo += step;
    if (flo > 1.3 * f0 && budget > 0 && ok(simulate(c, out.sms, 1.5 * f0, load))) flo = 1.5 * f0;
    // Early passes may accept a size the full run just misses: the full run at the size and
    // inflation chosen has the last word (and gives the quantile), stepping back to f0, then up
    // a granule at a time.
    for (;;) {
      out.worst = simulate(c, out.sms, flo, load, target);
      if (ok(out.worst)) break;
      if (flo > f0) {
        flo = f0;
        continue;
      }
      out.sms += g;
      out.minimal = false;
      if (out.sms > usable || budget <= 0) return Fit{};
    }
    out.f_max = flo;
    return out;
  };

  // A dedicated slice of `sms` (the closed-form size) for `rate`, fitted by queue checks unless
  // `pre` brings the fit already.
  auto dedicated_item = [&](size_t mi, int sms, double rate, const Fit* pre = nullptr) {
    const ModelDemand& m = in.models[mi];
    Item it;
    it.models.push_back(mi);
    const Check c{{mi}, {rate}, {0}};
    const Fit fitted = pre ? *pre : fit(c, sms);
    it.checked = fitted.sms > 0;
    double cap = rate;
    if (it.checked) {
      sms = fitted.sms;
      const QueueTables t(m.profile, sms, f0, m.slo_ms);
      const SliceOutcome& q = fitted.worst;
      it.f_max = fitted.f_max;
      it.slice.busy = q.busy;
      it.slice.members.push_back({m.name, rate, m.slo_ms, t.max_batch, q.members[0].quantile_ms});
      it.slice.why =
          Fmt("%d SMs (%.0f%% of the GPU), max batch %d: its queue, simulated with the runtime's "
              "batching rule at %.0f%% of its %.1f req/s and inflation %.2f (the most its "
              "neighbours may cause), answers %.3f%% within SLO %.1f ms (target %.2f%%; busy "
              "%.0f%%)%s",
              sms, 100.0 * sms / gpu.sms, t.max_batch, 100 * load, rate, it.f_max,
              100 * q.attainment, m.slo_ms, 100 * target, 100 * q.busy,
              fitted.minimal ? Fmt("; %d SMs fall short", sms - g).c_str() : "");
    } else {
      const Dedicated d = SizeDedicated(m.profile, sms, rate, m.slo_ms, f0, rho, tables.For(m));
      cap = d.cap_rps;
      it.f_max = MaxInflation(m.profile, sms, rate, m.slo_ms, rho, tables.For(m));
      it.slice.busy = d.busy;
      it.slice.members.push_back({m.name, rate, m.slo_ms, d.max_batch, d.predicted_ms});
      it.slice.why = Fmt(
          "%d SMs (%.0f%% of the GPU), max batch %d: carries %.1f req/s, %.0f%% of its capacity "
          "%.1f req/s; batches of %d keep up with Poisson arrivals (overflow <= %.0f%%), worst "
          "case %.2f ms <= SLO %.1f ms",
          sms, 100.0 * sms / gpu.sms, d.max_batch, rate, 100 * rate / d.cap_rps, d.cap_rps,
          d.used_batch, 100 * in.options.tail_probability, d.predicted_ms, m.slo_ms);
    }
    it.slice.sms = sms;
    it.slice.pressure = SlicePressure(m.profile.mem_intensity, sms, gpu.sms, it.slice.busy);
    it.slice.memory_bytes = m.profile.memory_bytes;
    items.push_back(std::move(it));
    return cap;
  };

  // Closed-form sizes first, for every model; queue checks then go to the models with the most
  // SMs at stake first, while the budget lasts.
  struct Sized {
    std::map<int, double> cap;  // slice SMs -> closed-form capacity in req/s
    Choice best;
  };
  std::vector<Sized> sized(in.models.size());
  std::vector<size_t> by_cost;
  for (size_t mi = 0; mi < in.models.size(); ++mi) {
    const ModelDemand& m = in.models[mi];
    ModelPlan& mp = plan.models[mi];
    mp.model = m.name;
    std::map<int, double>& cap = sized[mi].cap;
    for (int s = g; s <= usable; s += g) {
      const double c = SliceCapacity(m.profile, s, m.slo_ms, f0, rho, tables.For(m), nullptr);
      if (c > 0) cap[s] = c;
    }
    if (cap.empty()) {
      const double p99 = m.profile.P99Ms(1, usable);
      plan.unplaced.push_back(
          {m.name, Fmt("SLO %.2f ms is below the worst case on a whole-GPU slice of %d SMs "
                       "(2 x p99(batch 1) x %.2f = %.2f ms)",
                       m.slo_ms, usable, f0, 2 * p99 * f0)});
      mp.why = "unplaced: SLO too tight for this GPU";
      continue;
    }
    // The fewest SMs in total: n equal slices of one size, or k of the most efficient size
    // plus one smaller slice for the rest.
    Choice& best = sized[mi].best;
    best.cost = std::numeric_limits<int64_t>::max();
    int s_eff = 0;
    for (const auto& [s, c] : cap) {
      const int n = static_cast<int>(std::ceil(m.rate_rps / c - 1e-9));
      const int64_t cost = int64_t{n} * s;
      if (cost < best.cost || (cost == best.cost && n < best.count)) best = {s, n, 0, 0, cost};
      if (s_eff == 0 || c / s > cap[s_eff] / s_eff) s_eff = s;
    }
    const int k = static_cast<int>(std::floor(m.rate_rps / cap[s_eff]));
    const double rest = m.rate_rps - k * cap[s_eff];
    if (k >= 1 && rest > 1e-9) {
      for (const auto& [s, c] : cap)
        if (c >= rest) {
          const int64_t cost = int64_t{k} * s_eff + s;
          if (cost < best.cost) best = {s_eff, k, s, rest, cost};
          break;
        }
    }
    by_cost.push_back(mi);
  }
  std::stable_sort(by_cost.begin(), by_cost.end(),
                   [&](size_t a, size_t b) { return sized[a].best.cost > sized[b].best.cost; });
  // Multi-replica models keep every checked option: the packing may trade a few SMs for a GPU.
  std::vector<Fit> fits;
  std::vector<Alternatives> alts;
  auto cost_of = [&](std::pair<int, size_t> option) {
    return int64_t{option.first} * fits[option.second].sms;
  };
  auto replicas = [&](size_t mi, std::pair<int, size_t> option) {
    const auto [n, fi] = option;
    std::vector<size_t> ids;
    for (int r = 0; r < n; ++r) {
      dedicated_item(mi, fits[fi].sms, in.models[mi].rate_rps / n, &fits[fi]);
      ids.push_back(items.size() - 1);
    }
    return ids;
  };
  for (size_t mi : by_cost) {
    const ModelDemand& m = in.models[mi];
    ModelPlan& mp = plan.models[mi];
    const std::map<int, double>& cap = sized[mi].cap;
    const Choice& best = sized[mi].best;
    const int slices = best.count + (best.residual_sms ? 1 : 0);
    if (slices == 1 && m.rate_rps / cap.at(best.sms) < in.options.share_below_utilization) {
      share.push_back(mi);
      own_sms[mi] = best.sms;
      continue;
    }
    // With queue checks: n equal replicas, each fitted, for the fewest SMs in total; n from one
    // below the closed form's count to two above (or on until one passes: a bursty, tight-SLO
    // model may need more replicas than the closed form thinks).
    if (budget > 0) {
      auto start_for = [&](double r) {
        for (const auto& [s, c] : cap)
          if (c >= r) return s;
        return usable;
      };
      Alternatives alt;
      alt.model = mi;
      int64_t best_cost = std::numeric_limits<int64_t>::max();
      const int last = slices == 1 ? 1 : slices + 2;
      for (int n = std::max(1, slices - 1); budget > 0; ++n) {
        if (n > last && (!alt.options.empty() || n > 4 * slices + 4)) break;
        const Fit f = fit({{mi}, {m.rate_rps / n}, {0}, n}, start_for(m.rate_rps / n));
        if (f.sms == 0) continue;
        fits.push_back(f);
        alt.options.emplace_back(n, fits.size() - 1);
        if (int64_t{n} * f.sms < best_cost) {
          best_cost = int64_t{n} * f.sms;
          alt.chosen = alt.options.size() - 1;
        }
      }
      if (!alt.options.empty()) {
        alt.items = replicas(mi, alt.options[alt.chosen]);
        alts.push_back(std::move(alt));
        continue;
      }
    }
    const double per = best.residual_sms ? cap.at(best.sms) : m.rate_rps / best.count;
    for (int r = 0; r < best.count; ++r) mp.planned_rps += dedicated_item(mi, best.sms, per);
    if (best.residual_sms)
      mp.planned_rps += dedicated_item(mi, best.residual_sms, best.residual_rps);
    mp.slices = slices;
    mp.why =
        slices == 1
            ? Fmt("one slice of %d SMs: the smallest that carries %.1f req/s", best.sms, m.rate_rps)
            : Fmt("%d slices (%d x %d SMs%s): the fewest SMs in total (%lld) that "
                  "carry %.1f req/s; one %d-SM slice carries %.1f req/s",
                  slices, best.count, best.sms,
                  best.residual_sms ? Fmt(" + %d", best.residual_sms).c_str() : "",
                  static_cast<long long>(best.cost), m.rate_rps, best.sms, cap.at(best.sms));
  }

  // Low-rate models share a slice round-robin, as the runtime serves a shared slice: one batch
  // of each member with work in turn. Batches are sized so that what arrives during one round
  // fits the next batch (Poisson overflow <= tail_probability), which also gives each member its
  // rate. Member i's worst case is its own batch in flight, then one round: (p99_i(b_i) +
  // sum_j p99_j(b_j)) x f <= SLO_i; the slice is at most rho busy. Tight SLOs first; each model
  // joins the open group (its slice at least the model's own size) it fills most.
  std::sort(share.begin(), share.end(), [&](size_t a, size_t b) {
    const auto &x = in.models[a], &y = in.models[b];
    return x.slo_ms != y.slo_ms ? x.slo_ms < y.slo_ms : x.name < y.name;
  });
  struct Round {
    bool feasible = false;
    std::vector<int> batches;
    double round_ms = 0, busy = 0, f_max = kInf;
  };
  auto round_robin = [&](int sms, const std::vector<size_t>& models) {
    Round r;
    r.batches.assign(models.size(), 1);
    // The batches and the round they fill depend on each other: iterate to the fixed point.
    for (int iter = 0; iter < 20; ++iter) {
      r.round_ms = 0;
      for (size_t i = 0; i < models.size(); ++i)
        r.round_ms += in.models[models[i]].profile.MeanMs(r.batches[i], sms) * f0;
      bool changed = false;
      for (size_t i = 0; i < models.size(); ++i) {
        const ModelDemand& m = in.models[models[i]];
        const double lambda = m.rate_rps * r.round_ms / 1000.0;
        int b = r.batches[i];
        const PoissonTable& pt = tables.For(m);
        while (b <= m.profile.max_batch() && pt.LambdaMax(b) < lambda) ++b;
        if (b > m.profile.max_batch()) return r;
        changed |= b != r.batches[i];
        r.batches[i] = b;
      }
      if (!changed) break;
      if (iter == 19) return r;
    }
    double sum_p99 = 0;
    for (size_t i = 0; i < models.size(); ++i) {
      const ModelDemand& m = in.models[models[i]];
      sum_p99 += m.profile.P99Ms(r.batches[i], sms);
      r.busy += m.rate_rps * m.profile.MeanMs(r.batches[i], sms) * f0 / (1000.0 * r.batches[i]);
    }
    if (r.busy > rho) return r;
    r.f_max = rho * f0 / r.busy;
    for (size_t i = 0; i < models.size(); ++i) {
      const ModelDemand& m = in.models[models[i]];
      const double worst = m.profile.P99Ms(r.batches[i], sms) + sum_p99;
      if (worst * f0 > m.slo_ms) return r;
      r.f_max = std::min(r.f_max, m.slo_ms / worst);
    }
    r.feasible = true;
    return r;
  };
  struct Group {
    int sms = 0;
    std::vector<size_t> models;
    Round round;
  };
  std::vector<Group> groups;
  std::vector<size_t> open;  // groups still taking members (the search stays bounded)
  constexpr size_t kOpenGroups = 48;
  std::vector<size_t> trial;
  for (size_t mi : share) {
    const int own = own_sms[mi];
    int best = -1;
    Round best_round;
    for (size_t gi : open) {
      const Group& gr = groups[gi];
      if (gr.sms < own) continue;
      trial.assign(gr.models.begin(), gr.models.end());
      trial.push_back(mi);
      Round r = round_robin(gr.sms, trial);
      if (r.feasible && (best < 0 || r.busy > best_round.busy)) {
        best = static_cast<int>(gi);
        best_round = std::move(r);
      }
    }
    if (best < 0) {
      Round r = round_robin(own, {mi});
      if (!r.feasible) {
        plan.models[mi].planned_rps = dedicated_item(mi, own, in.models[mi].rate_rps);
        plan.models[mi].slices = 1;
        plan.models[mi].why = Fmt("one slice of %d SMs", own);
        continue;
      }
      groups.push_back({own, {mi}, std::move(r)});
      open.push_back(groups.size() - 1);
      if (open.size() > kOpenGroups) open.erase(open.begin());
      continue;
    }
    Group& gr = groups[best];
    gr.models.push_back(mi);
    gr.round = std::move(best_round);
    if (gr.round.busy > 0.8 * rho) std::erase(open, static_cast<size_t>(best));
  }
  for (const Group& gr : groups) {
    if (gr.models.size() == 1) {
      const size_t mi = gr.models[0];
      plan.models[mi].planned_rps = dedicated_item(mi, gr.sms, in.models[mi].rate_rps);
      plan.models[mi].slices = 1;
      plan.models[mi].why = Fmt("one slice of %d SMs (nothing to share it with)", gr.sms);
      continue;
    }
    const Round& r = gr.round;
    Check c{gr.models, {}, std::vector<int>(gr.models.size(), 0)};
    for (size_t mi : gr.models) c.rates.push_back(in.models[mi].rate_rps);
    const Fit fitted = fit(c, gr.sms);
    const int sms = fitted.sms > 0 ? fitted.sms : gr.sms;
    double sum_p99 = 0;
    for (size_t i = 0; i < gr.models.size(); ++i)
      sum_p99 += in.models[gr.models[i]].profile.P99Ms(r.batches[i], sms);
    Item it;
    it.checked = fitted.sms > 0;
    it.slice.sms = sms;
    it.slice.duty_cycle_ms = r.round_ms;
    it.f_max = it.checked ? fitted.f_max : r.f_max;
    std::string names;
    for (size_t i = 0; i < gr.models.size(); ++i) {
      const ModelDemand& m = in.models[gr.models[i]];
      int b = r.batches[i];
      double predicted = (m.profile.P99Ms(b, sms) + sum_p99) * f0;
      if (it.checked) {
        b = QueueTables(m.profile, sms, f0, m.slo_ms).max_batch;
        predicted = fitted.worst.members[i].quantile_ms;
      }
      const double busy =
          m.rate_rps * m.profile.MeanMs(r.batches[i], sms) * f0 / (1000.0 * r.batches[i]);
      it.slice.busy += busy;
      it.slice.pressure += SlicePressure(m.profile.mem_intensity, sms, gpu.sms, busy);
      it.slice.memory_bytes += m.profile.memory_bytes;
      it.slice.members.push_back({m.name, m.rate_rps, m.slo_ms, b, predicted});
      it.models.push_back(gr.models[i]);
      it.batches.push_back(r.batches[i]);
      names += (names.empty() ? "" : ", ") + m.name + Fmt(" (batch %d)", r.batches[i]);
      ModelPlan& mp = plan.models[gr.models[i]];
      mp.slices = 1;
      mp.planned_rps = it.checked ? m.rate_rps : r.batches[i] * 1000.0 / r.round_ms;
      mp.why =
          Fmt("shares a %d-SM slice round-robin with %zu other models (it alone would keep "
              "it %.0f%% busy)",
              sms, gr.models.size() - 1, 100 * busy);
    }
    if (it.checked) {
      it.slice.busy = fitted.worst.busy;
      it.slice.why =
          Fmt("%zu low-rate models take turns, one batch each (typically %s); their queues, "
              "simulated with the runtime's batching rule at %.0f%% of their rates and inflation "
              "%.2f (the most their neighbours may cause), answer >= %.3f%% within SLO each "
              "(target %.2f%%; busy %.0f%%)",
              gr.models.size(), names.c_str(), 100 * load, it.f_max, 100 * fitted.worst.attainment,
              100 * target, 100 * fitted.worst.busy);
    } else {
      it.slice.why = Fmt("%zu low-rate models take turns, one batch each per round of %.2f ms "
                         "(busy %.0f%%): ",
                         gr.models.size(), r.round_ms, 100 * r.busy) +
                     names;
    }
    items.push_back(std::move(it));
  }

  // Best-fit decreasing over the items in use: the fullest GPU that has room and whose slices
  // all still meet their SLOs with the newcomer's memory pressure added. Pure: items that find
  // no GPU are listed, not reported.
  std::vector<char> in_use(items.size(), 1);  // options not chosen get items only when tried
  struct Packing {
    std::vector<Bin> bins;
    std::vector<size_t> unplaced;  // items
    int64_t sms = 0;               // in the items in use
  };
  auto pack = [&] {
    Packing out;
    std::vector<size_t> order;
    for (size_t i = 0; i < items.size(); ++i)
      if (in_use[i]) {
        order.push_back(i);
        out.sms += static_cast<int64_t>(items[i].slice.sms);
      }
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const Slice &x = items[a].slice, &y = items[b].slice;
      if (x.sms != y.sms) return x.sms > y.sms;
      if (x.pressure != y.pressure) return x.pressure > y.pressure;
      if (x.members[0].model != y.members[0].model) return x.members[0].model < y.members[0].model;
      return a < b;
    });
    std::vector<Bin>& bins = out.bins;
    for (size_t ii : order) {
      const Item& it = items[ii];
      const double own_slack = slack(it.f_max);
      int pick = -1;
      for (size_t bi = 0; bi < bins.size(); ++bi) {
        const Bin& b = bins[bi];
        if (b.free_sms < it.slice.sms || b.free_mem < it.slice.memory_bytes) continue;
        if (b.pressure + it.slice.pressure > b.limit || b.pressure > own_slack) continue;
        if (pick < 0 || b.free_sms < bins[pick].free_sms) pick = static_cast<int>(bi);
      }
      if (pick < 0) {
        if (static_cast<int>(bins.size()) >= gpu.count ||
            it.slice.memory_bytes > gpu.memory_bytes) {
          out.unplaced.push_back(ii);
          continue;
        }
        bins.push_back({static_cast<double>(usable), gpu.memory_bytes, 0, kInf, {}});
        pick = static_cast<int>(bins.size()) - 1;
      }
      Bin& b = bins[pick];
      b.free_sms -= it.slice.sms;
      b.free_mem -= it.slice.memory_bytes;
      b.pressure += it.slice.pressure;
      b.limit = std::min(b.limit, own_slack + it.slice.pressure);
      b.items.push_back(ii);
    }
    return out;
  };
  Packing packed = pack();

  // Where the packing needs more GPUs than the SMs do (granules that do not fill a GPU: this
  // matters on small fleets), try the multi-replica models' other options: more, smaller
  // replicas or fewer, larger ones may fill the GPUs better than the fewest SMs. Every
  // combination when there are few (cheapest first), else one model's option at a time. Fewest
  // GPUs first, then fewest SMs.
  auto gpus_for = [&](int64_t sms) { return (sms + usable - 1) / usable; };
  std::vector<std::vector<std::vector<size_t>>> option_items(alts.size());
  auto use = [&](size_t a, size_t k) {
    Alternatives& alt = alts[a];
    for (size_t ii : alt.items) in_use[ii] = 0;
    std::vector<size_t>& ids = option_items[a][k];
    if (ids.empty()) {
      ids = replicas(alt.model, alt.options[k]);
      in_use.resize(items.size(), 0);
    }
    for (size_t ii : ids) in_use[ii] = 1;
    alt.items = ids;
    alt.chosen = k;
  };
  std::vector<size_t> fewest_sms(alts.size());  // each model's cheapest option
  for (size_t a = 0; a < alts.size(); ++a) {
    option_items[a].resize(alts[a].options.size());
    option_items[a][alts[a].chosen] = alts[a].items;
    fewest_sms[a] = alts[a].chosen;
  }
  constexpr size_t kSearchGpus = 64, kCombinations = 512;
  constexpr int kRepacks = 256;
  if (!alts.empty() && packed.bins.size() <= kSearchGpus &&
      (!packed.unplaced.empty() ||
       static_cast<int64_t>(packed.bins.size()) > gpus_for(packed.sms))) {
    int64_t fixed = packed.sms;
    for (const Alternatives& a : alts) fixed -= cost_of(a.options[a.chosen]);
    std::vector<size_t> best(fewest_sms), now(alts.size(), 0);
    // Fewest slices left unplaced (on a fleet of gpu.count GPUs), then fewest GPUs.
    size_t best_unplaced = packed.unplaced.size(), best_gpus = packed.bins.size();
    auto try_now = [&] {
      for (size_t a = 0; a < alts.size(); ++a) use(a, now[a]);
      const Packing p = pack();
      if (std::pair(p.unplaced.size(), p.bins.size()) >= std::pair(best_unplaced, best_gpus))
        return false;
      best_unplaced = p.unplaced.size();
      best_gpus = p.bins.size();
      best = now;
      return true;
    };
    // While something is unplaced any option may help; after, only those whose SMs need fewer
    // GPUs than the best so far.
    auto hopeless = [&](int64_t sms) {
      return best_unplaced == 0 && gpus_for(sms) >= static_cast<int64_t>(best_gpus);
    };
    size_t combinations = 1;
    for (const Alternatives& a : alts)
      combinations = std::min(kCombinations + 1, combinations * a.options.size());
    if (combinations <= kCombinations) {
      std::vector<std::pair<int64_t, std::vector<size_t>>> all;
      for (size_t c = 0; c < combinations; ++c) {
        int64_t sms = fixed;
        for (size_t a = 0, rest = c; a < alts.size(); ++a) {
          now[a] = rest % alts[a].options.size();
          rest /= alts[a].options.size();
          sms += cost_of(alts[a].options[now[a]]);
        }
        all.emplace_back(sms, now);
      }
      std::stable_sort(all.begin(), all.end(),
                       [](const auto& x, const auto& y) { return x.first < y.first; });
      for (const auto& [sms, combination] : all) {
        if (hopeless(sms)) break;
        now = combination;
        try_now();
      }
    } else {
      now = best;
      int repacks = 0;
      for (bool better = true; better && repacks < kRepacks;) {
        better = false;
        for (size_t a = 0; a < alts.size() && !better && repacks < kRepacks; ++a) {
          int64_t sms = fixed;
          for (size_t b = 0; b < alts.size(); ++b) sms += cost_of(alts[b].options[best[b]]);
          for (size_t k = 0; k < alts[a].options.size() && !better; ++k) {
            const int64_t with =
                sms - cost_of(alts[a].options[best[a]]) + cost_of(alts[a].options[k]);
            if (k == best[a] || hopeless(with)) continue;
            now = best;
            now[a] = k;
            ++repacks;
            better = try_now();
          }
        }
      }
    }
    for (size_t a = 0; a < alts.size(); ++a) use(a, best[a]);
    packed = pack();
  }

  // The multi-replica models' reasons, for the option in the plan.
  for (size_t a = 0; a < alts.size(); ++a) {
    const Alternatives& alt = alts[a];
    const ModelDemand& m = in.models[alt.model];
    ModelPlan& mp = plan.models[alt.model];
    const auto [n, fi] = alt.options[alt.chosen];
    mp.slices = n;
    mp.planned_rps = m.rate_rps;
    const int sms = fits[fi].sms;
    if (alt.chosen != fewest_sms[a]) {
      const auto [n0, f0i] = alt.options[fewest_sms[a]];
      mp.why =
          Fmt("%d slices of %d SMs (%lld in total) whose queues meet the target at %.1f "
              "req/s each: these pack onto fewer GPUs than the fewest SMs (%d x %d)",
              n, sms, static_cast<long long>(cost_of(alt.options[alt.chosen])), m.rate_rps / n, n0,
              fits[f0i].sms);
    } else if (n == 1) {
      mp.why = Fmt("one slice of %d SMs: the smallest whose queue meets the target at %.1f req/s",
                   sms, m.rate_rps);
    } else {
      mp.why =
          Fmt("%d slices of %d SMs: the fewest SMs in total (%lld) whose queues meet the "
              "target at %.1f req/s each",
              n, sms, static_cast<long long>(cost_of(alt.options[alt.chosen])), m.rate_rps / n);
    }
  }
  for (size_t ii : packed.unplaced) {
    const Item& it = items[ii];
    for (size_t mi : it.models) {
      plan.unplaced.push_back(
          {in.models[mi].name, (it.slice.memory_bytes > gpu.memory_bytes
                                    ? Fmt("a slice needs %lld bytes, more than a GPU's memory",
                                          static_cast<long long>(it.slice.memory_bytes))
                                    : Fmt("no room for a %.0f-SM slice on the %d GPUs given",
                                          it.slice.sms, gpu.count))});
      plan.models[mi].slices -= 1;
      plan.models[mi].why += " (not all slices placed)";
    }
  }
  const std::vector<Bin>& bins = packed.bins;

  // Re-predict every slice with its real neighbours.
  for (size_t bi = 0; bi < bins.size(); ++bi) {
    GpuPlan gp;
    gp.index = static_cast<int>(bi);
    for (size_t ii : bins[bi].items) {
      Item& it = items[ii];
      Slice s = it.slice;
      s.inflation = in.interference.Inflation(bins[bi].pressure - s.pressure);
      // Shared slices: own batch in flight plus one round of everyone's.
      double round_p99 = 0;
      for (size_t k = 0; k < it.batches.size(); ++k)
        round_p99 += in.models[it.models[k]].profile.P99Ms(it.batches[k], s.sms);
      for (size_t k = 0; k < s.members.size(); ++k) {
        const ModelDemand& m = in.models[it.models[k]];
        SliceMember& sm = s.members[k];
        if (it.checked) {
          // Simulated at the largest inflation the packing allows it (f_max), which bounds this.
        } else if (s.duty_cycle_ms > 0) {
          sm.predicted_ms = (m.profile.P99Ms(it.batches[k], s.sms) + round_p99) * s.inflation;
        } else {
          const Dedicated d = SizeDedicated(m.profile, s.sms, sm.rate_rps, m.slo_ms, s.inflation,
                                            rho, tables.For(m));
          sm.predicted_ms = d.used_batch ? d.predicted_ms : kInf;
        }
      }
      s.why += Fmt("; inflation %.2f from neighbours", s.inflation);
      gp.sms_used += s.sms;
      gp.memory_bytes += s.memory_bytes;
      gp.slices.push_back(std::move(s));
    }
    plan.gpus.push_back(std::move(gp));
  }
  return plan;
}

}  // namespace tessera::planner::detail
