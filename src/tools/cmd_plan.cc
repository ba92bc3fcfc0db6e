// `tessera plan`: slices per GPU for a set of models (rate, SLO, profile), by Tessera's planner
// or the Nexus / iGniter baselines. See docs/PLANNER.md.
#include <fmt/core.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "tessera/planner/plan.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/provenance.h"

namespace tessera::cli {
namespace {

using nlohmann::json;
using namespace tessera::planner;

struct Opts {
  std::string input;
  SyntheticFlags synthetic;
  int gpus = 0;
  CheckFlags checks;
  std::string policy = "tessera";
  std::string json_out;
  bool verbose = false, quiet = false;
};

void PrintPlan(const Plan& plan, bool verbose) {
  fmt::print("policy {}: {} GPU(s) of {} ({} SMs)\n", PolicyName(plan.policy), plan.gpus_used(),
             plan.gpu.kind, plan.gpu.sms);
  const bool detail = verbose || plan.gpus_used() <= 8;
  if (detail)
    for (const GpuPlan& g : plan.gpus) {
      fmt::print("  gpu {}: {:.1f} SMs used, {} MiB\n", g.index, g.sms_used, g.memory_bytes >> 20);
      for (const Slice& s : g.slices) {
        std::string who;
        for (const auto& m : s.members)
          who +=
              fmt::format("{}{} {:.1f} req/s batch<={} {:.2f}/{:.1f} ms", who.empty() ? "" : "; ",
                          m.model, m.rate_rps, m.max_batch, m.predicted_ms, m.slo_ms);
        fmt::print("    {:6.1f} SMs  {}\n", s.sms, who);
        fmt::print("               why: {}\n", s.why);
      }
    }
  if (!detail) fmt::print("  (--verbose lists every slice)\n");
  for (const auto& u : plan.unplaced) fmt::print("  unplaced: {}: {}\n", u.model, u.reason);
}

int Run(const Opts& o) {
  if (o.input.empty() == (o.synthetic.models == 0))
    return ExitWith(Status::InvalidArgument("give exactly one of --input FILE and --synthetic N"));
  PlanInput in;
  if (!o.input.empty()) {
    auto r = LoadPlanInput(o.input);
    if (!r.ok()) return ExitWith(r.status());
    in = std::move(*r);
    if (o.gpus > 0) in.gpu.count = o.gpus;
  } else {
    in = MakeSyntheticInput(o.synthetic, o.gpus);
  }
  ApplyCheckOptions(o.checks, &in.options);
  auto policies = ParsePolicies(o.policy);
  if (!policies.ok()) return ExitWith(policies.status());
  json out = {{"date", UtcNow()},
              {"commit", Commit()},
              {"machine", Machine()},
              {"input", o.input.empty() ? json{{"synthetic_models", o.synthetic.models},
                                               {"seed", o.synthetic.seed}}
                                        : json(o.input)},
              {"models", in.models.size()},
              {"interference_alpha", in.interference.alpha()},
              {"plans", json::object()}};
  double total_rate = 0;
  for (const auto& m : in.models) total_rate += m.rate_rps;
  int rc = 0;
  std::vector<std::pair<Policy, int>> used;
  for (Policy p : *policies) {
    const auto t0 = std::chrono::steady_clock::now();
    auto plan = MakePlan(in, p);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!plan.ok()) return ExitWith(plan.status());
    const Status check = CheckPlan(in, *plan);
    if (!o.quiet) PrintPlan(*plan, o.verbose);
    fmt::print(
        "{}: {} GPU(s) for {} models, {:.0f} req/s; {} unplaced; planned in {:.1f} ms; "
        "invariants {}\n",
        PolicyName(p), plan->gpus_used(), in.models.size(), total_rate, plan->unplaced.size(), ms,
        check.ok() ? "hold" : "BROKEN: " + check.message());
    if (!check.ok()) rc = 1;
    json j = PlanToJson(*plan);
    j["plan_ms"] = ms;
    j["invariants_hold"] = check.ok();
    if (o.synthetic.models > 0 && !o.verbose) {
      j.erase("gpus");  // synthetic plans at scale: the summary, not every slice
      j.erase("models");
    }
    out["plans"][PolicyName(p)] = std::move(j);
    used.emplace_back(p, plan->gpus_used());
  }
  if (used.size() > 1 && used[0].second > 0)
    for (size_t i = 1; i < used.size(); ++i)
      fmt::print("tessera / {}: {:.3f} of the GPUs\n", PolicyName(used[i].first),
                 used[i].second ? static_cast<double>(used[0].second) / used[i].second : 0.0);
  if (!o.json_out.empty())
    if (int w = WriteJsonFile(o.json_out, out)) return w;
  return rc;
}

}  // namespace

Runner SetupPlan(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.footer(
      "Input file: {\"gpu\": {\"kind\", \"count\", \"sms\", \"granularity_sms\", "
      "\"memory_gib\"}, \"interference\": {\"alpha\"}, optional \"options\": {\"max_utilization\", "
      "\"share_below_utilization\", \"tail_probability\", \"check_attainment\", "
      "\"check_arrivals\", \"check_budget\", \"batch_buckets\": every|pow2}, \"models\": "
      "[{\"name\", \"rate\", "
      "\"slo_ms\", \"profile\": FILE | {...} | \"synthetic\": FAMILY, optional \"arrival_cv\" "
      "(burstiness, 1 = Poisson)}]}. Exit codes: 0 ok, 1 a "
      "plan broke an invariant, 2 bad input, 3 file not found. See docs/PLANNER.md.");
  app.add_option("-i,--input", o->input, "Plan input (JSON)");
  AddSyntheticOptions(app, &o->synthetic, "Plan");
  AddCheckOptions(app, &o->checks);
  app.add_option("--gpus", o->gpus, "GPUs available (overrides the input's gpu.count)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("-p,--policy", o->policy, "tessera, nexus, igniter, gslice, or all")
      ->capture_default_str();
  app.add_option("--json", o->json_out, "Write the plan(s) as JSON, with machine, commit, date");
  app.add_flag("-v,--verbose", o->verbose, "List every slice, and keep them in --json");
  app.add_flag("-q,--quiet", o->quiet, "Only the summary line per policy");
  return [o] { return Run(*o); };
}

}  // namespace tessera::cli
