// `tessera simulate`: plans a scenario with a policy and runs the plan on the discrete-event
// simulator (virtual clock), reporting GPUs used, SLO attainment and goodput. See
// docs/PLANNER.md.
#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "tessera/sim/simulator.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/provenance.h"

namespace tessera::cli {
namespace {

using nlohmann::json;
using namespace tessera::planner;
using namespace tessera::sim;

struct Opts {
  std::string scenario;
  SyntheticFlags synthetic;
  std::string arrival = "poisson";
  double duration = -1, warmup = -1, load = -1;
  std::string policy = "tessera";
  double target = 0;          // > 0: search each policy's planning headroom for this attainment
  double model_floor = 0.99;  // with a target: every model must also reach this
  CheckFlags checks;
  bool tune = false;
  double tune_interval = -1, resize_delay = -1;
  bool show_actions = false;
  double max_trust = 0;
  double actual_alpha = -1;               // < 0: the scenario's
  int64_t learn_interference_after = -1;  // < 0: the scenario's
  std::string batch_buckets;              // empty: the scenario's
  std::string json_out;
  bool quiet = false;
};

json Summary(const ModelOutcome& o, double span_s) {
  const auto& h = o.latency_ns;
  return {{"model", o.name},
          {"slo_ms", o.slo_ms},
          {"sent", o.sent},
          {"ok", o.ok},
          {"late", o.late},
          {"dropped", o.dropped},
          {"slo_attainment", o.attainment()},
          {"goodput_rps", span_s > 0 ? o.ok / span_s : 0},
          {"p50_ms", h.Percentile(50) / 1e6},
          {"p99_ms", h.Percentile(99) / 1e6}};
}

int Run(const Opts& o) {
  if (o.scenario.empty() == (o.synthetic.models == 0))
    return ExitWith(
        Status::InvalidArgument("give exactly one of --scenario FILE and --synthetic N"));
  SimScenario sc;
  if (!o.scenario.empty()) {
    auto r = LoadSimScenario(o.scenario);
    if (!r.ok()) return ExitWith(r.status());
    sc = std::move(*r);
  } else {
    sc.plan = MakeSyntheticInput(o.synthetic, 0);
    auto kind = bench::ParseKind(o.arrival);
    if (!kind.ok() || *kind == bench::ArrivalSpec::Kind::kTrace)
      return ExitWith(
          Status::InvalidArgument("--arrival: expected constant, poisson, gamma, bursty "
                                  "or diurnal"));
    for (size_t i = 0; i < sc.plan.models.size(); ++i) {
      const auto& m = sc.plan.models[i];
      bench::ArrivalSpec a;
      a.kind = *kind;
      a.rate = m.rate_rps;
      a.cv = 2;
      a.diurnal_period_s = 600;
      // Models peak at different times (golden-ratio spaced phases): what a tuner can exploit.
      a.diurnal_phase = std::fmod(0.618034 * static_cast<double>(i), 1.0);
      if (a.kind == bench::ArrivalSpec::Kind::kGamma) sc.plan.models[i].arrival_cv = a.cv;
      sc.arrivals.push_back(a);
    }
    sc.seed = o.synthetic.seed;
  }
  if (o.duration > 0) sc.duration_s = o.duration;
  if (o.warmup >= 0) sc.warmup_s = o.warmup;
  if (o.load > 0) sc.load = o.load;
  if (sc.warmup_s >= sc.duration_s)
    return ExitWith(Status::InvalidArgument("--warmup must be below --duration"));
  ApplyCheckOptions(o.checks, &sc.plan.options);
  if (o.tune) sc.tune.enabled = true;
  if (o.tune_interval > 0) sc.tune.interval_s = o.tune_interval;
  if (o.resize_delay >= 0) sc.tune.resize_delay_s = o.resize_delay;
  if (o.max_trust >= 1) sc.tune.options.max_trust = o.max_trust;
  if (o.actual_alpha >= 0) sc.actual_alpha = o.actual_alpha;
  if (o.learn_interference_after >= 0)
    sc.tune.options.learn_interference_after = o.learn_interference_after;
  if (!o.batch_buckets.empty())
    sc.batch_buckets =
        o.batch_buckets == "pow2" ? SimScenario::Buckets::kPow2 : SimScenario::Buckets::kEvery;
  sc.plan.options.pow2_buckets = sc.batch_buckets == SimScenario::Buckets::kPow2;
  auto policies = ParsePolicies(o.policy);
  if (!policies.ok()) return ExitWith(policies.status());
  double rate = 0;
  for (const auto& m : sc.plan.models) rate += m.rate_rps;
  json out = {
      {"benchmark", "tessera-simulate"},
      {"date", UtcNow()},
      {"commit", Commit()},
      {"machine", Machine()},
      {"scenario", o.scenario.empty() ? json{{"synthetic_models", o.synthetic.models},
                                             {"seed", o.synthetic.seed},
                                             {"arrival", o.arrival}}
                                      : json(o.scenario)},
      {"models", sc.plan.models.size()},
      {"offered_rps", rate * sc.load},
      {"duration_s", sc.duration_s},
      {"warmup_s", sc.warmup_s},
      {"load", sc.load},
      {"interference_alpha", sc.plan.interference.alpha()},
      {"actual_interference_alpha",
       sc.actual_alpha >= 0 ? sc.actual_alpha : sc.plan.interference.alpha()},
      {"batch_buckets", sc.batch_buckets == SimScenario::Buckets::kPow2 ? "pow2" : "every"},
      {"tuner", sc.tune.enabled
                    ? json{{"interval_s", sc.tune.interval_s},
                           {"resize_delay_s", sc.tune.resize_delay_s},
                           {"grow_above", sc.tune.options.grow_above},
                           {"target_load", sc.tune.options.target_load},
                           {"shrink_below", sc.tune.options.shrink_below},
                           {"shrink_windows", sc.tune.options.shrink_windows},
                           {"cooldown_windows", sc.tune.options.cooldown_windows},
                           {"max_trust", sc.tune.options.max_trust},
                           {"learn_interference_after", sc.tune.options.learn_interference_after}}
                    : json(nullptr)},
      {"policies", json::object()}};
  if (!o.quiet)
    fmt::print("{} models, {:.0f} req/s offered (load {:.2f} of planned), {:.0f} s simulated\n",
               sc.plan.models.size(), rate * sc.load, sc.load, sc.duration_s);
  fmt::print("{:<8} {:>6} {:>11} {:>12} {:>10} {:>10} {:>10} {:>9} {:>9}\n", "policy", "GPUs",
             "attainment", "goodput/s", "dropped", "late", "p99 ms", "plan ms", "sim s");
  struct Outcome {
    Plan plan;
    SimResult res;
    double plan_ms = 0;
  };
  // Plans for the nominal rates x headroom, simulates the nominal load.
  auto run = [&](Policy p, double headroom) -> Result<Outcome> {
    PlanInput in = sc.plan;
    for (auto& m : in.models) m.rate_rps *= headroom;
    Outcome oc;
    const auto t0 = std::chrono::steady_clock::now();
    TESSERA_ASSIGN_OR_RETURN(oc.plan, MakePlan(in, p));
    oc.plan_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    TESSERA_ASSIGN_OR_RETURN(oc.res, Simulate(sc, oc.plan));
    return oc;
  };
  for (Policy p : *policies) {
    // Without a target: the plan for the nominal rates. With one: bisect the planning headroom
    // (plan for rate x h, offer the rate) for the fewest GPUs that meet it, starting from the
    // most generous h; every policy gets its own best h.
    double headroom = o.target > 0 ? 2.5 : 1.0;
    auto first = run(p, headroom);
    if (!first.ok()) return ExitWith(first.status());
    Outcome best = std::move(*first);
    // The fleet's attainment, and every model's (the SLO is each model's promise): a model with
    // too few requests to measure (< 1000) counts only in the total.
    auto meets = [&](const Outcome& oc) {
      if (oc.res.total.attainment() < o.target) return false;
      for (const auto& m : oc.res.models)
        if (m.sent >= 1000 && m.attainment() < o.model_floor) return false;
      return true;
    };
    auto gpus_of = [](const Outcome& oc) {
      return std::max(oc.plan.gpus_used(), oc.res.peak_gpus);
    };
    const bool met = o.target <= 0 || meets(best);
    if (o.target > 0 && met) {
      double lo = 0.5, hi = headroom;
      for (int i = 0; i < 7; ++i) {
        const double mid = (lo + hi) / 2;
        auto r = run(p, mid);
        if (!r.ok()) return ExitWith(r.status());
        if (!o.quiet)
          fmt::print(stderr, "  {} headroom {:.3f}: {} GPUs, attainment {:.3f}%\n", PolicyName(p),
                     mid, gpus_of(*r), 100 * r->res.total.attainment());
        if (meets(*r)) {
          hi = mid;
          // The fewest GPUs held at once wins (a tuned run can grow past its plan).
          if (gpus_of(*r) <= gpus_of(best)) {
            best = std::move(*r);
            headroom = mid;
          }
        } else {
          lo = mid;
        }
      }
    }
    const Plan& plan = best.plan;
    const SimResult& res = best.res;
    const auto& t = res.total;
    // Tuned runs can grow past the plan: the GPUs used are the most held at once.
    const int gpus = std::max(plan.gpus_used(), res.peak_gpus);
    if (o.show_actions)
      for (const auto& a : res.actions) fmt::print("  {} {}\n", PolicyName(p), a);
    fmt::print("{:<8} {:>6} {:>10.3f}% {:>12.1f} {:>10} {:>10} {:>10.2f} {:>9.1f} {:>9.2f}{}{}\n",
               PolicyName(p), gpus, 100 * t.attainment(), res.goodput_rps(), t.dropped, t.late,
               t.latency_ns.Percentile(99) / 1e6, best.plan_ms, res.wall_s,
               o.target > 0
                   ? fmt::format("  headroom {:.3f}{}", headroom, met ? "" : " (target never met)")
                   : "",
               res.resizes + res.replicas_added + res.replicas_removed > 0
                   ? fmt::format("  mean {:.1f} GPUs, {} resizes, +{}/-{} replicas", res.mean_gpus,
                                 res.resizes, res.replicas_added, res.replicas_removed)
                   : "");
    const SimResult::InterferenceFit& fi = res.interference;
    auto error_json = [](const planner::PredictionError& e) {
      return json{
          {"samples", e.samples}, {"mean_abs_rel", e.mean_abs_rel}, {"max_abs_rel", e.max_abs_rel}};
    };
    const json interference = {
        {"planner_alpha", fi.planner_alpha},
        {"actual_alpha", fi.actual_alpha},
        {"live_samples", fi.samples},
        {"live_alpha", fi.fitted ? json(fi.alpha) : json(nullptr)},
        {"live_fit_error", fi.fitted ? error_json(fi.fit_error) : json(nullptr)},
        {"planner_error", error_json(fi.planner_error)}};
    if (!o.quiet) {
      if (fi.fitted)
        fmt::print(
            "  interference from live statistics: alpha {:.3f} from {} slice windows "
            "(prediction error {:.1f}% mean, {:.1f}% max; the planner's alpha {:.2f}: "
            "{:.1f}% mean)\n",
            fi.alpha, fi.samples, 100 * fi.fit_error.mean_abs_rel, 100 * fi.fit_error.max_abs_rel,
            fi.planner_alpha, 100 * fi.planner_error.mean_abs_rel);
      else
        fmt::print("  interference from live statistics: no slice had busy neighbours\n");
    }
    json models = json::array();
    for (const auto& m : res.models) models.push_back(Summary(m, res.simulated_s));
    json timeline = json::array();
    for (const auto& w : res.timeline)
      timeline.push_back({w.t_s, w.sent, w.ok, w.finished, w.sms, w.gpus});
    out["policies"][PolicyName(p)] = {
        {"gpus_used", gpus},
        {"planned_gpus", plan.gpus_used()},
        {"mean_gpus", res.mean_gpus},
        {"resizes", res.resizes},
        {"replicas_added", res.replicas_added},
        {"replicas_removed", res.replicas_removed},
        {"timeline_columns", {"t_s", "sent", "ok", "finished", "sms", "gpus"}},
        {"timeline", timeline},
        {"actions", res.actions},
        {"unplaced", plan.unplaced.size()},
        {"planning_headroom", headroom},
        {"target_met", met},
        {"slo_attainment", t.attainment()},
        {"goodput_rps", res.goodput_rps()},
        {"sent", t.sent},
        {"ok", t.ok},
        {"late", t.late},
        {"dropped", t.dropped},
        {"p50_ms", t.latency_ns.Percentile(50) / 1e6},
        {"p99_ms", t.latency_ns.Percentile(99) / 1e6},
        {"plan_ms", best.plan_ms},
        {"sim_wall_s", res.wall_s},
        {"requests_simulated", res.requests},
        {"batches", res.batches},
        {"interference", interference},
        {"models", models}};
  }
  if (o.target > 0) {
    out["target_attainment"] = o.target;
    out["model_floor"] = o.model_floor;
  }
  if (!o.json_out.empty()) return WriteJsonFile(o.json_out, out);
  return 0;
}

}  // namespace

Runner SetupSimulate(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.footer(
      "A scenario is a plan input (see `tessera plan --help`) plus \"duration_s\", "
      "\"warmup_s\", \"seed\", \"load\", \"batch_buckets\" (every|pow2: padded as the CPU "
      "server pads), per model the arrival fields of bench scenarios "
      "(\"arrival\": poisson|constant|gamma|bursty|diurnal|trace, ...) and \"transit_ms\", and "
      "\"tune\": {...} for the online tuner, \"actual_interference\": {\"alpha\"} for a GPU "
      "that interferes unlike the plan input says (the live calibration reported per policy "
      "finds it). Exit codes: 0 ok, 2 bad input, 3 file not found. "
      "See docs/PLANNER.md.");
  app.add_option("-s,--scenario", o->scenario, "Scenario file (JSON)");
  AddSyntheticOptions(app, &o->synthetic, "Simulate");
  app.add_option("--arrival", o->arrival,
                 "Synthetic arrivals: poisson, constant, gamma (cv 2), bursty, diurnal (600 s, "
                 "amplitude 0.5, phases spread over the models)")
      ->capture_default_str();
  app.add_option("-d,--duration", o->duration, "Simulated seconds (default: scenario's, or 60)")
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", o->warmup, "Seconds not counted (default: scenario's, or 5)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--load", o->load, "Offered load relative to the planned rates (default 1)")
      ->check(CLI::PositiveNumber);
  app.add_option("-p,--policy", o->policy, "tessera, nexus, igniter, gslice, or all")
      ->capture_default_str();
  app.add_option("--target", o->target,
                 "Search each policy's planning headroom (0.5-2.5x the rates) for the fewest GPUs "
                 "whose simulated SLO attainment reaches this (e.g. 0.999)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--model-floor", o->model_floor,
                 "With --target: every model (with >= 1000 requests) must also reach this "
                 "attainment (default 0.99: an SLO is each model's; 0: the total only)")
      ->check(CLI::Range(0.0, 1.0));
  AddCheckOptions(app, &o->checks);
  app.add_flag("--tune", o->tune,
               "Run Tessera's online tuner on tessera plans (live resizes and replicas as rates "
               "move; GSLICE always self-tunes)");
  app.add_option("--tune-interval", o->tune_interval,
                 "Tuner observation window in seconds (default: scenario's, or 1)")
      ->check(CLI::PositiveNumber);
  app.add_option("--resize-delay", o->resize_delay,
                 "Seconds from a resize decision to the new slice being ready (default: "
                 "scenario's, or 0.2)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-trust", o->max_trust,
                 "Let the tuner learn to load a model up to this multiple of the planner's "
                 "capacity while the SLO holds (default: scenario's, or 1 = off)")
      ->check(CLI::Range(1.0, 2.0));
  app.add_option("--actual-alpha", o->actual_alpha,
                 "The simulated GPU's real interference alpha, when the planner is told another "
                 "(its input's interference.alpha): what live calibration must find (default: "
                 "scenario's actual_interference, or the planner's)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--learn-interference-after", o->learn_interference_after,
                 "The tuner predicts with interference fitted from the windows once it holds "
                 "this many slice samples (default: scenario's, or 0: never, the plan input's "
                 "alpha)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch-buckets", o->batch_buckets,
                 "every: a batch costs its own size (an executable per size); pow2: padded to "
                 "power-of-two executables as the CPU server does (default: scenario's, or every)")
      ->check(CLI::IsMember({"every", "pow2"}));
  app.add_flag("--actions", o->show_actions, "Print every tuner action with its reason");
  app.add_option("--json", o->json_out, "Write results (with machine, commit, date) here");
  app.add_flag("-q,--quiet", o->quiet, "Only the table");
  return [o] { return Run(*o); };
}

}  // namespace tessera::cli
