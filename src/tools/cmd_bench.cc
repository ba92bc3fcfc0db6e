// `tessera bench`: the open-loop multi-model load generator (KServe v2 over gRPC or HTTP) and
// its goodput sweep. See docs/BENCH.md.
#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tessera/bench/loadgen.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/provenance.h"

namespace tessera::cli {
namespace {

using nlohmann::json;
using namespace tessera::bench;

struct Opts {
  std::string scenario_file;
  bool demo = false;
  // A one-model scenario from flags.
  std::string model;
  double rate = 0;
  double slo_ms = 100;
  int batch = 1;
  std::string arrival = "poisson";
  // Overrides.
  std::string url, protocol;
  bool json_tensors = false, shm = false;
  double duration = -1, warmup = -1, rate_scale = 1.0;
  int64_t seed = -1;
  int connections = 0, grpc_threads = 1;
  bool grpc_stream = false;
  double spin_us = 0;
  // Sweep.
  bool sweep = false;
  double target = 0.99, sweep_start = 1.0, sweep_factor = 1.5;
  int sweep_refine = 2, sweep_max_steps = 12;
  std::string json_out;
  bool quiet = false;
};

void PrintTable(const RunResult& r) {
  fmt::print("{:<16} {:>9} {:>8} {:>8} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10}\n", "model",
             "offered/s", "sent", "ok", "rej", "err", "p50 ms", "p99 ms", "p99.9 ms", "goodput/s",
             "SLO att.");
  auto row = [](const ModelResult& m) {
    const auto& h = m.latency_ns;
    fmt::print(
        "{:<16} {:>9.1f} {:>8} {:>8} {:>6} {:>6} {:>9.3f} {:>9.3f} {:>9.3f} {:>9.1f} {:>9.2f}%\n",
        m.name, m.offered_rps, m.sent, m.ok, m.rejected, m.errors, h.Percentile(50) / 1e6,
        h.Percentile(99) / 1e6, h.Percentile(99.9) / 1e6, m.goodput_rps(), 100 * m.attainment());
  };
  for (const auto& m : r.models) row(m);
  if (r.models.size() > 1) row(r.total);
  const double lag_ms = r.total.send_lag_ns.Percentile(99) / 1e6;
  if (lag_ms > 1.0)
    fmt::print(
        "  note: requests left the generator up to {:.2f} ms late (p99): the client side "
        "(this machine) may be limiting the run\n",
        lag_ms);
  for (const auto& m : r.models)
    if (!m.first_error.empty())
      fmt::print("  {}: {} failed; first: {}\n", m.name, m.rejected + m.errors, m.first_error);
}

Result<Scenario> BuildScenario(const Opts& o) {
  Scenario s;
  const int sources = !o.scenario_file.empty() + o.demo + !o.model.empty();
  if (sources != 1)
    return Status::InvalidArgument(
        "give exactly one of --scenario FILE, --demo, or --model NAME --rate R");
  if (!o.scenario_file.empty()) {
    auto l = LoadScenario(o.scenario_file);
    if (!l.ok()) return l.status();
    s = std::move(*l);
  } else if (o.demo) {
    s = DemoScenario();
  } else {
    if (o.rate <= 0) return Status::InvalidArgument("--model needs --rate R (requests/s, > 0)");
    auto kind = ParseKind(o.arrival);
    if (!kind.ok()) return Status::InvalidArgument("--arrival: " + kind.status().message());
    if (*kind == ArrivalSpec::Kind::kTrace)
      return Status::InvalidArgument("--arrival trace needs a scenario file (its 'trace' field)");
    ModelLoad m;
    m.name = o.model;
    m.arrival.kind = *kind;
    m.arrival.rate = o.rate;
    m.slo_ms = o.slo_ms;
    m.batch = o.batch;
    s.name = o.model;
    s.models.push_back(m);
  }
  if (!o.protocol.empty()) s.protocol = o.protocol;
  if (!o.url.empty()) s.url = o.url;
  if (o.json_tensors) s.binary = false;
  if (o.shm) s.shared_memory = true;
  if (o.duration > 0) s.duration_s = o.duration;
  if (o.warmup >= 0) s.warmup_s = o.warmup;
  if (o.seed >= 0) s.seed = static_cast<uint64_t>(o.seed);
  if (o.connections > 0) s.connections = o.connections;
  return s;
}

int RunBench(const Opts& o) {
  std::signal(SIGPIPE, SIG_IGN);
  auto sc = BuildScenario(o);
  if (!sc.ok()) return ExitWith(sc.status());
  const Scenario& s = *sc;
  RunOptions ro;
  ro.progress = !o.quiet;
  ro.grpc_threads = o.grpc_threads;
  ro.grpc_stream = o.grpc_stream;
  if (o.grpc_stream && s.protocol != "grpc")
    return ExitWith(Status::InvalidArgument("--grpc-stream needs the grpc protocol"));
  ro.spin_ns = static_cast<int64_t>(o.spin_us * 1000);
  json doc = {{"benchmark", "tessera-bench"},
              {"date", UtcNow()},
              {"commit", Commit()},
              {"machine", Machine()},
              {"scenario", json::parse(ScenarioToJson(s))}};
  if (!o.quiet)
    fmt::print(stderr,
               "tessera bench: scenario '{}', {} model(s), {} on {}, {:g} s + {:g} s "
               "warm-up{}\n",
               s.name, s.models.size(), s.protocol, s.EffectiveUrl(), s.duration_s, s.warmup_s,
               o.sweep ? ", sweeping the offered load" : "");
  int rc = 0;
  if (!o.sweep) {
    ro.rate_scale = o.rate_scale;
    auto r = RunScenario(s, ro);
    if (!r.ok()) return ExitWith(r.status());
    PrintTable(*r);
    doc["run"] = json::parse(RunResultJson(*r, true));
  } else {
    // Raise the load geometrically until a model's SLO attainment falls below the target, then
    // bisect (geometrically) between the last load that held and the first that did not.
    json steps = json::array();
    std::optional<RunResult> best;
    double lo = 0, hi = 0, scale = o.sweep_start * o.rate_scale;
    auto step = [&](double sc) -> Result<bool> {
      ro.rate_scale = sc;
      ro.progress_prefix = fmt::format("[x{:.3g}] ", sc);
      auto r = RunScenario(s, ro);
      if (!r.ok()) return r.status();
      const bool held = r->Held(o.target);
      fmt::print(
          "-- offered {:.1f} req/s (x{:.3g}): goodput {:.1f} req/s, attainment {:.2f}% "
          "(worst model {:.2f}%): {}\n",
          r->offered_rps, sc, r->total.goodput_rps(), 100 * r->total.attainment(),
          [&] {
            double w = 1;
            for (const auto& m : r->models) w = std::min(w, m.attainment());
            return 100 * w;
          }(),
          held ? "held" : "missed");
      std::fflush(stdout);
      json j = json::parse(RunResultJson(*r, false));
      j["held"] = held;
      steps.push_back(j);
      if (held && (!best || sc > best->rate_scale)) best = std::move(*r);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let queues empty
      return held;
    };
    for (int i = 0; i < o.sweep_max_steps; ++i) {
      auto held = step(scale);
      if (!held.ok()) return ExitWith(held.status());
      if (!*held) {
        hi = scale;
        break;
      }
      lo = scale;
      scale *= o.sweep_factor;
    }
    for (int i = 0; i < o.sweep_refine && lo > 0 && hi > 0; ++i) {
      const double mid = std::sqrt(lo * hi);
      auto held = step(mid);
      if (!held.ok()) return ExitWith(held.status());
      (*held ? lo : hi) = mid;
    }
    json sw = {{"target_attainment", o.target}, {"steps", steps}};
    if (best) {
      PrintTable(*best);
      fmt::print(
          "highest load that held {:.2f}% SLO attainment: {:.1f} req/s offered, goodput "
          "{:.1f} req/s\n",
          100 * o.target, best->offered_rps, best->total.goodput_rps());
      sw["best"] = json::parse(RunResultJson(*best, true));
      sw["goodput_rps"] = best->total.goodput_rps();
      sw["offered_rps"] = best->offered_rps;
      if (hi == 0) sw["note"] = "the last step still held; raise --sweep-max-steps";
    } else {
      fmt::print("even the starting load missed {:.2f}% SLO attainment; lower --sweep-start\n",
                 100 * o.target);
      sw["best"] = nullptr;
      sw["goodput_rps"] = 0;
      rc = 4;
    }
    doc["sweep"] = sw;
  }
  if (!o.json_out.empty()) {
    std::ofstream f(o.json_out);
    f << doc.dump(1) << "\n";
    if (!f) return ExitWith(Status::Internal("cannot write " + o.json_out));
    if (!o.quiet) fmt::print(stderr, "results written to {}\n", o.json_out);
  }
  return rc;
}

}  // namespace

Runner SetupBench(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.description(
      "Open-loop load generator for KServe v2 servers (Tessera, Triton, ...): several models at "
      "once, each with its own rate, arrival process and SLO; reports latency percentiles, "
      "goodput and SLO attainment per model, or with --sweep the highest load that holds the "
      "target attainment. Exit code 4 when a sweep finds no load that holds.");
  app.add_option("--scenario", o->scenario_file, "Scenario file (JSON; see bench/scenarios/)");
  app.add_flag("--demo", o->demo, "Use the built-in demo mix of zoo-demo models");
  app.add_option("-m,--model", o->model, "One model, without a scenario file");
  app.add_option("--rate", o->rate, "With --model: requests/s");
  app.add_option("--slo-ms", o->slo_ms, "With --model: latency SLO in ms")->capture_default_str();
  app.add_option("--batch", o->batch, "With --model: batch size of each request")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--arrival", o->arrival, "With --model: constant, poisson, gamma or bursty")
      ->capture_default_str();
  app.add_option("-u,--url", o->url, "Server host:port (default localhost:8001 gRPC, :8000 HTTP)");
  app.add_option("-i,--protocol", o->protocol, "grpc or http (overrides the scenario)")
      ->check(CLI::IsMember({"grpc", "http"}));
  app.add_flag("--json-tensors", o->json_tensors, "HTTP: JSON tensors instead of binary");
  app.add_flag("--shm", o->shm, "Send inputs through system shared memory (same host)");
  app.add_option("-d,--duration", o->duration, "Measured seconds (overrides the scenario)");
  app.add_option("--warmup", o->warmup, "Warm-up seconds, not counted (overrides the scenario)");
  app.add_option("--seed", o->seed, "Random seed (overrides the scenario)");
  app.add_option("--rate-scale", o->rate_scale, "Multiply every model's rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--connections", o->connections, "HTTP: most connections open at once");
  app.add_flag("--grpc-stream", o->grpc_stream,
               "Send every gRPC request on one ModelStreamInfer stream (Triton's streaming "
               "extension) instead of a unary call each: less client CPU per request");
  app.add_option("--grpc-threads", o->grpc_threads, "gRPC completion threads (unary calls)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--spin-us", o->spin_us,
                 "Spin (not sleep) this long before each due time, so requests leave on time "
                 "where timer wake-ups are slow; 0: sleep only")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--sweep", o->sweep, "Raise the load until SLO attainment drops below --target");
  app.add_option("--target", o->target, "SLO attainment a load must hold (fraction)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--sweep-start", o->sweep_start, "First rate scale of the sweep")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--sweep-factor", o->sweep_factor, "Rate multiplier between sweep steps")
      ->check(CLI::Range(1.01, 100.0))
      ->capture_default_str();
  app.add_option("--sweep-refine", o->sweep_refine, "Bisection steps after the first miss")
      ->capture_default_str();
  app.add_option("--sweep-max-steps", o->sweep_max_steps, "Most raising steps")
      ->capture_default_str();
  app.add_option("--json", o->json_out, "Write results (with machine, commit, date) here");
  app.add_flag("-q,--quiet", o->quiet, "No progress lines");
  return [o] { return RunBench(*o); };
}

}  // namespace tessera::cli
