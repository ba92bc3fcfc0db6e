#include "tools/cli_util.h"

#include <fmt/core.h>

#include <fstream>

#include "tessera/planner/synthetic.h"

namespace tessera::cli {

int ExitWith(const Status& st) {
  fmt::print(stderr, "error: {}\n", st.ToString());
  if (st.code() == StatusCode::kNotFound) return 3;
  if (st.code() == StatusCode::kInvalidArgument) return 2;
  return 1;
}

int WriteJsonFile(const std::string& path, const nlohmann::json& doc) {
  std::ofstream f(path);
  if (!f) return ExitWith(Status::NotFound("cannot write " + path));
  f << doc.dump(2) << "\n";
  return f ? 0 : ExitWith(Status::Internal("writing " + path + " failed"));
}

void AddSyntheticOptions(CLI::App& app, SyntheticFlags* f, const std::string& verb) {
  app.add_option("--synthetic", f->models, verb + " N synthetic models instead (see --seed)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--total-rate", f->total_rate,
                 fmt::format("Total req/s of the synthetic models (default {} per model)",
                             SyntheticFlags::kDefaultRatePerModel))
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", f->seed, "Seed of the synthetic workload");
  app.add_option("--granularity", f->granularity_sms,
                 "SM granularity of the synthetic GPUs' slices (default 8: Hopper's green-context "
                 "groups)")
      ->check(CLI::Range(1, 132));
}

void AddCheckOptions(CLI::App& app, CheckFlags* f) {
  app.add_option("--check-attainment", f->attainment,
                 "Tessera: the share of requests each slice's simulated queue must answer within "
                 "SLO (default: the input's options.check_attainment, or 0.999; 0: closed-form "
                 "sizing only)")
      ->check(CLI::Range(0.0, 0.999999));
  app.add_option("--check-budget", f->budget,
                 "Tessera: requests its queue checks may simulate in one plan, largest models "
                 "first (default: the input's options.check_budget, or 2e7: about half a second)")
      ->check(CLI::Range(0.0, 1e15));
}

void ApplyCheckOptions(const CheckFlags& f, planner::PlanOptions* o) {
  if (f.attainment >= 0) o->check_attainment = f.attainment;
  if (f.budget >= 0) o->check_budget = static_cast<int64_t>(f.budget);
}

planner::PlanInput MakeSyntheticInput(const SyntheticFlags& f, int gpus) {
  planner::GpuSpec gpu;
  gpu.count = gpus > 0 ? gpus : 1000000;
  gpu.granularity_sms = f.granularity_sms;
  const double total =
      f.total_rate > 0 ? f.total_rate : SyntheticFlags::kDefaultRatePerModel * f.models;
  return planner::SyntheticPlanInput(f.models, total, f.seed, gpu);
}

}  // namespace tessera::cli
