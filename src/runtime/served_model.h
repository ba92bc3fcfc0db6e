// One loaded model version: request validation, the EDF queue, and the executor threads (one
// per instance) that form batches, run them and answer. Owned through shared_ptr by the
// manager and by every request routed to it, so a version being replaced or unloaded stays
// alive until its last request is answered.
#pragma once

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/latency_estimator.h"
#include "runtime/model_queue.h"
#include "tessera/runtime/model_manager.h"

namespace tessera::runtime {

class Instance;

// InvalidArgument (naming `what`) unless 1 <= threads <= the machine's cores: a CPU slice.
Status CheckComputeThreads(const std::string& what, int threads);

class ServedModel final : public ModelHandle, public std::enable_shared_from_this<ServedModel> {
 public:
  ServedModel(ModelConfig config, Graph graph, int64_t version, std::string model_dir,
              const ManagerOptions& options);
  ~ServedModel() override;

  // Compiles every instance's executables, runs the warm-up, starts the executor threads.
  // Blocking; on failure nothing keeps running.
  Status Start();
  // Validates `r` and queues it. On error `r` is untouched and the caller answers it.
  Status Enqueue(RequestPtr& r);
  // Stops accepting. With `drain`, queued requests still run; without, they are answered
  // UNAVAILABLE. Returns when the executor threads have exited.
  void Stop(bool drain);

  const std::string& name() const override { return config_.name; }
  int64_t version() const override { return version_; }
  const ModelConfig& config() const override { return config_; }
  bool ready() const override { return ready_.load(); }
  ModelStatsSnapshot stats() const override {
    ModelStatsSnapshot s = stats_.Snapshot();
    s.memory_bytes = memory_bytes();
    return s;
  }
  size_t memory_bytes() const override;
  size_t in_flight() const { return in_flight_.load(); }

  // For instances.
  const Graph& graph() const { return graph_; }
  const std::string& model_dir() const { return model_dir_; }
  const QueueSettings& settings() const { return settings_; }
  LatencyEstimator& estimator() { return estimator_; }
  ModelStats& mutable_stats() { return stats_; }
  const std::shared_ptr<ConstantCache>& constants() const { return constants_; }
  // True once the graph's weights were released (every executable is compiled).
  bool weights_released() const { return weights_released_; }
  // The engine of instance 0 (its name and device stand for the model's).
  Engine& engine() { return *engine_; }
  // Memory held per device ("cpu", "cuda:0", ...): weights where instances run, plus their
  // arenas; and each device's engine, for its capacity.
  std::map<std::string, size_t> memory_by_device() const;
  // What a live resize holds on top, per device, while new and old slices coexist: the arenas
  // of its GPU instances, or of instance `only` (weights are shared).
  std::map<std::string, size_t> resize_bytes_by_device(int only = -1) const;
  std::map<std::string, Engine*> engines_by_device() const;
  // Compute threads each instance runs its batches with (CPU engine); a change applies at each
  // instance's next batch boundary.
  int compute_threads() const { return compute_threads_.load(); }
  void set_compute_threads(int threads);  // every instance
  // The rows a batch gathers at most (the config's max_batch_size unless limited live); a
  // change applies to the next batch formed. 0 lifts the limit.
  int batch_limit() const;
  void set_batch_limit(int rows);
  // The sliced GPU of its first GPU instance (null: CPU, or unsliced GPUs).
  GpuSlices* gpu() const;
  // Before Start: the slice size in SMs each GPU instance takes instead of its config's (a live
  // resize kept across a reload); 0: the config's.
  void set_slice_sms(int sms) { slice_sms_ = sms; }
  std::vector<SliceLease> leases() const;
  // Moves every GPU instance to a slice of `sms` SMs, make before break (see
  // ModelManager::SetSliceSms): all new slices are made and warmed up first; if any cannot be,
  // none flips.
  struct MoveResult {
    double ms = 0;
    double gap_us = -1;
  };
  Result<MoveResult> MoveSlices(int sms);
  // The largest host-side gap of the last move's flips (Instance::last_flip_gap_us); -1 while
  // none is known. Known once a batch has run on each side of a flip, so it may come later.
  double ResizeGapUs() const;
  // Answers one request of a finished or failed batch and updates the statistics.
  void Answer(RequestPtr r, InferenceResponse&& resp);

