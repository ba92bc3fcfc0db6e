// Online tuning: what a running plan saw over the last window in, slice changes out.
//
// Two tuners, both pure logic (no clock, no I/O; the caller observes and applies):
//   Tuner            Tessera's: once per window, per model, compares the observed rate with the
//                    capacity of its slices (by the planner's queue check) at the inflation its
//                    GPU shows now. It grows a slice
//                    in place (live resize, make-before-break) or adds a replica when the rate
//                    passes `grow_above` of capacity or attainment falls below the floor, and
//                    shrinks or removes one only after `shrink_windows` windows in a row below
//                    `shrink_below`; new sizes aim at `target_load`. The gap between the bands
//                    and a cool-down after every change are the hysteresis that keeps it from
//                    oscillating. A model that outgrows a shared (duty-cycle) slice moves to a
//                    dedicated one. New slices go best fit onto the GPUs in use, and a GPU left
//                    holding little is emptied onto the others (consolidation), so the fleet
//                    shrinks when the load does.
//   GsliceSelfTuner  GSLICE's per-instance self-tuning (SoCC'20, see ../shared/BASELINES.md):
//                    after every batch, a share recommendation from SLO overflow / headroom or
//                    from the arrival vs service rate, applied after 5 identical ones in a row,
//                    and an adaptive batch limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tessera/planner/interference.h"
#include "tessera/planner/plan.h"

namespace tessera::planner {
namespace detail {
class PoissonTables;
}

// One model's traffic on one slice over the window.
struct MemberObservation {
  size_t model = 0;          // index into PlanInput::models
  double arrival_rps = 0;    // requests routed to this slice, per second
  int64_t finished = 0;      // requests that ended in the window: answered or dropped
  int64_t within_slo = 0;    // of those, answered within the SLO
  double routed_weight = 0;  // the router's current weight for it (0: no longer routed)
};

struct SliceObservation {
  int id = 0;  // the caller's handle, echoed in actions
  int gpu = 0;
  double sms = 0;
  int max_batch = 0;      // dedicated slices: the batcher's limit
  double busy = 0;        // share of the window spent computing
  bool changing = false;  // a resize is in flight: no new action on it
  std::vector<MemberObservation> members;
  // Batches it ran in the window, their mean time (ms) as observed, and the profile's mean
  // time for the same batches alone on a slice of this size: a live interference sample.
  int64_t batches = 0;
  double batch_ms = 0;
  double alone_ms = 0;
};

struct FleetObservation {
  double window_s = 1;
  std::vector<SliceObservation> slices;
  // Per GPU (index 0..gpu.count-1): SMs that no slice holds or has reserved.
  std::vector<double> free_sms;
};

struct TuneAction {
  enum class Kind {
    kResize,  // slice -> sms, max_batch, weight (make-before-break)
    kAdd,     // a new dedicated slice for `model` on `gpu`: sms, max_batch, weight
    kRemove,  // slice: stop routing to it once the model's new slices are ready, drain it,
              // free its SMs
    kRoute,   // slice, model: set the routing weight of that member (0: move off the slice)
  };
  Kind kind = Kind::kResize;
  int slice = -1;
  size_t model = 0;
  int gpu = 0;
  double sms = 0;
  int max_batch = 0;
  double weight = 0;  // routing weight: the slice's capacity for the model, req/s
  std::string why;
};

struct TunerOptions {
  double grow_above = 1.0;  // of capacity (which keeps max_utilization slack): grow past it
  // ... by more than this many standard deviations of a Poisson window count (0: any excess)
  double grow_sigma = 2.5;
  double target_load = 0.95;  // new sizes carry the rate at this share of their capacity
  double shrink_below = 0.7;  // of capacity: shrink after shrink_windows windows below this
  int shrink_windows = 5;
  int cooldown_windows = 3;        // no action on a model for this many windows after one
  double attainment_floor = 0.99;  // a window below this (with enough requests) means grow
  int64_t min_requests = 50;       // fewer finished requests: attainment is not judged
  // A GPU holding at most this share of its SMs is emptied onto the others when they can take
  // its slices (0 turns consolidation off).
  double consolidate_below = 0.4;
  // Online correction of the planner's capacity (off by default, 1): a model whose windows
  // hold trust_attainment near its trusted capacity gains 0.02 of trust per window, up to
  // max_trust, and growth waits until the rate passes capacity x trust; a window below
  // trust_attainment takes 0.1 off. Measured (docs/PLANNER.md): on top of checked capacities
  // 1.3 misses 99.9%; with the closed form it saved a GPU when models peak at different times.
  double max_trust = 1.0;
  double trust_attainment = 0.999;
  // A window below attainment_floor at a rate within capacity lowers the model's trust below 1
  // (capacity is then derated by it for growth, sizes and shrinking), down to min_trust; it
  // recovers by recover_trust a window.
  double min_trust = 0.3;
  double recover_trust = 0.005;
  // Interference learned from the windows (LiveInterference) replaces the plan input's alpha
  // once this many samples are held (0, the default: always the plan input's). Measured
  // (docs/PLANNER.md): it holds the SLO where the GPU interferes far more than told, but costs
  // GPUs where it interferes somewhat more (33 where 26 held the SLO).
  int64_t learn_interference_after = 0;
  // Capacity by the planner's queue check (the largest rate at which the slice's simulated
  // queue meets options.check_attainment at rate / max_utilization, at the typical inflation,
  // scaled to the GPU's by the closed form) instead of the closed form alone.
  bool checked_capacity = true;
  // New slices (replicas, moves to another GPU, a dedicated slice for a model on a shared one,
  // consolidation; in `tessera serve --tune`, instances added and removed live). false: slices
  // only change size in place (and neighbours donate SMs).
  bool add_slices = true;
  // A replica goes onto a GPU not in use only after a missed window or a rate past the slices'
  // raw capacity (capacity / max_utilization); false: as soon as the rate passes capacity.
  bool open_on_evidence = true;
  double open_above = 1.0;  // x raw capacity
  // The words the actions' reasons use for a slice's unit (plural: + "s") and its device:
  // "SM" / "GPU", or "thread" / "CPU" for CPU slices (tessera serve --tune).
  std::string slice_unit = "SM";
  std::string device_name = "GPU";
};

// Interference calibrated from live statistics: every window, each slice that ran at least
// `min_batches` batches gives a sample (its mean batch time against the profile's time alone,
// with its neighbours' pressure from their busy share, size and memory intensity, as the
// planner computes it). Keeps the most recent `capacity` samples; alpha by least squares over
// them (InterferenceModel::Fit) and its prediction error (Evaluate).
class LiveInterference {
 public:
  explicit LiveInterference(size_t capacity = 4096, int64_t min_batches = 3);
  // Adds the window's samples; models are indices into in.models.
  void Observe(const PlanInput& in, const FleetObservation& obs);
  void Add(const CoLocationSample& s);
  // The samples held, oldest first.
  std::vector<CoLocationSample> samples() const;
  size_t size() const { return ring_.size(); }
  // InvalidArgument while no sample has neighbours with pressure > 0.
  Result<InterferenceModel> Fit() const;

