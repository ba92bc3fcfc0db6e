// Test body memory (tessera/core/body.h) that allocates from the heap and remembers its blocks,
// so a test can tell which bytes came from it and that each went back. Installed for the
// object's lifetime.
#pragma once

#include <cstdlib>
#include <set>

#include "tessera/core/body.h"

namespace tessera::testing {

class CountingBodyMemory {
 public:
  explicit CountingBodyMemory(size_t min_bytes) {
    SetBodyMemory({[this](size_t n) -> void* {
                     ++allocs;
                     void* p = std::malloc(n);
                     blocks.insert(p);
                     return p;
                   },
                   [this](void* p) {
                     if (!blocks.erase(p)) return false;
                     ++frees;
                     std::free(p);
                     return true;
                   },
                   min_bytes});
  }
  ~CountingBodyMemory() { SetBodyMemory({}); }
  CountingBodyMemory(const CountingBodyMemory&) = delete;
  CountingBodyMemory& operator=(const CountingBodyMemory&) = delete;

  bool Holds(const void* p) const { return blocks.count(const_cast<void*>(p)) != 0; }

  std::set<void*> blocks;  // allocated and not freed yet
  int allocs = 0, frees = 0;
};

}  // namespace tessera::testing
