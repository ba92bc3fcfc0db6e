// Tessera's online tuner: see tuner.h. Capacities come from the planner's own queue check (or,
// with checked_capacity off, its closed form: batch limit from 2 x p99 x f <= SLO, Poisson
// overflow, max utilisation) at the inflation each GPU shows in the window, so a tuned slice
// satisfies what a planned one does.
#include "tessera/planner/tuner.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "sizing.h"
#include "tessera/core/random.h"

namespace tessera::planner {

using detail::Fmt;
using detail::SliceCapacity;

LiveInterference::LiveInterference(size_t capacity, int64_t min_batches)
    : capacity_(std::max<size_t>(1, capacity)), min_batches_(std::max<int64_t>(1, min_batches)) {}

void LiveInterference::Add(const CoLocationSample& s) {
  if (ring_.size() < capacity_) {
    ring_.push_back(s);
    return;
  }
  ring_[next_] = s;
  next_ = (next_ + 1) % capacity_;
}

void LiveInterference::Observe(const PlanInput& in, const FleetObservation& obs) {
  // Each slice's pressure as the planner counts it (its most memory-intensive member), summed
  // per GPU; a slice's neighbours are the rest of its GPU.
  std::vector<double> own(obs.slices.size(), 0);
  std::vector<double> per_gpu;
  for (size_t i = 0; i < obs.slices.size(); ++i) {
    const SliceObservation& s = obs.slices[i];
    if (s.gpu < 0) continue;
    double intensity = 0;
    for (const auto& m : s.members)
      if (m.model < in.models.size())
        intensity = std::max(intensity, in.models[m.model].profile.mem_intensity);
    own[i] = SlicePressure(intensity, s.sms, in.gpu.sms, s.busy);
    if (per_gpu.size() <= static_cast<size_t>(s.gpu)) per_gpu.resize(s.gpu + 1, 0);
    per_gpu[s.gpu] += own[i];
  }
  for (size_t i = 0; i < obs.slices.size(); ++i) {
    const SliceObservation& s = obs.slices[i];
    if (s.gpu < 0 || s.batches < min_batches_ || !(s.alone_ms > 0) || !(s.batch_ms > 0)) continue;
    Add({s.alone_ms, s.batch_ms, std::max(0.0, per_gpu[s.gpu] - own[i])});
  }
}

std::vector<CoLocationSample> LiveInterference::samples() const {
  std::vector<CoLocationSample> out(ring_.begin() + static_cast<std::ptrdiff_t>(next_),
                                    ring_.end());
  out.insert(out.end(), ring_.begin(), ring_.begin() + static_cast<std::ptrdiff_t>(next_));
  return out;
}

Result<InterferenceModel> LiveInterference::Fit() const { return InterferenceModel::Fit(ring_); }

Tuner::~Tuner() = default;

Tuner::Tuner(const PlanInput& in, TunerOptions options)
    : in_(in), opt_(options), interference_(in.interference), state_(in.models.size()) {
  usable_sms_ = UsableSms(in.gpu, Policy::kTessera);
  for (const auto& m : in.models) mean_intensity_ += m.profile.mem_intensity;
  mean_intensity_ /= std::max<size_t>(1, in.models.size());
  f_typical_ = interference_.Inflation(0.7 * mean_intensity_);
  int max_b = 1;
  for (const auto& m : in.models) max_b = std::max(max_b, m.profile.max_batch());
  tables_ = std::make_unique<detail::PoissonTables>(in.options.tail_probability, max_b);
}

const Tuner::Checked& Tuner::CheckedCapacity(size_t mi, double sms) {
  const int key = static_cast<int>(std::lround(sms));
  auto [it, fresh] = checked_.try_emplace({mi, key});
  Checked& c = it->second;
  if (!fresh) return c;
  const ModelDemand& m = in_.models[mi];
  c.closed = SliceCapacity(m.profile, sms, m.slo_ms, f_typical_, in_.options.max_utilization,
                           tables_->For(m), nullptr);
  const detail::QueueTables t(m.profile, sms, f_typical_, m.slo_ms, in_.options.pow2_buckets);
  if (t.max_batch == 0) return c;
  // No rate above the service rate at the largest batch is carried; bisect below it.
  double lo = 0, hi = 1e9 * t.max_batch / std::max(1.0, t.mean_ns[t.max_batch]);
  const double target = in_.options.check_attainment > 0 ? in_.options.check_attainment : 0.999;
  const double load = 1 / in_.options.max_utilization;
  const uint64_t seed = Fnv1a(m.name);  // as the planner's checks seed a one-model slice
  for (int i = 0; i < 10; ++i) {
    const double mid = 0.5 * (lo + hi);
    const auto o = detail::SimulateSlice({{&t, t.max_batch, mid * load, m.arrival_cv}},
                                         in_.options.check_arrivals, seed, 0, target);
    (o.attainment >= target ? lo : hi) = mid;
  }
  c.rps = lo;
  return c;
}

double Tuner::Capacity(size_t mi, double sms, double f, int* mb) {
  const ModelDemand& m = in_.models[mi];
  const double rho = in_.options.max_utilization;
  if (!opt_.checked_capacity)
    return SliceCapacity(m.profile, sms, m.slo_ms, f, rho, tables_->For(m), mb);
  // The checked capacity at the typical inflation, moved to f as the closed form moves.
  const Checked& c = CheckedCapacity(mi, sms);
  if (mb)
    *mb = detail::QueueTables(m.profile, sms, f, m.slo_ms, in_.options.pow2_buckets).max_batch;
  if (f == f_typical_) return c.rps;
  const double closed = SliceCapacity(m.profile, sms, m.slo_ms, f, rho, tables_->For(m), nullptr);
  if (c.closed <= 0 || closed <= 0) return c.rps * std::min(1.0, f_typical_ / f);
  return c.rps * closed / c.closed;
}

void Tuner::Calibrate(const Plan& plan) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < in_.models.size(); ++i) index[in_.models[i].name] = i;
  for (const GpuPlan& g : plan.gpus)
    for (const Slice& s : g.slices) {
      if (s.members.size() != 1) continue;
      auto it = index.find(s.members[0].model);
      if (it == index.end()) continue;
      const double f = std::max(f_typical_, s.inflation);
      const double cap = Capacity(it->second, s.sms, f, nullptr);
      if (cap <= 0) continue;
      ModelState& st = state_[it->second];
      st.calibrated = std::max(st.calibrated, s.members[0].rate_rps / cap);
      st.trust = st.calibrated;
    }
}

