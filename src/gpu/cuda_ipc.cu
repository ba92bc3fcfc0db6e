#include <cuda_runtime.h>

#include <cstring>

#include "gpu/cuda_ipc.h"

namespace tessera::gpu {
namespace {
Status Check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::OK();
  return Status::Unavailable(std::string(what) + ": " + cudaGetErrorString(e));
}
}  // namespace

Result<std::shared_ptr<void>> OpenIpcHandle(const std::string& raw_handle, int device, void** ptr) {
  cudaIpcMemHandle_t h;
  if (raw_handle.size() != sizeof(h))
    return Status::InvalidArgument("a CUDA IPC handle is " + std::to_string(sizeof(h)) +
                                   " bytes, got " + std::to_string(raw_handle.size()));
  std::memcpy(&h, raw_handle.data(), sizeof(h));
  TESSERA_RETURN_IF_ERROR(Check(cudaSetDevice(device), "cudaSetDevice"));
  void* p = nullptr;
  TESSERA_RETURN_IF_ERROR(
      Check(cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess), "cudaIpcOpenMemHandle"));
  *ptr = p;
  return std::shared_ptr<void>(p, [device](void* q) {
    cudaSetDevice(device);
    cudaIpcCloseMemHandle(q);
  });
}

Status CopyDeviceToHost(void* dst, const void* src, size_t bytes, int device) {
  TESSERA_RETURN_IF_ERROR(Check(cudaSetDevice(device), "cudaSetDevice"));
  return Check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
}

Status CopyHostToDevice(void* dst, const void* src, size_t bytes, int device) {
  TESSERA_RETURN_IF_ERROR(Check(cudaSetDevice(device), "cudaSetDevice"));
  return Check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
}

Result<std::shared_ptr<void>> PinHostMemory(void* p, size_t bytes) {
  TESSERA_RETURN_IF_ERROR(
      Check(cudaHostRegister(p, bytes, cudaHostRegisterPortable), "cudaHostRegister"));
  return std::shared_ptr<void>(p, [](void* q) { cudaHostUnregister(q); });
}

int VisibleDeviceCount() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

}  // namespace tessera::gpu
