#include "tessera/sim/simulator.h"

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <thread>

#include "tessera/bench/scenario.h"
#include "tessera/core/random.h"
#include "tessera/core/time_ring.h"

namespace tessera::sim {
namespace {

using planner::Plan;
using planner::Profile;

constexpr double kNsPerMs = 1e6;
// 2^-8 relative error (0.4%) keeps each model's histogram small enough (~70 KiB) that thousands
// of them stay out of each other's way in the cache.
constexpr int kHistogramBits = 8;

// One model's queue on one slice: arrival times (ns), oldest first. One SLO per model, so the
// earliest deadline is always the front.
struct Queue {
  size_t model;
  size_t slice;
  int max_batch;
  TimeRing arrivals;
  // The profile at the slice's current size, by batch (index b, 1..profile max), in ns / ms:
  // looked up on every dispatch, so computed once per size.
  std::vector<int64_t> p99_ns;
  int64_t slo_ns = 0;   // the model's SLO
  double pressure = 0;  // its share of the GPU's bandwidth pressure while it runs
  std::vector<double> mean_ms, std_ms;
  // This window's counts, for the tuners.
  int64_t w_arrived = 0, w_finished = 0, w_within = 0;
  double rate_rps = 0;  // last window's arrival rate (GSLICE's arrival estimate)
  std::unique_ptr<planner::GsliceSelfTuner> gslice;
};

struct Pending {
  bool active = false;
  double sms = 0;
  int max_batch = 0;
  double weight = 0;
  int64_t ready_ns = 0;
};

struct SliceState {
  int gpu;
  double sms;  // 0 while a new slice is being made
  std::vector<size_t> queues;
  size_t next = 0;  // round-robin position among the members
  bool running = false;
  double running_pressure = 0;     // its share of the GPU's bandwidth pressure while it runs
  Pending pending;                 // a resize (or creation) in flight
  bool draining = false;           // removed: serves what it holds, then frees its SMs
  bool remove_when_ready = false;  // removal waits for the model's new slices
  bool gone = false;
  int64_t w_busy_ns = 0;
  int64_t w_batches = 0;
  double w_alone_ns = 0;        // the profile's mean time alone for the window's batches
  std::vector<size_t> lazy;     // member queues whose model draws its own arrivals
  int64_t wake_at = INT64_MAX;  // the pending kWake event, if any
};

// Smooth weighted round-robin over a model's slices, in proportion to their weights (the
// plan's rates, or capacities once the tuner has acted). Zero-weight entries get nothing. The
// order is worked out when the weights change, for a period of kPeriod picks that then repeats
// (shares exact to within entries / kPeriod), so a pick costs O(1) however many slices.
struct Router {
  static constexpr size_t kPeriod = 4096;
  std::vector<size_t> queues;
  std::vector<double> weight;
  std::vector<uint32_t> order;  // indices into queues; empty when no entry has weight
  size_t pos = 0;
  // Returns SIZE_MAX when no entry has weight.
  size_t Pick() {
    if (queues.size() == 1) return weight[0] > 0 ? queues[0] : SIZE_MAX;
    if (order.empty()) return SIZE_MAX;
    return queues[order[pos++ & (kPeriod - 1)]];
  }
  void Set(size_t queue, double w) {
    double total = 0;
    for (size_t i = 0; i < queues.size(); ++i) {
      if (queues[i] == queue) weight[i] = w;
      total += weight[i];
    }
    order.clear();
    pos = 0;
    if (queues.size() < 2 || total <= 0) return;
    std::vector<double> current(queues.size(), 0);
    order.resize(kPeriod);
    for (size_t k = 0; k < kPeriod; ++k) {
      size_t best = SIZE_MAX;
      for (size_t i = 0; i < queues.size(); ++i) {
        if (weight[i] <= 0) continue;
        current[i] += weight[i];
        if (best == SIZE_MAX || current[i] > current[best]) best = i;
      }
      current[best] -= total;
      order[k] = static_cast<uint32_t>(best);
    }
  }
  double WeightOf(size_t queue) const {
    for (size_t i = 0; i < queues.size(); ++i)
      if (queues[i] == queue) return weight[i];
    return 0;
  }
};

// Walker's alias method: O(1) draws of an index with probability weight[i] / sum.
class Alias {
 public:
  explicit Alias(const std::vector<double>& weight)
      : prob_(weight.size(), 1), alias_(weight.size()) {
    for (double w : weight) total_ += w;
    const size_t n = weight.size();
    if (n == 0 || total_ <= 0) return;
    std::vector<double> scaled(n);
    std::vector<size_t> small, large;
    for (size_t i = 0; i < n; ++i) {
      alias_[i] = i;
      scaled[i] = weight[i] * n / total_;
      (scaled[i] < 1 ? small : large).push_back(i);
    }
    while (!small.empty() && !large.empty()) {
      const size_t s = small.back(), l = large.back();
      small.pop_back();
      prob_[s] = scaled[s];
      alias_[s] = l;
      scaled[l] -= 1 - scaled[s];
      if (scaled[l] < 1) {
        large.pop_back();
        small.push_back(l);
      }
    }
    // What is left is 1 up to rounding.
  }
  double total() const { return total_; }
  size_t Pick(Rng& rng) const {
    const double u = rng.Uniform() * static_cast<double>(prob_.size());
    const size_t i = std::min(static_cast<size_t>(u), prob_.size() - 1);
    return u - i < prob_[i] ? i : alias_[i];
  }

 private:
  std::vector<double> prob_;
  std::vector<size_t> alias_;
  double total_ = 0;
};

// At one instant: completions, then flips, control, arrivals, and last the wake-ups of idle
// slices whose members draw their own arrivals (see Fleet::Pull).
enum class EventKind : uint8_t {
  kCompletion = 0,
  kReady = 1,
  kControl = 2,
  kArrival = 3,
  kWake = 4
};

struct Event {
  int64_t t;
  uint32_t id;
  EventKind kind;
  bool operator>(const Event& o) const {
    if (t != o.t) return t > o.t;
    if (kind != o.kind) return kind > o.kind;
    return id > o.id;
  }
};

// A binary min-heap of events that lets the event being handled stay on top until the handler
// is done: most handlers push exactly one event (a slice's next completion or wake-up), which
// then replaces the top with one sift-down instead of a pop and a push.
class EventHeap {
 public:
  bool empty() const { return h_.size() == (stale_ ? 1u : 0u); }
  const Event& top() const { return h_[0]; }
  // Takes the top event; it leaves the heap at the next push or at Done().
  Event Take() {
    stale_ = true;
    return h_[0];
  }
  void Done() {
    if (!stale_) return;
    stale_ = false;
    const Event last = h_.back();
    h_.pop_back();
    if (!h_.empty()) SiftDown(last);
  }
  void push(const Event& e) {
    if (stale_) {
      stale_ = false;
      SiftDown(e);
      return;
    }
    size_t i = h_.size();
    h_.push_back(e);
    while (i > 0) {
      const size_t up = (i - 1) / 2;
      if (!(h_[up] > e)) break;
      h_[i] = h_[up];
      i = up;
    }
    h_[i] = e;
  }

