#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

#include "gpu/slice_providers.h"

namespace tessera::gpu {
namespace {

Status Cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::OK();
  return Status::Unavailable(std::string(what) + ": " + cudaGetErrorString(e));
}

// The driver functions green contexts need, from the runtime's entry-point query.
struct Driver {
  decltype(&::cuGetErrorString) get_error_string = nullptr;
  decltype(&::cuDeviceGet) device_get = nullptr;
  decltype(&::cuDeviceGetDevResource) get_dev_resource = nullptr;
  decltype(&::cuDevSmResourceSplitByCount) split_by_count = nullptr;
  decltype(&::cuDevResourceGenerateDesc) generate_desc = nullptr;
  decltype(&::cuGreenCtxCreate) green_create = nullptr;
  decltype(&::cuGreenCtxDestroy) green_destroy = nullptr;
  decltype(&::cuGreenCtxStreamCreate) green_stream_create = nullptr;
  decltype(&::cuStreamDestroy) stream_destroy = nullptr;
  // MPS contexts (--sharing mps), loaded by LoadMpsDriver.
  decltype(&::cuDeviceGetExecAffinitySupport) exec_affinity_support = nullptr;
  decltype(&::cuCtxCreate) ctx_create = nullptr;
  decltype(&::cuCtxDestroy) ctx_destroy = nullptr;
  decltype(&::cuCtxPushCurrent) ctx_push = nullptr;
  decltype(&::cuCtxPopCurrent) ctx_pop = nullptr;
  decltype(&::cuCtxGetExecAffinity) ctx_exec_affinity = nullptr;
  decltype(&::cuStreamCreate) stream_create = nullptr;

  Status Check(CUresult r, const char* what) const {
    if (r == CUDA_SUCCESS) return Status::OK();
    const char* s = nullptr;
    if (get_error_string) get_error_string(r, &s);
    return Status::Unavailable(std::string(what) + ": " +
                               (s ? s : "CUDA driver error " + std::to_string(r)));
  }
};

template <typename F>
Status Entry(const char* name, F* fn,
             const char* needs = "green contexts need driver 550 / CUDA 12.4 or newer") {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q{};
  TESSERA_RETURN_IF_ERROR(
      Cuda(cudaGetDriverEntryPointByVersion(name, &p, CUDA_VERSION, cudaEnableDefault, &q), name));
  if (q != cudaDriverEntryPointSuccess || !p)
    return Status::Unavailable(std::string("the CUDA driver has no ") + name + " (" + needs + ")");
  *fn = reinterpret_cast<F>(p);
  return Status::OK();
}

Result<Driver> LoadDriver() {
  Driver d;
  TESSERA_RETURN_IF_ERROR(Entry("cuGetErrorString", &d.get_error_string));
  TESSERA_RETURN_IF_ERROR(Entry("cuDeviceGet", &d.device_get));
  TESSERA_RETURN_IF_ERROR(Entry("cuDeviceGetDevResource", &d.get_dev_resource));
  TESSERA_RETURN_IF_ERROR(Entry("cuDevSmResourceSplitByCount", &d.split_by_count));
  TESSERA_RETURN_IF_ERROR(Entry("cuDevResourceGenerateDesc", &d.generate_desc));
  TESSERA_RETURN_IF_ERROR(Entry("cuGreenCtxCreate", &d.green_create));
  TESSERA_RETURN_IF_ERROR(Entry("cuGreenCtxDestroy", &d.green_destroy));
  TESSERA_RETURN_IF_ERROR(Entry("cuGreenCtxStreamCreate", &d.green_stream_create));
  TESSERA_RETURN_IF_ERROR(Entry("cuStreamDestroy", &d.stream_destroy));
  return d;
}

Result<Driver> LoadMpsDriver() {
  Driver d;
  const char* needs = "MPS contexts with an SM count need driver 550 / CUDA 12.4 or newer";
  TESSERA_RETURN_IF_ERROR(Entry("cuGetErrorString", &d.get_error_string, needs));
  TESSERA_RETURN_IF_ERROR(Entry("cuDeviceGet", &d.device_get, needs));
  TESSERA_RETURN_IF_ERROR(Entry("cuDeviceGetExecAffinitySupport", &d.exec_affinity_support, needs));
  TESSERA_RETURN_IF_ERROR(Entry("cuCtxCreate", &d.ctx_create, needs));
  TESSERA_RETURN_IF_ERROR(Entry("cuCtxDestroy", &d.ctx_destroy, needs));
  TESSERA_RETURN_IF_ERROR(Entry("cuCtxPushCurrent", &d.ctx_push, needs));
  TESSERA_RETURN_IF_ERROR(Entry("cuCtxPopCurrent", &d.ctx_pop, needs));
  TESSERA_RETURN_IF_ERROR(Entry("cuCtxGetExecAffinity", &d.ctx_exec_affinity, needs));
  TESSERA_RETURN_IF_ERROR(Entry("cuStreamCreate", &d.stream_create, needs));
  TESSERA_RETURN_IF_ERROR(Entry("cuStreamDestroy", &d.stream_destroy, needs));
  return d;
}

// MpsProvider's probe: one more on each of n ints.
__global__ void ProbeAddOne(int* p, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) p[i] += 1;
}

