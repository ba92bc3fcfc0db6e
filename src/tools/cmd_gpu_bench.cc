// `tessera gpu-bench datapath|completion`: the GPU slices issue's micro-benchmarks, each against
// a peer measured in the same run (CUDA builds, on a GPU):
//   datapath    host -> device throughput of the serving data path (pinned buffers, per-place
//               copy stream, two executables in flight, event completion) against plain
//               cudaMemcpyAsync loops from pinned memory on one stream; per input size.
//   completion  latency a batch's completion adds and CPU used, per mode (event notifier,
//               cudaStreamSynchronize, event spin), for a tiny model run one batch at a time.
#include <fmt/core.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>

#include "tools/commands.h"
#include "tools/provenance.h"
#ifdef TESSERA_HAVE_CUDA
#include <cuda_runtime.h>

#include "gpu/data_path.h"
#include "gpu/device_info.h"
#include "tessera/engine/cuda_engine.h"
#include "tessera/model/onnx_import.h"
#include "tessera/zoo/zoo.h"
#include "zoo/builder.h"
#endif

namespace tessera::cli {
namespace {

using nlohmann::json;

struct Opts {
  int gpu = 0;
  std::vector<double> sizes_mib = {0.25, 1, 4, 16, 64};
  int iterations = 100;
  int batches = 2000;
  std::string sharing = "streams";
  std::string json_out;
};

#ifdef TESSERA_HAVE_CUDA
double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

Status Cuda(cudaError_t e, const char* what) {
  return e == cudaSuccess ? Status::OK()
                          : Status::Unavailable(std::string(what) + ": " + cudaGetErrorString(e));
}

// x [1, n] -> ReduceSum over axis 1 -> [1, 1]: the input copy is nearly all of a run.
Result<Graph> SumModel(int64_t n) {
  zoo::GraphBuilder b("sum", 0);
  const int f = onnx::TensorProto::FLOAT;
  auto x = b.Input("x", f, {1, n}, false);
  auto s = b.Op("ReduceSum", {x, b.ConstInts("axes", {1})}, {zoo::A("keepdims", int64_t{1})});
  b.Output(s, f, {1, 1}, false);
  return ImportOnnx(b.Finish().SerializeAsString());
}

// One GPU executable with its pinned buffers, bound to a place.
struct Runner1 {
  std::unique_ptr<Executable> exe;
  GpuExecutable* g = nullptr;
  std::vector<void*> in, out;
  int32_t* err = nullptr;
  runtime::GpuDevice::Batch batch;
};

Result<Runner1> Prepare(Engine& engine, const Graph& graph, runtime::GpuSlices& gpu,
                        const runtime::SliceLease& lease) {
  Runner1 r;
  CompileOptions o;
  o.sm_count_target = lease.sms;
  TESSERA_ASSIGN_OR_RETURN(r.exe, engine.Compile(graph, o));
  r.g = dynamic_cast<GpuExecutable*>(r.exe.get());
  if (!r.g) return Status::Internal("the CUDA engine gave no GPU executable");
  TESSERA_RETURN_IF_ERROR(gpu.device().Bind(lease.place, r.g));
  for (const auto& s : r.g->device_inputs()) {
    TESSERA_ASSIGN_OR_RETURN(void* p, gpu.pinned().Get(s.bytes));
    std::memset(p, 0, s.bytes);
    r.in.push_back(p);
  }
  for (const auto& s : r.g->device_outputs()) {
    TESSERA_ASSIGN_OR_RETURN(void* p, gpu.pinned().Get(s.bytes));
    r.out.push_back(p);
  }
  TESSERA_ASSIGN_OR_RETURN(void* e, gpu.pinned().Get(sizeof(int32_t)));
  r.err = static_cast<int32_t*>(e);
  r.batch = {lease.place, r.g, {r.in.begin(), r.in.end()}, r.out, r.err};
  return r;
}

// Waits for `n` completions reported through done callbacks.
class Countdown {
 public:
  void Done(Status st) {
    std::lock_guard<std::mutex> lock(mu_);
    ++done_;
    if (!st.ok() && first_error_.ok()) first_error_ = st;
    cv_.notify_all();
  }
  Status WaitFor(int64_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_ >= n; });
    return first_error_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t done_ = 0;
  Status first_error_;
};

Result<std::shared_ptr<runtime::GpuSlices>> OpenGpu(const Opts& o) {
  TESSERA_ASSIGN_OR_RETURN(auto dev, gpu::CreateGpuDevice(o.sharing, o.gpu));
  return std::make_shared<runtime::GpuSlices>(std::move(dev));
}

Result<json> DataPath(const Opts& o) {
  TESSERA_ASSIGN_OR_RETURN(auto gpu, OpenGpu(o));
  CudaEngineOptions eo;
  eo.device = o.gpu;
  TESSERA_ASSIGN_OR_RETURN(auto engine, CreateCudaEngine(eo));
  TESSERA_ASSIGN_OR_RETURN(auto lease, gpu->Acquire("gpu-bench", 0));
  json rows = json::array();
  for (double mib : o.sizes_mib) {
    const int64_t n = std::max<int64_t>(1, static_cast<int64_t>(mib * 1048576 / 4));
    const size_t bytes = static_cast<size_t>(n) * 4;
    TESSERA_ASSIGN_OR_RETURN(Graph g, SumModel(n));
    // The data path: two executables in flight (the serving default), event completion.
    TESSERA_ASSIGN_OR_RETURN(Runner1 a, Prepare(*engine, g, *gpu, lease));
    TESSERA_ASSIGN_OR_RETURN(Runner1 b, Prepare(*engine, g, *gpu, lease));
    Runner1* two[2] = {&a, &b};
    Countdown warm;
    for (int i = 0; i < 4; ++i)
      TESSERA_RETURN_IF_ERROR(gpu->device().Submit(two[i % 2]->batch, runtime::Completion::kEvent,
                                                   [&](Status s) { warm.Done(s); }));
    TESSERA_RETURN_IF_ERROR(warm.WaitFor(4));
    Countdown cd;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.iterations; ++i) {
      if (i >= 2) TESSERA_RETURN_IF_ERROR(cd.WaitFor(i - 1));  // the copy is free again
      TESSERA_RETURN_IF_ERROR(gpu->device().Submit(two[i % 2]->batch, runtime::Completion::kEvent,
                                                   [&](Status s) { cd.Done(s); }));
    }
    TESSERA_RETURN_IF_ERROR(cd.WaitFor(o.iterations));
    const double path_s = Seconds(t0, std::chrono::steady_clock::now());
    // The peer: plain cudaMemcpyAsync from pinned memory, one stream, the same bytes.
    void* dev = nullptr;
    cudaStream_t s = nullptr;
    TESSERA_RETURN_IF_ERROR(Cuda(cudaSetDevice(o.gpu), "cudaSetDevice"));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaMalloc(&dev, bytes), "cudaMalloc"));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamCreate(&s), "cudaStreamCreate"));
    for (int i = 0; i < 4; ++i) cudaMemcpyAsync(dev, a.in[0], bytes, cudaMemcpyHostToDevice, s);
    cudaStreamSynchronize(s);
    const auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.iterations; ++i)
      cudaMemcpyAsync(dev, a.in[0], bytes, cudaMemcpyHostToDevice, s);
    const Status peer_st = Cuda(cudaStreamSynchronize(s), "cudaMemcpyAsync");
    const double peer_s = Seconds(t1, std::chrono::steady_clock::now());
    cudaStreamDestroy(s);
    cudaFree(dev);
    TESSERA_RETURN_IF_ERROR(peer_st);
    for (Runner1* r : two) {
      for (void* p : r->in) gpu->pinned().Put(p);
      for (void* p : r->out) gpu->pinned().Put(p);
      gpu->pinned().Put(r->err);
    }
    const double total = static_cast<double>(bytes) * o.iterations;
    const double path_gbs = total / path_s / 1e9, peer_gbs = total / peer_s / 1e9;
    fmt::print(
        "{:>8.2f} MiB  data path {:6.2f} GB/s   cudaMemcpyAsync {:6.2f} GB/s   ratio {:.3f}\n", mib,
        path_gbs, peer_gbs, path_gbs / peer_gbs);
    rows.push_back({{"mib", mib},
                    {"bytes", bytes},
                    {"iterations", o.iterations},
                    {"data_path_gbs", path_gbs},
                    {"memcpy_gbs", peer_gbs},
                    {"ratio", path_gbs / peer_gbs}});
  }
  gpu->Release(lease);
  return json{{"benchmark", "gpu-datapath-h2d"},
              {"note",
               "data path: pinned buffers, per-place copy-in stream, ReduceSum model, 2 "
               "executables in flight, event completion; peer: cudaMemcpyAsync from pinned "
               "memory on one stream; target ratio >= 0.9"},
              {"results", rows}};
}

