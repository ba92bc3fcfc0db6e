// `tessera colocate`: calibrates the planner's interference model on the machine at hand. Each
// ordered pair of the given models runs side by side on disjoint halves of the cores (the CPU's
// slices): the first is timed alone, then while the second runs without pause next to it. The
// neighbour's pressure is its memory intensity (the share of the machine's measured memory
// bandwidth its runs draw, per unit of core share) times its core share; alpha is fitted by least
// squares (planner::InterferenceModel::Fit) and the prediction error reported in-sample and
// leave-one-out. GPU co-location runs (slices on SMs) come with the GPU slices.
#include <fmt/core.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tessera/engine/engine.h"
#include "tessera/model/repository.h"
#include "tessera/planner/interference.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/inputs.h"
#include "tools/provenance.h"

namespace tessera::cli {
namespace {

struct Opts {
  std::string repo, models, json_out;
  int batch = 1, iterations = 20, warmup = 3, rounds = 3;
  bool quiet = false;
};

struct Loaded {
  std::string name;
  std::unique_ptr<Executable> exe;
  std::unique_ptr<Executable> neighbour;  // its own arena: a model can sit next to itself
  std::vector<Tensor> inputs;
  double alone_ms = 0;       // p50 alone on its half of the cores
  double mem_intensity = 0;  // measured, see Intensity
};

double NowMs() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Pins the calling thread to cores [first, first + count) and gives its runs `count` threads.
void Pin(int first, int count) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c = first; c < first + count; ++c) CPU_SET(c, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  SetComputeThreadsForCurrentThread(count);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// p50 of `n` runs of `m` on cores [first, first + count), on a thread of its own.
Result<double> TimeRuns(Loaded& m, int first, int count, int warmup, int n) {
  Status st;
  std::vector<double> lat;
  std::thread t([&] {
    Pin(first, count);
    std::vector<Tensor> out;
    for (int i = 0; i < warmup + n && st.ok(); ++i) {
      const double t0 = NowMs();
      st = m.exe->Run(m.inputs, &out);
      if (i >= warmup) lat.push_back(NowMs() - t0);
    }
  });
  t.join();
  if (!st.ok()) return st;
  return Median(lat);
}

// Bytes per second all cores copy (read + write) through a buffer far larger than the caches.
double MeasureBandwidth(int cores) {
  const size_t n = size_t{64} << 20;  // 64 MiB per thread and direction
  std::vector<double> rates(cores);
  std::vector<std::thread> ts;
  for (int c = 0; c < cores; ++c)
    ts.emplace_back([&, c] {
      Pin(c, 1);
      std::vector<char> a(n, 1), b(n, 0);
      double best = 0;
      for (int r = 0; r < 5; ++r) {
        const double t0 = NowMs();
        std::memcpy(b.data(), a.data(), n);
        const double ms = NowMs() - t0;
        best = std::max(best, 2.0 * static_cast<double>(n) / (ms / 1e3));
        a[r] = b[n - 1 - r];  // keep the copies observable
      }
      rates[c] = best;
    });
  for (auto& t : ts) t.join();
  double total = 0;
  for (double r : rates) total += r;
  return total;
}

int Run(const Opts& o) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (cores < 2)
    return ExitWith(Status::FailedPrecondition(
        "co-location needs at least two cores (one slice per model); this machine has 1"));
  const int half = cores / 2;
  std::vector<std::string> names;
  for (size_t a = 0; a <= o.models.size();) {
    const size_t b = std::min(o.models.find(',', a), o.models.size());
    if (b > a) names.push_back(o.models.substr(a, b - a));
    a = b + 1;
  }
  if (names.empty())
    return ExitWith(Status::InvalidArgument("--models: give at least one model name"));

  auto engine = CreateCpuEngine(half);
  std::vector<Loaded> models;
  for (const auto& name : names) {
    auto loc = FindModel(o.repo, name);
    if (!loc.ok()) return ExitWith(loc.status());
    ModelConfig config;
    Graph graph;
    if (Status st = LoadModel(*loc, &config, &graph); !st.ok()) return ExitWith(st);
    if (config.max_batch_size > 0 && o.batch > config.max_batch_size)
      return ExitWith(Status::InvalidArgument(fmt::format(
          "--batch {} exceeds max_batch_size {} of '{}'", o.batch, config.max_batch_size, name)));
    CompileOptions co;
    co.batch = o.batch;
    auto exe = engine->Compile(graph, co);
    if (!exe.ok()) return ExitWith(exe.status());
    auto neighbour = engine->Compile(graph, co);
    if (!neighbour.ok()) return ExitWith(neighbour.status());
    Loaded m;
    m.name = name;
    m.exe = std::move(exe).value();
    m.neighbour = std::move(neighbour).value();
    for (const auto& s : m.exe->info().inputs) m.inputs.push_back(SyntheticInput(s, 0));
    models.push_back(std::move(m));
  }
  const double bandwidth = MeasureBandwidth(cores);
  if (!o.quiet) fmt::print(stderr, "memory bandwidth (all cores): {:.1f} GB/s\n", bandwidth / 1e9);
  const double share = static_cast<double>(half) / cores;
  for (auto& m : models) {
    auto ms = TimeRuns(m, 0, half, o.warmup, o.iterations);
    if (!ms.ok()) return ExitWith(ms.status());
    m.alone_ms = *ms;
    // Bytes a run must move at least (weights read once, the arena written and read), as a share
    // of the bandwidth its core share could draw.
    const auto& info = m.exe->info();
    const double bytes = static_cast<double>(info.weight_bytes + 2 * info.activation_bytes);
    m.mem_intensity = std::clamp(bytes / (m.alone_ms / 1e3) / (bandwidth * share), 0.0, 1.0);
    if (!o.quiet)
      fmt::print(stderr, "{} alone: {:.3f} ms on {} core(s), memory intensity {:.3f}\n", m.name,
                 m.alone_ms, half, m.mem_intensity);
  }

  struct Pair {
    std::string a, b;
    double alone_ms, together_ms, pressure;
  };
  std::vector<Pair> pairs;
  std::vector<planner::CoLocationSample> samples;
  for (auto& a : models)
    for (auto& b : models) {
      // Alone and together alternate `rounds` times (the machine drifts: clocks, this VM's
      // neighbours); each side's median is compared. b runs without pause on the other half of
      // the cores while a is timed.
      std::vector<double> alones, togethers;
      for (int r = 0; r < o.rounds; ++r) {
        auto alone = TimeRuns(a, 0, half, o.warmup, o.iterations);
        if (!alone.ok()) return ExitWith(alone.status());
        alones.push_back(*alone);
        std::atomic<bool> stop{false};
        Status bst;
        std::thread noise([&] {
          Pin(half, cores - half);
          std::vector<Tensor> out;
          while (!stop && bst.ok()) bst = b.neighbour->Run(b.inputs, &out);
        });
        auto together = TimeRuns(a, 0, half, o.warmup, o.iterations);
        stop = true;
        noise.join();
        if (!together.ok()) return ExitWith(together.status());
        if (!bst.ok()) return ExitWith(bst);
        togethers.push_back(*together);
      }
      const double alone = Median(alones), together = Median(togethers);
      const double pressure =
          planner::SlicePressure(b.mem_intensity, cores - half, cores, /*busy=*/1.0);
      pairs.push_back({a.name, b.name, alone, together, pressure});
      samples.push_back({alone, together, pressure});
      if (!o.quiet)
        fmt::print(stderr, "{} next to {}: {:.3f} ms vs {:.3f} alone ({:+.1f}%)\n", a.name, b.name,
                   together, alone, 100 * (together / alone - 1));
    }
  auto fit = planner::InterferenceModel::Fit(samples);
  if (!fit.ok()) return ExitWith(fit.status());
  const planner::PredictionError in = fit->Evaluate(samples);
  // Leave-one-out: each pair predicted by the alpha the other pairs give.
  double loo_sum = 0, loo_max = 0;
  int loo_n = 0;
  for (size_t i = 0; i < samples.size() && samples.size() > 1; ++i) {
    std::vector<planner::CoLocationSample> rest = samples;
    rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(i));
    auto f = planner::InterferenceModel::Fit(rest);
    if (!f.ok()) continue;
    const double e = std::fabs(f->Predict(samples[i].alone_ms, samples[i].neighbour_pressure) -
                               samples[i].colocated_ms) /
                     samples[i].colocated_ms;
    loo_sum += e;
    loo_max = std::max(loo_max, e);
    ++loo_n;
  }

