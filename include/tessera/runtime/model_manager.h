// The models a server serves: loading from a Triton-layout repository (all versions its
// version policy selects), reloading make-before-break, unloading after in-flight requests
// finish, and routing requests to a version's queue. Frontends (HTTP, gRPC) talk only to this.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tessera/engine/engine.h"
#include "tessera/model/config.h"
#include "tessera/runtime/gpu.h"
#include "tessera/runtime/request.h"
#include "tessera/runtime/stats.h"

namespace tessera {

enum class ModelState { kUnavailable, kLoading, kReady, kUnloading };
const char* ModelStateName(ModelState s);  // Triton's spelling: "READY", "UNAVAILABLE", ...

enum class ModelControlMode { kNone, kExplicit, kPoll };

// The engine a model version's instances run on, chosen from its config (instance_group kind, the
// `precision` parameter) and, for GPU engines, the GPU an instance group lists (`gpu`; -1: the
// group lists none, the factory picks). A model whose groups list several GPUs gets one engine
// per GPU. An error fails that model's load with the reason.
using EngineFactory = std::function<Result<std::unique_ptr<Engine>>(const ModelConfig&, int gpu)>;

struct ManagerOptions {
  std::string repository;
  ModelControlMode mode = ModelControlMode::kNone;
  std::vector<std::string> startup_models;  // explicit mode: loaded at start ("*": all)
  int threads_per_instance = 0;             // compute threads per executor; 0: cores / instances
  size_t max_queue = 4096;                  // per model version, whatever the config says
  bool warmup = true;                       // compile every batch size and run it once at load
  EngineFactory engine;                     // null: the CPU engine
  // Memory the CPU models may hold together (weights + arenas); 0: no limit. GPU models are held
  // to their GPU's memory. A load that would pass its device's budget fails, naming who holds it.
  int64_t cpu_memory_budget_bytes = 0;
  // The GPUs models may be sliced on, by index (a null entry: that GPU is not sliced; its models
  // run on the engine's own stream and staging). A model whose engine runs on cuda:N with an
  // entry here gets, per instance, the slice its config asks for (slice_sms / slice_percent) or
  // the unconfined whole GPU, and goes through that GPU's data path.
  std::vector<std::shared_ptr<runtime::GpuSlices>> gpus;
  runtime::Completion completion = runtime::Completion::kEvent;
  int gpu_pipeline = 2;  // executables per batch shape and GPU instance (double buffering)
  // Instances may be added live (serve --tune): CPU models keep their graph's weights after
  // compiling, so that a new instance can compile its own executables. Without it, a CPU model
  // whose shapes are fixed frees them and cannot gain an instance.
  bool live_instances = false;
};

// A loaded model version, read-only, for metadata, config and statistics. Safe to keep after
// the version is unloaded (it then reports not ready).
class ModelHandle {
 public:
  virtual ~ModelHandle() = default;
  virtual const std::string& name() const = 0;
  virtual int64_t version() const = 0;
  virtual const ModelConfig& config() const = 0;
  virtual bool ready() const = 0;
  virtual ModelStatsSnapshot stats() const = 0;
  virtual size_t memory_bytes() const = 0;  // weights + activation arenas of every executable
};

// One instance of a model and its share of the device.
struct InstanceSlice {
  int index = 0;
  int gpu = -1;  // the sliced GPU it runs on (-1: the CPU, or a GPU that is not sliced)
  int sms = 0;   // its slice's SMs (sliced GPU; the GPU's SMs when unconfined)
  bool confined = false;
  int threads = 0;    // CPU: compute threads its batches run with
  int max_batch = 0;  // rows its batches gather at most (its own limit or the model's, the lower)
  int own_max_batch = 0;  // its own limit (0: none, the model's applies)
  // What it ran since it started:
  uint64_t batches = 0, rows = 0;
  double compute_ns = 0;
  std::map<uint64_t, uint64_t> batch_rows;  // executed batch rows -> count
};

// An instance a model should have (a plan's slice, or a layout kept across a reload): its GPU
// (-1: the CPU), its size in threads or SMs (0: leave the size as it is) and its own batch limit
// (0: none).
struct InstanceTarget {
  int gpu = -1;
  int size = 0;
  int own_max_batch = 0;
};

// One step of turning a model's instances into a wanted set.
struct LayoutStep {
  enum class Kind { kChange, kAdd, kRemove };
  Kind kind = Kind::kChange;
  int index = -1;         // kChange, kRemove: the instance
  int size_was = 0;       // kChange: its size now
  InstanceTarget target;  // kChange (size 0: unchanged), kAdd
};

// The steps from `have` to `want`, make before break: each wanted instance takes the first
// unmatched one on its GPU and is resized and / or given its limit where they differ (an
// instance that runs unconfined on a whole GPU keeps its size); the wanted ones left over are
// added; then the unmatched ones are removed. Pure: `tessera slice apply` runs the steps over the
// admin API, a reload runs them on the new version.
std::vector<LayoutStep> LayoutSteps(const std::vector<InstanceSlice>& have,
                                    const std::vector<InstanceTarget>& want);

// A model's share of its device, as `tessera slice` sees it. On the CPU engine a slice is the
// number of compute threads each instance runs a batch with; on a sliced GPU it is SMs.
struct SliceState {
  std::string model;
  std::string engine;  // "cpu", "cuda"
  int threads = 0;     // CPU: compute threads per instance (the first's; see instance_slices)
  int instances = 0;
  // The rows a batch gathers at most: the config's max_batch_size (config_max_batch) unless a
  // live limit (SetBatchLimit) caps it; 0 for models that do not batch.
  int max_batch = 0;
  int config_max_batch = 0;
  std::vector<int64_t> versions;  // the ready versions it applies to
  // GPU models on a sliced GPU:
  int gpu = -1;
  int sms = 0;            // per instance: the first's (the GPU's SMs when unconfined)
  int gpu_sms = 0;        // the GPU's SMs
  bool confined = false;  // holds a slice (else runs on the whole GPU)
  std::string sharing;    // "green", "mps", "streams", "exclusive"
  // The last live resize (SetSliceSms): how long it took, and the host-side gap between the
  // old slice's last batch finishing and the new slice's first batch starting (0: they
  // overlapped; -1: not known yet, until a batch has run on each side of the flip).
  double resize_ms = 0;
  double resize_gap_us = -1;
  // The newest ready version's instances (the config's, and any added live).
  std::vector<InstanceSlice> instance_slices;
};

// A live change of one instance (AddInstance, ChangeInstance): a size in threads (CPU) or SMs
// (sliced GPU), a GPU for a new one, and its own batch limit; what is unset stays.
struct InstanceChange {
  std::optional<int> size;
  int gpu = -1;                  // AddInstance: the GPU (-1: the first instance's device)
  std::optional<int> max_batch;  // 0: the model's limit alone
};

// One admin change of a model's slice (tessera slice set, the admin APIs): a size in threads
// (CPU) or SMs (sliced GPU), a batch limit, or both; what is unset stays as it is.
struct SliceChange {
  std::optional<int> threads, sms;
  std::optional<int> max_batch;  // 0: the config's max_batch_size again
};

struct ModelIndexEntry {
  std::string name;
  int64_t version = 0;  // 0: no version loaded
  ModelState state = ModelState::kUnavailable;
  std::string reason;  // why it is unavailable
};

class ModelManager {
 public:
  explicit ModelManager(ManagerOptions options);
  ~ModelManager();  // stops every model (answers what is queued with UNAVAILABLE)

