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

  Status Check(CUresult r, const char* what) const {
    if (r == CUDA_SUCCESS) return Status::OK();
    const char* s = nullptr;
    if (get_error_string) get_error_string(r, &s);
    return Status::Unavailable(std::string(what) + ": " +
                               (s ? s : "CUDA driver error " + std::to_string(r)));
  }
};

template <typename F>
Status Entry(const char* name, F* fn) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q{};
  TESSERA_RETURN_IF_ERROR(
      Cuda(cudaGetDriverEntryPointByVersion(name, &p, CUDA_VERSION, cudaEnableDefault, &q), name));
  if (q != cudaDriverEntryPointSuccess || !p)
    return Status::Unavailable(std::string("the CUDA driver has no ") + name +
                               " (green contexts need driver 550 / CUDA 12.4 or newer)");
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

class GreenProvider final : public GpuSliceProvider {
 public:
  std::string kind() const override { return "green"; }
  const runtime::GpuLayout& layout() const override { return layout_; }

  Status Init(int device, int group_sms) {
    TESSERA_ASSIGN_OR_RETURN(layout_, Layout(device, group_sms));
    TESSERA_ASSIGN_OR_RETURN(drv_, LoadDriver());
    TESSERA_RETURN_IF_ERROR(Cuda(cudaFree(nullptr), "initializing the primary context"));
    TESSERA_RETURN_IF_ERROR(drv_.Check(drv_.device_get(&dev_, device), "cuDeviceGet"));
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
    Place p;
    TESSERA_RETURN_IF_ERROR(drv_.Check(
        drv_.green_create(&p.ctx, desc, dev_, CU_GREEN_CTX_DEFAULT_STREAM), "cuGreenCtxCreate"));
    Status st = drv_.Check(drv_.green_stream_create(&p.stream, p.ctx, CU_STREAM_NON_BLOCKING, 0),
                           "cuGreenCtxStreamCreate");
    if (!st.ok()) {
      drv_.green_destroy(p.ctx);
      return st;
    }
    std::lock_guard<std::mutex> lock(mu_);
    places_[next_] = p;
    return next_++;
  }

  void Destroy(uint64_t place) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = places_.find(place);
    if (it == places_.end()) return;
    drv_.stream_destroy(it->second.stream);  // streams before their green context
    drv_.green_destroy(it->second.ctx);
    places_.erase(it);
  }

  void* Stream(uint64_t place) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = places_.find(place);
    return it == places_.end() ? nullptr : static_cast<void*>(it->second.stream);
  }

  ~GreenProvider() override {
    for (auto& [_, p] : places_) {
      drv_.stream_destroy(p.stream);
      drv_.green_destroy(p.ctx);
    }
  }

 private:
  struct Place {
    CUgreenCtx ctx = nullptr;
    CUstream stream = nullptr;
  };
  runtime::GpuLayout layout_;
  Driver drv_;
  CUdevice dev_ = 0;
  std::vector<CUdevResource> groups_;
  mutable std::mutex mu_;
  std::map<uint64_t, Place> places_;
  uint64_t next_ = 1;
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
  if (kind != "green" && kind != "streams" && kind != "exclusive")
    return Status::InvalidArgument("unknown sharing '" + kind +
                                   "' (expected green, streams or exclusive; mps is not built "
                                   "yet)");
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
  auto p = std::make_unique<StreamProvider>(kind == "exclusive");
  TESSERA_RETURN_IF_ERROR(p->Init(device, group_sms));
  return std::unique_ptr<GpuSliceProvider>(std::move(p));
}

}  // namespace tessera::gpu