Result<json> CompletionModes(const Opts& o) {
  TESSERA_ASSIGN_OR_RETURN(auto gpu, OpenGpu(o));
  CudaEngineOptions eo;
  eo.device = o.gpu;
  TESSERA_ASSIGN_OR_RETURN(auto engine, CreateCudaEngine(eo));
  TESSERA_ASSIGN_OR_RETURN(auto built, zoo::Build("tiny_mlp"));
  TESSERA_ASSIGN_OR_RETURN(Graph g, ImportOnnx(built.onnx_bytes));
  TESSERA_ASSIGN_OR_RETURN(auto lease, gpu->Acquire("gpu-bench", 0));
  TESSERA_ASSIGN_OR_RETURN(Runner1 r, Prepare(*engine, g, *gpu, lease));
  json rows = json::array();
  for (auto how :
       {runtime::Completion::kEvent, runtime::Completion::kSync, runtime::Completion::kSpin}) {
    std::vector<double> us;
    us.reserve(o.batches);
    for (int i = 0; i < 50; ++i) {  // warm-up
      Countdown cd;
      TESSERA_RETURN_IF_ERROR(gpu->device().Submit(r.batch, how, [&](Status s) { cd.Done(s); }));
      TESSERA_RETURN_IF_ERROR(cd.WaitFor(1));
    }
    const double cpu0 = CpuSeconds();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.batches; ++i) {
      Countdown cd;
      const auto a = std::chrono::steady_clock::now();
      TESSERA_RETURN_IF_ERROR(gpu->device().Submit(r.batch, how, [&](Status s) { cd.Done(s); }));
      TESSERA_RETURN_IF_ERROR(cd.WaitFor(1));
      us.push_back(Seconds(a, std::chrono::steady_clock::now()) * 1e6);
    }
    const double wall = Seconds(t0, std::chrono::steady_clock::now());
    const double cores = (CpuSeconds() - cpu0) / wall;
    std::sort(us.begin(), us.end());
    auto pct = [&](double p) { return us[std::min(us.size() - 1, size_t(p * us.size()))]; };
    fmt::print("{:>6}: p50 {:7.1f} us  p99 {:7.1f} us  CPU {:.2f} cores\n",
               runtime::CompletionName(how), pct(0.5), pct(0.99), cores);
    rows.push_back({{"mode", runtime::CompletionName(how)},
                    {"batches", o.batches},
                    {"p50_us", pct(0.5)},
                    {"p99_us", pct(0.99)},
                    {"mean_us", std::accumulate(us.begin(), us.end(), 0.0) / us.size()},
                    {"cpu_cores", cores}});
  }
  for (void* p : r.in) gpu->pinned().Put(p);
  for (void* p : r.out) gpu->pinned().Put(p);
  gpu->pinned().Put(r.err);
  r.exe.reset();
  gpu->Release(lease);
  return json{{"benchmark", "gpu-completion"},
              {"note",
               "tiny_mlp batch 1, one batch at a time, submit to completion seen by the "
               "submitter; CPU = process CPU time / wall time during the mode's run"},
              {"results", rows}};
}
#endif

