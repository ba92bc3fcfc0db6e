// `tessera plan`: slices per GPU for a set of models (rate, SLO, profile), by Tessera's planner
// or the Nexus / iGniter baselines. See docs/PLANNER.md.
#include <fmt/core.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tessera/planner/plan.h"
#include "tessera/planner/synthetic.h"
#include "tools/commands.h"
#include "tools/provenance.h"

namespace tessera::cli {
namespace {

using nlohmann::json;
using namespace tessera::planner;

struct Opts {
  std::string input;
  int synthetic = 0;
  double total_rate = 0;
  uint64_t seed = 1;
  int gpus = 0;
  std::string policy = "tessera";
  std::string json_out;
  bool verbose = false, quiet = false;
};

int Fail(const Status& st) {
  fmt::print(stderr, "error: {}\n", st.ToString());
  if (st.code() == StatusCode::kNotFound) return 3;
  if (st.code() == StatusCode::kInvalidArgument) return 2;
  return 1;
}

PlanInput SyntheticInput(const Opts& o) {
  GpuSpec gpu;
  gpu.count = o.gpus > 0 ? o.gpus : 1000000;
  // Default load: about 1,500 req/s per model, a few hundred GPUs' worth at 5,000 models.
  const double total = o.total_rate > 0 ? o.total_rate : 1500.0 * o.synthetic;
  return SyntheticPlanInput(o.synthetic, total, o.seed, gpu);
}

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
  for (const auto& u : plan.unplaced) fmt::print("  unplaced: {}\n", u);
}

int Run(const Opts& o) {
  if (o.input.empty() == (o.synthetic == 0))
    return Fail(Status::InvalidArgument("give exactly one of --input FILE and --synthetic N"));
  PlanInput in;
  if (!o.input.empty()) {
    auto r = LoadPlanInput(o.input);
    if (!r.ok()) return Fail(r.status());
    in = std::move(*r);
    if (o.gpus > 0) in.gpu.count = o.gpus;
  } else {
    in = SyntheticInput(o);
  }
  std::vector<Policy> policies;
  if (o.policy == "all") {
    policies = {Policy::kTessera, Policy::kNexus, Policy::kIgniter};
  } else {
    auto p = ParsePolicy(o.policy);
    if (!p.ok()) return Fail(p.status());
    policies = {*p};
  }
  json out = {{"date", UtcNow()},
              {"commit", Commit()},
              {"machine", Machine()},
              {"input", o.input.empty() ? json{{"synthetic_models", o.synthetic}, {"seed", o.seed}}
                                        : json(o.input)},
              {"models", in.models.size()},
              {"interference_alpha", in.interference.alpha()},
              {"plans", json::object()}};
  double total_rate = 0;
  for (const auto& m : in.models) total_rate += m.rate_rps;
  int rc = 0;
  std::vector<std::pair<Policy, int>> used;
  for (Policy p : policies) {
    const auto t0 = std::chrono::steady_clock::now();
    auto plan = MakePlan(in, p);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!plan.ok()) return Fail(plan.status());
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
    if (o.synthetic > 0 && !o.verbose) {
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
  if (!o.json_out.empty()) {
    std::ofstream f(o.json_out);
    if (!f) return Fail(Status::NotFound("cannot write " + o.json_out));
    f << out.dump(2) << "\n";
  }
  return rc;
}

}  // namespace

Runner SetupPlan(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.footer(
      "Input file: {\"gpu\": {\"kind\", \"count\", \"sms\", \"granularity_sms\", "
      "\"memory_gib\"}, \"interference\": {\"alpha\"}, \"models\": [{\"name\", \"rate\", "
      "\"slo_ms\", \"profile\": FILE | {...} | \"synthetic\": FAMILY}]}. Exit codes: 0 ok, 1 a "
      "plan broke an invariant, 2 bad input, 3 file not found. See docs/PLANNER.md.");
  app.add_option("-i,--input", o->input, "Plan input (JSON)");
  app.add_option("--synthetic", o->synthetic, "Plan N synthetic models instead (see --seed)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--total-rate", o->total_rate,
                 "Total req/s of the synthetic models (default 1500 per model)")
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", o->seed, "Seed of the synthetic workload");
  app.add_option("--gpus", o->gpus, "GPUs available (overrides the input's gpu.count)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("-p,--policy", o->policy, "tessera, nexus, igniter, or all")
      ->capture_default_str();
  app.add_option("--json", o->json_out, "Write the plan(s) as JSON, with machine, commit, date");
  app.add_flag("-v,--verbose", o->verbose, "List every slice, and keep them in --json");
  app.add_flag("-q,--quiet", o->quiet, "Only the summary line per policy");
  return [o] { return Run(*o); };
}

}  // namespace tessera::cli
