// CUDA IPC memory handles for the CUDA shared-memory extension: a client process exports a
// device allocation with cudaIpcGetMemHandle; the server opens it here and copies tensors in
// and out. Built only when nvcc is present; callers guard with TESSERA_HAVE_CUDA.
#pragma once

#include <memory>
#include <string>

#include "tessera/core/status.h"

namespace tessera::gpu {

// Opens a cudaIpcMemHandle_t given as its raw bytes on `device`. On success *ptr is the
// device address and the returned holder closes the handle when released.
Result<std::shared_ptr<void>> OpenIpcHandle(const std::string& raw_handle, int device, void** ptr);
Status CopyDeviceToHost(void* dst, const void* src, size_t bytes, int device);
Status CopyHostToDevice(void* dst, const void* src, size_t bytes, int device);
// Page-locks [p, p + bytes) of host memory for every GPU (cudaHostRegister, portable), so copies
// from it are DMA transfers with no staging copy; the holder unregisters it when released (before
// the memory is unmapped).
Result<std::shared_ptr<void>> PinHostMemory(void* p, size_t bytes);
// GPUs visible (0 when CUDA cannot initialise).
int VisibleDeviceCount();

}  // namespace tessera::gpu