int Run(const Opts& o, const std::string& what) {
#ifdef TESSERA_HAVE_CUDA
  auto devices = gpu::ListDevices();
  if (!devices.ok() || devices->empty()) {
    fmt::print(stderr, "error: UNAVAILABLE: gpu-bench needs a GPU ({})\n",
               devices.ok() ? "none visible" : devices.status().message());
    return 1;
  }
  auto r = what == "datapath" ? DataPath(o) : CompletionModes(o);
  if (!r.ok()) {
    fmt::print(stderr, "error: {}\n", r.status().ToString());
    return 1;
  }
  json j = *r;
  const auto& d = (*devices)[std::min<size_t>(o.gpu, devices->size() - 1)];
  j["machine"] = Machine();
  j["machine"]["gpu"] = d.name;
  j["machine"]["gpu_sms"] = d.sm_count;
  j["commit"] = Commit();
  j["date"] = UtcNow();
  j["sharing"] = o.sharing;
  if (!o.json_out.empty()) std::ofstream(o.json_out) << j.dump(1) << "\n";
  return 0;
#else
  (void)o;
  (void)what;
  fmt::print(stderr, "error: UNAVAILABLE: this build of tessera has no CUDA backend\n");
  return 1;
#endif
}

}  // namespace

Runner SetupGpuBench(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.require_subcommand(1);
  app.add_option("--gpu", o->gpu, "GPU index")->capture_default_str();
  app.add_option("--sharing", o->sharing, "Slice provider the data path runs on")
      ->capture_default_str()
      ->check(CLI::IsMember({"green", "mps", "streams", "exclusive"}));
  app.add_option("--json", o->json_out, "Write the results (with machine, commit, date) here");
  auto* dp = app.add_subcommand(
      "datapath", "Host-to-device throughput of the data path vs plain cudaMemcpyAsync");
  dp->add_option("--sizes-mib", o->sizes_mib, "Input sizes (MiB)")->delimiter(',');
  dp->add_option("--iterations", o->iterations, "Copies per size")
      ->check(CLI::Range(4, 1000000))
      ->capture_default_str();
  auto* cm = app.add_subcommand(
      "completion", "Latency and CPU of event-notifier, synchronize and spin completion");
  cm->add_option("--batches", o->batches, "Batches per mode")
      ->check(CLI::Range(10, 10000000))
      ->capture_default_str();
  return [o, dp] { return Run(*o, dp->parsed() ? "datapath" : "completion"); };
}

}  // namespace tessera::cli
