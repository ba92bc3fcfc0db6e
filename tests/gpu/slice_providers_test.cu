// GPU slice providers. The argument checks run everywhere; the rest needs a GPU and skips
// without one (CI). Which SMs a kernel ran on is read from %smid in the kernel itself.
#include <gtest/gtest.h>

#include <set>

#include "gpu/device_info.h"
#include "gpu/slice_providers.h"

namespace tessera::gpu {
namespace {

bool HaveGpu() {
  auto d = ListDevices();
  return d.ok() && !d->empty();
}

// Each block spins ~20 us so that the blocks spread over every SM the stream may use.
__global__ void RecordSm(int* out) {
  if (threadIdx.x != 0) return;
  unsigned sm;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
  const long long start = clock64();
  while (clock64() - start < 40000) {
  }
  out[blockIdx.x] = static_cast<int>(sm);
}

std::set<int> SmsUsed(void* stream, int blocks = 2048) {
  auto s = static_cast<cudaStream_t>(stream);
  int* dev = nullptr;
  EXPECT_EQ(cudaMalloc(&dev, blocks * sizeof(int)), cudaSuccess);
  RecordSm<<<blocks, 32, 0, s>>>(dev);
  std::vector<int> host(blocks);
  EXPECT_EQ(cudaMemcpyAsync(host.data(), dev, blocks * sizeof(int), cudaMemcpyDeviceToHost, s),
            cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  cudaFree(dev);
  return std::set<int>(host.begin(), host.end());
}

TEST(GpuSlices, AnUnknownSharingKindIsNamedWithTheChoices) {
  auto p = CreateSliceProvider("magic", 0);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("green, mps, streams or exclusive"), std::string::npos);
}

TEST(GpuSlices, WithoutAGpuProvidersAreUnavailable) {
  if (HaveGpu()) GTEST_SKIP() << "a GPU is visible";
  for (const char* kind : {"green", "mps", "streams", "exclusive"}) {
    auto p = CreateSliceProvider(kind, 0);
    ASSERT_FALSE(p.ok()) << kind;
    EXPECT_EQ(p.status().code(), StatusCode::kUnavailable) << kind;
  }
}

TEST(GpuSlices, GreenContextsConfineWorkToTheirGroups) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  auto p = CreateSliceProvider("green", 0);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const auto& gpu = (*p)->layout();
  ASSERT_GE(gpu.groups(), 4) << gpu.Describe();
  auto a = (*p)->Create({0, 1});
  auto b = (*p)->Create({2, 3});
  auto all = (*p)->Create([&] {
    std::vector<int> g;
    for (int i = 0; i < gpu.groups(); ++i) g.push_back(i);
    return g;
  }());
  ASSERT_TRUE(a.ok() && b.ok() && all.ok());
  const std::set<int> sa = SmsUsed((*p)->Stream(*a)), sb = SmsUsed((*p)->Stream(*b));
  const std::set<int> sall = SmsUsed((*p)->Stream(*all));
  EXPECT_LE(sa.size(), size_t(2 * gpu.group_sms));
  EXPECT_LE(sb.size(), size_t(2 * gpu.group_sms));
  for (int sm : sa) EXPECT_EQ(sb.count(sm), 0u) << "SM " << sm << " is in both slices";
  EXPECT_GT(sall.size(), size_t(2 * gpu.group_sms));
  for (auto place : {*a, *b, *all}) (*p)->Destroy(place);
}

// Where an MPS daemon partitions per context, a place's kernels use at most its SM count
// (which SMs is MPS's choice); elsewhere the refusal says what is missing.
TEST(GpuSlices, MpsContextsLimitWorkToTheirSmCountOrSayWhatIsMissing) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  auto p = CreateSliceProvider("mps", 0);
  if (!p.ok()) {
    EXPECT_EQ(p.status().code(), StatusCode::kUnavailable) << p.status().ToString();
    EXPECT_NE(p.status().message().find("--sharing mps"), std::string::npos)
        << p.status().ToString();
    GTEST_SKIP() << p.status().message();
  }
  const auto& gpu = (*p)->layout();
  auto a = (*p)->Create({0, 1});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  const std::set<int> sa = SmsUsed((*p)->Stream(*a));
  EXPECT_LE(sa.size(), size_t(2 * gpu.group_sms));
  (*p)->Destroy(*a);
}

TEST(GpuSlices, TheSliceTableResizesOnRealGreenContexts) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  auto p = CreateSliceProvider("green", 0);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  runtime::SliceTable table((*p)->layout(), p->get());
  auto id = table.Add("model", 1);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto before = table.Get(*id);
  ASSERT_TRUE(before.ok());
  EXPECT_LE(SmsUsed((*p)->Stream(before->place)).size(), size_t((*p)->layout().group_sms));
  ASSERT_TRUE(table.BeginResize(*id, 3).ok());
  ASSERT_TRUE(table.CommitResize(*id).ok());
  ASSERT_TRUE(table.FinishResize(*id).ok());
  auto after = table.Get(*id);
  ASSERT_TRUE(after.ok());
  const auto used = SmsUsed((*p)->Stream(after->place));
  EXPECT_LE(used.size(), size_t(3 * (*p)->layout().group_sms));
  EXPECT_GT(used.size(), size_t((*p)->layout().group_sms));
}

TEST(GpuSlices, StreamsAndExclusiveShareTheWholeGpu) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  auto streams = CreateSliceProvider("streams", 0);
  auto exclusive = CreateSliceProvider("exclusive", 0);
  ASSERT_TRUE(streams.ok() && exclusive.ok());
  auto a = (*streams)->Create({0}), b = (*streams)->Create({1});
  auto c = (*exclusive)->Create({0}), d = (*exclusive)->Create({1});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  EXPECT_NE((*streams)->Stream(*a), (*streams)->Stream(*b));
  EXPECT_EQ((*exclusive)->Stream(*c), (*exclusive)->Stream(*d));
  EXPECT_GT(SmsUsed((*streams)->Stream(*a)).size(), size_t((*streams)->layout().group_sms));
  (*exclusive)->Destroy(*c);
  EXPECT_NE((*exclusive)->Stream(*d), nullptr);  // the shared stream outlives one place
}

}  // namespace
}  // namespace tessera::gpu