  // Loads what the control mode says to load at start. A model that fails is reported (in the
  // index, with the reason, and in the returned list) and does not stop the others.
  std::vector<std::pair<std::string, Status>> LoadStartupModels();
  // Loads a model, or reloads it: the versions its policy selects are compiled and warmed up
  // while the old ones keep serving, then requests flip to the new ones and the old ones
  // drain. On failure the old versions keep serving and the error says why.
  Status Load(const std::string& name);
  // Stops routing to the model, lets queued and running requests finish, then frees it.
  // NotFound when it is not loaded.
  Status Unload(const std::string& name);
  // Reloads models whose files changed and loads new ones (poll mode).
  void Poll();

  // Validates and queues `r`; `r->done` is always called exactly once, with an error when the
  // model is unknown, not ready, or the request is invalid or cannot be admitted.
  void Infer(RequestPtr r);

  // The given version, or the newest ready one for version 0. NotFound / Unavailable say why.
  Result<std::shared_ptr<ModelHandle>> Get(const std::string& name, int64_t version = 0) const;
  std::vector<int64_t> ReadyVersions(const std::string& name) const;
  // Every model in the repository (and every loaded one), with its state.
  std::vector<ModelIndexEntry> Index() const;
  // Statistics of the ready versions: all models when `name` is empty; one version when given.
  Result<std::vector<ModelStatsSnapshot>> Stats(const std::string& name, int64_t version) const;
  // The model's current slice (NotFound when it is not loaded).
  Result<SliceState> Slice(const std::string& name) const;
  // Changes the model's slice live: every ready version's instances take `threads` compute
  // threads from their next batch on (nothing queued or running fails; a reload keeps it).
  // InvalidArgument for a size the machine cannot give, and for GPU models (their slice is set
  // in SMs: SetSliceSms).
  Result<SliceState> SetSliceThreads(const std::string& name, int threads);
  // Changes a GPU model's slice live, make before break: every instance of every ready version
  // gets a new slice of `sms` SMs, compiled and warmed up there while the old one serves; the
  // flip happens at a batch boundary and the old slice is freed once its batches are answered.
  // Nothing queued or running fails. InvalidArgument for a size the GPU's granularity does not
  // allow; ResourceExhausted when the SMs are not free (nothing changes); FailedPrecondition for
  // CPU models and models without a slice.
  Result<SliceState> SetSliceSms(const std::string& name, int sms);
  // Caps the rows each batch of the model gathers (every ready version, from the next batch on;
  // a reload keeps it): 1 to the config's max_batch_size, or 0 for the config's again. The
  // executables stay; nothing queued or running fails. InvalidArgument outside that range;
  // FailedPrecondition for a model that does not batch (max_batch_size 0).
  Result<SliceState> SetBatchLimit(const std::string& name, int max_batch);
  // What SetBatchLimit would refuse, without changing anything.
  Status CheckBatchLimit(const std::string& name, int max_batch) const;
  // The admin APIs' change: the batch limit is checked first (a bad one changes nothing), then
  // the size changes (SetSliceThreads / SetSliceSms), then the limit. InvalidArgument when the
  // change asks for nothing.
  Result<SliceState> ChangeSlice(const std::string& name, const SliceChange& change);
  // Live instances (replicas) of the model's newest ready version. A reload keeps them (the new
  // version is given the same instances, sizes, GPUs and limits before it takes requests) while
  // the config's instance groups stay the same; a config that changes them starts afresh.
  // AddInstance compiles and warms up a new instance on its own slice
  // (`size` threads or SMs; required) while the others serve, then it takes batches from the
  // shared queue. RemoveInstance stops instance `index` at its batch boundary, lets its batches
  // finish and frees its slice; queued requests stay for the others. ChangeInstance resizes one
  // instance (make before break on a GPU) and/or sets its batch limit. Nothing queued or
  // running fails. Errors: NotFound (model, instance), InvalidArgument (a size, GPU or batch
  // limit out of range), ResourceExhausted (no free SMs or memory: nothing changes),
  // FailedPrecondition (the last instance; a CPU model that freed its weights, see
  // ManagerOptions::live_instances).
  Result<SliceState> AddInstance(const std::string& name, const InstanceChange& change);
  Result<SliceState> RemoveInstance(const std::string& name, int index);
  Result<SliceState> ChangeInstance(const std::string& name, int index,
                                    const InstanceChange& change);
  // Every model the server was told to serve is ready (startup done, nothing failed to load).
  bool AllReady() const;

  // Refuse new requests from now on (shutdown); queued and running ones still finish.
  void StopAccepting();
  // Requests admitted and not yet answered.
  size_t InFlight() const;
  const ManagerOptions& options() const { return opts_; }

 private:
  struct Entry;
  struct Impl;
  ManagerOptions opts_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera
