// One model instance: its executables (one per batch size and input shape, compiled from the
// model's graph, weights shared through the model's ConstantCache) and the work of running a
// batch: gather the requests' rows into batch inputs, run, cut the outputs per request.
// Used by exactly one executor thread; on a GPU, batch completion may run on the GPU's notifier
// thread and a live resize on an admin thread (instance_gpu.cc).
#pragma once

#include <atomic>
#include <condition_variable>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tessera/engine/engine.h"
#include "tessera/runtime/gpu.h"
#include "tessera/runtime/request.h"

namespace tessera::runtime {

class ServedModel;

class Instance {
 public:
  Instance(ServedModel* model, int index, Engine* engine)
      : model_(model), index_(index), engine_(engine) {}
  int index() const { return index_; }
  Engine& engine() const { return *engine_; }
  // Compiles every batch size whose shapes the config fixes, runs each once (seeding the
  // latency estimate) and runs the config's warm-up samples.
  Status Warmup();
  // Runs `batch` (requests batchable together) and answers every request.
  void Execute(std::vector<RequestPtr> batch);
  size_t memory_bytes() const;  // activation arenas (on its device)
  // Records a finished batch in the model's statistics and in this instance's own counters.
  void RecordExecution(int64_t rows, int64_t input_ns, int64_t infer_ns, int64_t output_ns);
  // What this instance ran since it started (the online tuner's per-replica window).
  struct Counters {
    uint64_t batches = 0;
    uint64_t rows = 0;
    double compute_ns = 0;
    std::map<uint64_t, uint64_t> batch_rows;  // executed batch rows -> count
  };
  Counters counters() const;
  // CPU: compute threads its batches run with (from its next batch on).
  int threads() const { return threads_.load(); }
  void set_threads(int threads) { threads_.store(threads); }
  // Rows its batches gather at most, below the model's limit (0: the model's limit alone).
  int64_t batch_cap() const { return batch_cap_.load(); }
  void set_batch_cap(int64_t rows) { batch_cap_.store(rows); }
  // Removed live: its executor takes no batch from now on (and exits after the one it runs).
  bool retiring() const { return retiring_.load(); }
  void set_retiring() { retiring_.store(true); }
  // True when the config fixes every input dim (besides the batch): the executables for every
  // batch size can be compiled at warm-up and no request can need another.
  static bool ShapesFixed(const ServedModel& m);

  // --- GPU instances (instance_gpu.cc) ---
  // Runs this instance on `lease` of `gpu`: every executable is compiled for the slice's SM
  // count and bound to its place's stream; batches go through the GPU's data path with
  // `pipeline` executables per batch shape (the next batch's copies overlap this one's compute).
  // Call before Warmup.
  void AttachGpu(GpuSlices* gpu, SliceLease lease, Completion how, int pipeline);
  bool on_gpu() const { return gpu_ != nullptr; }
  GpuSlices* gpu() const { return gpu_; }
  SliceLease lease() const;
  // Live resize, make before break, on the caller's thread while this instance keeps serving:
  // PrepareMove compiles every executable the instance has on `next` and runs each once there;
  // FlipAndDrain makes it the place of every batch from the next one on, waits until the
  // batches still on the old place are answered and frees the old executables; CancelMove
  // drops a prepared move that will not flip.
  Status PrepareMove(const SliceLease& next);
  struct MoveReport {
    int64_t flip_ns = 0;
    int64_t old_last_done_ns = 0;  // the old place's last batch completed (0: none ran)
    int64_t drained_ns = 0;
  };
  MoveReport FlipAndDrain();
  void CancelMove();
  // The host-side gap of the last flip, in us: how long the first batch on the new place waited
  // because of the move, from the later of the old place's last completion and that batch's
  // oldest request's arrival, to its submission (0: no wait); -1 while unknown (no flip, no batch
  // on the old place, or none yet on the new one).
  double last_flip_gap_us() const;
  // Waits until no batch of this instance is on the GPU, frees its GPU executables and returns
  // its lease to `gpu` (executor stopped).
  void DetachGpu();

 private:
  struct GpuCopy;
  struct GpuShape;
  struct GpuGeneration;
  void ExecuteOnGpu(std::vector<RequestPtr> batch);
  Result<std::unique_ptr<GpuCopy>> CompileForGpu(const GpuGeneration& gen, int64_t rows,
                                                 const std::vector<Shape>& item_shapes);
  Result<std::vector<Tensor>> RunOnceOnGpu(int64_t rows, const std::vector<Tensor>& inputs);
  // A free copy of the executable for (rows, shapes) on the current generation, compiled when
  // missing; marks it busy and counts the batch on its generation.
  // `ready_ns`: when the batch's oldest request was queued (0: a warm-up run).
  Result<std::pair<std::shared_ptr<GpuGeneration>, GpuCopy*>> AcquireGpuCopy(
      int64_t rows, const std::vector<Shape>& item_shapes, int64_t ready_ns);
  void ReleaseGpuCopy(GpuCopy* copy);  // its buffers are free for the next batch
  void FinishGpuBatch(GpuGeneration* gen, int64_t done_ns);  // answered: no longer a user

  // The executable for `rows` rows (a bucket) with per-row input shapes `item_shapes`.
  Result<Executable*> ExecutableFor(int64_t rows, const std::vector<Shape>& item_shapes);
  Result<std::vector<Tensor>> RunOnce(int64_t rows, std::vector<Tensor> inputs);
  CompileOptions OptionsFor(int64_t rows, const std::vector<Shape>& item_shapes) const;
  Status WarmupSamples();

  ServedModel* model_;
  int index_;
  Engine* engine_;
  std::atomic<int> threads_{1};
  std::atomic<int64_t> batch_cap_{0};
  std::atomic<bool> retiring_{false};
  mutable std::mutex count_mu_;
  Counters counters_;  // guarded by count_mu_
  struct Cached {
    std::unique_ptr<Executable> exe;
    std::list<std::string>::iterator lru;
  };
  std::map<std::string, Cached> exes_;
  std::list<std::string> lru_;          // most recent first
  std::atomic<size_t> arena_bytes_{0};  // activation arenas of exes_ (read by other threads)

  GpuSlices* gpu_ = nullptr;
  Completion completion_ = Completion::kEvent;
  int pipeline_ = 2;
  mutable std::mutex gmu_;  // guards the generations, copies' busy flags, lease_
  std::condition_variable gcv_;
  SliceLease lease_;
  std::shared_ptr<GpuGeneration> cur_, pending_, draining_;
  int64_t flip_old_last_done_ns_ = 0;  // guarded by gmu_
  std::atomic<size_t> gpu_arena_bytes_{0};
};

}  // namespace tessera::runtime