 private:
  // Puts e at the root and moves it down to its place.
  void SiftDown(const Event& e) {
    const size_t n = h_.size();
    size_t i = 0;
    for (;;) {
      size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && h_[c] > h_[c + 1]) ++c;
      if (!(e > h_[c])) break;
      h_[i] = h_[c];
      i = c;
    }
    h_[i] = e;
  }
  std::vector<Event> h_;
  bool stale_ = false;
};

class Fleet {
 public:
  Fleet(const SimScenario& sc, const Plan& plan)
      : sc_(sc),
        policy_(plan.policy),
        rng_(sc.seed ^ 0x5151'7e55ull),
        lazy_rng_(sc.seed * 0x2545'f491'4f6c'dd1dull + 3) {
    const auto& models = sc.plan.models;
    const auto& gpu = sc.plan.gpu;
    outcomes_.resize(models.size());
    routers_.resize(models.size());
    transit_ns_.assign(models.size(), 0);
    pow2_ = sc.batch_buckets == SimScenario::Buckets::kPow2;
    for (size_t i = 0; i < models.size(); ++i) {
      if (i < sc.transit_ms.size())
        transit_ns_[i] = static_cast<int64_t>(sc.transit_ms[i] * kNsPerMs);
      outcomes_[i].name = models[i].name;
      outcomes_[i].slo_ms = models[i].slo_ms;
      outcomes_[i].latency_ns = bench::Histogram(kHistogramBits);
      index_[models[i].name] = i;
    }
    // GPUs the run may use: the plan's; with a tuner also spares to grow into (at most twice
    // the plan plus 16, within gpu.count: synthetic inputs allow a million).
    const int planned = static_cast<int>(plan.gpus.size());
    const bool grows = sc.tune.enabled && policy_ == planner::Policy::kTessera;
    const int ngpu =
        grows
            ? std::max(planned, static_cast<int>(std::min<int64_t>(gpu.count, 2ll * planned + 16)))
            : planned;
    gpu_capacity_ = planner::UsableSms(gpu, policy_);
    gpu_pressure_.assign(ngpu, 0);
    free_sms_.assign(ngpu, gpu_capacity_);
    gpu_slices_.assign(ngpu, 0);
    for (size_t gi = 0; gi < plan.gpus.size(); ++gi)
      for (const auto& s : plan.gpus[gi].slices) {
        const size_t si = NewSlice(static_cast<int>(gi), s.sms);
        for (const auto& m : s.members) {
          auto it = index_.find(m.model);
          if (it == index_.end()) {
            bad_ = "the plan names model '" + m.model + "', which the scenario lacks";
            return;
          }
          const size_t q = NewQueue(si, it->second, m.max_batch, m.rate_rps);
          if (policy_ == planner::Policy::kGslice)
            queues_[q].gslice = std::make_unique<planner::GsliceSelfTuner>(
                s.sms / gpu.sms, m.max_batch, models[it->second].profile.max_batch());
        }
      }
    actual_ =
        sc.actual_alpha >= 0 ? planner::InterferenceModel(sc.actual_alpha) : sc.plan.interference;
    if (sc.tune.enabled && policy_ == planner::Policy::kTessera) {
      tuner_ = std::make_unique<planner::Tuner>(sc.plan, sc.tune.options);
      tuner_->Calibrate(plan);
    }
  }
  const std::string& bad() const { return bad_; }

  SimResult Run() {
    const auto wall0 = std::chrono::steady_clock::now();
    const int64_t end_ns = static_cast<int64_t>(sc_.duration_s * 1e9);
    end_ns_ = end_ns;
    warmup_ns_ = static_cast<int64_t>(sc_.warmup_s * 1e9);
    interval_ns_ = std::max<int64_t>(1000, static_cast<int64_t>(sc_.tune.interval_s * 1e9));
    delay_ns_ = static_cast<int64_t>(std::max(0.0, sc_.tune.resize_delay_s) * 1e9);
    // Poisson models share one merged stream: the superposition of independent Poisson
    // processes is Poisson at the summed rate, each arrival of model i with probability r_i / R
    // (Walker's alias table). One stream instead of one heap entry per model keeps the event
    // heap to completions. Other arrival kinds keep their own processes.
    //
    // Lazy arrivals: without a tuner or self-tuning, nothing moves a model with one slice, so
    // a Poisson model with one slice draws its own arrivals only when its slice looks at its
    // queue (at a completion, at a wake-up when idle, at a window's end): per request an
    // exponential draw and a push, with no event, no alias draw and no routing.
    std::vector<std::unique_ptr<bench::ArrivalProcess>> arrivals(sc_.arrivals.size());
    std::vector<double> poisson_rate;
    std::vector<uint32_t> poisson_model;
    const bool lazy_ok = !tuner_ && policy_ != planner::Policy::kGslice;
    lazy_next_.assign(sc_.arrivals.size(), -1);
    lazy_gap_ns_.assign(sc_.arrivals.size(), 0);
    for (size_t m = 0; m < sc_.arrivals.size(); ++m) {
      bench::ArrivalSpec spec = sc_.arrivals[m];
      if (spec.kind == bench::ArrivalSpec::Kind::kPoisson && lazy_ok &&
          routers_[m].queues.size() == 1 && spec.rate * sc_.load > 0) {
        const size_t qi = routers_[m].queues[0];
        lazy_gap_ns_[m] = 1e9 / (spec.rate * sc_.load);
        lazy_next_[m] = lazy_rng_.Exp() * lazy_gap_ns_[m];
        slices_[queues_[qi].slice].lazy.push_back(qi);
        continue;
      }
      if (spec.kind == bench::ArrivalSpec::Kind::kPoisson) {
        poisson_rate.push_back(spec.rate * sc_.load);
        poisson_model.push_back(static_cast<uint32_t>(m));
        continue;
      }
      double scale = sc_.load;
      if (spec.kind != bench::ArrivalSpec::Kind::kTrace) {
        spec.rate *= sc_.load;
        scale = 1;
      }
      arrivals[m] = bench::MakeArrivals(spec, sc_.seed * 1000003 + m, scale);
      const int64_t t = arrivals[m]->Next();
      if (t >= 0 && t < end_ns) events_.push({t, static_cast<uint32_t>(m), EventKind::kArrival});
    }
    const Alias alias(poisson_rate);
    Rng merged_rng(sc_.seed * 0x9e3779b97f4a7c15ull + 17);
    const double merged_mean_gap_ns = alias.total() > 0 ? 1e9 / alias.total() : 1;
    double merged_t = 0;
    int64_t merged_next = INT64_MAX;
    auto draw_merged = [&] {
      if (alias.total() <= 0) return;
      merged_t += merged_rng.Exp() * merged_mean_gap_ns;
      merged_next =
          merged_t < static_cast<double>(end_ns) ? static_cast<int64_t>(merged_t) : INT64_MAX;
    };
    draw_merged();
    for (size_t si = 0; si < slices_.size(); ++si) ScheduleWake(si);
    if (interval_ns_ < end_ns) events_.push({interval_ns_, 0, EventKind::kControl});
    SimResult res;
    int64_t last_change = 0;
    int used_now = GpusInUse();
    res.peak_gpus = used_now;
    auto account = [&](int64_t now) {
      // Time-weighted GPUs over the counted span.
      const int64_t from = std::max(last_change, warmup_ns_);
      if (now > from) gpu_ns_ += static_cast<double>(now - from) * used_now;
      last_change = std::max(last_change, now);
      used_now = GpusInUse();
      res.peak_gpus = std::max(res.peak_gpus, used_now);
    };
    while (!events_.empty() || merged_next != INT64_MAX) {
      Event e;
      if (merged_next != INT64_MAX &&
          (events_.empty() || merged_next < events_.top().t ||
           (merged_next == events_.top().t && events_.top().kind >= EventKind::kArrival))) {
        e = {merged_next, poisson_model[alias.Pick(merged_rng)], EventKind::kArrival};
        draw_merged();
      } else {
        e = events_.Take();
      }
      switch (e.kind) {
        case EventKind::kCompletion: {
          SliceState& s = slices_[e.id];
          s.running = false;
          gpu_pressure_[s.gpu] -= s.running_pressure;
          Pull(e.id, e.t, false);
          if ((s.pending.active && Flip(e.id, e.t)) || (s.draining && Retire(e.id))) account(e.t);
          Dispatch(e.id, e.t);
          break;
        }
        case EventKind::kReady:
          if (!slices_[e.id].running && Flip(e.id, e.t)) account(e.t);
          Dispatch(e.id, e.t);
          break;
        case EventKind::kWake: {
          SliceState& s = slices_[e.id];
          if (s.wake_at != e.t) break;  // superseded
          s.wake_at = INT64_MAX;
          if (s.running) break;  // its completion pulls
          Pull(e.id, e.t, true);
          Dispatch(e.id, e.t);
          break;
        }
        case EventKind::kControl:
          // The window counts every arrival before its end.
          for (size_t si = 0; si < slices_.size(); ++si) Pull(si, e.t, false);
          Control(e.t);
          account(e.t);
          if (e.t + interval_ns_ <= end_ns)
            events_.push({e.t + interval_ns_, 0, EventKind::kControl});
          break;
        case EventKind::kArrival: {
          ++res.requests;
          const size_t m = e.id;
          const bool counted = e.t >= warmup_ns_;
          if (counted) ++outcomes_[m].sent;
          ++w_sent_;
          const size_t q = routers_[m].Pick();
          if (q == SIZE_MAX) {
            if (counted) ++outcomes_[m].dropped;  // unplaced: nowhere to run
          } else {
            queues_[q].arrivals.push_back(e.t);
            ++queues_[q].w_arrived;
            if (!slices_[queues_[q].slice].running) Dispatch(queues_[q].slice, e.t);
          }
          if (arrivals[m]) {
            const int64_t t = arrivals[m]->Next();
            if (t >= 0 && t < end_ns)
              events_.push({t, static_cast<uint32_t>(m), EventKind::kArrival});
          }
          break;
        }
      }
      events_.Done();
    }
    account(end_ns);
    res.requests += lazy_requests_;
    res.batches = batches_;
    res.simulated_s = std::max(0.0, sc_.duration_s - sc_.warmup_s);
    res.mean_gpus = res.simulated_s > 0 ? gpu_ns_ / (res.simulated_s * 1e9) : 0;
    res.resizes = resizes_;
    res.replicas_added = added_;
    res.replicas_removed = removed_;
    res.timeline = std::move(timeline_);
    res.actions = std::move(actions_);
    res.interference_samples = live_.samples();
    res.total.name = "total";
    res.total.latency_ns = bench::Histogram(kHistogramBits);
    for (auto& o : outcomes_) {
      res.total.sent += o.sent;
      res.total.ok += o.ok;
      res.total.late += o.late;
      res.total.dropped += o.dropped;
      res.total.latency_ns.Merge(o.latency_ns);
    }
    res.models = std::move(outcomes_);
    res.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    return res;
  }

 private:
  // Takes the lazy members' arrivals before `upto` (or at it, when `inclusive`) into their
  // queues, counted as the arrival path counts them.
  void Pull(size_t si, int64_t upto, bool inclusive) {
    const int64_t last = std::min(inclusive ? upto : upto - 1, end_ns_ - 1);
    for (size_t qi : slices_[si].lazy) {
      Queue& q = queues_[qi];
      double& next = lazy_next_[q.model];
      const double gap = lazy_gap_ns_[q.model];
      int64_t n = 0, counted = 0;
      for (auto t = static_cast<int64_t>(next); t <= last; t = static_cast<int64_t>(next)) {
        q.arrivals.push_back(t);
        ++n;
        counted += t >= warmup_ns_;
        next += lazy_rng_.Exp() * gap;
      }
      lazy_requests_ += n;
      w_sent_ += n;
      q.w_arrived += n;
      outcomes_[q.model].sent += counted;
    }
  }

  // An idle slice with lazy members wakes at their next arrival.
  void ScheduleWake(size_t si) {
    SliceState& s = slices_[si];
    if (s.lazy.empty() || s.running) return;
    double next = INFINITY;
    for (size_t qi : s.lazy) next = std::min(next, lazy_next_[queues_[qi].model]);
    if (!(next < static_cast<double>(end_ns_))) return;
    const auto t = static_cast<int64_t>(next);
    if (t >= s.wake_at) return;  // an earlier wake-up is pending
    s.wake_at = t;
    events_.push({t, static_cast<uint32_t>(si), EventKind::kWake});
  }

  size_t NewSlice(int gpu, double sms) {
    SliceState st{};
    st.gpu = gpu;
    st.sms = sms;
    free_sms_[gpu] -= sms;
    if (gpu_slices_[gpu]++ == 0) ++gpus_in_use_;
    slices_.push_back(std::move(st));
    return slices_.size() - 1;
  }

  size_t NewQueue(size_t si, size_t model, int max_batch, double weight) {
    Queue q;
    q.model = model;
    q.slice = si;
    q.max_batch = max_batch;
    q.rate_rps = weight;
    queues_.push_back(std::move(q));
    const size_t qi = queues_.size() - 1;
    Retable(qi);
    slices_[si].queues.push_back(qi);
    Router& r = routers_[model];
    r.queues.push_back(qi);
    r.weight.push_back(0);
    r.Set(qi, weight);
    return qi;
  }

  // The queue's latency tables at its slice's current size.
  void Retable(size_t qi) {
    Queue& q = queues_[qi];
    const double sms = slices_[q.slice].sms;
    const Profile& p = sc_.plan.models[q.model].profile;
    const int top = std::max(p.max_batch(), q.max_batch);
    q.slo_ns = static_cast<int64_t>(sc_.plan.models[q.model].slo_ms * kNsPerMs);
    q.pressure = p.mem_intensity * sms / sc_.plan.gpu.sms;
    q.p99_ns.assign(1, 0);
    q.mean_ms.assign(1, 0);
    q.std_ms.assign(1, 0);
    if (sms <= 0) return;
    for (int b = 1; b <= top; ++b) {
      q.p99_ns.push_back(static_cast<int64_t>(p.P99Ms(b, sms) * kNsPerMs));
      q.mean_ms.push_back(p.MeanMs(b, sms));
      q.std_ms.push_back(p.StdMs(b, sms));
    }
  }

  int GpusInUse() const { return gpus_in_use_; }

  // A resize or creation whose new slice is ready takes over (at a batch boundary: the caller
  // makes sure the slice is idle). True when it flipped.
  bool Flip(size_t si, int64_t now) {
    SliceState& s = slices_[si];
    if (!s.pending.active || now < s.pending.ready_ns) return false;
    const Pending p = s.pending;
    const bool created = s.sms <= 0;
    s.pending.active = false;
    if (p.sms < s.sms) free_sms_[s.gpu] += s.sms - p.sms;  // grown SMs were reserved earlier
    s.sms = p.sms;
    for (size_t qi : s.queues) {
      Queue& q = queues_[qi];
      if (p.max_batch > 0) q.max_batch = p.max_batch;
      Retable(qi);
      if (p.weight > 0 && s.queues.size() == 1) routers_[q.model].Set(qi, p.weight);
    }
    if (!created) {
      ++resizes_;
      return true;
    }
    // A new slice is ready: the slices waiting for it may go now (make-before-break).
    const size_t model = queues_[s.queues[0]].model;
    if (!CreationPending(model))
      for (size_t qi : routers_[model].queues) {
        const size_t other = queues_[qi].slice;
        if (slices_[other].remove_when_ready) Remove(other);
      }
    return true;
  }

  bool CreationPending(size_t model) const {
    for (size_t qi : routers_[model].queues) {
      const SliceState& s = slices_[queues_[qi].slice];
      if (!s.gone && s.sms <= 0 && s.pending.active) return true;
    }
    return false;
  }

  void Remove(size_t si) {
    SliceState& s = slices_[si];
    s.remove_when_ready = false;
    s.draining = true;
    for (size_t qi : s.queues) routers_[queues_[qi].model].Set(qi, 0);
    Retire(si);
  }

  // A draining slice that is idle and empty gives its SMs back. True when it went.
  bool Retire(size_t si) {
    SliceState& s = slices_[si];
    if (!s.draining || s.gone || s.running) return false;
    for (size_t qi : s.queues)
      if (!queues_[qi].arrivals.empty()) return false;
    s.gone = true;
    free_sms_[s.gpu] += s.sms + (s.pending.active ? std::max(0.0, s.pending.sms - s.sms) : 0);
    s.pending.active = false;
    if (--gpu_slices_[s.gpu] == 0) --gpus_in_use_;
    ++removed_;
    return true;
  }

  // Starts a resize of slice si to `sms` (ready after the delay). Grown SMs are reserved now.
  void StartResize(size_t si, double sms, int max_batch, double weight, int64_t now) {
    SliceState& s = slices_[si];
    if (sms > s.sms) free_sms_[s.gpu] -= sms - s.sms;
    s.pending = {true, sms, max_batch, weight, now + delay_ns_};
    events_.push({now + delay_ns_, static_cast<uint32_t>(si), EventKind::kReady});
  }

  void Note(int64_t now, const std::string& what) {
    if (actions_.size() < 1000) actions_.push_back(fmt::format("{:.3f} s: {}", now / 1e9, what));
  }

  void Control(int64_t now) {
    const double window_s = interval_ns_ / 1e9;
    WindowPoint w;
    w.t_s = now / 1e9;
    w.sent = w_sent_;
    w_sent_ = 0;
    planner::FleetObservation obs;
    obs.window_s = window_s;
    if (tuner_) obs.free_sms = free_sms_;
    for (size_t si = 0; si < slices_.size(); ++si) {
      SliceState& s = slices_[si];
      if (s.gone) continue;
      w.sms += std::max(s.sms, s.pending.active ? s.pending.sms : 0.0);
      planner::SliceObservation so;
      so.id = static_cast<int>(si);
      so.gpu = s.gpu;
      so.sms = s.sms;
      so.busy = std::min(1.0, s.w_busy_ns / (window_s * 1e9));
      so.changing = s.pending.active || s.draining || s.remove_when_ready;
      so.batches = s.w_batches;
      if (s.w_batches > 0) {
        so.batch_ms = s.w_busy_ns / (1e6 * s.w_batches);
        so.alone_ms = s.w_alone_ns / (1e6 * s.w_batches);
      }
      s.w_busy_ns = 0;
      s.w_batches = 0;
      s.w_alone_ns = 0;
      for (size_t qi : s.queues) {
        Queue& q = queues_[qi];
        w.ok += q.w_within;
        w.finished += q.w_finished;
        q.rate_rps = q.w_arrived / window_s;
        so.max_batch = q.max_batch;
        so.members.push_back(
            {q.model, q.rate_rps, q.w_finished, q.w_within, routers_[q.model].WeightOf(qi)});
        q.w_arrived = q.w_finished = q.w_within = 0;
      }
      obs.slices.push_back(std::move(so));
    }
    w.gpus = GpusInUse();
    timeline_.push_back(w);
    live_.Observe(sc_.plan, obs);
    if (!tuner_) return;
    using Kind = planner::TuneAction::Kind;
    for (const auto& a : tuner_->Step(obs)) {
      switch (a.kind) {
        case Kind::kResize:
          StartResize(static_cast<size_t>(a.slice), a.sms, a.max_batch, a.weight, now);
          Note(now, a.why);
          break;
        case Kind::kAdd: {
          const size_t si = NewSlice(a.gpu, 0);
          NewQueue(si, a.model, a.max_batch, 0);
          StartResize(si, a.sms, a.max_batch, a.weight, now);
          ++added_;
          Note(now, a.why);
          break;
        }
        case Kind::kRemove: {
          const auto si = static_cast<size_t>(a.slice);
          Note(now, a.why);
          if (CreationPending(a.model))
            slices_[si].remove_when_ready = true;
          else
            Remove(si);
          break;
        }
        case Kind::kRoute:
          for (size_t qi : slices_[a.slice].queues)
            if (queues_[qi].model == a.model) routers_[a.model].Set(qi, a.weight);
          break;
      }
    }
  }

  double Inflation(const SliceState& s) const { return actual_.Inflation(gpu_pressure_[s.gpu]); }

  static void Finish(Queue& q, bool within) {
    ++q.w_finished;
    q.w_within += within;
  }

  // The slice is free at `now`: serve the next member (round-robin) that has work.
  void Dispatch(size_t si, int64_t now) {
    SliceState& s = slices_[si];
    if (s.sms <= 0 || s.gone) return;
    const double f = Inflation(s);
    const size_t n = s.queues.size();
    for (size_t k = 0, pos = s.next; k < n; ++k, pos = pos + 1 == n ? 0 : pos + 1) {
      Queue& q = queues_[s.queues[pos]];
      if (q.arrivals.empty()) continue;
      const int64_t slo_ns = q.slo_ns;
      // With power-of-two buckets a batch of b rows runs padded on the smallest bucket that
      // holds it (powers of two below the max batch, and the max batch) and costs that bucket.
      auto bucket = [&](int b) {
        if (!pow2_) return b;
        return std::min<int>(static_cast<int>(std::bit_ceil(static_cast<unsigned>(b))),
                             std::max(b, q.max_batch));
      };
      auto predict = [&](int b) { return static_cast<int64_t>(q.p99_ns[bucket(b)] * f); };
      // Drop before dispatch what can no longer make its deadline.
      const int64_t one = predict(1);
      while (!q.arrivals.empty() && q.arrivals.front() + slo_ns < now + one) {
        if (q.arrivals.front() >= warmup_ns_) ++outcomes_[q.model].dropped;
        Finish(q, false);
        q.arrivals.pop_front();
      }
      if (q.arrivals.empty()) continue;
      int b = static_cast<int>(std::min<size_t>(q.arrivals.size(), q.max_batch));
      while (b > 1 && now + predict(b) > q.arrivals.front() + slo_ns) --b;
      const double mean = q.mean_ms[bucket(b)], sd = q.std_ms[bucket(b)];
      double ms = mean;
      if (sd > 0) ms = std::max(0.5 * mean, mean + sd * rng_.Normal());
      const int64_t run_ns = static_cast<int64_t>(ms * f * kNsPerMs);
      const int64_t done = now + run_ns;
      const int64_t oldest = q.arrivals.front();
      ModelOutcome& o = outcomes_[q.model];
      const int64_t end = done + transit_ns_[q.model];
      int64_t within = 0, ok = 0, late = 0;
      for (int i = 0; i < b; ++i) {
        const int64_t a = q.arrivals.front();
        q.arrivals.pop_front();
        const int64_t lat = end - a;
        within += lat <= slo_ns;
        if (a < warmup_ns_) continue;
        o.latency_ns.Record(lat);
        ok += lat <= slo_ns;
        late += lat > slo_ns;
      }
      q.w_finished += b;
      q.w_within += within;
      o.ok += ok;
      o.late += late;
      ++batches_;
      s.w_busy_ns += run_ns;
      ++s.w_batches;
      s.w_alone_ns += mean * kNsPerMs;
      s.next = pos + 1 == n ? 0 : pos + 1;
      s.running = true;
      s.running_pressure = q.pressure;
      gpu_pressure_[s.gpu] += s.running_pressure;
      events_.push({done, static_cast<uint32_t>(si), EventKind::kCompletion});
      if (q.gslice)
        SelfTune(si, q, (done - oldest) / kNsPerMs, ms * f, b,
                 1000.0 * q.max_batch / (q.mean_ms[q.max_batch] * f),
                 sc_.plan.models[q.model].slo_ms, now);
      return;
    }
    Retire(si);
    ScheduleWake(si);
  }

  // GSLICE: after each batch (its outcome is known at dispatch on the virtual clock).
  void SelfTune(size_t si, Queue& q, double latency_ms, double infer_ms, int b, double service_rps,
                double slo_ms, int64_t now) {
    SliceState& s = slices_[si];
    const auto advice = q.gslice->OnBatch(latency_ms, infer_ms, b, q.rate_rps, service_rps, slo_ms);
    q.max_batch = std::min<int>(advice.max_batch, static_cast<int>(q.p99_ns.size()) - 1);
    if (!advice.resize || s.pending.active) return;
    const double S = sc_.plan.gpu.sms;
    const double want = advice.share * S;
    const double sms = std::min(want, s.sms + free_sms_[s.gpu]);
    if (std::fabs(sms - s.sms) < 0.03 * S) return;
    q.gslice->SetShare(sms / S);
    Note(now, fmt::format("gslice {}: share {:.0f}% -> {:.0f}%{}", sc_.plan.models[q.model].name,
                          100 * s.sms / S, 100 * sms / S,
                          sms < want ? " (capped by the GPU's free share)" : ""));
    StartResize(si, sms, 0, 0, now);
  }

  const SimScenario& sc_;
  planner::Policy policy_;
  Rng rng_;
  std::map<std::string, size_t> index_;
  std::vector<ModelOutcome> outcomes_;
  std::vector<int64_t> transit_ns_;  // per model: added to each answered request's latency
  // Lazy arrivals (per model; next < 0: not lazy): the next arrival and the mean gap (ns).
  std::vector<double> lazy_next_, lazy_gap_ns_;
  Rng lazy_rng_{0};
  int64_t lazy_requests_ = 0;
  int64_t end_ns_ = 0;
  bool pow2_ = false;  // batches padded to power-of-two buckets
  std::vector<Router> routers_;
  std::vector<Queue> queues_;
  std::vector<SliceState> slices_;
  std::vector<double> gpu_pressure_;  // sum over its running slices
  std::vector<double> free_sms_;      // per GPU: not held or reserved by any slice
  std::vector<int> gpu_slices_;       // per GPU: slices not gone
  int gpus_in_use_ = 0;               // GPUs with a slice
  double gpu_capacity_ = 0;
  EventHeap events_;
  std::unique_ptr<planner::Tuner> tuner_;
  planner::InterferenceModel actual_;  // what slows the simulated slices down
  planner::LiveInterference live_{SimResult::kInterferenceSamples / 4};
  std::vector<WindowPoint> timeline_;
  std::vector<std::string> actions_;
  int64_t warmup_ns_ = 0, interval_ns_ = 0, delay_ns_ = 0;
  int64_t batches_ = 0, resizes_ = 0, added_ = 0, removed_ = 0;
  int64_t w_sent_ = 0;
  double gpu_ns_ = 0;
  std::string bad_;
};

}  // namespace

Status ValidateTune(const SimScenario::Tune& t, const std::string& where) {
  const auto& o = t.options;
  if (!(o.shrink_below > 0 && o.shrink_below < o.target_load && o.target_load < o.grow_above &&
        o.grow_above <= 2))
    return Status::InvalidArgument(
        where +
        ": expected 0 < shrink_below < target_load < grow_above <= 1 (the gap between "
        "the bands is the hysteresis), got " +
        fmt::format("{} / {} / {}", o.shrink_below, o.target_load, o.grow_above));
  if (!(o.attainment_floor > 0 && o.attainment_floor <= 1))
    return Status::InvalidArgument(where + ".attainment_floor: expected a number in (0, 1]");
  return Status::OK();
}

namespace {

// A group of GPUs that no model spans beyond: its own scenario (its models) and plan.
struct Part {
  SimScenario scenario;
  Plan plan;
  std::vector<size_t> models;  // indices into the full scenario's models
};

// GPUs linked by the models they share (union-find). Without a tuner nothing else couples
// them, so each group can be simulated on its own. Models with no slice go with the first group.
Result<std::vector<Part>> Partition(const SimScenario& sc, const Plan& plan) {
  const size_t ng = plan.gpus.size();
  std::vector<size_t> parent(ng);
  for (size_t i = 0; i < ng; ++i) parent[i] = i;
  auto find = [&](size_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  std::map<std::string, size_t> index, first_gpu;
  for (size_t i = 0; i < sc.plan.models.size(); ++i) index[sc.plan.models[i].name] = i;
  for (size_t g = 0; g < ng; ++g)
    for (const auto& s : plan.gpus[g].slices)
      for (const auto& m : s.members) {
        if (!index.count(m.model))
          return Status::InvalidArgument("simulate: the plan names model '" + m.model +
                                         "', which the scenario lacks");
        auto [it, fresh] = first_gpu.emplace(m.model, g);
        if (!fresh) parent[find(g)] = find(it->second);
      }
  std::map<size_t, size_t> part_of_root;
  std::vector<Part> parts;
  std::vector<int> model_part(sc.plan.models.size(), -1);
  for (size_t g = 0; g < ng; ++g) {
    const size_t root = find(g);
    auto [it, fresh] = part_of_root.emplace(root, parts.size());
    if (fresh) parts.emplace_back();
    Part& p = parts[it->second];
    planner::GpuPlan gp = plan.gpus[g];
    gp.index = static_cast<int>(p.plan.gpus.size());
    for (const auto& s : gp.slices)
      for (const auto& m : s.members) model_part[index[m.model]] = static_cast<int>(it->second);
    p.plan.gpus.push_back(std::move(gp));
  }
  if (parts.empty()) return parts;
  for (size_t i = 0; i < sc.plan.models.size(); ++i) {
    Part& p = parts[model_part[i] < 0 ? 0 : model_part[i]];
    p.models.push_back(i);
  }
  for (size_t k = 0; k < parts.size(); ++k) {
    Part& p = parts[k];
    p.plan.policy = plan.policy;
    p.plan.gpu = plan.gpu;
    p.scenario = sc;
    p.scenario.plan.models.clear();
    p.scenario.arrivals.clear();
    p.scenario.transit_ms.clear();
    for (size_t i : p.models) {
      p.scenario.plan.models.push_back(sc.plan.models[i]);
      p.scenario.arrivals.push_back(sc.arrivals[i]);
      p.scenario.transit_ms.push_back(i < sc.transit_ms.size() ? sc.transit_ms[i] : 0);
    }
    // Independent streams per group; the same for a seed whatever the thread count.
    p.scenario.seed = sc.seed * 7919 + k + 1;
  }
  // Heaviest first (the work is about the requests), so the threads finish together.
  auto load = [](const Part& p) {
    double r = 0;
    for (const auto& m : p.scenario.plan.models) r += m.rate_rps;
    return r;
  };
  std::stable_sort(parts.begin(), parts.end(),
                   [&](const Part& a, const Part& b) { return load(a) > load(b); });
  return parts;
}

SimResult Merge(const SimScenario& sc, const std::vector<Part>& parts,
                std::vector<SimResult> results, double wall_s) {
  SimResult out;
  out.models.resize(sc.plan.models.size());
  out.total.name = "total";
  out.total.latency_ns = bench::Histogram(kHistogramBits);
  for (size_t k = 0; k < parts.size(); ++k) {
    SimResult& r = results[k];
    for (size_t j = 0; j < parts[k].models.size(); ++j)
      out.models[parts[k].models[j]] = std::move(r.models[j]);
    out.total.sent += r.total.sent;
    out.total.ok += r.total.ok;
    out.total.late += r.total.late;
    out.total.dropped += r.total.dropped;
    out.total.latency_ns.Merge(r.total.latency_ns);
    out.simulated_s = r.simulated_s;
    out.requests += r.requests;
    out.batches += r.batches;
    out.peak_gpus += r.peak_gpus;
    out.mean_gpus += r.mean_gpus;
    for (const auto& smp : r.interference_samples)
      if (out.interference_samples.size() < SimResult::kInterferenceSamples)
        out.interference_samples.push_back(smp);
    if (out.timeline.empty()) {
      out.timeline = r.timeline;
    } else {
      for (size_t w = 0; w < out.timeline.size() && w < r.timeline.size(); ++w) {
        out.timeline[w].sent += r.timeline[w].sent;
        out.timeline[w].ok += r.timeline[w].ok;
        out.timeline[w].finished += r.timeline[w].finished;
        out.timeline[w].sms += r.timeline[w].sms;
        out.timeline[w].gpus += r.timeline[w].gpus;
      }
    }
  }
  out.wall_s = wall_s;
  return out;
}

// What the live samples say about interference, against what the planner was told.
SimResult WithInterferenceFit(const SimScenario& sc, SimResult r) {
  SimResult::InterferenceFit& f = r.interference;
  f.samples = static_cast<int64_t>(r.interference_samples.size());
  f.planner_alpha = sc.plan.interference.alpha();
  f.actual_alpha = sc.actual_alpha >= 0 ? sc.actual_alpha : f.planner_alpha;
  f.planner_error = sc.plan.interference.Evaluate(r.interference_samples);
  if (auto fitted = planner::InterferenceModel::Fit(r.interference_samples); fitted.ok()) {
    f.fitted = true;
    f.alpha = fitted->alpha();
    f.fit_error = fitted->Evaluate(r.interference_samples);
  }
  return r;
}

}  // namespace

Result<SimResult> Simulate(const SimScenario& scenario, const Plan& plan) {
  if (scenario.arrivals.size() != scenario.plan.models.size())
    return Status::InvalidArgument("simulate: one arrival process per model is needed");
  if (!(scenario.duration_s > scenario.warmup_s) || scenario.warmup_s < 0)
    return Status::InvalidArgument("simulate: expected 0 <= warmup_s < duration_s");
  if (!(scenario.load > 0)) return Status::InvalidArgument("simulate: load must be > 0");
  if (!(scenario.tune.interval_s > 0))
    return Status::InvalidArgument("simulate: tune.interval_s must be > 0");
  TESSERA_RETURN_IF_ERROR(ValidateTune(scenario.tune, "simulate: tune"));
  const bool tuned = (scenario.tune.enabled && plan.policy == planner::Policy::kTessera) ||
                     plan.policy == planner::Policy::kGslice;
  std::vector<Part> parts;
  if (!tuned) {
    TESSERA_ASSIGN_OR_RETURN(parts, Partition(scenario, plan));
  }
  if (parts.size() <= 1) {
    Fleet fleet(scenario, plan);
    if (!fleet.bad().empty()) return Status::InvalidArgument("simulate: " + fleet.bad());
    return WithInterferenceFit(scenario, fleet.Run());
  }
  // Independent groups of GPUs, largest first, on the machine's threads.
  const auto wall0 = std::chrono::steady_clock::now();
  std::vector<SimResult> results(parts.size());
  std::vector<std::string> errors(parts.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < parts.size();) {
      Fleet fleet(parts[i].scenario, parts[i].plan);
      if (!fleet.bad().empty()) {
        errors[i] = fleet.bad();
        continue;
      }
      results[i] = fleet.Run();
    }
  };
  const unsigned n = std::clamp<unsigned>(std::thread::hardware_concurrency(), 1,
                                          static_cast<unsigned>(parts.size()));
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < n; ++t) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  for (const auto& e : errors)
    if (!e.empty()) return Status::InvalidArgument("simulate: " + e);
  return WithInterferenceFit(
      scenario,
      Merge(scenario, parts, std::move(results),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count()));
}