Result<runtime::GpuLayout> Layout(int device, int group_sms) {
  cudaDeviceProp p{};
  TESSERA_RETURN_IF_ERROR(Cuda(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties"));
  runtime::GpuLayout g;
  g.index = device;
  g.name = p.name;
  g.sms = p.multiProcessorCount;
  g.group_sms = group_sms;
  size_t free = 0, total = 0;
  TESSERA_RETURN_IF_ERROR(Cuda(cudaSetDevice(device), "cudaSetDevice"));
  TESSERA_RETURN_IF_ERROR(Cuda(cudaMemGetInfo(&free, &total), "cudaMemGetInfo"));
  g.memory_bytes = static_cast<int64_t>(free);
  return g;
}

// A provider whose place is a context of its own with one stream (green, mps): its places by id,
// behind a lock. The subclass makes a place (then Keep) and releases one (Release); its
// destructor calls ReleaseAll while Release is still its own.
template <typename Place>
class ContextProvider : public GpuSliceProvider {
 public:
  const runtime::GpuLayout& layout() const override { return layout_; }
  void Destroy(uint64_t place) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = places_.find(place);
    if (it == places_.end()) return;
    Release(it->second);
    places_.erase(it);
  }
  void* Stream(uint64_t place) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = places_.find(place);
    return it == places_.end() ? nullptr : static_cast<void*>(it->second.stream);
  }

 protected:
  // The GPU's layout, the driver functions `load` gives and the device, once the primary
  // context exists.
  Status Open(int device, int group_sms, Result<Driver> (*load)()) {
    TESSERA_ASSIGN_OR_RETURN(layout_, Layout(device, group_sms));
    TESSERA_ASSIGN_OR_RETURN(drv_, load());
    TESSERA_RETURN_IF_ERROR(Cuda(cudaFree(nullptr), "initializing the primary context"));
    return drv_.Check(drv_.device_get(&dev_, device), "cuDeviceGet");
  }
  uint64_t Keep(const Place& p) {
    std::lock_guard<std::mutex> lock(mu_);
    places_[next_] = p;
    return next_++;
  }
  virtual void Release(const Place& p) = 0;
  void ReleaseAll() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [_, p] : places_) Release(p);
    places_.clear();
  }

  runtime::GpuLayout layout_;
  Driver drv_;
  CUdevice dev_ = 0;

 private:
  mutable std::mutex mu_;
  std::map<uint64_t, Place> places_;
  uint64_t next_ = 1;
};

struct GreenPlace {
  CUgreenCtx ctx = nullptr;
  CUstream stream = nullptr;
};

class GreenProvider final : public ContextProvider<GreenPlace> {
 public:
  std::string kind() const override { return "green"; }

  Status Init(int device, int group_sms) {
    TESSERA_RETURN_IF_ERROR(Open(device, group_sms, LoadDriver));
    CUdevResource all{};
    TESSERA_RETURN_IF_ERROR(drv_.Check(drv_.get_dev_resource(dev_, &all, CU_DEV_RESOURCE_TYPE_SM),
                                       "cuDeviceGetDevResource"));
    // One split of the whole GPU; every slice is composed of these groups (separate splits
    // would overlap). A first call counts the groups.
    unsigned n = 0;
    TESSERA_RETURN_IF_ERROR(drv_.Check(
        drv_.split_by_count(nullptr, &n, &all, nullptr, 0, static_cast<unsigned>(group_sms)),
        "cuDevSmResourceSplitByCount"));
    groups_.resize(n);
    CUdevResource rest{};
    TESSERA_RETURN_IF_ERROR(drv_.Check(
        drv_.split_by_count(groups_.data(), &n, &all, &rest, 0, static_cast<unsigned>(group_sms)),
        "cuDevSmResourceSplitByCount"));
    groups_.resize(n);
    for (const auto& g : groups_)
      if (static_cast<int>(g.sm.smCount) != group_sms)
        return Status::Unavailable("green contexts on " + layout_.name + " split into groups of " +
                                   std::to_string(g.sm.smCount) + " SMs, not " +
                                   std::to_string(group_sms));
    layout_.split_groups = static_cast<int>(n);
    if (n == 0)
      return Status::Unavailable("green contexts: " + layout_.name + " gives no group of " +
                                 std::to_string(group_sms) + " SMs");
    return Status::OK();
  }

