// Request bodies: where the bytes of a request land when the server reads it. Tensors in a binary
// HTTP body are used in place (views into the body), so on a server that slices GPUs the body is
// allocated from the GPUs' pinned pool: the bytes read from the socket are then already
// DMA-able, and a batch of one request goes to the GPU from there with no further copy. Small
// bodies, and every body on a server without GPUs, come from the ordinary heap.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace tessera {

struct BodyMemory {
  std::function<void*(size_t bytes)> alloc;  // null on failure: the heap is used instead
  std::function<bool(void* p)> free;         // false: not one of its blocks
  size_t min_bytes = 64 << 10;               // smaller bodies use the heap
};
// Installs (or with an empty BodyMemory, removes) the body memory. Call before serving starts and
// after it has stopped: a block is freed through the memory that allocated it.
void SetBodyMemory(BodyMemory memory);

// The smallest body the installed memory takes (SIZE_MAX when none is installed): smaller
// ones come from the heap.
size_t BodyMemoryMinBytes();

void* AllocateBodyBytes(size_t bytes);
void FreeBodyBytes(void* p, size_t bytes);

template <typename T>
struct BodyAllocator {
  using value_type = T;
  BodyAllocator() = default;
  template <typename U>
  BodyAllocator(const BodyAllocator<U>&) {}  // NOLINT: allocators convert implicitly
  T* allocate(size_t n) { return static_cast<T*>(AllocateBodyBytes(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { FreeBodyBytes(p, n * sizeof(T)); }
  template <typename U>
  bool operator==(const BodyAllocator<U>&) const {
    return true;
  }
};

using Body = std::basic_string<char, std::char_traits<char>, BodyAllocator<char>>;

}  // namespace tessera
