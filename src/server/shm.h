// Triton's shared-memory extensions: clients register regions once and then pass tensors by
// (region, offset, byte size) instead of in the request body. Regions are reference-counted:
// unregistering one while a request still reads or writes it is safe; the mapping goes when
// the last user is done. Every access is bounds-checked against the registered size.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tessera/core/status.h"

namespace tessera::server {

// Bytes [data, data + size) of a region; `holder` keeps the mapping alive.
struct ShmSlice {
  uint8_t* data = nullptr;
  size_t size = 0;
  std::shared_ptr<const void> holder;
  int64_t device_id = -1;  // CUDA regions: the GPU holding the bytes (data is then device memory)
};

struct ShmRegionInfo {
  std::string name;
  std::string key;  // system: the shm_open key
  uint64_t offset = 0;
  uint64_t byte_size = 0;
  int64_t device_id = -1;  // CUDA
};

class ShmRegistry {
 public:
  virtual ~ShmRegistry() = default;
  // Slice [offset, offset + size) of region `name`. NotFound for an unknown region,
  // InvalidArgument when the slice does not fit.
  Result<ShmSlice> Slice(const std::string& name, uint64_t offset, uint64_t size) const;
  // Regions, all or one (NotFound when `name` is given and unknown).
  Result<std::vector<ShmRegionInfo>> Status(const std::string& name) const;
  // Forgets one region, or every region when `name` is empty. Unknown names are not an error
  // (Triton's behaviour).
  void Unregister(const std::string& name);

 protected:
  struct Region {
    ShmRegionInfo info;
    uint8_t* base = nullptr;  // the registered bytes (after the offset)
    std::shared_ptr<void> mapping;
  };
  tessera::Status Add(Region r);
  mutable std::mutex mu_;
  std::map<std::string, Region> regions_;
};

class SystemShmRegistry final : public ShmRegistry {
 public:
  // Page-locks a mapped region for the GPUs (returns a holder that undoes it). Set when the
  // server slices GPUs: tensors in a pinned region are copied to the GPU by DMA straight from
  // it. A region that cannot be pinned still registers, and is staged like a request body.
  using Pinner = std::function<Result<std::shared_ptr<void>>(void* p, size_t bytes)>;
  void set_pinner(Pinner pin) { pin_ = std::move(pin); }
  // Maps `byte_size` bytes at `offset` of POSIX shared memory `key` (as shm_open names it).
  // AlreadyExists for a taken name; NotFound / InvalidArgument when the key cannot be opened
  // or is smaller than offset + byte_size.
  tessera::Status Register(const std::string& name, const std::string& key, uint64_t offset,
                           uint64_t byte_size);

 private:
  Pinner pin_;
};

// CUDA IPC memory handles. Works in CUDA builds on a machine with a GPU; elsewhere Register
// answers UNAVAILABLE saying so, and status lists nothing.
class CudaShmRegistry final : public ShmRegistry {
 public:
  tessera::Status Register(const std::string& name, const std::string& raw_handle,
                           int64_t device_id, uint64_t byte_size);
  // Copies between host memory and a CUDA slice (cudaMemcpy); Unavailable without CUDA.
  static tessera::Status CopyToHost(const ShmSlice& src, void* dst, size_t bytes);
  static tessera::Status CopyFromHost(const void* src, const ShmSlice& dst, size_t bytes);
  static bool Available();  // a CUDA build with at least one GPU
  // The system registry's pinner in CUDA builds (cudaHostRegister); Unavailable elsewhere.
  static Result<std::shared_ptr<void>> PinHost(void* p, size_t bytes);
};

}  // namespace tessera::server
