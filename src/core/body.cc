#include "tessera/core/body.h"

#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <new>

namespace tessera {
namespace {

std::shared_ptr<const BodyMemory>& Current() {
  static std::shared_ptr<const BodyMemory> m;
  return m;
}
std::mutex& Mu() {
  static std::mutex mu;
  return mu;
}
std::shared_ptr<const BodyMemory> Get() {
  std::lock_guard<std::mutex> lock(Mu());
  return Current();
}

}  // namespace

void SetBodyMemory(BodyMemory memory) {
  std::lock_guard<std::mutex> lock(Mu());
  if (memory.alloc && memory.free)
    Current() = std::make_shared<const BodyMemory>(std::move(memory));
  else
    Current().reset();
}

size_t BodyMemoryMinBytes() {
  auto m = Get();
  return m ? m->min_bytes : std::numeric_limits<size_t>::max();
}

void* AllocateBodyBytes(size_t bytes) {
  if (auto m = Get(); m && bytes >= m->min_bytes)
    if (void* p = m->alloc(bytes)) return p;
  void* p = std::malloc(bytes);
  if (!p) throw std::bad_alloc();
  return p;
}

void FreeBodyBytes(void* p, size_t bytes) {
  if (!p) return;
  if (auto m = Get(); m && bytes >= m->min_bytes && m->free(p)) return;
  std::free(p);
}

}  // namespace tessera
