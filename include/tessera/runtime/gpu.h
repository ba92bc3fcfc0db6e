// The GPU side of serving as the runtime sees it, free of CUDA so that everything above the
// driver calls is built and tested on any machine (tests/unit/gpu_serving_test.cc runs it on a
// fake GPU over host memory; gpu/data_path.cu is the CUDA implementation).
//
//   GpuDevice   one GPU's services for the executors: the places its slices run on, pinned host
//               memory, and the data path of one batch: inputs host -> device on the place's
//               copy-in stream, the model on the place's compute stream, outputs device -> host on
//               its copy-out stream, completion reported as the three modes say.
//   GpuSlices   one GPU's slice table behind a lock, shared by the models on that GPU and by the
//               manager that resizes them (SliceTable itself is single-threaded bookkeeping).
//   PinnedPool  pinned buffers by size class, so executables compiled and dropped during resizes
//               and shape changes do not pay cudaHostAlloc (milliseconds) each time.
//   Notifier    the thread that completes batches in the event mode.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tessera/core/status.h"
#include "tessera/runtime/slices.h"

namespace tessera {
class GpuExecutable;
}

namespace tessera::runtime {

// How the executor learns that a batch is done.
enum class Completion {
  kEvent,  // the batch records an event; the GPU's notifier thread completes it (default): the
           // executor is free to form and launch the next batch meanwhile
  kSync,   // the executor blocks in cudaStreamSynchronize on the batch's copy-out stream
  kSpin,   // the executor polls the batch's event (lowest latency, one core busy)
};
const char* CompletionName(Completion c);  // "event", "sync", "spin"
Result<Completion> ParseCompletion(const std::string& name);

// Runs callbacks on one thread, in the order posted. Stop() runs what is queued, then joins.
class Notifier {
 public:
  explicit Notifier(std::string name);
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;
  void Post(std::function<void()> fn);
  void Stop();

 private:
  void Loop();
  std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

class GpuDevice {
 public:
  virtual ~GpuDevice() = default;
  virtual const GpuLayout& layout() const = 0;
  virtual SliceProvider& provider() = 0;
  // The compute stream of a place.
  virtual void* Stream(uint64_t place) = 0;
  // Binds `exe` to the place's stream (GpuExecutable::Bind: its CUDA graph is captured there).
  // A capture must not meet another thread's work on the same stream (it would be captured, or
  // break the capture): Bind and Submit exclude each other per stream, which matters where
  // places share one (the unconfined place, `exclusive`).
  virtual Status Bind(uint64_t place, GpuExecutable* exe) = 0;
  // Pinned (page-locked) host memory: DMA-able, so copies need no staging.
  virtual Result<void*> HostAlloc(size_t bytes) = 0;
  virtual void HostFree(void* p) = 0;
  // True when [p, p + bytes) is page-locked host memory the GPU can copy from by DMA (a pinned
  // system shared-memory region): a batch of one such request is copied from there directly.
  virtual bool IsPinned(const void* p, size_t bytes) = 0;

  struct Batch {
    uint64_t place = 0;
    GpuExecutable* exe = nullptr;     // bound to Stream(place)
    std::vector<const void*> inputs;  // pinned host memory, one per device input, its bytes
    std::vector<void*> outputs;       // pinned host buffers, one per device output
    int32_t* error_word = nullptr;    // pinned; receives the executable's error word
  };
  // Queues the batch and arranges for `done` to be called once its outputs and error word are in
  // host memory (or with the error that stopped it). kEvent: `done` runs later on this GPU's
  // notifier thread and Submit returns once the work is queued; kSync / kSpin: Submit waits in
  // the calling thread and calls `done` before returning. A non-OK return means nothing was
  // queued and `done` is not called.
  virtual Status Submit(const Batch& batch, Completion how, std::function<void(Status)> done) = 0;
};

// Pinned host buffers recycled by power-of-two size class (at least 4 KiB). Thread-safe.
class PinnedPool {
 public:
  explicit PinnedPool(GpuDevice* device) : device_(device) {}
  ~PinnedPool();
  Result<void*> Get(size_t bytes);
  bool Put(void* p);          // false: not one of its buffers (nothing done)
  size_t held_bytes() const;  // in use or cached

 private:
  static size_t ClassOf(size_t bytes);
  GpuDevice* device_;
  mutable std::mutex mu_;
  std::map<void*, size_t> size_of_;
  std::multimap<size_t, void*> free_;
  size_t held_ = 0;
};

// What one slice lease gives an instance.
struct SliceLease {
  SliceId id = 0;  // 0: unconfined (the GPU's shared place)
  uint64_t place = 0;
  int sms = 0;
};

class GpuSlices {
 public:
  explicit GpuSlices(std::shared_ptr<GpuDevice> device);
  ~GpuSlices();
  GpuDevice& device() { return *device_; }
  const GpuLayout& layout() const { return device_->layout(); }
  std::string kind() const { return device_->provider().kind(); }
  PinnedPool& pinned() { return pinned_; }

  // A slice of `groups` groups for `owner`; `groups` 0: the shared place over the whole GPU,
  // which no slice accounts (a model that asks for no slice).
  Result<SliceLease> Acquire(const std::string& owner, int groups);
  void Release(const SliceLease& lease);
  // The make-before-break steps (SliceTable's) for one lease; BeginResize returns the new place.
  Result<SliceLease> BeginResize(const SliceLease& lease, int groups);
  Status CommitResize(const SliceLease& lease);
  Status FinishResize(const SliceLease& lease);
  Status AbortResize(const SliceLease& lease);
  std::vector<SliceInfo> List() const;
  int free_groups() const;

 private:
  std::shared_ptr<GpuDevice> device_;
  mutable std::mutex mu_;
  SliceTable table_;
  uint64_t shared_place_ = 0;
  int shared_users_ = 0;
  PinnedPool pinned_;
};

}  // namespace tessera::runtime