  Result<uint64_t> Create(const std::vector<int>& groups) override {
    if (groups.empty()) return Status::InvalidArgument("a green context needs at least one group");
    std::vector<CUdevResource> use;
    for (int g : groups) {
      if (g < 0 || g >= static_cast<int>(groups_.size()))
        return Status::InvalidArgument("SM group " + std::to_string(g) + " does not exist on " +
                                       layout_.Describe());
      use.push_back(groups_[g]);
    }
    CUdevResourceDesc desc = nullptr;
    TESSERA_RETURN_IF_ERROR(
        drv_.Check(drv_.generate_desc(&desc, use.data(), static_cast<unsigned>(use.size())),
                   "cuDevResourceGenerateDesc"));
    GreenPlace p;
    TESSERA_RETURN_IF_ERROR(drv_.Check(
        drv_.green_create(&p.ctx, desc, dev_, CU_GREEN_CTX_DEFAULT_STREAM), "cuGreenCtxCreate"));
    Status st = drv_.Check(drv_.green_stream_create(&p.stream, p.ctx, CU_STREAM_NON_BLOCKING, 0),
                           "cuGreenCtxStreamCreate");
    if (!st.ok()) {
      drv_.green_destroy(p.ctx);
      return st;
    }
    return Keep(p);
  }

  ~GreenProvider() override { ReleaseAll(); }

 private:
  void Release(const GreenPlace& p) override {
    drv_.stream_destroy(p.stream);  // streams before their green context
    drv_.green_destroy(p.ctx);
  }
  std::vector<CUdevResource> groups_;
};

// mps: a place is a CUDA context created with an SM-count execution affinity (the slice's SMs;
// the driver rounds up to what the hardware allows) and a stream in it. That needs an MPS
// control daemon serving this GPU that partitions SMs per context
// (CUDA_MPS_ENABLE_PER_CTX_DEVICE_MULTIPROCESSOR_PARTITIONING=1). Unlike a green context's
// groups, MPS limits how many SMs a context uses, not which: slices are accounted in the same
// groups, but two of them may meet on one SM.
// The engine keeps weights and arenas in the primary context, and the data path's copy streams
// and events live there too, so Init proves on a one-group place that work there can use them:
// a kernel on the place's stream that reads and writes primary-context memory, a primary-context
// event recorded on that stream and waited on by a primary-context stream, and a CUDA graph
// captured on that stream and replayed. Each step that fails is an Unavailable naming it.
struct MpsPlace {
  CUcontext ctx = nullptr;
  CUstream stream = nullptr;
};

class MpsProvider final : public ContextProvider<MpsPlace> {
 public:
  std::string kind() const override { return "mps"; }

  Status Init(int device, int group_sms) {
    TESSERA_RETURN_IF_ERROR(Open(device, group_sms, LoadMpsDriver));
    int supported = 0;
    TESSERA_RETURN_IF_ERROR(
        drv_.Check(drv_.exec_affinity_support(&supported, CU_EXEC_AFFINITY_TYPE_SM_COUNT, dev_),
                   "cuDeviceGetExecAffinitySupport"));
    if (!supported)
      return Status::Unavailable(
          "--sharing mps: " + layout_.Describe() +
          " takes no SM count per context: no MPS control daemon serves this process (start "
          "one with CUDA_MPS_ENABLE_PER_CTX_DEVICE_MULTIPROCESSOR_PARTITIONING=1 "
          "nvidia-cuda-mps-control -d, as the user tessera runs as), or use --sharing green");
    return Probe();
  }