  fmt::print("{:<14} {:<14} {:>9} {:>11} {:>9} {:>10}\n", "model", "next to", "alone ms",
             "together ms", "pressure", "predicted");
  for (const auto& p : pairs)
    fmt::print("{:<14} {:<14} {:9.3f} {:11.3f} {:9.3f} {:10.3f}\n", p.a, p.b, p.alone_ms,
               p.together_ms, p.pressure, fit->Predict(p.alone_ms, p.pressure));
  fmt::print(
      "alpha {:.3f}; prediction error: mean {:.1f}%, max {:.1f}% in-sample ({} pairs); "
      "leave-one-out mean {:.1f}%, max {:.1f}%\n",
      fit->alpha(), 100 * in.mean_abs_rel, 100 * in.max_abs_rel, in.samples,
      loo_n ? 100 * loo_sum / loo_n : 0.0, 100 * loo_max);

  if (!o.json_out.empty()) {
    nlohmann::json j;
    j["benchmark"] = "colocate";
    j["machine"] = Machine();
    j["commit"] = Commit();
    j["date"] = UtcNow();
    j["cores_per_slice"] = half;
    j["batch"] = o.batch;
    j["iterations"] = o.iterations;
    j["bandwidth_bytes_per_s"] = bandwidth;
    for (const auto& m : models)
      j["models"].push_back(
          {{"name", m.name}, {"alone_ms", m.alone_ms}, {"mem_intensity", m.mem_intensity}});
    for (const auto& p : pairs)
      j["pairs"].push_back({{"model", p.a},
                            {"neighbour", p.b},
                            {"alone_ms", p.alone_ms},
                            {"together_ms", p.together_ms},
                            {"neighbour_pressure", p.pressure},
                            {"predicted_ms", fit->Predict(p.alone_ms, p.pressure)}});
    j["alpha"] = fit->alpha();
    j["error_in_sample"] = {{"mean", in.mean_abs_rel}, {"max", in.max_abs_rel}};
    j["error_leave_one_out"] = {{"mean", loo_n ? loo_sum / loo_n : 0.0}, {"max", loo_max}};
    if (int rc = WriteJsonFile(o.json_out, j); rc != 0) return rc;
  }
  return 0;
}

}  // namespace

Runner SetupColocate(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("--model-repository", o->repo, "Model repository")->required();
  app.add_option("--models", o->models, "Comma-separated models; every ordered pair is measured")
      ->required();
  app.add_option("--batch", o->batch, "Batch size of every run")
      ->default_val(1)
      ->check(CLI::PositiveNumber);
  app.add_option("-n,--iterations", o->iterations, "Timed runs per measurement")
      ->default_val(20)
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", o->warmup, "Untimed runs first")->default_val(3);
  app.add_option("--rounds", o->rounds, "Alone / together alternations per pair (medians)")
      ->default_val(3)
      ->check(CLI::PositiveNumber);
  app.add_option("--json", o->json_out, "Write the samples, alpha and the errors here");
  app.add_flag("-q,--quiet", o->quiet, "No progress lines");
  return [o] { return Run(*o); };
}

}  // namespace tessera::cli
