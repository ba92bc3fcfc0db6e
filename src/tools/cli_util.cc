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
}

planner::PlanInput MakeSyntheticInput(const SyntheticFlags& f, int gpus) {
  planner::GpuSpec gpu;
  gpu.count = gpus > 0 ? gpus : 1000000;
  const double total =
      f.total_rate > 0 ? f.total_rate : SyntheticFlags::kDefaultRatePerModel * f.models;
  return planner::SyntheticPlanInput(f.models, total, f.seed, gpu);
}

}  // namespace tessera::cli