  Result<uint64_t> Create(const std::vector<int>& groups) override {
    if (groups.empty()) return Status::InvalidArgument("an MPS context needs at least one group");
    for (int g : groups)
      if (g < 0 || g >= layout_.groups())
        return Status::InvalidArgument("SM group " + std::to_string(g) + " does not exist on " +
                                       layout_.Describe());
    CUexecAffinityParam affinity{};
    affinity.type = CU_EXEC_AFFINITY_TYPE_SM_COUNT;
    affinity.param.smCount.val =
        static_cast<unsigned>(groups.size()) * static_cast<unsigned>(layout_.group_sms);
    CUctxCreateParams params{};
    params.execAffinityParams = &affinity;
    params.numExecAffinityParams = 1;
    MpsPlace p;
    TESSERA_RETURN_IF_ERROR(drv_.Check(drv_.ctx_create(&p.ctx, &params, 0, dev_),
                                       "cuCtxCreate (an MPS context with an SM count)"));
    // The new context is current to this thread now: make the stream there, then give the
    // thread its previous context back.
    //
    // The driver rounds the SM count up to what the hardware allows; fewer would be a smaller
    // slice than accounted. (Initialised, not assigned: nvcc warns that an assignment's result,
    // a [[nodiscard]] Status&, is ignored.)
    const Status st = [&]() -> Status {
      TESSERA_RETURN_IF_ERROR(
          drv_.Check(drv_.stream_create(&p.stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate"));
      CUexecAffinityParam got{};
      TESSERA_RETURN_IF_ERROR(drv_.Check(
          drv_.ctx_exec_affinity(&got, CU_EXEC_AFFINITY_TYPE_SM_COUNT), "cuCtxGetExecAffinity"));
      if (got.param.smCount.val < affinity.param.smCount.val)
        return Status::Unavailable("MPS gave a context of " +
                                   std::to_string(affinity.param.smCount.val) + " SMs only " +
                                   std::to_string(got.param.smCount.val));
      return Status::OK();
    }();
    CUcontext popped = nullptr;
    drv_.ctx_pop(&popped);
    if (!st.ok()) {
      if (p.stream)
        Release(p);
      else
        drv_.ctx_destroy(p.ctx);
      return st;
    }
    return Keep(p);
  }

  ~MpsProvider() override { ReleaseAll(); }

 private:
  void Release(const MpsPlace& p) override {
    if (drv_.ctx_push(p.ctx) == CUDA_SUCCESS) {
      drv_.stream_destroy(p.stream);  // streams before their context
      CUcontext popped = nullptr;
      drv_.ctx_pop(&popped);
    }
    drv_.ctx_destroy(p.ctx);
  }

  // See the class comment: what the data path and the engine will do on a place, tried once.
  Status Probe() {
    TESSERA_ASSIGN_OR_RETURN(const uint64_t place, Create({0}));
    const cudaStream_t s = static_cast<cudaStream_t>(Stream(place));
    constexpr int kN = 64;
    int* buf = nullptr;
    cudaStream_t primary = nullptr;
    cudaEvent_t done = nullptr, ready = nullptr;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    auto step = [&]() -> Status {
      TESSERA_RETURN_IF_ERROR(Cuda(cudaSetDevice(layout_.index), "cudaSetDevice"));
      TESSERA_RETURN_IF_ERROR(Cuda(cudaMalloc(&buf, kN * sizeof(int)), "cudaMalloc"));
      TESSERA_RETURN_IF_ERROR(Cuda(cudaMemset(buf, 0, kN * sizeof(int)), "cudaMemset"));
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaStreamCreateWithFlags(&primary, cudaStreamNonBlocking), "cudaStreamCreate"));
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate"));
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate"));
      // As a batch goes: inputs on a primary-context stream, then compute after them.
      TESSERA_RETURN_IF_ERROR(Cuda(cudaMemsetAsync(buf, 0, kN * sizeof(int), primary),
                                   "cudaMemsetAsync on a primary-context stream"));
      TESSERA_RETURN_IF_ERROR(Cuda(cudaEventRecord(ready, primary), "cudaEventRecord"));
      TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(s, ready, 0),
                                   "the MPS stream waiting on a primary-context event"));
      ProbeAddOne<<<1, kN, 0, s>>>(buf, kN);
      TESSERA_RETURN_IF_ERROR(Cuda(cudaGetLastError(), "a kernel on the MPS context's stream"));
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaEventRecord(done, s), "recording a primary-context event on the MPS stream"));
      TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamWaitEvent(primary, done, 0),
                                   "a primary-context stream waiting on the MPS stream"));
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "capturing a graph"));
      ProbeAddOne<<<1, kN, 0, s>>>(buf, kN);
      TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamEndCapture(s, &graph), "capturing a graph"));
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaGraphInstantiate(&exec, graph, 0), "instantiating the captured graph"));
      TESSERA_RETURN_IF_ERROR(Cuda(cudaGraphLaunch(exec, s), "replaying the captured graph"));
      TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(s), "running on the MPS context"));
      TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(primary), "the waiting stream"));
      int host[kN];
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaMemcpy(host, buf, sizeof(host), cudaMemcpyDeviceToHost), "cudaMemcpy"));
      for (int v : host)
        if (v != 2)
          return Status::Unavailable(
              "kernels on an MPS context's stream did not update primary-context memory");
      return Status::OK();
    };
    Status st = step();
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (done) cudaEventDestroy(done);
    if (ready) cudaEventDestroy(ready);
    if (primary) cudaStreamDestroy(primary);
    if (buf) cudaFree(buf);
    Destroy(place);
    if (!st.ok())
      return Status::Unavailable("--sharing mps on " + layout_.Describe() +
                                 ": work on an MPS context cannot use the engine's memory, "
                                 "streams or graphs here (" +
                                 st.message() + "); use --sharing green");
    return Status::OK();
  }
};

