#include "server/shm.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tessera::server {

Result<ShmSlice> ShmRegistry::Slice(const std::string& name, uint64_t offset, uint64_t size) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = regions_.find(name);
  if (it == regions_.end())
    return tessera::Status::NotFound("no shared memory region '" + name +
                                     "' is registered (register it first)");
  const Region& r = it->second;
  if (offset > r.info.byte_size || size > r.info.byte_size - offset)
    return tessera::Status::InvalidArgument(
        "shared memory region '" + name + "': bytes [" + std::to_string(offset) + ", " +
        std::to_string(offset + size) + ") are outside the registered " +
        std::to_string(r.info.byte_size) + " bytes");
  ShmSlice s;
  s.data = r.base + offset;
  s.size = size;
  s.holder = r.mapping;
  s.device_id = r.info.device_id;
  return s;
}

Result<std::vector<ShmRegionInfo>> ShmRegistry::Status(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ShmRegionInfo> out;
  if (!name.empty()) {
    auto it = regions_.find(name);
    if (it == regions_.end())
      return tessera::Status::NotFound("no shared memory region '" + name + "' is registered");
    out.push_back(it->second.info);
    return out;
  }
  for (const auto& [_, r] : regions_) out.push_back(r.info);
  return out;
}

void ShmRegistry::Unregister(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (name.empty())
    regions_.clear();
  else
    regions_.erase(name);
}

tessera::Status ShmRegistry::Add(Region r) {
  std::lock_guard<std::mutex> lock(mu_);
  if (regions_.count(r.info.name))
    return tessera::Status::AlreadyExists("a shared memory region named '" + r.info.name +
                                          "' is already registered (unregister it first)");
  regions_.emplace(r.info.name, std::move(r));
  return tessera::Status::OK();
}

tessera::Status SystemShmRegistry::Register(const std::string& name, const std::string& key,
                                            uint64_t offset, uint64_t byte_size) {
  if (name.empty()) return tessera::Status::InvalidArgument("the region needs a name");
  if (key.empty()) return tessera::Status::InvalidArgument("region '" + name + "' needs a key");
  if (byte_size == 0)
    return tessera::Status::InvalidArgument("region '" + name + "': byte_size must be > 0");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (regions_.count(name))
      return tessera::Status::AlreadyExists("a shared memory region named '" + name +
                                            "' is already registered (unregister it first)");
  }
  const int fd = shm_open(key.c_str(), O_RDWR, 0);
  if (fd < 0)
    return tessera::Status::NotFound("cannot open shared memory key '" + key +
                                     "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < offset ||
      static_cast<uint64_t>(st.st_size) - offset < byte_size) {
    const int64_t have = static_cast<int64_t>(st.st_size);
    close(fd);
    return tessera::Status::InvalidArgument(
        "shared memory key '" + key + "' holds " + std::to_string(have) + " bytes; offset " +
        std::to_string(offset) + " + byte_size " + std::to_string(byte_size) + " does not fit");
  }
  // mmap needs a page-aligned offset: map from the page boundary below it.
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t start = offset / page * page, lead = offset - start;
  void* p = mmap(nullptr, lead + byte_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                 static_cast<off_t>(start));
  close(fd);
  if (p == MAP_FAILED)
    return tessera::Status::Unavailable("cannot map shared memory key '" + key +
                                        "': " + std::strerror(errno));
  const size_t length = lead + byte_size;
  std::shared_ptr<void> pinned;
  if (pin_) {
    auto h = pin_(p, length);
    if (h.ok())
      pinned = std::move(h).value();
    else
      spdlog::warn(
          "shared memory region '{}' stays unpinned ({}): its tensors are staged through "
          "pinned buffers on their way to the GPU",
          name, h.status().message());
  }
  Region r;
  r.info = {name, key, offset, byte_size, -1};
  // Unpinned before it is unmapped, once the last request using it is done.
  r.mapping = std::shared_ptr<void>(p, [length, pinned](void* q) mutable {
    pinned.reset();
    munmap(q, length);
  });
  r.base = static_cast<uint8_t*>(p) + lead;
  return Add(std::move(r));
}

}  // namespace tessera::server
