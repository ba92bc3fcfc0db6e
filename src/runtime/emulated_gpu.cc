#include "tessera/runtime/emulated_gpu.h"

#include <cstdlib>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <new>

#include "tessera/engine/cuda_engine.h"

namespace tessera::runtime {
namespace {

// Places are numbers; a place's "stream" is a distinct non-null token.
class EmulatedPlaces final : public SliceProvider {
 public:
  std::string kind() const override { return "emulated"; }
  Result<uint64_t> Create(const std::vector<int>& groups) override {
    std::lock_guard<std::mutex> lock(mu_);
    live_[next_] = groups;
    return next_++;
  }
  void Destroy(uint64_t place) override {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(place);
  }
  void* Stream(uint64_t place) const {
    std::lock_guard<std::mutex> lock(mu_);
    return live_.count(place) ? reinterpret_cast<void*>(uintptr_t{0x10000} + place) : nullptr;
  }

 private:
  mutable std::mutex mu_;
  std::map<uint64_t, std::vector<int>> live_;
  uint64_t next_ = 1;
};

class EmulatedGpu final : public GpuDevice {
 public:
  explicit EmulatedGpu(GpuLayout layout)
      : layout_(std::move(layout)),
        queue_("emulated-gpu" + std::to_string(layout_.index)),
        notifier_("emulated-gpu" + std::to_string(layout_.index) + "-notify") {}
  ~EmulatedGpu() override {
    queue_.Stop();  // every queued batch runs and hands its completion over
    notifier_.Stop();
  }
  const GpuLayout& layout() const override { return layout_; }
  SliceProvider& provider() override { return places_; }
  void* Stream(uint64_t place) override { return places_.Stream(place); }
  Result<void*> HostAlloc(size_t bytes) override {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) return Status::ResourceExhausted("out of host memory");
    return p;
  }
  void HostFree(void* p) override { std::free(p); }
  bool IsPinned(const void*, size_t) override { return false; }
  Status Bind(uint64_t place, GpuExecutable* exe) override {
    void* s = Stream(place);
    if (!s) return Status::Internal("emulated GPU: no place " + std::to_string(place));
    return exe->Bind(s);
  }
  Status Submit(const Batch& b, Completion how, std::function<void(Status)> done) override {
    if (!Stream(b.place))
      return Status::Internal("emulated GPU: no place " + std::to_string(b.place));
    auto run = [this, b]() -> Status {
      void* s = Stream(b.place);
      if (!s) return Status::Internal("emulated GPU: place destroyed under a running batch");
      const auto& ins = b.exe->device_inputs();
      const auto& outs = b.exe->device_outputs();
      if (b.inputs.size() != ins.size() || b.outputs.size() != outs.size())
        return Status::Internal("batch buffers do not match the executable's inputs / outputs");
      for (size_t i = 0; i < ins.size(); ++i) std::memcpy(ins[i].device, b.inputs[i], ins[i].bytes);
      TESSERA_RETURN_IF_ERROR(b.exe->Enqueue(s));
      for (size_t o = 0; o < outs.size(); ++o)
        std::memcpy(b.outputs[o], outs[o].device, outs[o].bytes);
      std::memcpy(b.error_word, b.exe->device_error_word(), sizeof(int32_t));
      return Status::OK();
    };
    if (how != Completion::kEvent) {
      // The caller waits; the batch still runs on the GPU's queue, behind what is there.
      std::promise<Status> p;
      auto f = p.get_future();
      queue_.Post([&p, run] { p.set_value(run()); });
      done(f.get());
      return Status::OK();
    }
    queue_.Post([this, run, done] {
      Status st = run();
      notifier_.Post([done, st] { done(st); });
    });
    return Status::OK();
  }

 private:
  GpuLayout layout_;
  EmulatedPlaces places_;
  Notifier queue_, notifier_;
};

}  // namespace

GpuLayout EmulatedGpuLayout(int index) {
  GpuLayout g;
  g.index = index;
  g.name = "emulated H100";
  g.sms = 132;
  g.group_sms = 8;
  g.memory_bytes = int64_t{80} << 30;
  return g;
}

std::shared_ptr<GpuDevice> CreateEmulatedGpu(GpuLayout layout) {
  return std::make_shared<EmulatedGpu>(std::move(layout));
}

}  // namespace tessera::runtime