std::vector<TuneAction> Tuner::Step(const FleetObservation& obs) {
  const GpuSpec& gpu = in_.gpu;
  const char* U = opt_.slice_unit.c_str();   // in the reasons: "SM", "thread"
  const char* D = opt_.device_name.c_str();  // "GPU", "CPU"
  const int g = gpu.granularity_sms;
  const double rho = in_.options.max_utilization;
  // Interference from what the slices show, once there is enough of it. A refit that moves
  // alpha by less than 2% keeps the model in use: checked capacities are computed at the
  // typical inflation and are worth keeping.
  if (opt_.learn_interference_after > 0) {
    live_.Observe(in_, obs);
    const double now = interference_.alpha();
    if (static_cast<int64_t>(live_.size()) >= opt_.learn_interference_after)
      if (auto fitted = live_.Fit();
          fitted.ok() && std::fabs(fitted->alpha() - now) > 0.02 * std::max(now, 0.05)) {
        interference_ = *fitted;
        f_typical_ = interference_.Inflation(0.7 * mean_intensity_);
        checked_.clear();
      }
  }

  // The GPUs the caller offers (at most gpu.count): a fleet of a million allowed GPUs is not
  // scanned a million times a window.
  std::vector<double> free = obs.free_sms;
  free.resize(std::min<size_t>(free.size(), static_cast<size_t>(gpu.count)));
  const int ngpu = static_cast<int>(free.size());
  std::vector<double> pressure(ngpu, 0);
  std::vector<int> slices_on(ngpu, 0);
  struct Ref {
    const SliceObservation* slice;
    const MemberObservation* member;
  };
  std::vector<std::vector<Ref>> dedicated(in_.models.size()), shared(in_.models.size());
  for (const SliceObservation& s : obs.slices) {
    if (s.gpu < 0 || s.gpu >= ngpu) continue;
    ++slices_on[s.gpu];
    double intensity = 0;
    for (const auto& m : s.members)
      if (m.model < in_.models.size())
        intensity = std::max(intensity, in_.models[m.model].profile.mem_intensity);
    pressure[s.gpu] += SlicePressure(intensity, s.sms, gpu.sms, s.busy);
    for (const auto& m : s.members) {
      if (m.model >= in_.models.size() || m.routed_weight <= 0) continue;
      (s.members.size() == 1 ? dedicated : shared)[m.model].push_back({&s, &m});
    }
  }
  std::vector<double> observed(in_.models.size(), 0);
  for (size_t mi = 0; mi < in_.models.size(); ++mi)
    for (const auto* list : {&dedicated[mi], &shared[mi]})
      for (const Ref& r : *list) observed[mi] += r.member->arrival_rps;
  std::vector<bool> acted(in_.models.size(), false);
  auto inflation_on = [&](int gi, double own) {
    return std::max(f_typical_, interference_.Inflation(std::max(0.0, pressure[gi] - own)));
  };
  auto own_pressure = [&](const SliceObservation& s, size_t mi) {
    return SlicePressure(in_.models[mi].profile.mem_intensity, s.sms, gpu.sms, s.busy);
  };
  auto cap = [&](size_t mi, double sms, double f, int* mb) { return Capacity(mi, sms, f, mb); };
  // The smallest whole-granule size in (from, to] that carries `want`; `to` when none does,
  // `from` when nothing is bigger.
  auto size_for = [&](size_t mi, double from, double to, double f, double want) {
    double best = from;
    for (double s = (std::floor(from / g) + 1) * g; s <= to + 1e-9; s += g) {
      best = s;
      if (cap(mi, s, f, nullptr) >= want) break;
    }
    return best;
  };
  // Where a new slice for model mi goes: best fit among the GPUs in use (the fullest one
  // where a slice carrying `want` fits), else the in-use GPU where the largest slice fits, else
  // the first empty GPU; -1 when the fleet is full. *sms gets the slice's size there.
  auto place = [&](size_t mi, double want, double* sms, bool may_open) {
    int fit = -1, largest = -1;
    double fit_sms = 0, largest_sms = 0, largest_cap = 0;
    for (int gi = 0; gi < ngpu; ++gi) {
      if (slices_on[gi] == 0 || free[gi] < g) continue;
      const double f = inflation_on(gi, 0);
      const double to = std::min<double>(usable_sms_, std::floor(free[gi] / g) * g);
      const double s = size_for(mi, 0, to, f, want);
      const double c = cap(mi, s, f, nullptr);
      if (c >= want && (fit < 0 || free[gi] < free[fit])) fit = gi, fit_sms = s;
      if (c > largest_cap) largest = gi, largest_sms = s, largest_cap = c;
    }
    if (fit >= 0) return *sms = fit_sms, fit;
    if (largest >= 0 && largest_cap >= 0.25 * want) return *sms = largest_sms, largest;
    for (int gi = 0; gi < ngpu && may_open; ++gi)
      if (slices_on[gi] == 0 && free[gi] >= g) {
        const double to = std::min<double>(usable_sms_, std::floor(free[gi] / g) * g);
        *sms = size_for(mi, 0, to, inflation_on(gi, 0), want);
        return gi;
      }
    if (largest >= 0) return *sms = largest_sms, largest;
    return -1;
  };

  std::vector<TuneAction> out;
  // Adds a dedicated slice for model mi sized for `want` req/s where `place` puts it, with the
  // reason why(sms, gpu, capacity), and books its SMs; returns its capacity, 0 if none fits.
  auto add_slice = [&](size_t mi, double want, bool may_open, auto why) {
    double s = 0;
    const int gi = place(mi, want, &s, may_open);
    if (gi < 0) return 0.0;
    int mb = 0;
    const double c = cap(mi, s, inflation_on(gi, 0), &mb);
    if (mb == 0 || c <= 0) return 0.0;
    out.push_back({TuneAction::Kind::kAdd, -1, mi, gi, s, mb, c, why(s, gi, c)});
    free[gi] -= s;
    ++slices_on[gi];
    return c;
  };
  // Neighbours on GPU gi with capacity to spare (a single dedicated slice running below
  // target_load) shrink now to give `wanted` SMs back; the SMs come free at their flips.
  auto donate = [&](size_t mi, int gi, double wanted) {
    double freed = 0;
    for (const SliceObservation& o : obs.slices) {
      if (freed >= wanted) break;
      if (o.gpu != gi || o.changing || o.members.size() != 1 || o.members[0].routed_weight <= 0)
        continue;
      const size_t b = o.members[0].model;
      if (b == mi || acted[b] || state_[b].cooldown > 0 || dedicated[b].size() != 1) continue;
      // The smoothed rate when it is higher: a falling model keeps room for a while.
      const double r =
          std::max(o.members[0].arrival_rps, state_[b].rate >= 0 ? state_[b].rate : 0.0);
      const double f = inflation_on(gi, own_pressure(o, b));
      if (r >= opt_.target_load * cap(b, o.sms, f, nullptr)) continue;
      double ns = o.sms;
      for (double t = g; t < o.sms; t += g)
        if (opt_.target_load * cap(b, t, f, nullptr) >= r) {
          ns = t;
          break;
        }
      if (ns >= o.sms) continue;
      int mb = 0;
      const double c = cap(b, ns, f, &mb);
      if (mb == 0) continue;
      out.push_back({TuneAction::Kind::kResize, o.id, b, gi, ns, mb, c,
                     Fmt("%s gives %.0f %ss on %s %d to %s (%.1f req/s fit %.0f %ss at %.0f%% "
                         "load)",
                         in_.models[b].name.c_str(), o.sms - ns, U, D, gi,
                         in_.models[mi].name.c_str(), r, ns, U, 100 * r / c)});
      freed += o.sms - ns;
      acted[b] = true;
      state_[b].cooldown = opt_.cooldown_windows;
      state_[b].low_windows = 0;
    }
    return freed;
  };
  for (size_t mi = 0; mi < in_.models.size(); ++mi) {
    const auto& ded = dedicated[mi];
    const auto& shr = shared[mi];
    if (ded.empty() && shr.empty()) continue;
    ModelState& st = state_[mi];
    const ModelDemand& model = in_.models[mi];
    double rate = 0;
    int64_t finished = 0, within = 0;
    bool changing = false;
    for (const auto* list : {&ded, &shr})
      for (const Ref& r : *list) {
        rate += r.member->arrival_rps;
        finished += r.member->finished;
        within += r.member->within_slo;
        changing |= r.slice->changing;
      }
    // Rises are followed at once, falls slowly: shrinking late costs SMs, growing late costs SLO.
    st.rate = (st.rate < 0 || rate > st.rate) ? rate : 0.7 * st.rate + 0.3 * rate;
    if (st.cooldown > 0) {
      --st.cooldown;
      continue;
    }
    if (changing) continue;
    const bool missed = finished >= opt_.min_requests && within < opt_.attainment_floor * finished;
    double need = st.rate / opt_.target_load;
    const size_t first_action = out.size();
    bool wait_for_donors = false;

    if (ded.empty()) {
      // Only on shared slices: move out to a dedicated slice when its turn no longer suffices.
      bool crowded = missed;
      for (const Ref& r : shr) crowded |= r.slice->busy > opt_.grow_above;
      if (!crowded || !opt_.add_slices) continue;
      const double c = add_slice(mi, need, true, [&](double s, int gi, double c) {
        return Fmt(
            "%s outgrew its shared slice (%.1f req/s%s): a dedicated %.0f-%s slice on %s %d "
            "carries %.1f req/s",
            model.name.c_str(), st.rate, missed ? ", SLO missed" : "", s, U, D, gi, c);
      });
      if (c <= 0) continue;
      for (const Ref& r : shr)
        out.push_back({TuneAction::Kind::kRoute, r.slice->id, mi, r.slice->gpu, 0, 0, 0,
                       "moved to its dedicated slice"});
      st.cooldown = opt_.cooldown_windows;
      continue;
    }

    struct Cur {
      const SliceObservation* s;
      double f, cap;
    };
    std::vector<Cur> cur;
    double total = 0;
    for (const Ref& r : ded) {
      const double f = inflation_on(r.slice->gpu, own_pressure(*r.slice, mi));
      cur.push_back({r.slice, f, cap(mi, r.slice->sms, f, nullptr)});
      total += cur.back().cap;
    }
    // The planner's capacity is cautious by design; the windows show what the model really
    // carries. A window that held the SLO at a load above capacity raises the model's trust in
    // it (up to max_trust); a missed one lowers it below the load it missed at.
    if (opt_.max_trust > 1 && finished >= opt_.min_requests && total > 0) {
      const double ratio = rate / total;
      if (within < opt_.trust_attainment * finished)
        st.trust = std::max(1.0, std::min(st.trust, ratio) - 0.1);
      else if (ratio > 0.95 * st.trust)
        st.trust = std::min(std::max(opt_.max_trust, st.calibrated), st.trust + 0.02);
    }
    // The other way: a window that missed the floor while the rate was within capacity says the
    // capacity is not what the model thinks (interference, a profile off): trust goes below 1,
    // to 0.9 of the load it missed at, so the model grows and does not shrink back into the
    // misses (without it, a tuner told the wrong interference added replicas on each miss and
    // removed them five windows later, every 12 s). It recovers by recover_trust a window.
    if (missed && total > 0 && rate <= opt_.grow_above * st.trust * total)
      st.trust = std::max(opt_.min_trust, 0.9 * std::min(st.trust, rate / total));
    else if (st.trust < 1)
      st.trust = std::min(1.0, st.trust + opt_.recover_trust);
    const double derate = std::min(1.0, st.trust);
    need = st.rate / (opt_.target_load * derate);
    // Growth waits until the rate passes the trusted capacity; sizes stay the planner's.
    // A window's count is Poisson: growth waits until the rate is past capacity by more than
    // grow_sigma standard deviations of that count, so the noise of one window (which the plan's
    // max_utilization slack absorbs) does not move slices.
    const double noise = opt_.grow_sigma * std::sqrt(std::max(0.0, st.rate) / obs.window_s);
    const double eff = std::max(0.0, st.rate - noise) / st.trust;
    std::sort(cur.begin(), cur.end(), [](const Cur& a, const Cur& b) {
      return a.s->sms != b.s->sms ? a.s->sms > b.s->sms : a.s->id < b.s->id;
    });
    std::vector<double> new_cap(cur.size());
    for (size_t i = 0; i < cur.size(); ++i) new_cap[i] = cur[i].cap;

    if (eff > opt_.grow_above * total || missed) {
      st.low_windows = 0;
      double want = need;
      if (missed && eff <= opt_.grow_above * total) want = std::max(want, 1.25 * total);
      double deficit = want - total;
      const char* reason = missed ? "SLO attainment below the floor" : "rate near capacity";
      for (size_t i = 0; i < cur.size() && deficit > 0; ++i) {
        const SliceObservation& s = *cur[i].s;
        const double to = std::min<double>(usable_sms_, std::floor((s.sms + free[s.gpu]) / g) * g);
        const double ns = size_for(mi, s.sms, to, cur[i].f, cur[i].cap + deficit);
        if (ns <= s.sms) continue;
        int mb = 0;
        new_cap[i] = cap(mi, ns, cur[i].f, &mb);
        if (mb == 0) continue;
        out.push_back({TuneAction::Kind::kResize, s.id, mi, s.gpu, ns, mb, new_cap[i],
                       Fmt("%s: %s (%.1f of %.1f req/s): %.0f -> %.0f %ss, capacity %.1f req/s",
                           model.name.c_str(), reason, st.rate, total, s.sms, ns, U, new_cap[i])});
        free[s.gpu] -= ns - s.sms;
        deficit -= new_cap[i] - cur[i].cap;
      }
      // Rather than a replica elsewhere: SMs from neighbours with room to spare on the GPU of
      // the largest slice, grown into at the next window.
      if (deficit > 0 && !acted[mi]) {
        const SliceObservation& s0 = *cur[0].s;
        const double full = size_for(mi, s0.sms, usable_sms_, cur[0].f, new_cap[0] + deficit);
        double have = s0.sms + std::max(0.0, free[s0.gpu]);
        for (const TuneAction& a : out)
          if (a.slice == s0.id) have = a.sms + std::max(0.0, free[s0.gpu]);
        const double wanted = full - have;
        // Worth waiting for while the rate is within the slices' raw capacity (the plan's
        // max_utilization slack) and the SLO holds.
        const bool can_wait = !missed && st.rate < total / rho;
        if (wanted > 0 && can_wait) {
          const double freed = donate(mi, s0.gpu, wanted);
          wait_for_donors = freed >= wanted ||
                            (freed > 0 && cap(mi, full, cur[0].f, nullptr) < new_cap[0] + deficit);
        }
      }
      // A model on one slice that cannot grow where it is moves whole to a GPU with room for
      // the size it needs (make-before-break) rather than spreading into small replicas.
      if (deficit > 0 && !wait_for_donors && cur.size() == 1 && opt_.add_slices) {
        const SliceObservation& s0 = *cur[0].s;
        int to = -1;
        double to_sms = 0, to_cap = 0;
        int to_mb = 0;
        for (int gi = 0; gi < ngpu; ++gi) {
          if (gi == s0.gpu || slices_on[gi] == 0 || free[gi] < g) continue;
          const double f = inflation_on(gi, 0);
          const double room = std::min<double>(usable_sms_, std::floor(free[gi] / g) * g);
          const double ns = size_for(mi, 0, room, f, need);
          int mb = 0;
          const double c = cap(mi, ns, f, &mb);
          if (mb == 0 || c < need || ns <= s0.sms) continue;
          if (to < 0 || free[gi] < free[to]) to = gi, to_sms = ns, to_cap = c, to_mb = mb;
        }
        if (to >= 0) {
          // Undo an in-place growth decided above: the slice moves instead.
          std::erase_if(out, [&](const TuneAction& a) {
            if (a.slice != s0.id || a.kind != TuneAction::Kind::kResize) return false;
            free[s0.gpu] += a.sms - s0.sms;
            return true;
          });
          out.push_back({TuneAction::Kind::kAdd, -1, mi, to, to_sms, to_mb, to_cap,
                         Fmt("%s: %s (%.1f of %.1f req/s) and no room on %s %d: moves to a "
                             "%.0f-%s slice on %s %d, capacity %.1f req/s",
                             model.name.c_str(), reason, st.rate, total, D, s0.gpu, to_sms, U, D,
                             to, to_cap)});
          out.push_back({TuneAction::Kind::kRemove, s0.id, mi, s0.gpu, 0, 0, 0,
                         Fmt("%s: replaced by its slice on %s %d once that is ready",
                             model.name.c_str(), D, to)});
          free[to] -= to_sms;
          deficit = 0;
        }
      }
      // A GPU not in use opens only on evidence that the slices cannot carry the load: a
      // missed window, or a rate past their raw capacity (beyond the max_utilization slack
      // that the capacity keeps). Until then the slack carries the rise; an opened GPU is the
      // fleet's most expensive step and, as rates fall back, the one least often undone.
      const double strict =
          in_.options.check_attainment > 0 ? in_.options.check_attainment : opt_.attainment_floor;
      const bool strict_miss = finished >= opt_.min_requests && within < strict * finished;
      const bool may_open = !opt_.open_on_evidence || missed || strict_miss ||
                            st.rate >= opt_.open_above * total / rho;
      while (deficit > 0 && !wait_for_donors && opt_.add_slices) {
        const double c = add_slice(mi, deficit, may_open, [&](double s, int gi, double c) {
          return Fmt(
              "%s: %s (%.1f of %.1f req/s) and no room to grow in place: a replica of %.0f %ss "
              "on %s %d, capacity %.1f req/s",
              model.name.c_str(), reason, st.rate, total, s, U, D, gi, c);
        });
        if (c <= 0) break;
        deficit -= c;
      }
    } else if (st.rate / derate < opt_.shrink_below * total) {
      if (++st.low_windows >= opt_.shrink_windows) {
        st.low_windows = 0;
        const size_t smallest = cur.size() - 1;
        if (cur.size() > 1 && total - cur[smallest].cap >= need && opt_.add_slices) {
          const SliceObservation& s = *cur[smallest].s;
          out.push_back(
              {TuneAction::Kind::kRemove, s.id, mi, s.gpu, 0, 0, 0,
               Fmt("%s: %.1f req/s for %.1f windows on %.1f req/s of capacity: the "
                   "other replicas carry it; %.0f %ss freed",
                   model.name.c_str(), st.rate, 1.0 * opt_.shrink_windows, total, s.sms, U)});
          new_cap[smallest] = 0;
        } else {
          // Shrink the largest slice to the smallest size that still carries the rest.
          const SliceObservation& s = *cur[0].s;
          const double want = need - (total - cur[0].cap);
          double ns = s.sms;
          for (double t = g; t < s.sms; t += g)
            if (cap(mi, t, cur[0].f, nullptr) >= want) {
              ns = t;
              break;
            }
          if (ns < s.sms) {
            int mb = 0;
            new_cap[0] = cap(mi, ns, cur[0].f, &mb);
            out.push_back(
                {TuneAction::Kind::kResize, s.id, mi, s.gpu, ns, mb, new_cap[0],
                 Fmt("%s: %.1f req/s on %.1f req/s of capacity for %d windows: %.0f "
                     "-> %.0f %ss",
                     model.name.c_str(), st.rate, total, opt_.shrink_windows, s.sms, ns, U)});
          }
        }
      }
    } else {
      st.low_windows = 0;
    }
    if (out.size() > first_action) {
      acted[mi] = true;
      // Waiting for donors' SMs: look again at the next window.
      st.cooldown = wait_for_donors ? 0 : opt_.cooldown_windows;
      // Route by capacity from now on: the unchanged slices get their capacity as weight.
      for (size_t i = 0; i < cur.size(); ++i) {
        bool touched = false;
        for (size_t k = first_action; k < out.size(); ++k) touched |= out[k].slice == cur[i].s->id;
        if (!touched)
          out.push_back({TuneAction::Kind::kRoute, cur[i].s->id, mi, cur[i].s->gpu, 0, 0,
                         cur[i].cap, "route by capacity"});
      }
    }
  }
  // Consolidation: a GPU holding little (at most consolidate_below of its SMs) whose slices
  // all fit elsewhere is emptied, make-before-break: its slices are re-made on the fullest GPUs
  // that take them, and the old ones drain once the new ones are ready.
  if (consolidate_wait_ > 0) --consolidate_wait_;
  std::vector<bool> touched(ngpu, false);
  for (const TuneAction& a : out) touched[a.gpu] = true;
  int victim = -1;
  for (int gi = 0; gi < ngpu && consolidate_wait_ == 0 && opt_.add_slices; ++gi) {
    if (slices_on[gi] == 0 || touched[gi]) continue;
    const double held = usable_sms_ - free[gi];
    if (held > opt_.consolidate_below * usable_sms_) continue;
    if (victim < 0 || held < usable_sms_ - free[victim]) victim = gi;
  }
  if (victim >= 0) {
    std::vector<const SliceObservation*> moving;
    bool movable = true;
    for (const SliceObservation& s : obs.slices) {
      if (s.gpu != victim) continue;
      const bool dedicated = s.members.size() == 1 && s.members[0].routed_weight > 0;
      if (!dedicated || s.changing || state_[s.members[0].model].cooldown > 0) movable = false;
      moving.push_back(&s);
    }
    std::sort(moving.begin(), moving.end(),
              [](const SliceObservation* a, const SliceObservation* b) {
                return a->sms != b->sms ? a->sms > b->sms : a->id < b->id;
              });
    std::vector<double> room = free;
    std::vector<TuneAction> moves;
    for (const SliceObservation* s : moving) {
      if (!movable) break;
      int to = -1;
      for (int gi = 0; gi < ngpu; ++gi)
        if (gi != victim && slices_on[gi] > 0 && room[gi] >= s->sms &&
            (to < 0 || room[gi] < room[to]))
          to = gi;
      if (to < 0) {
        movable = false;
        break;
      }
      const size_t mi = s->members[0].model;
      int mb = 0;
      const double c = cap(mi, s->sms, inflation_on(to, 0), &mb);
      if (mb == 0) {
        movable = false;
        break;
      }
      room[to] -= s->sms;
      moves.push_back({TuneAction::Kind::kAdd, -1, mi, to, s->sms, mb, c,
                       Fmt("consolidating: %s %d holds %.0f of %d %ss; %s's %.0f-%s slice "
                           "moves to %s %d",
                           D, victim, usable_sms_ - free[victim], usable_sms_, U,
                           in_.models[mi].name.c_str(), s->sms, U, D, to)});
    }
    if (movable && !moves.empty()) {
      for (const SliceObservation* s : moving) {
        moves.push_back(
            {TuneAction::Kind::kRemove, s->id, s->members[0].model, victim, 0, 0, 0,
             Fmt("consolidating: %s %d emptied once the moved slices are ready", D, victim)});
        state_[s->members[0].model].cooldown = opt_.cooldown_windows;
      }
      out.insert(out.end(), moves.begin(), moves.end());
      consolidate_wait_ = opt_.cooldown_windows;
    }
  }
  return out;
}

}  // namespace tessera::planner
