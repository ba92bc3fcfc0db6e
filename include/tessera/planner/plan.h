// The planner: models (rate, SLO, profile) and GPUs in, slices per GPU out.
//
// `MakePlan` is a pure, deterministic function: the same input gives the same plan, byte for
// byte once written as JSON. Four policies share the input, the profiles, the interference
// model and the output form, so their plans compare directly:
//   tessera  spatial slices in multiples of the GPU's SM granularity (green contexts); each
//            model gets the smallest slice that carries its rate within SLO, replicas when one
//            GPU is not enough; low-rate models share a slice round-robin (duty cycle); slices
//            are packed best-fit with an interference check on every GPU they touch.
//   nexus    Nexus' squishy bin packing (SOSP'19): whole-GPU time sharing, saturated GPUs at the
//            largest batch with l(b) <= SLO/2, residual sessions merged by duty cycle.
//   igniter  iGniter's greedy provisioning (TPDS'23): GPU share in 2.5% steps from an SLO/2
//            budget, largest first onto the GPU that needs the least added share after raising
//            neighbours against interference.
//   gslice   GSLICE's admission (SoCC'20): each instance gets its knee share (5% steps) or
//            more when its rate needs it, first fit; it then tunes shares and batches itself
//            while it runs (tuner.h, GsliceSelfTuner), which the simulator applies.
// See docs/PLANNER.md for the latency model each one assumes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/json_fields.h"
#include "tessera/core/status.h"
#include "tessera/planner/interference.h"
#include "tessera/planner/profile.h"

namespace tessera::planner {

struct GpuSpec {
  std::string kind = "H100-SXM";
  int count = 1;  // GPUs available; a plan that needs more lists the rest unplaced
  int sms = 132;
  int granularity_sms = 8;  // green-context SM group size (Hopper: 8)
  int64_t memory_bytes = 80ll << 30;
};

struct ModelDemand {
  std::string name;
  double rate_rps = 0;
  double slo_ms = 0;
  Profile profile;
  // Burstiness of its arrivals: the coefficient of variation of the gaps (1: Poisson). Tessera
  // sizes batches for the over-dispersed counts; the baselines ignore it, as published.
  double arrival_cv = 1;
};

struct PlanOptions {
  // Highest planned utilisation of a slice's capacity: the rest absorbs bursts.
  double max_utilization = 0.9;
  // A model whose smallest slice would be busy less than this shares a slice (tessera).
  double share_below_utilization = 0.5;
  // Tessera sizes batches so that the requests arriving (Poisson) during one batch overflow the
  // next batch with at most this probability: the tail the SLO may miss.
  double tail_probability = 0.1;
  // Tessera checks each dedicated slice by simulating its queue with the runtime's batching rule
  // and shrinks it to the smallest size that still answers this share of requests within SLO
  // (0: closed-form sizing only). `check_arrivals` requests per check; `check_budget` caps the
  // requests simulated for one plan (largest slices first), which bounds the planning time.
  double check_attainment = 0.999;
  int check_arrivals = 20000;
  int64_t check_budget = 20'000'000;
  // The runtime pads a batch to the smallest power-of-two executable that holds it (and the max
  // batch), as the CPU server does: the queue checks then cost a batch its bucket's latency.
  bool pow2_buckets = false;
};

struct PlanInput {
  GpuSpec gpu;
  std::vector<ModelDemand> models;
  InterferenceModel interference;
  PlanOptions options;
};

enum class Policy { kTessera, kNexus, kIgniter, kGslice };
// "tessera" | "nexus" | "igniter" | "gslice"
Result<Policy> ParsePolicy(const std::string& name);
// ParsePolicy, or "all": the four in that order.
Result<std::vector<Policy>> ParsePolicies(const std::string& name);
const char* PolicyName(Policy p);

// SMs a GPU offers to slices under a policy: whole green-context granules for tessera (132 SMs
// leave 128 on Hopper), every SM for the share-based and time-sharing baselines.
inline int UsableSms(const GpuSpec& g, Policy p) {
  return p == Policy::kTessera ? g.sms / g.granularity_sms * g.granularity_sms : g.sms;
}

// One model's part of a slice.
struct SliceMember {
  std::string model;
  double rate_rps = 0;  // the rate routed to this slice
  double slo_ms = 0;
  int max_batch = 0;        // the batcher's limit on this slice
  double predicted_ms = 0;  // worst-case latency (queueing + batch) at the planned inflation
};

struct Slice {
  double sms = 0;            // whole SMs for tessera; fractional shares for igniter; GPU for nexus
  double duty_cycle_ms = 0;  // > 0: members take turns within this cycle (time sharing)
  double busy = 0;           // planned share of time the slice computes
  double pressure = 0;       // its interference pressure on neighbours
  double inflation = 1;      // predicted slow-down from its neighbours
  int64_t memory_bytes = 0;
  std::vector<SliceMember> members;
  std::string why;  // one line: why this size and batch
};

struct GpuPlan {
  int index = 0;
  double sms_used = 0;
  int64_t memory_bytes = 0;
  std::vector<Slice> slices;
};

struct ModelPlan {
  std::string model;
  int slices = 0;          // replicas (0 when unplaced)
  double planned_rps = 0;  // capacity planned for it
  std::string why;
};

// A model (or some of its slices) the plan could not place, and why.
struct Unplaced {
  std::string model;
  std::string reason;
};

struct Plan {
  Policy policy = Policy::kTessera;
  GpuSpec gpu;
  std::vector<GpuPlan> gpus;  // only GPUs with slices
  std::vector<ModelPlan> models;
  std::vector<Unplaced> unplaced;
  int gpus_used() const { return static_cast<int>(gpus.size()); }
};

// Fails only on invalid input (InvalidArgument naming the model): a non-positive rate or SLO,
// or a profile for a different SM count than the GPU. Models that cannot meet their SLO even
// on a whole GPU, and demand beyond gpu.count GPUs, end up in `unplaced`, not in an error.
Result<Plan> MakePlan(const PlanInput& in, Policy policy);

// The invariants every plan keeps (used by tests and by `tessera plan --check`): no GPU over
// its SMs or memory; tessera slices in whole granules; every placed member's predicted latency
// within its SLO; every placed model's planned capacity >= its rate. Returns the first broken
// one.
Status CheckPlan(const PlanInput& in, const Plan& plan);

// Input file: {"gpu": {...}, "interference": {"alpha": a}, "options": {...}, "models": [{"name",
// "rate", "slo_ms", and one of "profile" (inline object or a file path relative to base_dir)
// or "synthetic" (a family name)}]}. Errors name the field.
Result<PlanInput> ParsePlanInput(const nlohmann::json& doc, const std::string& what,
                                 const std::string& base_dir);
Result<PlanInput> LoadPlanInput(const std::string& path);
nlohmann::json PlanToJson(const Plan& plan);

}  // namespace tessera::planner
