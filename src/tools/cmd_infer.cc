// `tessera infer`: compile one model for one batch size, run it, print outputs and timings.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "engine/cuda/program.h"
#include "engine/cuda/reference.h"
#include "engine/prepare.h"
#include "tessera/core/npy.h"
#include "tessera/engine/cuda_engine.h"
#include "tessera/engine/engine.h"
#include "tessera/model/onnx_import.h"
#include "tessera/model/repository.h"
#include "tools/commands.h"
#include "tools/inputs.h"

namespace tessera::cli {

Tensor SyntheticInput(const TensorSpec& spec, uint64_t seed) {
  Tensor t = Tensor::Allocate(spec.dtype, spec.shape);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 12345;
  auto next = [&s]() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  };
  const bool mask = spec.name.find("mask") != std::string::npos;
  for (int64_t i = 0; i < t.numel(); ++i) {
    const uint64_t r = next();
    switch (spec.dtype) {
      case DataType::kFloat32:
        t.data<float>()[i] = static_cast<float>(r >> 40) / 8388608.0f - 1.0f;
        break;
      case DataType::kInt64:
        t.data<int64_t>()[i] = mask ? 1 : static_cast<int64_t>(r % 100);
        break;
      case DataType::kInt32:
        t.data<int32_t>()[i] = mask ? 1 : static_cast<int32_t>(r % 100);
        break;
      case DataType::kBool:
        t.data<uint8_t>()[i] = 1;
        break;
      default:
        break;
    }
  }
  return t;
}

