// Synthetic profiles and workloads, for planning and simulating at scales no test machine has.
//
// The latency model is a parallelism-limited roofline: a batch of b samples does b * work units
// (ms on a fully used GPU of `gpu_sms` SMs) but can keep only about `parallel_sms` SMs busy per
// sample, so on a slice of s SMs the effective SMs are u = s * (1 - exp(-parallel_sms * b / s)):
//   mean(b, s) = launch_ms + work_ms * b * gpu_sms / u(b, s)
// Small batches stop getting faster beyond a knee (u ~ parallel_sms * b), large batches scale
// with the slice (u ~ s), as measured slices behave (e.g. GSLICE's V100 ResNet-50: 7.7 ms at
// 10%, 4.3 ms at 20%, 3.0 ms at 40%, 2.5 ms at 100%). std = cv * mean; p99 = mean + 2.326 std.
// All functions are pure and deterministic for a given seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/planner/profile.h"

namespace tessera::planner {

struct SyntheticModel {
  std::string name;
  double launch_ms = 0.2;      // fixed per-batch cost (kernel launches, small kernels)
  double work_ms = 0.2;        // per sample, on the whole GPU at full parallelism
  double parallel_sms = 32;    // SMs one sample keeps busy
  double mem_intensity = 0.3;  // see profile.h
  int64_t memory_bytes = 256ll << 20;
  double cv = 0.03;  // std / mean of a batch's latency
};

// A named family with H100-like numbers (fp16): resnet18, resnet50, mobilenet_v2, vgg16,
// efficientnet_b0, densenet121, bert_base, distilbert, vit_b16. NotFound lists the names.
Result<SyntheticModel> SyntheticFamily(const std::string& family);
std::vector<std::string> SyntheticFamilies();

// The profile grid: slices at every multiple of `granularity_sms` up to gpu_sms, plus gpu_sms
// itself; batches 1, 2, 4, ..., max_batch.
Profile MakeSyntheticProfile(const SyntheticModel& m, const std::string& gpu, int gpu_sms,
                             int granularity_sms, int max_batch = 64);

// A model of a workload: a profile plus its request rate and SLO.
struct WorkloadModel {
  std::string name;
  double rate_rps = 0;
  double slo_ms = 0;
  SyntheticModel params;
};

// `n` models drawn from the families with a seeded generator: per-sample work scaled by a
// log-normal factor (sigma 0.4), SLOs of 4-20x the model's batch-1 latency on a whole GPU (at
// least 5 ms), and rates Zipf-like (exponent 0.9) summing to `total_rate_rps`.
std::vector<WorkloadModel> SyntheticWorkload(int n, double total_rate_rps, uint64_t seed,
                                             int gpu_sms);

struct PlanInput;
struct GpuSpec;
// A plan input of `n` synthetic models (SyntheticWorkload) on GPUs like `gpu`, profiles made
// with MakeSyntheticProfile.
PlanInput SyntheticPlanInput(int n, double total_rate_rps, uint64_t seed, const GpuSpec& gpu);

}  // namespace tessera::planner
