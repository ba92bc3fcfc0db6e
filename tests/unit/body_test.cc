// Request bodies: large ones come from the installed body memory (the GPUs' pinned pool on a GPU
// server) and go back to it; small ones, and everything without one installed, use the heap.
#include "tessera/core/body.h"

#include <gtest/gtest.h>

#include <memory>

#include "counting_body_memory.h"

namespace tessera {
namespace {

TEST(Body, LargeBodiesUseTheInstalledMemoryAndReturnToIt) {
  auto memory = std::make_unique<testing::CountingBodyMemory>(4096);
  {
    Body small(100, 'x');  // below min_bytes: the heap
    Body big;
    big.reserve(1 << 20);
    big.append(1000, 'y');
    EXPECT_EQ(memory->allocs, 1);
    EXPECT_EQ(big.size(), 1000u);
    EXPECT_EQ(small.size(), 100u);
  }
  EXPECT_EQ(memory->frees, 1);
  EXPECT_TRUE(memory->blocks.empty());
  memory.reset();
  // An allocation the memory refuses falls back to the heap and is freed there.
  SetBodyMemory({[](size_t) -> void* { return nullptr; }, [](void*) { return false; }, 16});
  { Body b(1 << 16, 'z'); }
  SetBodyMemory({});
  { Body b(1 << 20, 'w'); }
}

}  // namespace
}  // namespace tessera
