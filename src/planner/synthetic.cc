#include "tessera/planner/synthetic.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "tessera/planner/plan.h"

namespace tessera::planner {
namespace {

struct Family {
  const char* name;
  double launch_ms, work_ms, parallel_sms, mem_intensity;
  int64_t memory_mib;
};

// Per-sample work is sized from FLOPs at roughly 40% of an H100's dense fp16 rate; parallelism
// from how many SMs batch 1 fills; memory is weights + a batch-64 activation arena.
constexpr Family kFamilies[] = {
    {"resnet18", 0.15, 0.020, 24, 0.30, 140},        {"resnet50", 0.30, 0.045, 40, 0.35, 420},
    {"mobilenet_v2", 0.25, 0.006, 10, 0.55, 160},    {"vgg16", 0.20, 0.170, 80, 0.25, 900},
    {"efficientnet_b0", 0.35, 0.008, 12, 0.50, 190}, {"densenet121", 0.45, 0.032, 28, 0.40, 380},
    {"bert_base", 0.35, 0.230, 60, 0.30, 700},       {"distilbert", 0.20, 0.115, 48, 0.30, 400},
    {"vit_b16", 0.30, 0.190, 64, 0.30, 650},
};

}  // namespace

std::vector<std::string> SyntheticFamilies() {
  std::vector<std::string> out;
  for (const auto& f : kFamilies) out.push_back(f.name);
  return out;
}

Result<SyntheticModel> SyntheticFamily(const std::string& family) {
  for (const auto& f : kFamilies)
    if (family == f.name) {
      SyntheticModel m;
      m.name = f.name;
      m.launch_ms = f.launch_ms;
      m.work_ms = f.work_ms;
      m.parallel_sms = f.parallel_sms;
      m.mem_intensity = f.mem_intensity;
      m.memory_bytes = f.memory_mib << 20;
      return m;
    }
  std::string list;
  for (const auto& f : kFamilies) list += (list.empty() ? "" : ", ") + std::string(f.name);
  return Status::NotFound("no synthetic family '" + family + "' (known: " + list + ")");
}

Profile MakeSyntheticProfile(const SyntheticModel& m, const std::string& gpu, int gpu_sms,
                             int granularity_sms, int max_batch) {
  std::vector<int> sms;
  for (int s = granularity_sms; s < gpu_sms; s += granularity_sms) sms.push_back(s);
  sms.push_back(gpu_sms);
  std::vector<LatencyPoint> pts;
  for (int s : sms)
    for (int b = 1; b <= max_batch; b *= 2) {
      const double u = s * (1 - std::exp(-m.parallel_sms * b / s));
      LatencyPoint p;
      p.sms = s;
      p.batch = b;
      p.mean_ms = m.launch_ms + m.work_ms * b * gpu_sms / u;
      p.std_ms = m.cv * p.mean_ms;
      p.p99_ms = p.mean_ms + 2.326 * p.std_ms;
      pts.push_back(p);
    }
  auto prof = Profile::FromPoints(m.name, gpu, gpu_sms, m.memory_bytes, m.mem_intensity,
                                  std::move(pts), "synthetic");
  return std::move(prof).value();  // the grid above is full and valid by construction
}

std::vector<WorkloadModel> SyntheticWorkload(int n, double total_rate_rps, uint64_t seed,
                                             int gpu_sms) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, std::size(kFamilies) - 1);
  std::lognormal_distribution<double> scale(0.0, 0.4);
  std::uniform_real_distribution<double> slo_mult(4.0, 20.0);
  std::vector<WorkloadModel> out;
  std::vector<double> weight;
  double wsum = 0;
  for (int i = 0; i < n; ++i) {
    const Family& f = kFamilies[pick(rng)];
    WorkloadModel w;
    w.params = SyntheticFamily(f.name).value();
    w.params.work_ms *= scale(rng);
    w.params.name = std::string(f.name) + "-" + std::to_string(i);
    w.name = w.params.name;
    const auto& p = w.params;
    const double u1 = gpu_sms * (1 - std::exp(-p.parallel_sms / gpu_sms));
    const double b1_ms = p.launch_ms + p.work_ms * gpu_sms / u1;
    w.slo_ms = std::max(5.0, std::round(b1_ms * slo_mult(rng) * 10) / 10);
    // Zipf-like popularity over a shuffled rank, so family and rank are independent.
    weight.push_back(1.0 / std::pow(1.0 + i, 0.9));
    wsum += weight.back();
    out.push_back(std::move(w));
  }
  std::shuffle(weight.begin(), weight.end(), rng);
  for (int i = 0; i < n; ++i) out[i].rate_rps = total_rate_rps * weight[i] / wsum;
  return out;
}

PlanInput SyntheticPlanInput(int n, double total_rate_rps, uint64_t seed, const GpuSpec& gpu) {
  PlanInput in;
  in.gpu = gpu;
  for (auto& w : SyntheticWorkload(n, total_rate_rps, seed, gpu.sms)) {
    ModelDemand d;
    d.name = w.name;
    d.rate_rps = w.rate_rps;
    d.slo_ms = w.slo_ms;
    d.profile = MakeSyntheticProfile(w.params, gpu.kind, gpu.sms, gpu.granularity_sms);
    in.models.push_back(std::move(d));
  }
  return in;
}

}  // namespace tessera::planner