namespace {

struct Opts {
  std::string repo, model, model_file, output_dir, json_out;
  std::vector<std::string> inputs;
  int64_t batch = 1;
  int iterations = 1, warmup = 0, threads = 0;
  bool no_optimize = false, profile = false, no_winograd = false, no_packed_gemm = false;
  uint64_t seed = 0;
  std::string engine = "cpu", precision = "fp32";
  int gpu = 0;
  bool no_cuda_graphs = false;
};

// The engine --engine names: cpu, cuda (a GPU), or cuda-host (the CUDA backend's lowered
// program on the host interpreter, for checking the GPU path without a GPU).
Result<std::unique_ptr<Engine>> MakeEngine(const Opts& o) {
  if (o.engine == "cpu") return CreateCpuEngine(o.threads);
  if (o.engine == "cuda-host") {
    TESSERA_ASSIGN_OR_RETURN(GpuPrecision p, ParseGpuPrecision(o.precision));
    return cuda::CreateHostProgramEngine(p);
  }
  if (o.engine == "cuda") {
#ifdef TESSERA_HAVE_CUDA
    CudaEngineOptions co;
    co.device = o.gpu;
    co.cuda_graphs = !o.no_cuda_graphs;
    TESSERA_ASSIGN_OR_RETURN(co.precision, ParseGpuPrecision(o.precision));
    return CreateCudaEngine(co);
#else
    return Status::Unavailable("this build of tessera has no CUDA backend (nvcc was not found)");
#endif
  }
  return Status::InvalidArgument("unknown engine '" + o.engine +
                                 "' (expected cpu, cuda or cuda-host)");
}

double Ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

std::string Sanitize(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') c = '_';
  return s;
}

int Fail(const Status& st) {
  fmt::print(stderr, "error: {}\n", st.ToString());
  return st.code() == StatusCode::kNotFound ? 3 : 1;
}

int Run(const Opts& o) {
  Graph graph;
  std::string label;
  if (!o.model_file.empty()) {
    auto g = ImportOnnxFile(o.model_file);
    if (!g.ok()) return Fail(g.status());
    graph = std::move(g).value();
    label = o.model_file;
  } else {
    if (o.repo.empty() || o.model.empty()) {
      fmt::print(stderr, "error: give --model-repository DIR and --model NAME, or --model-file\n");
      return 2;
    }
    auto loc = FindModel(o.repo, o.model);
    if (!loc.ok()) return Fail(loc.status());
    ModelConfig config;
    Status st = LoadModel(*loc, &config, &graph);
    if (!st.ok()) return Fail(st);
    if (config.max_batch_size > 0 && o.batch > config.max_batch_size)
      return Fail(
          Status::InvalidArgument("batch " + std::to_string(o.batch) + " exceeds max_batch_size " +
                                  std::to_string(config.max_batch_size) + " of '" + o.model + "'"));
    label = o.model + " (version " + std::to_string(loc->version) + ")";
  }

  // Inputs from .npy files: NAME=FILE, or FILE for inputs in graph order.
  std::map<std::string, Tensor> given;
  for (size_t i = 0; i < o.inputs.size(); ++i) {
    std::string name, path = o.inputs[i];
    size_t eq = path.find('=');
    if (eq != std::string::npos) {
      name = path.substr(0, eq);
      path = path.substr(eq + 1);
    } else if (i < graph.inputs.size()) {
      name = graph.inputs[i].name;
    } else {
      return Fail(Status::InvalidArgument("more --input files than the model has inputs"));
    }
    auto t = LoadNpy(path);
    if (!t.ok()) return Fail(t.status());
    given[name] = std::move(t).value();
  }
  CompileOptions copts;
  copts.batch = o.batch;
  copts.optimize = !o.no_optimize;
  copts.profile = o.profile;
  copts.winograd = !o.no_winograd;
  copts.packed_gemm = !o.no_packed_gemm;
  for (const auto& [name, t] : given) {
    copts.input_shapes[name] = t.shape();
    if (t.rank() > 0) copts.batch = t.dim(0);
  }
  // The model's arithmetic, counted on the CUDA backend's lowering in the chosen precision (for
  // its roofline floor: fp16 / bf16 weights move half the bytes; the CPU engine skips it, so
  // that its compile time and peak memory stay its own).
  std::optional<cuda::ProgramWork> work;
  if (o.engine != "cpu")
    if (auto precision = ParseGpuPrecision(o.precision); precision.ok())
      if (auto prepared = PrepareGraph(graph, copts); prepared.ok())
        if (auto prog = cuda::LowerToProgram(std::move(prepared).value(),
                                             cuda::LowerOptionsFor(*precision));
            prog.ok())
          work = cuda::CountWork(*prog);
  auto made = MakeEngine(o);
  if (!made.ok()) return Fail(made.status());
  auto engine = std::move(made).value();
  const auto t0 = std::chrono::steady_clock::now();
  auto exe = engine->Compile(graph, copts);
  const double compile_ms = Ms(std::chrono::steady_clock::now() - t0);
  if (!exe.ok()) return Fail(exe.status());
  graph = Graph();  // the executable holds what it needs; drop weights it repacked
  const ExecutableInfo& info = (*exe)->info();

  std::vector<Tensor> inputs;
  for (const auto& spec : info.inputs) {
    auto it = given.find(spec.name);
    inputs.push_back(it != given.end() ? it->second : SyntheticInput(spec, o.seed));
  }
  std::vector<Tensor> outputs;
  for (int i = 0; i < o.warmup; ++i) {
    Status st = (*exe)->Run(inputs, &outputs);
    if (!st.ok()) return Fail(st);
  }
  std::vector<double> lat;
  for (int i = 0; i < std::max(1, o.iterations); ++i) {
    const auto s = std::chrono::steady_clock::now();
    Status st = (*exe)->Run(inputs, &outputs);
    if (!st.ok()) return Fail(st);
    lat.push_back(Ms(std::chrono::steady_clock::now() - s));
  }
  std::vector<double> sorted = lat;
  std::sort(sorted.begin(), sorted.end());
  auto pct = [&](double p) {
    return sorted[std::min(sorted.size() - 1, static_cast<size_t>(p * (sorted.size() - 1) + 0.5))];
  };
  double mean = 0;
  for (double v : lat) mean += v / static_cast<double>(lat.size());

  fmt::print("model      {}\n", label);
  fmt::print("engine     {}, batch {}, {} nodes after optimization ({} fused, {} folded)\n",
             engine->name(), copts.batch, info.nodes, info.fused, info.folded);
  fmt::print(
      "memory     weights {:.1f} MiB, activations {:.2f} MiB peak ({:.2f} MiB without "
      "reuse)\n",
      info.weight_bytes / 1048576.0, info.activation_bytes / 1048576.0,
      info.activation_bytes_no_reuse / 1048576.0);
  if (work)
    fmt::print("work       {:.3f} GFLOP in GEMMs and convolutions, {:.1f} MB of weights\n",
               work->flops / 1e9, work->weight_bytes / 1e6);
  fmt::print(
      "latency    compile {:.1f} ms; run mean {:.3f} ms, p50 {:.3f} ms, p99 {:.3f} ms "
      "over {} run(s)\n",
      compile_ms, mean, pct(0.5), pct(0.99), lat.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& t = outputs[i];
    double mn = INFINITY, mx = -INFINITY, sum = 0;
    for (int64_t k = 0; k < t.numel(); ++k) {
      double v = t.GetAsDouble(k);
      mn = std::min(mn, v);
      mx = std::max(mx, v);
      sum += v;
    }
    std::string head;
    for (int64_t k = 0; k < std::min<int64_t>(4, t.numel()); ++k)
      head += fmt::format("{}{:.5g}", k ? ", " : "", t.GetAsDouble(k));
    fmt::print("output     {} {}{}: min {:.5g} max {:.5g} mean {:.5g} first [{}]\n",
               info.outputs[i].name, DataTypeName(t.dtype()), ShapeToString(t.shape()), mn, mx,
               t.numel() ? sum / t.numel() : 0.0, head);
  }
  if (o.profile) {
    std::vector<std::pair<double, std::string>> rows;
    double total = 0;
    for (const auto& [op, ms] : (*exe)->OpProfileMs()) {
      rows.emplace_back(ms, op);
      total += ms;
    }
    std::sort(rows.rbegin(), rows.rend());
    const double runs = o.warmup + std::max(1, o.iterations);
    for (const auto& [ms, op] : rows)
      fmt::print("profile    {:<20} {:8.3f} ms/run {:5.1f}%\n", op, ms / runs, 100 * ms / total);
  }
  if (!o.output_dir.empty()) {
    std::filesystem::create_directories(o.output_dir);
    for (size_t i = 0; i < outputs.size(); ++i) {
      Status st = SaveNpy(o.output_dir + "/" + Sanitize(info.outputs[i].name) + ".npy", outputs[i]);
      if (!st.ok()) return Fail(st);
    }
  }
  if (!o.json_out.empty()) {
    nlohmann::json j;
    j["model"] = label;
    j["batch"] = copts.batch;
    j["engine"] = engine->name();
    j["compile_ms"] = compile_ms;
    j["latency_ms"] = lat;
    j["mean_ms"] = mean;
    j["p50_ms"] = pct(0.5);
    j["p99_ms"] = pct(0.99);
    j["weight_bytes"] = info.weight_bytes;
    j["activation_bytes"] = info.activation_bytes;
    j["activation_bytes_no_reuse"] = info.activation_bytes_no_reuse;
    if (work) {
      j["flops"] = work->flops;
      j["min_bytes"] = work->weight_bytes + work->io_bytes;  // weights + inputs + outputs
    }
    std::ofstream f(o.json_out);
    f << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  return 0;
}

}  // namespace

Runner SetupInfer(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("--model-repository", o->repo, "Triton-layout model repository");
  app.add_option("--model", o->model, "Model name in the repository");
  app.add_option("--model-file", o->model_file, "Run an .onnx file directly instead");
  app.add_option("--batch", o->batch, "Batch size for synthetic inputs")->default_val(1);
  app.add_option("--input", o->inputs,
                 "Input .npy file(s): FILE (graph order) or NAME=FILE; default: synthetic");
  app.add_option("--output-dir", o->output_dir, "Write each output as <name>.npy here");
  app.add_option("--iterations", o->iterations, "Timed runs")->default_val(1);
  app.add_option("--warmup", o->warmup, "Untimed runs first")->default_val(0);
  app.add_option("--threads", o->threads, "CPU threads (default: all cores)")->default_val(0);
  app.add_option("--seed", o->seed, "Seed of synthetic inputs")->default_val(0);
  app.add_option("--json", o->json_out, "Write timings and memory as JSON");
  app.add_option("--engine", o->engine,
                 "cpu, cuda (a GPU), or cuda-host (the CUDA backend's lowered program run on the "
                 "host, slowly: checks the GPU path without a GPU)")
      ->default_val("cpu")
      ->check(CLI::IsMember({"cpu", "cuda", "cuda-host"}));
  app.add_option("--gpu", o->gpu, "GPU index for --engine cuda")->default_val(0);
  app.add_option("--precision", o->precision,
                 "GPU math for --engine cuda / cuda-host: fp32, tf32, fp16 or bf16 (fp16 / bf16: "
                 "GEMM and convolution operands and activations in that type, FP32 "
                 "accumulation)")
      ->default_val("fp32")
      ->check(CLI::IsMember({"fp32", "tf32", "fp16", "bf16"}));
  app.add_flag("--no-cuda-graphs", o->no_cuda_graphs,
               "Launch the steps one by one instead of replaying a captured CUDA graph");
  app.add_flag("--no-optimize", o->no_optimize, "Skip fusions (for debugging)");
  app.add_flag("--profile", o->profile, "Print time per op type over the timed runs");
  app.add_flag("--no-winograd", o->no_winograd, "Use direct convolution for every conv");
  app.add_flag("--no-packed-gemm", o->no_packed_gemm,
               "Run constant-weight MatMuls on oneDNN instead of Tessera's packed GEMM");
  return [o]() { return Run(*o); };
}

}  // namespace tessera::cli
