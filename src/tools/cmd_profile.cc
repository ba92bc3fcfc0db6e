// `tessera profile`: measures one model's latency (mean, std, p99) by batch size x slice size
// and its memory on the engine at hand, and writes a planner profile (docs/PLANNER.md).
// On the CPU engine a "slice" is a number of compute threads (cores); GPU slices (SMs) come
// with the CUDA engine.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include "tessera/engine/engine.h"
#include "tessera/model/repository.h"
#include "tessera/planner/profile.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/inputs.h"

namespace tessera::cli {
namespace {

struct Opts {
  std::string repo, model, out;
  std::vector<int> batches, slices;
  int iterations = 20, warmup = 3;
  double mem_intensity = 0.3;
  bool quiet = false;
};

int Run(Opts o) {
  auto loc = FindModel(o.repo, o.model);
  if (!loc.ok()) return ExitWith(loc.status());
  ModelConfig config;
  Graph graph;
  if (Status st = LoadModel(*loc, &config, &graph); !st.ok()) return ExitWith(st);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int max_batch = std::max(1, config.max_batch_size);
  if (o.batches.empty())
    for (int b = 1; b <= std::min(max_batch, 16); b *= 2) o.batches.push_back(b);
  if (o.slices.empty()) {
    for (int t = 1; t < cores; t *= 2) o.slices.push_back(t);
    o.slices.push_back(cores);
  }
  for (auto* v : {&o.batches, &o.slices}) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
  }
  if (o.batches.back() > max_batch)
    return ExitWith(Status::InvalidArgument(fmt::format(
        "--batches: {} exceeds max_batch_size {} of '{}'", o.batches.back(), max_batch, o.model)));
  if (o.slices.back() > cores)
    return ExitWith(Status::InvalidArgument(fmt::format(
        "--slices: {} threads, but this machine has {} cores", o.slices.back(), cores)));

  auto engine = CreateCpuEngine(cores);
  std::vector<planner::LatencyPoint> points;
  int64_t memory = 0;
  const size_t total = o.batches.size() * o.slices.size();
  for (int b : o.batches) {
    CompileOptions copts;
    copts.batch = b;
    auto exe = engine->Compile(graph, copts);
    if (!exe.ok()) return ExitWith(exe.status());
    const ExecutableInfo& info = (*exe)->info();
    memory = std::max<int64_t>(memory, info.weight_bytes + info.activation_bytes);
    std::vector<Tensor> inputs, outputs;
    for (const auto& spec : info.inputs) inputs.push_back(SyntheticInput(spec, 1));
    for (int t : o.slices) {
      SetComputeThreadsForCurrentThread(t);
      for (int i = 0; i < o.warmup; ++i)
        if (Status st = (*exe)->Run(inputs, &outputs); !st.ok()) return ExitWith(st);
      std::vector<double> ms;
      for (int i = 0; i < o.iterations; ++i) {
        const auto s = std::chrono::steady_clock::now();
        if (Status st = (*exe)->Run(inputs, &outputs); !st.ok()) return ExitWith(st);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s)
                         .count());
      }
      std::sort(ms.begin(), ms.end());
      planner::LatencyPoint p;
      p.sms = t;
      p.batch = b;
      for (double v : ms) p.mean_ms += v / ms.size();
      for (double v : ms) p.std_ms += (v - p.mean_ms) * (v - p.mean_ms) / ms.size();
      p.std_ms = std::sqrt(p.std_ms);
      p.p99_ms = std::max(
          p.mean_ms,
          ms[std::min(ms.size() - 1, static_cast<size_t>(std::ceil(0.99 * ms.size())) - 1)]);
      points.push_back(p);
      if (!o.quiet)
        fmt::print(stderr,
                   "[{}/{}] batch {:>3} on {:>2} thread(s): mean {:.3f} ms, p99 {:.3f} ms\n",
                   points.size(), total, b, t, p.mean_ms, p.p99_ms);
    }
  }
  auto prof = planner::Profile::FromPoints(o.model, "cpu", cores, memory, o.mem_intensity,
                                           std::move(points), "profile");
  if (!prof.ok()) return ExitWith(prof.status());
  const std::string text = planner::ProfileToJson(*prof).dump(2) + "\n";
  if (o.out.empty()) {
    fmt::print("{}", text);
  } else {
    std::ofstream f(o.out);
    if (!f) return ExitWith(Status::NotFound("cannot write " + o.out));
    f << text;
    if (!o.quiet) fmt::print(stderr, "wrote {}\n", o.out);
  }
  return 0;
}

}  // namespace

Runner SetupProfile(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.footer(
      "On the CPU engine the slice sizes are compute threads and gpu_sms in the profile is the "
      "core count. mem_intensity is not measured here: it comes from --mem-intensity (or a "
      "co-location fit, see docs/PLANNER.md).");
  app.add_option("--model-repository", o->repo, "Model repository")->required();
  app.add_option("-m,--model", o->model, "Model name")->required();
  app.add_option("--batches", o->batches,
                 "Batch sizes (default 1, 2, 4, ... up to min(max_batch_size, 16))")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  app.add_option("--slices", o->slices, "Slice sizes: CPU threads (default 1, 2, 4, ..., cores)")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  app.add_option("-n,--iterations", o->iterations, "Timed runs per point")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--warmup", o->warmup, "Untimed runs per point")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--mem-intensity", o->mem_intensity, "Memory intensity to record (0..1)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("-o,--out", o->out, "Write the profile here (default: stdout)");
  app.add_flag("-q,--quiet", o->quiet, "No progress lines");
  return [o] { return Run(*o); };
}

}  // namespace tessera::cli