 private:
  size_t capacity_;
  int64_t min_batches_;
  std::vector<CoLocationSample> ring_;
  size_t next_ = 0;  // where the next sample goes once the ring is full
};

class Tuner {
 public:
  Tuner(const PlanInput& in, TunerOptions options = {});
  ~Tuner();
  // One window's observation in, the actions to apply now out. Deterministic.
  std::vector<TuneAction> Step(const FleetObservation& obs);
  // Starts each model's trust where the plan put it: a slice the planner sized by a queue check
  // carries more than the closed-form capacity the tuner computes, so without this the tuner
  // would grow it at once. Trust = the largest planned rate / closed-form capacity over the
  // model's dedicated slices (at least 1). Call once, before the first Step.
  void Calibrate(const Plan& plan);
  const TunerOptions& options() const { return opt_; }
  // The interference model in use: the plan input's until enough windows were seen, then the
  // live fit (with learn_interference_after > 0, which is also when the windows are observed).
  const InterferenceModel& interference() const { return interference_; }
  const LiveInterference& live_interference() const { return live_; }

 private:
  struct ModelState {
    double rate = -1;       // smoothed: follows a rise at once, a fall slowly
    double trust = 1;       // learned multiplier on the planner's capacity
    double calibrated = 1;  // where Calibrate started it
    int low_windows = 0;
    int cooldown = 0;
  };
  // A slice's capacity (req/s) for model mi at inflation f; *mb gets its batch limit.
  double Capacity(size_t mi, double sms, double f, int* mb);
  struct Checked {
    double rps = 0;     // the checked capacity at f_typical_
    double closed = 0;  // the closed form's there, to move it to another inflation
  };
  const Checked& CheckedCapacity(size_t mi, double sms);  // cached

  const PlanInput& in_;
  TunerOptions opt_;
  std::map<std::pair<size_t, int>, Checked> checked_;  // by (model, SMs)
  InterferenceModel interference_;
  LiveInterference live_;
  double mean_intensity_ = 0;
  int usable_sms_ = 0;
  double f_typical_ = 1;
  std::vector<ModelState> state_;
  int consolidate_wait_ = 0;
  std::unique_ptr<detail::PoissonTables> tables_;  // built once, not every window
};

// GSLICE's self-tuning of one instance. Shares are fractions of the GPU (0.05..1).
class GsliceSelfTuner {
 public:
  struct Advice {
    bool resize = false;  // apply `share` now (5 identical recommendations in a row)
    double share = 0;
    int max_batch = 1;
  };
  GsliceSelfTuner(double share, int max_batch, int profile_max_batch);
  // After a batch of `batch` requests whose oldest request waited and ran for `latency_ms`
  // (inference alone: `infer_ms`), with requests arriving at `arrival_rps` and the instance
  // able to serve `service_rps` (batches at its limit, back to back, at its current share).
  Advice OnBatch(double latency_ms, double infer_ms, int batch, double arrival_rps,
                 double service_rps, double slo_ms);
  // The caller applied (or clamped) a resize.
  void SetShare(double share) { share_ = share; }
  double share() const { return share_; }
  int max_batch() const { return max_batch_; }

 private:
  double share_;
  int max_batch_;
  int batch_cap_;
  int streak_ = 0;  // consecutive identical recommendations
  double last_target_ = 0;
};

}  // namespace tessera::planner