// streams: a stream of its own per place; exclusive: one stream shared by every place.
class StreamProvider final : public GpuSliceProvider {
 public:
  explicit StreamProvider(bool shared) : shared_(shared) {}
  std::string kind() const override { return shared_ ? "exclusive" : "streams"; }
  const runtime::GpuLayout& layout() const override { return layout_; }

  Status Init(int device, int group_sms) {
    TESSERA_ASSIGN_OR_RETURN(layout_, Layout(device, group_sms));
    return Status::OK();
  }

  Result<uint64_t> Create(const std::vector<int>&) override {
    std::lock_guard<std::mutex> lock(mu_);
    TESSERA_RETURN_IF_ERROR(Cuda(cudaSetDevice(layout_.index), "cudaSetDevice"));
    cudaStream_t s = nullptr;
    if (shared_ && !places_.empty()) {
      s = places_.begin()->second;
    } else {
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"));
    }
    places_[next_] = s;
    return next_++;
  }

  void Destroy(uint64_t place) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = places_.find(place);
    if (it == places_.end()) return;
    const cudaStream_t s = it->second;
    places_.erase(it);
    bool used = false;
    for (const auto& [_, other] : places_) used = used || other == s;
    if (!used) cudaStreamDestroy(s);
  }

  void* Stream(uint64_t place) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = places_.find(place);
    return it == places_.end() ? nullptr : static_cast<void*>(it->second);
  }

  ~StreamProvider() override {
    std::vector<cudaStream_t> gone;
    for (const auto& [_, s] : places_)
      if (std::find(gone.begin(), gone.end(), s) == gone.end()) gone.push_back(s);
    for (auto s : gone) cudaStreamDestroy(s);
  }

 private:
  bool shared_;
  runtime::GpuLayout layout_;
  mutable std::mutex mu_;
  std::map<uint64_t, cudaStream_t> places_;
  uint64_t next_ = 1;
};

}  // namespace

Result<std::unique_ptr<GpuSliceProvider>> CreateSliceProvider(const std::string& kind, int device,
                                                              int group_sms) {
  if (kind != "green" && kind != "mps" && kind != "streams" && kind != "exclusive")
    return Status::InvalidArgument("unknown sharing '" + kind +
                                   "' (expected green, mps, streams or exclusive)");
  if (group_sms <= 0)
    return Status::InvalidArgument("SM group size must be > 0, got " + std::to_string(group_sms));
  int count = 0;
  TESSERA_RETURN_IF_ERROR(Cuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount"));
  if (device < 0 || device >= count)
    return Status::InvalidArgument("GPU " + std::to_string(device) + " does not exist (" +
                                   std::to_string(count) + " visible)");
  if (kind == "green") {
    auto p = std::make_unique<GreenProvider>();
    TESSERA_RETURN_IF_ERROR(p->Init(device, group_sms));
    return std::unique_ptr<GpuSliceProvider>(std::move(p));
  }
  if (kind == "mps") {
    auto p = std::make_unique<MpsProvider>();
    TESSERA_RETURN_IF_ERROR(p->Init(device, group_sms));
    return std::unique_ptr<GpuSliceProvider>(std::move(p));
  }
  auto p = std::make_unique<StreamProvider>(kind == "exclusive");
  TESSERA_RETURN_IF_ERROR(p->Init(device, group_sms));
  return std::unique_ptr<GpuSliceProvider>(std::move(p));
}

}  // namespace tessera::gpu
