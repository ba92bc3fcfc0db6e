// GPU tests: labelled "gpu"; each skips when no GPU is visible (CI has none).
#include <gtest/gtest.h>

#include "gpu/device_info.h"

namespace tessera::gpu {
namespace {

bool HaveGpu() {
  auto d = ListDevices();
  return d.ok() && !d->empty();
}

TEST(GpuDevice, ListsDevicesWithPlausibleProperties) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  auto d = ListDevices();
  ASSERT_TRUE(d.ok());
  for (const auto& dev : *d) {
    EXPECT_GT(dev.sm_count, 0);
    EXPECT_GT(dev.total_memory_bytes, size_t{1} << 30);
    EXPECT_FALSE(dev.name.empty());
  }
}

TEST(GpuDevice, KernelAndCopyRoundTrip) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  Status st = SelfTest(0);
  EXPECT_TRUE(st.ok()) << st.ToString();
}

}  // namespace
}  // namespace tessera::gpu
