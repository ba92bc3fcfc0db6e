// `tessera serve`: the inference server (KServe v2 HTTP + gRPC, Prometheus metrics).
#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <thread>

#include "engine/cuda/reference.h"
#include "server/serve_tuner.h"
#include "server/server.h"
#include "tessera/core/body.h"
#include "tessera/runtime/emulated_gpu.h"
#include "tools/commands.h"
#ifdef TESSERA_HAVE_CUDA
#include "gpu/data_path.h"
#include "gpu/device_info.h"
#include "tessera/engine/cuda_engine.h"
#endif

namespace tessera::cli {
namespace {

struct Opts {
  std::string repo;
  std::string address = "0.0.0.0";
  int http_port = 8000, grpc_port = 8001, metrics_port = 8002;
  int http_threads = 2;
  std::string mode = "none";
  std::vector<std::string> load_models;
  int poll_secs = 15;
  size_t max_request_bytes = size_t{256} << 20;
  size_t max_queue = 4096;
  int threads_per_instance = 0;
  bool no_warmup = false;
  std::string admin_token;
  int exit_timeout = 30;
  int verbose = 0;
  std::string engine = "auto";
  int64_t memory_budget_mib = 0;
  std::string sharing = "auto";
  int emulated_gpus = 1;
  std::string completion = "event";
  int gpu_pipeline = 2;
  bool tune = false;
  bool live_instances = false;
  double tune_window = 5;
  int64_t tune_learn_after = 0;
};

// One sliced GPU per visible device, as --sharing says. auto: green contexts, or plain streams
// (with a warning) where the driver has none; none: no slicing, GPU models run on their
// engine's own stream. An explicit kind that cannot work is an error.
Result<std::vector<std::shared_ptr<runtime::GpuSlices>>> SliceGpus(const std::string& sharing,
                                                                   const std::string& engine,
                                                                   int emulated_gpus) {
  std::vector<std::shared_ptr<runtime::GpuSlices>> out;
  if (sharing == "none") return out;
  if (engine == "cuda-host") {  // emulated GPUs: the GPU serving path without a GPU
    if (sharing != "auto" && sharing != "emulated")
      return Status::InvalidArgument(
          "--engine cuda-host runs on an emulated GPU: use --sharing "
          "emulated (or auto, or none)");
    for (int i = 0; i < emulated_gpus; ++i) {
      out.push_back(std::make_shared<runtime::GpuSlices>(
          runtime::CreateEmulatedGpu(runtime::EmulatedGpuLayout(i))));
      spdlog::warn("{}: sharing emulated (slices are accounted, not enforced; for testing)",
                   out.back()->layout().Describe());
    }
    return out;
  }
  if (sharing == "emulated")
    return Status::InvalidArgument("--sharing emulated needs --engine cuda-host");
#ifdef TESSERA_HAVE_CUDA
  auto devices = gpu::ListDevices();
  if (!devices.ok() || devices->empty()) {
    if (sharing == "auto") return out;
    return Status::Unavailable("--sharing " + sharing + ": no GPU is visible");
  }
  for (const auto& d : *devices) {
    auto dev = gpu::CreateGpuDevice(sharing == "auto" ? "green" : sharing, d.index);
    if (!dev.ok() && sharing == "auto") {
      spdlog::warn("GPU {}: green contexts unavailable ({}); sharing by plain streams, unconfined",
                   d.index, dev.status().message());
      dev = gpu::CreateGpuDevice("streams", d.index);
    }
    if (!dev.ok()) return dev.status().WithContext("GPU " + std::to_string(d.index));
    auto slices = std::make_shared<runtime::GpuSlices>(std::move(dev).value());
    spdlog::info("{}: sharing {}", slices->layout().Describe(), slices->kind());
    out.push_back(std::move(slices));
  }
#else
  if (sharing != "auto")
    return Status::Unavailable("--sharing " + sharing +
                               ": this build of tessera has no CUDA backend");
#endif
  return out;
}

// The engine each model runs on. --engine auto takes the GPU when one is visible (and this build
// has the CUDA backend), else the CPU; a model's instance_group kind KIND_CPU / KIND_GPU decides
// for that model. Returns the factory, or the reason --engine cuda cannot work here.
Result<EngineFactory> ChooseEngines(const std::string& choice) {
  Status no_gpu = Status::Unavailable("this build of tessera has no CUDA backend");
#ifdef TESSERA_HAVE_CUDA
  auto devices = gpu::ListDevices();
  if (!devices.ok())
    no_gpu = devices.status();
  else if (devices->empty())
    no_gpu = Status::Unavailable("no GPU is visible");
  else
    no_gpu = Status::OK();
#endif
  if (choice == "cuda" && !no_gpu.ok()) return no_gpu.WithContext("--engine cuda");
  if (choice == "cuda-host") {
    spdlog::warn(
        "engine: cuda-host (the CUDA backend's lowered programs interpreted on the host, on an "
        "emulated GPU: for testing the GPU serving path, slow)");
    return EngineFactory([](const ModelConfig& c, int listed) -> Result<std::unique_ptr<Engine>> {
      for (const auto& g : c.instance_groups)
        if (g.kind == InstanceGroup::Kind::kCpu) return CreateCpuEngine(0);
      GpuPrecision p = GpuPrecision::kFp32;
      if (auto it = c.parameters.find("precision"); it != c.parameters.end()) {
        TESSERA_ASSIGN_OR_RETURN(p, ParseGpuPrecision(it->second));
      }
      return cuda::CreateHostProgramEngine(p, listed >= 0 ? listed : 0);
    });
  }
  const bool gpu_default = choice == "cuda" || (choice == "auto" && no_gpu.ok());
  if (gpu_default) {
    spdlog::info("engine: cuda (models run on the GPU unless their instance_group says KIND_CPU)");
  } else {
    spdlog::info("engine: cpu{}", choice == "auto" ? " (" + no_gpu.message() + ")" : "");
  }
  return EngineFactory(
      [gpu_default, no_gpu](const ModelConfig& c, int listed) -> Result<std::unique_ptr<Engine>> {
        bool gpu = gpu_default;
        const int device = listed >= 0 ? listed : 0;
        for (const auto& g : c.instance_groups) {
          if (g.kind == InstanceGroup::Kind::kCpu) gpu = false;
          if (g.kind == InstanceGroup::Kind::kGpu) gpu = true;
        }
        if (!gpu) return CreateCpuEngine(0);
        if (!no_gpu.ok())
          return no_gpu.WithContext("model '" + c.name + "' asks for KIND_GPU instances");
#ifdef TESSERA_HAVE_CUDA
        CudaEngineOptions o;
        o.device = device;
        if (auto it = c.parameters.find("precision"); it != c.parameters.end()) {
          TESSERA_ASSIGN_OR_RETURN(o.precision, ParseGpuPrecision(it->second));
        }
        return CreateCudaEngine(o);
#else
        (void)device;
        return no_gpu;
#endif
      });
}

int Run(const Opts& o) {
  // Signals go to sigwait below, not to whichever thread happens to run.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  if (o.verbose > 0) spdlog::set_level(spdlog::level::debug);

  ManagerOptions mo;
  mo.repository = o.repo;
  mo.mode = o.mode == "explicit" ? ModelControlMode::kExplicit
            : o.mode == "poll"   ? ModelControlMode::kPoll
                                 : ModelControlMode::kNone;
  mo.startup_models = o.load_models;
  mo.max_queue = o.max_queue;
  mo.threads_per_instance = o.threads_per_instance;
  mo.warmup = !o.no_warmup;
  mo.cpu_memory_budget_bytes = o.memory_budget_mib << 20;
  mo.live_instances = o.live_instances || o.tune;  // the tuner adds and removes instances
  auto engines = ChooseEngines(o.engine);
  if (!engines.ok()) {
    fmt::print(stderr, "error: {}\n", engines.status().ToString());
    return 1;
  }
  mo.engine = std::move(engines).value();
  auto gpus = o.engine == "cpu" ? Result<std::vector<std::shared_ptr<runtime::GpuSlices>>>(
                                      std::vector<std::shared_ptr<runtime::GpuSlices>>{})
                                : SliceGpus(o.sharing, o.engine, o.emulated_gpus);
  if (!gpus.ok()) {
    fmt::print(stderr, "error: {}\n", gpus.status().ToString());
    return 1;
  }
  mo.gpus = std::move(gpus).value();
  mo.completion = runtime::ParseCompletion(o.completion).value();
  mo.gpu_pipeline = o.gpu_pipeline;
  // On a sliced GPU, HTTP request bodies land in pinned memory (their tensors are used in place).
  // Removed after the manager and the frontends are gone, when no body is left.
  struct BodyMemoryGuard {
    ~BodyMemoryGuard() { SetBodyMemory({}); }
  } body_memory_guard;
  if (!mo.gpus.empty()) {
    std::shared_ptr<runtime::GpuSlices> g = mo.gpus.front();
    SetBodyMemory({[g](size_t n) -> void* {
                     auto p = g->pinned().Get(n);
                     return p.ok() ? *p : nullptr;
                   },
                   [g](void* p) { return g->pinned().Put(p); }});
  }
  ModelManager manager(mo);

  server::ServerOptions so;
  so.address = o.address;
  so.http_port = o.http_port;
  so.grpc_port = o.grpc_port;
  so.metrics_port = o.metrics_port;
  so.http_threads = o.http_threads;
  so.max_request_bytes = o.max_request_bytes;
  so.admin_token = o.admin_token;
  if (so.admin_token.empty())
    if (const char* t = std::getenv("TESSERA_ADMIN_TOKEN")) so.admin_token = t;
  so.exit_timeout_s = o.exit_timeout;
  so.pin_system_shm = !mo.gpus.empty() && o.engine != "cuda-host";
  std::unique_ptr<server::ServeTuner> tuner;
  if (o.tune) {
    server::ServeTunerOptions to;
    to.window_s = o.tune_window;
    to.tuner.learn_interference_after = o.tune_learn_after;
    tuner = std::make_unique<server::ServeTuner>(&manager, to);
    so.extra_metrics = [t = tuner.get()] { return t->PrometheusText(); };
  }

  // Frontends first, so health checks answer (live, not ready) while models load.
  auto server = server::Server::Start(&manager, so);
  if (!server.ok()) {
    fmt::print(stderr, "error: {}\n", server.status().ToString());
    return 1;
  }
  const std::string host = o.address == "0.0.0.0" ? "localhost" : o.address;
  if ((*server)->http_port() >= 0)
    fmt::print("HTTP     http://{}:{}/v2  (KServe v2 / Triton HTTP)\n", host,
               (*server)->http_port());
  if ((*server)->grpc_port() >= 0)
    fmt::print("gRPC     {}:{}  (inference.GRPCInferenceService)\n", host, (*server)->grpc_port());
  if ((*server)->metrics_port() >= 0)
    fmt::print("metrics  http://{}:{}/metrics  (Prometheus)\n", host, (*server)->metrics_port());
  std::fflush(stdout);

  int failed = 0;
  for (const auto& [name, st] : manager.LoadStartupModels())
    if (!st.ok()) {
      ++failed;
      fmt::print(stderr, "error: {}{}\n",
                 name.empty() ? "" : "model '" + name + "': ", st.ToString());
    }
  for (const auto& e : manager.Index())
    if (e.state == ModelState::kReady)
      fmt::print("model    {} version {} READY\n", e.name, e.version);
  fmt::print(
      "{} (Ctrl-C or SIGTERM stops it gracefully)\n",
      failed ? fmt::format("serving; {} model(s) failed to load", failed) : std::string("ready"));
  std::fflush(stdout);

  std::atomic<bool> polling{mo.mode == ModelControlMode::kPoll};
  std::thread poller;
  if (polling)
    poller = std::thread([&] {
      while (polling) {
        for (int i = 0; i < o.poll_secs * 10 && polling; ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (polling) manager.Poll();
      }
    });

  if (tuner) {
    tuner->Start();
    fmt::print(
        "tuner    every {:g} s: sizes models with slo_ms and profile parameters (live resizes, "
        "replicas)\n",
        o.tune_window);
    std::fflush(stdout);
  }

  int sig = 0;
  sigwait(&set, &sig);
  fmt::print("received {}: stopping (in-flight requests get up to {} s)\n",
             sig == SIGINT ? "SIGINT" : "SIGTERM", o.exit_timeout);
  std::fflush(stdout);
  polling = false;
  if (poller.joinable()) poller.join();
  if (tuner) tuner->Stop();  // the metrics frontend may still read it until the server goes
  const size_t left = (*server)->Shutdown();
  server->reset();
  fmt::print("stopped{}\n", left ? fmt::format(" ({} request(s) were still running)", left) : "");
  return left ? 1 : 0;
}

}  // namespace

Runner SetupServe(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("--model-repository", o->repo, "Triton-layout model repository")->required();
  app.add_option("--address", o->address, "Address to listen on (all frontends)")
      ->capture_default_str();
  app.add_option("--http-port", o->http_port, "KServe v2 HTTP port (-1: off)")
      ->capture_default_str();
  app.add_option("--grpc-port", o->grpc_port, "KServe v2 gRPC port (-1: off)")
      ->capture_default_str();
  app.add_option("--metrics-port", o->metrics_port, "Prometheus metrics port (-1: off)")
      ->capture_default_str();
  app.add_option("--http-threads", o->http_threads, "HTTP event-loop threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--model-control-mode", o->mode,
                 "none: load every model at start; explicit: load what --load-model names and "
                 "allow repository load/unload; poll: follow the repository's changes")
      ->check(CLI::IsMember({"none", "explicit", "poll"}))
      ->capture_default_str();
  app.add_option("--load-model", o->load_models,
                 "Model to load at start in explicit mode ('*': all); repeatable");
  app.add_option("--repository-poll-secs", o->poll_secs, "Poll interval in poll mode")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  app.add_option("--max-request-bytes", o->max_request_bytes,
                 "Largest request body (HTTP) or message (gRPC) accepted")
      ->capture_default_str();
  app.add_option("--max-queue-size", o->max_queue,
                 "Requests a model version may queue before refusing more")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  app.add_option("--threads-per-instance", o->threads_per_instance,
                 "Compute threads per model instance (0: cores / instances)")
      ->capture_default_str();
  app.add_flag("--no-warmup", o->no_warmup,
               "Skip compiling and running every batch size at load (faster start, slower "
               "first requests, no latency estimates until traffic)");
  app.add_option("--admin-token", o->admin_token,
                 "Bearer token required for repository, shared-memory and log-setting calls "
                 "(or TESSERA_ADMIN_TOKEN)");
  app.add_option("--exit-timeout-secs", o->exit_timeout,
                 "On SIGTERM, how long in-flight requests may take to finish")
      ->capture_default_str();
  app.add_flag("--tune", o->tune,
               "Run the online tuner: every --tune-window seconds it sizes each model that has "
               "slo_ms and profile parameters (a `tessera profile` file), live, from its "
               "observed rate and SLO attainment: it resizes instances (CPU: compute threads; "
               "sliced GPU: SMs), adds replicas where a slice cannot grow enough (on another "
               "GPU), and removes them when the load goes");
  app.add_flag("--live-instances", o->live_instances,
               "Let instances be added live (POST /v2/models/M/instances, `tessera slice add`): "
               "CPU models keep their graph's weights after compiling so that a new instance can "
               "compile its own (more memory). Implied by --tune");
  app.add_option("--tune-window", o->tune_window, "Seconds between the tuner's decisions")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--tune-learn-interference-after", o->tune_learn_after,
                 "Once the live estimator holds this many slice windows (next to busy "
                 "neighbours), the tuner predicts interference with the alpha fitted from them "
                 "instead of the planner's default (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->default_val(0);
  app.add_option("--engine", o->engine,
                 "auto (the GPU when one is visible, else the CPU), cpu, cuda, or cuda-host (the "
                 "CUDA backend's programs interpreted on the host, on an emulated GPU: tests the "
                 "GPU serving path without a GPU, slowly); a model's instance_group kind "
                 "(KIND_CPU / KIND_GPU) decides for that model")
      ->default_val("auto")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "cuda-host"}));
  app.add_option("--memory-budget-mib", o->memory_budget_mib,
                 "Memory the CPU models may hold together (weights + activation arenas); a load "
                 "past it fails with who holds what (0: no limit; GPU models are held to their "
                 "GPU's memory)")
      ->default_val(0)
      ->check(CLI::NonNegativeNumber);
  app.add_option("--sharing", o->sharing,
                 "How GPU models share a GPU: green (CUDA green contexts: each instance on its "
                 "own SMs, slice_sms / slice_percent in its config, resizable live), mps (an "
                 "MPS context per instance limited to its slice's SM count; needs an MPS daemon "
                 "that partitions per context, checked at start), streams "
                 "(one stream per instance on the whole GPU, uncontrolled), exclusive (one "
                 "batch at a time), none (no slicing: each executable on its own stream), "
                 "emulated (with --engine cuda-host); auto: green, or streams where the driver "
                 "has no green contexts")
      ->default_val("auto")
      ->check(CLI::IsMember({"auto", "green", "mps", "streams", "exclusive", "none", "emulated"}));
  app.add_option("--emulated-gpus", o->emulated_gpus,
                 "With --engine cuda-host: how many GPUs to emulate (instance_group gpus and the "
                 "tuner's replicas place instances on them)")
      ->default_val(1)
      ->check(CLI::Range(1, 16));
  app.add_option("--completion", o->completion,
                 "How a GPU batch's end is learned: event (a notifier thread per GPU, woken by "
                 "the batch's event), sync (the executor waits in cudaStreamSynchronize) or "
                 "spin (the executor polls the event)")
      ->default_val("event")
      ->check(CLI::IsMember({"event", "sync", "spin"}));
  app.add_option("--gpu-pipeline", o->gpu_pipeline,
                 "Executables per batch shape of a GPU instance: 2 lets the next batch's input "
                 "copy overlap this batch's compute (double buffering), at twice the "
                 "activation memory")
      ->default_val(2)
      ->check(CLI::Range(1, 8));
  app.add_flag("-v,--verbose", o->verbose, "More log output");
  return [o]() { return Run(*o); };
}

}  // namespace tessera::cli
