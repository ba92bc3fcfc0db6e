#include <cuda_runtime.h>

#include <vector>

#include "gpu/device_info.h"

namespace tessera::gpu {
namespace {

Status Check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::OK();
  return Status::Unavailable(std::string(what) + ": " + cudaGetErrorString(e));
}

__global__ void FillKernel(float* out, int n, float scale) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = static_cast<float>(i) * scale;
}

}  // namespace

Result<std::vector<DeviceInfo>> ListDevices() {
  int count = 0;
  TESSERA_RETURN_IF_ERROR(Check(cudaGetDeviceCount(&count), "cudaGetDeviceCount"));
  std::vector<DeviceInfo> out;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p{};
    TESSERA_RETURN_IF_ERROR(Check(cudaGetDeviceProperties(&p, i), "cudaGetDeviceProperties"));
    DeviceInfo d;
    d.index = i;
    d.name = p.name;
    d.major = p.major;
    d.minor = p.minor;
    d.sm_count = p.multiProcessorCount;
    d.total_memory_bytes = p.totalGlobalMem;
    d.async_engines = p.asyncEngineCount;
    d.l2_bytes = static_cast<size_t>(p.l2CacheSize);
    out.push_back(d);
  }
  return out;
}

Status SelfTest(int index, int n) {
  TESSERA_RETURN_IF_ERROR(Check(cudaSetDevice(index), "cudaSetDevice"));
  float* dev = nullptr;
  TESSERA_RETURN_IF_ERROR(Check(cudaMalloc(&dev, n * sizeof(float)), "cudaMalloc"));
  FillKernel<<<(n + 255) / 256, 256>>>(dev, n, 0.5f);
  std::vector<float> host(n);
  Status st =
      Check(cudaMemcpy(host.data(), dev, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
  cudaFree(dev);
  if (!st.ok()) return st;
  for (int i = 0; i < n; ++i)
    if (host[i] != static_cast<float>(i) * 0.5f)
      return Status::Internal("GPU self-test mismatch at element " + std::to_string(i));
  return Status::OK();
}

}  // namespace tessera::gpu
