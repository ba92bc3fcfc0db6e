// Small helpers the `tessera` subcommands share.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "tessera/core/status.h"
#include "tessera/planner/plan.h"

namespace tessera::cli {

// Prints "error: CODE: message" on stderr and returns the exit code: 3 when something was not
// found, 2 for bad input, 1 otherwise.
int ExitWith(const Status& st);

// Writes `doc` (indented) to `path`; 0, or ExitWith(NotFound) when it cannot be written.
int WriteJsonFile(const std::string& path, const nlohmann::json& doc);

// The synthetic-workload flags of `plan` and `simulate`.
struct SyntheticFlags {
  int models = 0;         // 0: not asked for
  double total_rate = 0;  // 0: kDefaultRatePerModel per model
  uint64_t seed = 1;
  int granularity_sms = 8;  // the synthetic GPU's slice granularity
  static constexpr double kDefaultRatePerModel = 1500;
};
void AddSyntheticOptions(CLI::App& app, SyntheticFlags* f, const std::string& verb);
// The synthetic plan input on H100-like GPUs; `gpus` <= 0: as many as it takes.
planner::PlanInput MakeSyntheticInput(const SyntheticFlags& f, int gpus);

// Tessera's queue-check options, shared by `plan` and `simulate` (< 0: the input's).
struct CheckFlags {
  double attainment = -1;
  double budget = -1;
};
void AddCheckOptions(CLI::App& app, CheckFlags* f);
void ApplyCheckOptions(const CheckFlags& f, planner::PlanOptions* o);

}  // namespace tessera::cli
