// A discrete-event simulator of a planned fleet on a virtual clock: requests arrive (open loop,
// any arrival process of `tessera bench`), are routed to their model's slices in proportion to
// the plan's rates, wait in per-model deadline queues, run in batches whose time is drawn from
// the model's profile, slowed by the neighbours running on the same GPU at that moment, and are
// counted as answered within SLO, late, or dropped before dispatch.
//
// The batching rule is the runtime's (runtime/model_queue.h): when a slice is free it drops the
// requests that can no longer make their deadline, then runs the largest batch (up to the
// plan's max batch) whose predicted latency still meets the earliest deadline. A batch runs on
// an executable per batch size by default (CUDA graphs captured per size); with
// `batch_buckets = kPow2` it is padded, as the CPU server pads it, to the smallest bucket that
// holds it (powers of two below the max batch, and the max batch) and charged that bucket's
// time. A slice shared by several models serves them round-robin. Every policy's plan runs on this
// same runtime, so the comparison is between plans. Single-threaded; deterministic for a seed.
//
// Online tuning (planner/tuner.h): with `tune.enabled`, Tessera's tuner observes every slice
// once per `tune.interval_s` and its actions are applied as the server applies a live resize:
// make-before-break, the new size ready `tune.resize_delay_s` later and taking over at the
// slice's next batch boundary, grown SMs reserved from the moment of the decision, shrunk ones
// freed at the flip. A GSLICE plan always runs GSLICE's self-tuning after every batch, with
// the same resize delay (its standby process).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/bench/arrivals.h"
#include "tessera/bench/histogram.h"
#include "tessera/planner/plan.h"
#include "tessera/planner/tuner.h"

namespace tessera::sim {

struct SimScenario {
  planner::PlanInput plan;                   // GPUs, interference, models (rate, SLO, profile)
  std::vector<bench::ArrivalSpec> arrivals;  // one per plan.models, its rate = the model's rate
  // Per model (empty: all 0): a fixed delay, in ms, added to every answered request's latency
  // outside the slice: the network, the client and the server's work around the queue. It
  // counts against the SLO as a client sees it; the batching rule (the server's) does not see
  // it. Calibrated from measurements by bench/sim_fidelity.py.
  std::vector<double> transit_ms;
  // Executables a batch can run on: one per batch size, or powers of two below the max batch
  // plus the max batch (what `tessera serve` compiles today; a batch of 5 then costs 8).
  enum class Buckets { kEvery, kPow2 } batch_buckets = Buckets::kEvery;
  double duration_s = 60;
  double warmup_s = 5;  // arrivals before this are served but not counted
  uint64_t seed = 1;
  // Offered load relative to the planned rates (1: as planned). The plan is made for the
  // nominal rates; the simulation sends load x those.
  double load = 1.0;
  // The GPU's real interference when it differs from what the planner is told
  // (plan.interference): the simulated slices slow down by this alpha while the planner and the
  // tuner start from the plan's. < 0: the plan's.
  double actual_alpha = -1;
  struct Tune {
    bool enabled = false;         // run Tessera's online tuner on a tessera plan
    double interval_s = 1.0;      // observation window (also the timeline's step)
    double resize_delay_s = 0.2;  // decision to a ready new slice (contexts, graphs, warm-up)
    planner::TunerOptions options;
  } tune;
};

// One observation window of the whole fleet (the timeline; every `tune.interval_s`).
struct WindowPoint {
  double t_s = 0;        // end of the window
  int64_t sent = 0;      // arrivals in the window
  int64_t ok = 0;        // answered within SLO in the window
  int64_t finished = 0;  // answered or dropped in the window
  double sms = 0;        // SMs held (reserved included) at its end
  int gpus = 0;          // GPUs holding a slice at its end
};

struct ModelOutcome {
  std::string name;
  int64_t sent = 0;             // arrivals counted (after warm-up)
  int64_t ok = 0;               // answered within SLO
  int64_t late = 0;             // answered after the SLO
  int64_t dropped = 0;          // dropped before dispatch, never placed, or still queued at the end
  bench::Histogram latency_ns;  // answered requests
  double slo_ms = 0;
  double attainment() const { return sent ? static_cast<double>(ok) / sent : 1.0; }
};

struct SimResult {
  std::vector<ModelOutcome> models;
  ModelOutcome total;
  double simulated_s = 0;  // counted span (duration - warm-up)
  double wall_s = 0;       // real time the simulation took
  int64_t requests = 0;    // every arrival simulated, warm-up included
  int64_t batches = 0;
  // Fleet size over the run (slices may grow, appear and go when tuning).
  int peak_gpus = 0;
  double mean_gpus = 0;  // time-averaged over the counted span
  int64_t resizes = 0;   // live resizes applied (both directions)
  int64_t replicas_added = 0, replicas_removed = 0;
  std::vector<WindowPoint> timeline;
  std::vector<std::string> actions;  // the tuner's actions with their reasons (first 1000)
  // Interference calibrated from live statistics: every window's slice samples (observed batch
  // time, the profile's alone, neighbours' pressure; planner::LiveInterference), at most
  // kInterferenceSamples of them, and what they say.
  static constexpr size_t kInterferenceSamples = 16384;
  std::vector<planner::CoLocationSample> interference_samples;
  struct InterferenceFit {
    int64_t samples = 0;
    double planner_alpha = 0, actual_alpha = 0;
    bool fitted = false;                                // false: no sample had neighbours
    double alpha = 0;                                   // the live fit
    planner::PredictionError fit_error, planner_error;  // on the samples
  } interference;
  double goodput_rps() const { return simulated_s > 0 ? total.ok / simulated_s : 0; }
};

// Runs `plan` (made from scenario.plan) against the scenario's load. InvalidArgument when the
// plan names a model the scenario lacks or the arrivals do not match the models.
Result<SimResult> Simulate(const SimScenario& scenario, const planner::Plan& plan);

// Scenario file: a plan input (planner/plan.h) plus "duration_s", "warmup_s", "seed", "load",
// optionally "tune": {"enabled", "interval_s", "resize_delay_s", "grow_above", "target_load",
// "shrink_below", "shrink_windows", "cooldown_windows", "attainment_floor", "max_trust",
// "learn_interference_after", "grow_sigma"}, "actual_interference": {"alpha"},
// and per model the arrival fields of `tessera bench` scenarios ("arrival", "cv", "burst_*",
// "diurnal_*", "trace") and "transit_ms"; "batch_buckets": "every" | "pow2". Errors name the
// field.
Result<SimScenario> ParseSimScenario(const nlohmann::json& doc, const std::string& what,
                                     const std::string& base_dir);
Result<SimScenario> LoadSimScenario(const std::string& path);
// The tuner's bands must leave a gap (shrink_below < target_load < grow_above <= 1).
Status ValidateTune(const SimScenario::Tune& tune, const std::string& where);

}  // namespace tessera::sim