Status ParseTune(const nlohmann::json& j, const std::string& where, SimScenario::Tune* t) {
  using json_fields::Bad;
  using json_fields::GetInt;
  using json_fields::GetNumber;
  if (!j.is_object()) return Bad(where, "an object", j);
  TESSERA_RETURN_IF_ERROR(
      json_fields::CheckKeys(j, where,
                             {"enabled", "interval_s", "resize_delay_s", "grow_above",
                              "target_load", "shrink_below", "shrink_windows", "cooldown_windows",
                              "attainment_floor", "max_trust", "learn_interference_after",
                              "grow_sigma", "checked_capacity", "open_on_evidence", "open_above"}));
  t->enabled = true;
  TESSERA_RETURN_IF_ERROR(json_fields::GetBool(j, "enabled", where, &t->enabled));
  TESSERA_RETURN_IF_ERROR(GetNumber(j, "interval_s", where, &t->interval_s, 0));
  TESSERA_RETURN_IF_ERROR(GetNumber(j, "resize_delay_s", where, &t->resize_delay_s, 0, true));
  auto& o = t->options;
  TESSERA_RETURN_IF_ERROR(GetNumber(j, "grow_above", where, &o.grow_above, 0));
  TESSERA_RETURN_IF_ERROR(GetNumber(j, "target_load", where, &o.target_load, 0));
  TESSERA_RETURN_IF_ERROR(GetNumber(j, "shrink_below", where, &o.shrink_below, 0));
  TESSERA_RETURN_IF_ERROR(GetNumber(j, "attainment_floor", where, &o.attainment_floor, 0));
  TESSERA_RETURN_IF_ERROR(GetNumber(j, "max_trust", where, &o.max_trust, 1, true));
  TESSERA_RETURN_IF_ERROR(GetNumber(j, "grow_sigma", where, &o.grow_sigma, 0, true));
  TESSERA_RETURN_IF_ERROR(json_fields::GetBool(j, "checked_capacity", where, &o.checked_capacity));
  TESSERA_RETURN_IF_ERROR(json_fields::GetBool(j, "open_on_evidence", where, &o.open_on_evidence));
  TESSERA_RETURN_IF_ERROR(GetNumber(j, "open_above", where, &o.open_above, 1, true));
  int64_t n = o.shrink_windows;
  TESSERA_RETURN_IF_ERROR(GetInt(j, "shrink_windows", where, &n, 1));
  o.shrink_windows = static_cast<int>(n);
  n = o.cooldown_windows;
  TESSERA_RETURN_IF_ERROR(GetInt(j, "cooldown_windows", where, &n, 0));
  o.cooldown_windows = static_cast<int>(n);
  TESSERA_RETURN_IF_ERROR(
      GetInt(j, "learn_interference_after", where, &o.learn_interference_after, 0));
  return ValidateTune(*t, where);
}