  // --- Live instances (replicas) ---
  // Every instance: its place, size, batch limit and what it ran.
  std::vector<InstanceSlice> instance_slices() const;
  // Adds an instance of `size` compute threads (CPU) or SMs (a slice of a sliced GPU) on
  // `gpu` (-1: the first instance's device), with its own batch limit `max_batch` (0: the
  // model's). It is compiled and warmed up before it takes a batch; the others serve
  // meanwhile. Returns its index. Nothing changes on failure.
  Result<int> AddInstance(int size, int gpu, int max_batch);
  // Instance `index` takes no batch from now on; returns once the one it runs is answered and
  // its slice is free. Its queued requests stay for the others: nothing fails. NotFound for an
  // unknown index; FailedPrecondition for the last instance.
  Status RemoveInstance(int index);
  // One instance's size: compute threads from its next batch (CPU), or a new slice of `size`
  // SMs, make before break (sliced GPU).
  Result<MoveResult> ResizeInstance(int index, int size);
  // One instance's own batch limit (0: the model's alone). NotFound for an unknown index.
  Status SetInstanceBatchCap(int index, int rows);
  // InvalidArgument unless 0 <= rows <= max_batch_size.
  Status CheckInstanceBatchCap(int rows) const;
  // What a new instance on `gpu` (-1: the first instance's device) would hold, per device: the
  // largest instance's arenas, plus the weights where the model holds none yet.
  std::map<std::string, size_t> add_bytes_by_device(int gpu) const;
  int next_instance_index() const;

 private:
  void ExecutorLoop(Instance* inst);
  // Starts `inst`'s executor thread: warm-up (when the options say so), then batches;
  // `warmed` gets the warm-up's outcome (a failed one runs no batch).
  std::thread Launch(Instance* inst, std::shared_ptr<std::promise<Status>> warmed);
  Result<MoveResult> Move(int sms, int only);           // only: an instance index, or -1 for all
  Instance* FindInstance(int index, size_t* at) const;  // with inst_mu_ held
  Status NoInstance(int index) const;  // NotFound naming the instances there are (inst_mu_ held)
  Status AcquireSlices();
  // Checks the request against the config; sets rows; returns the batching key.
  Result<std::string> Validate(InferenceRequest& r) const;
  void Drop(RequestPtr r, Status why, RejectReason reason);

  ModelConfig config_;
  Graph graph_;
  int64_t version_;
  std::string model_dir_;
  ManagerOptions opts_;
  QueueSettings settings_;
  std::shared_ptr<ConstantCache> constants_;
  std::vector<std::unique_ptr<Engine>> engines_;
  std::map<int, Engine*> engine_by_listing_;  // by the GPU a group lists (-1: none)
  Engine* engine_ = nullptr;
  LatencyEstimator estimator_;
  ModelStats stats_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  ModelQueue queue_;
  bool accepting_ = false, stopping_ = false, drain_ = true;
  // Added and removed only with move_mu_ held (Start, Stop, AddInstance, RemoveInstance),
  // changed and read with inst_mu_ held; threads_ parallel to instances_.
  mutable std::mutex inst_mu_;
  std::vector<std::unique_ptr<Instance>> instances_;
  std::vector<std::thread> threads_;
  int next_index_ = 0;
  std::atomic<bool> ready_{false};
  size_t weight_bytes_ = 0;
  bool weights_released_ = false;
  std::atomic<size_t> in_flight_{0};
  std::atomic<int> compute_threads_{1};
  int slice_sms_ = 0;
  std::mutex move_mu_;  // one slice move or instance change at a time
};

}  // namespace tessera::runtime
