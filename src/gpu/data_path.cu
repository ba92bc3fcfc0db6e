#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "gpu/data_path.h"
#include "gpu/slice_providers.h"
#include "tessera/engine/cuda_engine.h"

namespace tessera::gpu {
namespace {

Status Cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::OK();
  return Status::Unavailable(std::string(what) + ": " + cudaGetErrorString(e));
}

class CudaGpuDevice final : public runtime::GpuDevice {
 public:
  explicit CudaGpuDevice(std::unique_ptr<GpuSliceProvider> provider)
      : provider_(std::move(provider)),
        places_(this),
        notifier_("gpu" + std::to_string(provider_->layout().index) + "-notify") {}

  ~CudaGpuDevice() override {
    notifier_.Stop();  // every completion handed over has run
    cudaSetDevice(provider_->layout().index);
    for (auto& [_, c] : copy_) {
      cudaStreamSynchronize(c.in);
      cudaStreamSynchronize(c.out);
      cudaStreamDestroy(c.in);
      cudaStreamDestroy(c.out);
    }
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }

  const runtime::GpuLayout& layout() const override { return provider_->layout(); }
  runtime::SliceProvider& provider() override { return places_; }
  void* Stream(uint64_t place) override { return provider_->Stream(place); }

  Result<void*> HostAlloc(size_t bytes) override {
    void* p = nullptr;
    TESSERA_RETURN_IF_ERROR(Cuda(cudaSetDevice(layout().index), "cudaSetDevice"));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaHostAlloc(&p, bytes, cudaHostAllocPortable), "cudaHostAlloc"));
    return p;
  }
  void HostFree(void* p) override { cudaFreeHost(p); }
  bool IsPinned(const void* p, size_t bytes) override {
    if (!p || bytes == 0) return false;
    auto pinned = [](const void* q) {
      cudaPointerAttributes a{};
      if (cudaPointerGetAttributes(&a, q) != cudaSuccess) {
        cudaGetLastError();  // not an error worth keeping: plain pageable memory
        return false;
      }
      return a.type == cudaMemoryTypeHost;
    };
    return pinned(p) && pinned(static_cast<const uint8_t*>(p) + bytes - 1);
  }

  Status Bind(uint64_t place, GpuExecutable* exe) override {
    void* stream = Stream(place);
    if (!stream) return Status::Internal("no stream for GPU place " + std::to_string(place));
    std::lock_guard<std::mutex> lock(StreamLock(stream));
    return exe->Bind(stream);
  }

  Status Submit(const Batch& b, runtime::Completion how,
                std::function<void(Status)> done) override {
    TESSERA_RETURN_IF_ERROR(Cuda(cudaSetDevice(layout().index), "cudaSetDevice"));
    auto compute = static_cast<cudaStream_t>(Stream(b.place));
    if (!compute) return Status::Internal("no stream for GPU place " + std::to_string(b.place));
    TESSERA_ASSIGN_OR_RETURN(const CopyStreams cs, CopyStreamsFor(b.place));
    TESSERA_ASSIGN_OR_RETURN(cudaEvent_t inputs_in, TakeEvent());
    TESSERA_ASSIGN_OR_RETURN(cudaEvent_t computed, TakeEvent());
    TESSERA_ASSIGN_OR_RETURN(cudaEvent_t finished, TakeEvent());
    auto give_back = [this, inputs_in, computed, finished] {
      GiveEvents({inputs_in, computed, finished});
    };
    // Initialised, not assigned: nvcc warns that an assignment's result (a [[nodiscard]] Status&)
    // is ignored.
    const Status st = [&] {
      std::lock_guard<std::mutex> lock(StreamLock(compute));  // no capture on it meanwhile
      return Queue(b, cs, compute, inputs_in, computed, finished);
    }();
    if (!st.ok()) {
      cudaStreamSynchronize(cs.out);  // whatever was queued finishes before its events go back
      give_back();
      return st;
    }
    switch (how) {
      case runtime::Completion::kSync: {
        Status r = Cuda(cudaStreamSynchronize(cs.out), "running the batch");
        give_back();
        done(r);
        return Status::OK();
      }
      case runtime::Completion::kSpin: {
        cudaError_t e;
        while ((e = cudaEventQuery(finished)) == cudaErrorNotReady) std::this_thread::yield();
        give_back();
        done(Cuda(e, "running the batch"));
        return Status::OK();
      }
      case runtime::Completion::kEvent:
        break;
    }
    auto* pending = new Pending{this, finished, std::move(done), give_back};
    const cudaError_t e = cudaLaunchHostFunc(cs.out, &CudaGpuDevice::OnDone, pending);
    if (e != cudaSuccess) {
      // No host function: complete it from the notifier by waiting on the event instead.
      notifier_.Post([pending] { pending->Complete(); });
    }
    return Status::OK();
  }

 private:
  // The provider as the slice table sees it: a place's copy streams go with the place.
  class Places final : public runtime::SliceProvider {
   public:
    explicit Places(CudaGpuDevice* d) : d_(d) {}
    std::string kind() const override { return d_->provider_->kind(); }
    Result<uint64_t> Create(const std::vector<int>& groups) override {
      return d_->provider_->Create(groups);
    }
    void Destroy(uint64_t place) override {
      d_->DropCopyStreams(place);
      d_->provider_->Destroy(place);
    }

   private:
    CudaGpuDevice* d_;
  };

  void DropCopyStreams(uint64_t place) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = copy_.find(place);
    if (it == copy_.end()) return;
    cudaSetDevice(layout().index);
    cudaStreamSynchronize(it->second.in);
    cudaStreamSynchronize(it->second.out);
    cudaStreamDestroy(it->second.in);
    cudaStreamDestroy(it->second.out);
    copy_.erase(it);
  }

  struct CopyStreams {
    cudaStream_t in = nullptr, out = nullptr;
  };
  // One lock per compute stream (places may share one), kept for the device's life.
  std::mutex& StreamLock(void* stream) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& m = stream_locks_[stream];
    if (!m) m = std::make_unique<std::mutex>();
    return *m;
  }
  struct Pending {
    CudaGpuDevice* self;
    cudaEvent_t finished;
    std::function<void(Status)> done;
    std::function<void()> give_back;
    void Complete() {
      Status st = Cuda(cudaEventSynchronize(finished), "running the batch");
      give_back();
      done(st);
      delete this;
    }
  };
  // Runs on a CUDA driver thread, which may not call CUDA: hand the batch to the notifier.
  static void CUDART_CB OnDone(void* p) {
    auto* pending = static_cast<Pending*>(p);
    pending->self->notifier_.Post([pending] { pending->Complete(); });
  }

  Status Queue(const Batch& b, const CopyStreams& cs, cudaStream_t compute, cudaEvent_t inputs_in,
               cudaEvent_t computed, cudaEvent_t finished) {
    const auto& ins = b.exe->device_inputs();
    const auto& outs = b.exe->device_outputs();
    if (b.inputs.size() != ins.size() || b.outputs.size() != outs.size())
      return Status::Internal("batch buffers do not match the executable's inputs / outputs");
    for (size_t i = 0; i < ins.size(); ++i)
      TESSERA_RETURN_IF_ERROR(Cuda(
          cudaMemcpyAsync(ins[i].device, b.inputs[i], ins[i].bytes, cudaMemcpyHostToDevice, cs.in),
          "cudaMemcpyAsync (input)"));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaEventRecord(inputs_in, cs.in), "cudaEventRecord"));
    TESSERA_RETURN_IF_ERROR(
        Cuda(cudaStreamWaitEvent(compute, inputs_in, 0), "cudaStreamWaitEvent"));
    TESSERA_RETURN_IF_ERROR(b.exe->Enqueue(compute));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaEventRecord(computed, compute), "cudaEventRecord"));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(cs.out, computed, 0), "cudaStreamWaitEvent"));
    for (size_t o = 0; o < outs.size(); ++o)
      TESSERA_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(b.outputs[o], outs[o].device, outs[o].bytes,
                                                   cudaMemcpyDeviceToHost, cs.out),
                                   "cudaMemcpyAsync (output)"));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(b.error_word, b.exe->device_error_word(),
                                                 sizeof(int32_t), cudaMemcpyDeviceToHost, cs.out),
                                 "cudaMemcpyAsync (error word)"));
    return Cuda(cudaEventRecord(finished, cs.out), "cudaEventRecord");
  }

  Result<CopyStreams> CopyStreamsFor(uint64_t place) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = copy_.find(place);
    if (it != copy_.end()) return it->second;
    CopyStreams c;
    TESSERA_RETURN_IF_ERROR(
        Cuda(cudaStreamCreateWithFlags(&c.in, cudaStreamNonBlocking), "cudaStreamCreate"));
    if (Status st =
            Cuda(cudaStreamCreateWithFlags(&c.out, cudaStreamNonBlocking), "cudaStreamCreate");
        !st.ok()) {
      cudaStreamDestroy(c.in);
      return st;
    }
    copy_[place] = c;
    return c;
  }

  // Events without timing, waited on by blocking (the notifier and kSync sleep, not spin).
  Result<cudaEvent_t> TakeEvent() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!events_.empty()) {
        cudaEvent_t e = events_.back();
        events_.pop_back();
        return e;
      }
    }
    cudaEvent_t e = nullptr;
    TESSERA_RETURN_IF_ERROR(
        Cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming | cudaEventBlockingSync),
             "cudaEventCreate"));
    return e;
  }
  void GiveEvents(std::initializer_list<cudaEvent_t> es) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.insert(events_.end(), es.begin(), es.end());
  }

  std::unique_ptr<GpuSliceProvider> provider_;
  Places places_;
  std::mutex mu_;
  std::map<uint64_t, CopyStreams> copy_;
  std::map<void*, std::unique_ptr<std::mutex>> stream_locks_;
  std::vector<cudaEvent_t> events_;
  runtime::Notifier notifier_;
};

}  // namespace

Result<std::shared_ptr<runtime::GpuDevice>> CreateGpuDevice(const std::string& sharing, int device,
                                                            int group_sms) {
  TESSERA_ASSIGN_OR_RETURN(auto provider, CreateSliceProvider(sharing, device, group_sms));
  return std::shared_ptr<runtime::GpuDevice>(std::make_shared<CudaGpuDevice>(std::move(provider)));
}

}  // namespace tessera::gpu