Result<SimScenario> ParseSimScenario(const nlohmann::json& doc, const std::string& what,
                                     const std::string& base_dir) {
  using json_fields::Bad;
  using json_fields::GetInt;
  using json_fields::GetNumber;
  if (!doc.is_object()) return Bad(what, "a JSON object", doc);
  static const char* kSimKeys[] = {"duration_s",    "warmup_s",           "seed", "load", "tune",
                                   "batch_buckets", "actual_interference"};
  static const char* kArrivalKeys[] = {"arrival",
                                       "cv",
                                       "burst_ratio",
                                       "burst_fraction",
                                       "burst_period_s",
                                       "diurnal_amplitude",
                                       "diurnal_period_s",
                                       "diurnal_phase",
                                       "trace",
                                       "trace_loop"};
  SimScenario sc;
  TESSERA_RETURN_IF_ERROR(GetNumber(doc, "duration_s", what, &sc.duration_s, 0));
  TESSERA_RETURN_IF_ERROR(GetNumber(doc, "warmup_s", what, &sc.warmup_s, 0, true));
  TESSERA_RETURN_IF_ERROR(GetNumber(doc, "load", what, &sc.load, 0));
  int64_t seed = 1;
  TESSERA_RETURN_IF_ERROR(GetInt(doc, "seed", what, &seed, 0));
  sc.seed = static_cast<uint64_t>(seed);
  if (sc.warmup_s >= sc.duration_s)
    return Status::InvalidArgument(what + ".warmup_s: must be below duration_s");
  if (doc.contains("tune"))
    TESSERA_RETURN_IF_ERROR(ParseTune(doc["tune"], what + ".tune", &sc.tune));
  if (doc.contains("actual_interference")) {
    const auto& a = doc["actual_interference"];
    const std::string where = what + ".actual_interference";
    if (!a.is_object() || !a.contains("alpha")) return Bad(where, "{\"alpha\": number >= 0}", a);
    TESSERA_RETURN_IF_ERROR(json_fields::CheckKeys(a, where, {"alpha"}));
    TESSERA_RETURN_IF_ERROR(GetNumber(a, "alpha", where, &sc.actual_alpha, 0, true));
  }
  if (doc.contains("batch_buckets")) {
    const auto& b = doc["batch_buckets"];
    if (b == "every")
      sc.batch_buckets = SimScenario::Buckets::kEvery;
    else if (b == "pow2")
      sc.batch_buckets = SimScenario::Buckets::kPow2;
    else
      return Bad(what + ".batch_buckets", "\"every\" or \"pow2\"", b);
  }
  // The rest is a plan input once the simulator's own fields are taken out.
  nlohmann::json plan_doc = doc;
  for (const char* k : kSimKeys) plan_doc.erase(k);
  std::vector<nlohmann::json> arrival_docs;
  if (plan_doc.contains("models") && plan_doc["models"].is_array()) {
    auto& models = plan_doc["models"];
    for (size_t i = 0; i < models.size(); ++i) {
      nlohmann::json a = nlohmann::json::object();
      if (models[i].is_object()) {
        for (const char* k : kArrivalKeys)
          if (models[i].contains(k)) {
            a[k] = models[i][k];
            models[i].erase(k);
          }
        const std::string at = what + ".models[" + std::to_string(i) + "]";
        double transit = 0;
        TESSERA_RETURN_IF_ERROR(GetNumber(models[i], "transit_ms", at, &transit, 0, true));
        models[i].erase("transit_ms");
        sc.transit_ms.push_back(transit);
        const bool trace = a.contains("arrival") && a["arrival"] == "trace";
        if (!trace && models[i].contains("rate")) a["rate"] = models[i]["rate"];
        bench::ArrivalSpec spec;
        TESSERA_RETURN_IF_ERROR(bench::ParseArrival(a, at, base_dir, &spec, nullptr));
        if (trace) {
          if (models[i].contains("rate"))
            return Status::InvalidArgument(at +
                                           ".rate: not used with arrival \"trace\" (the "
                                           "trace sets the rate)");
          models[i]["rate"] = spec.rate;
        }
        sc.arrivals.push_back(std::move(spec));
      }
    }
  }
  TESSERA_ASSIGN_OR_RETURN(sc.plan, planner::ParsePlanInput(plan_doc, what, base_dir));
  // The planner's queue checks pad batches as the simulated runtime does.
  sc.plan.options.pow2_buckets = sc.batch_buckets == SimScenario::Buckets::kPow2;
  if (sc.arrivals.size() != sc.plan.models.size())
    return Status::InvalidArgument(what + ".models: every model needs an object");
  // The planner sizes for the burstiness the scenario declares (unless the model says).
  for (size_t i = 0; i < sc.arrivals.size(); ++i)
    if (sc.arrivals[i].kind == bench::ArrivalSpec::Kind::kGamma &&
        !plan_doc["models"][i].contains("arrival_cv"))
      sc.plan.models[i].arrival_cv = sc.arrivals[i].cv;
  return sc;
}

Result<SimScenario> LoadSimScenario(const std::string& path) {
  TESSERA_ASSIGN_OR_RETURN(auto doc, json_fields::ReadDocument(path));
  return ParseSimScenario(doc, path, std::filesystem::path(path).parent_path().string());
}

}  // namespace tessera::sim
