// The CUDA shared-memory registry: real in CUDA builds (through gpu/cuda_ipc.h), an honest
// UNAVAILABLE elsewhere.
#include "server/shm.h"

#ifdef TESSERA_HAVE_CUDA
#include "gpu/cuda_ipc.h"
#endif

namespace tessera::server {

bool CudaShmRegistry::Available() {
#ifdef TESSERA_HAVE_CUDA
  static const bool ok = gpu::VisibleDeviceCount() > 0;
  return ok;
#else
  return false;
#endif
}

tessera::Status CudaShmRegistry::Register(const std::string& name, const std::string& raw_handle,
                                          int64_t device_id, uint64_t byte_size) {
  if (name.empty()) return tessera::Status::InvalidArgument("the region needs a name");
  if (!Available())
    return tessera::Status::Unavailable(
        "CUDA shared memory needs a GPU and a CUDA build of Tessera; this server has none "
        "(use system shared memory)");
#ifdef TESSERA_HAVE_CUDA
  if (byte_size == 0)
    return tessera::Status::InvalidArgument("region '" + name + "': byte_size must be > 0");
  if (device_id < 0 || device_id >= gpu::VisibleDeviceCount())
    return tessera::Status::InvalidArgument("region '" + name + "': no GPU " +
                                            std::to_string(device_id));
  void* p = nullptr;
  auto holder = gpu::OpenIpcHandle(raw_handle, static_cast<int>(device_id), &p);
  if (!holder.ok()) return holder.status().WithContext("region '" + name + "'");
  Region r;
  r.info = {name, "", 0, byte_size, device_id};
  r.mapping = *holder;
  r.base = static_cast<uint8_t*>(p);
  return Add(std::move(r));
#else
  (void)raw_handle;
  (void)device_id;
  (void)byte_size;
  return tessera::Status::Unavailable("no CUDA");
#endif
}

Result<std::shared_ptr<void>> CudaShmRegistry::PinHost(void* p, size_t bytes) {
#ifdef TESSERA_HAVE_CUDA
  return gpu::PinHostMemory(p, bytes);
#else
  (void)p;
  (void)bytes;
  return tessera::Status::Unavailable("pinning host memory needs a CUDA build");
#endif
}

tessera::Status CudaShmRegistry::CopyToHost(const ShmSlice& src, void* dst, size_t bytes) {
#ifdef TESSERA_HAVE_CUDA
  return gpu::CopyDeviceToHost(dst, src.data, bytes, static_cast<int>(src.device_id));
#else
  (void)src;
  (void)dst;
  (void)bytes;
  return tessera::Status::Unavailable("CUDA shared memory needs a CUDA build");
#endif
}

tessera::Status CudaShmRegistry::CopyFromHost(const void* src, const ShmSlice& dst, size_t bytes) {
#ifdef TESSERA_HAVE_CUDA
  return gpu::CopyHostToDevice(dst.data, src, bytes, static_cast<int>(dst.device_id));
#else
  (void)src;
  (void)dst;
  (void)bytes;
  return tessera::Status::Unavailable("CUDA shared memory needs a CUDA build");
#endif
}

}  // namespace tessera::server
