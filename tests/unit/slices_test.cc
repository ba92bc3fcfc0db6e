// GPU slice bookkeeping without a GPU: granularity, the config parameters, group accounting,
// the make-before-break resize state machine against a fake provider, and the memory budget.
#include "tessera/runtime/slices.h"

#include <gtest/gtest.h>

#include "fake_slice_provider.h"

namespace tessera::runtime {
namespace {

GpuLayout H100() {
  GpuLayout g;
  g.index = 0;
  g.name = "H100";
  g.sms = 132;
  g.group_sms = 8;
  g.memory_bytes = int64_t{80} << 30;
  return g;
}

using FakeProvider = testing::FakeSliceProvider;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Slices, GranularityAndPercentages) {
  const GpuLayout gpu = H100();
  EXPECT_EQ(gpu.groups(), 16);
  EXPECT_EQ(gpu.Describe(), "GPU 0 (H100, 132 SMs: 16 groups of 8, 4 spare)");
  EXPECT_EQ(GroupsFor({32, 0}, gpu, "m").value(), 4);
  EXPECT_EQ(GroupsFor({128, 0}, gpu, "m").value(), 16);
  const auto odd = GroupsFor({20, 0}, gpu, "resnet50");
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(odd.status().message(), "model 'resnet50': slice_sms 20"));
  EXPECT_TRUE(Contains(odd.status().message(), "expected a multiple of 8 from 8 to 128"));
  EXPECT_TRUE(Contains(GroupsFor({136, 0}, gpu, "m").status().message(), "at most 128"));
  // 25% of 132 SMs = 33 SMs -> 5 groups (40 SMs); tiny shares get one group; 100% is the GPU.
  EXPECT_EQ(GroupsFor({0, 25}, gpu, "m").value(), 5);
  EXPECT_EQ(GroupsFor({0, 0.5}, gpu, "m").value(), 1);
  EXPECT_EQ(GroupsFor({0, 100}, gpu, "m").value(), 16);
  // Exactly 6 groups (48 SMs of 132) is not rounded up to 7.
  EXPECT_EQ(GroupsFor({0, 4800.0 / 132}, gpu, "m").value(), 6);
}

TEST(Slices, ConfigParameters) {
  ModelConfig c;
  c.name = "m";
  c.platform = "onnxruntime_onnx";
  EXPECT_FALSE(c.SliceRequest());
  c.parameters["slice_sms"] = "32";
  ASSERT_TRUE(c.SliceRequest());
  EXPECT_EQ(c.SliceRequest()->sms, 32);
  EXPECT_TRUE(ValidateModelConfig(c).ok());
  c.parameters["slice_sms"] = "thirty";
  EXPECT_TRUE(Contains(ValidateModelConfig(c).message(),
                       "parameter slice_sms is 'thirty'; expected a positive whole number of SMs"));
  c.parameters["slice_sms"] = "12.5";
  EXPECT_FALSE(ValidateModelConfig(c).ok());
  c.parameters.erase("slice_sms");
  c.parameters["slice_percent"] = "25";
  EXPECT_EQ(c.SliceRequest()->percent, 25);
  EXPECT_TRUE(ValidateModelConfig(c).ok());
  c.parameters["slice_percent"] = "150";
  EXPECT_TRUE(Contains(ValidateModelConfig(c).message(), "in (0, 100]"));
  c.parameters["slice_percent"] = "25";
  c.parameters["slice_sms"] = "32";
  EXPECT_TRUE(Contains(ValidateModelConfig(c).message(), "both set"));
}

TEST(Slices, AddTakesFreeGroupsAndRefusesWhatDoesNotFit) {
  FakeProvider fake;
  SliceTable t(H100(), &fake);
  auto a = t.Add("a", 10);
  ASSERT_TRUE(a.ok());
  auto b = t.Add("b", 4);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(t.free_groups(), 2);
  EXPECT_EQ(t.Get(*b)->groups, (std::vector<int>{10, 11, 12, 13}));
  EXPECT_EQ(t.Get(*a)->sms(t.gpu()), 80);
  const auto c = t.Add("c", 3);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(c.status().message(), "24 SMs for 'c'"));
  EXPECT_TRUE(Contains(c.status().message(), "16 SMs are free; held by a (80 SMs), b (32 SMs)"));
  EXPECT_EQ(t.free_groups(), 2);  // a refusal changes nothing
  // A provider failure holds nothing either.
  fake.fail_next = true;
  EXPECT_EQ(t.Add("d", 1).status().code(), StatusCode::kInternal);
  EXPECT_EQ(t.free_groups(), 2);
  EXPECT_EQ(fake.live.size(), 2u);
  // Freed groups are reused, lowest first.
  ASSERT_TRUE(t.Remove(*a).ok());
  EXPECT_EQ(t.free_groups(), 12);
  EXPECT_EQ(t.Get(*t.Add("e", 2))->groups, (std::vector<int>{0, 1}));
  EXPECT_EQ(t.Remove(999).code(), StatusCode::kNotFound);
}

TEST(Slices, GrowIsMakeBeforeBreak) {
  FakeProvider fake;
  SliceTable t(H100(), &fake);
  const SliceId a = t.Add("a", 4).value();
  const SliceId b = t.Add("b", 4).value();
  const uint64_t old_place = t.Get(a)->place;
  ASSERT_TRUE(t.BeginResize(a, 6).ok());
  // The new place exists beside the old one, on the old groups plus two free ones, reserved.
  auto s = t.Get(a).value();
  EXPECT_EQ(s.state, SliceInfo::State::kResizing);
  EXPECT_EQ(s.place, old_place);  // still serving on the old place
  EXPECT_EQ(s.other_groups, (std::vector<int>{0, 1, 2, 3, 8, 9}));
  EXPECT_EQ(fake.live.size(), 3u);
  EXPECT_EQ(t.free_groups(), 6);
  EXPECT_EQ(t.Add("c", 7).status().code(), StatusCode::kResourceExhausted);
  // One resize at a time.
  EXPECT_EQ(t.BeginResize(a, 8).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(t.FinishResize(a).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(t.CommitResize(a).ok());
  s = t.Get(a).value();
  EXPECT_EQ(s.state, SliceInfo::State::kDraining);
  EXPECT_NE(s.place, old_place);
  EXPECT_EQ(s.other_place, old_place);  // the old place drains
  EXPECT_EQ(fake.live.count(old_place), 1u);
  ASSERT_TRUE(t.FinishResize(a).ok());
  EXPECT_EQ(fake.live.count(old_place), 0u);
  EXPECT_EQ(fake.live.size(), 2u);
  EXPECT_EQ(t.Get(a)->sms(t.gpu()), 48);
  EXPECT_EQ(t.free_groups(), 6);
  EXPECT_EQ(t.Get(b)->groups, (std::vector<int>{4, 5, 6, 7}));  // the neighbour never moved
}

TEST(Slices, ShrinkFreesGroupsOnlyAfterTheDrain) {
  FakeProvider fake;
  SliceTable t(H100(), &fake);
  const SliceId a = t.Add("a", 8).value();
  ASSERT_TRUE(t.BeginResize(a, 3).ok());
  EXPECT_EQ(t.Get(a)->other_groups, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(t.free_groups(), 8);
  ASSERT_TRUE(t.CommitResize(a).ok());
  EXPECT_EQ(t.free_groups(), 8);  // the old place still runs on all eight
  ASSERT_TRUE(t.FinishResize(a).ok());
  EXPECT_EQ(t.free_groups(), 13);
  EXPECT_EQ(t.Get(a)->groups, (std::vector<int>{0, 1, 2}));
}

TEST(Slices, AbortAndFailuresUndoTheReservation) {
  FakeProvider fake;
  SliceTable t(H100(), &fake);
  const SliceId a = t.Add("a", 4).value();
  ASSERT_TRUE(t.Add("b", 10).ok());
  // Not enough free groups: refused, nothing held.
  const Status big = t.BeginResize(a, 8);
  EXPECT_EQ(big.code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(big.message(), "it has 32 SMs and 16 more are free"));
  EXPECT_EQ(t.Get(a)->state, SliceInfo::State::kServing);
  // The provider fails: nothing reserved.
  fake.fail_next = true;
  EXPECT_EQ(t.BeginResize(a, 6).code(), StatusCode::kInternal);
  EXPECT_EQ(t.free_groups(), 2);
  EXPECT_EQ(t.Get(a)->state, SliceInfo::State::kServing);
  // Begun, then aborted before the flip: the new place goes, the extra groups come back.
  ASSERT_TRUE(t.BeginResize(a, 6).ok());
  EXPECT_EQ(t.free_groups(), 0);
  ASSERT_TRUE(t.AbortResize(a).ok());
  EXPECT_EQ(t.free_groups(), 2);
  EXPECT_EQ(fake.live.size(), 2u);
  EXPECT_EQ(t.AbortResize(a).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(t.BeginResize(a, 4).code(), StatusCode::kInvalidArgument);  // already that size
  // Removing a slice mid-resize destroys both of its places.
  ASSERT_TRUE(t.BeginResize(a, 5).ok());
  ASSERT_TRUE(t.Remove(a).ok());
  EXPECT_EQ(fake.live.size(), 1u);
  EXPECT_EQ(t.free_groups(), 6);
}

TEST(Slices, TableDestroysWhatItHolds) {
  FakeProvider fake;
  {
    SliceTable t(H100(), &fake);
    const SliceId a = t.Add("a", 2).value();
    ASSERT_TRUE(t.BeginResize(a, 4).ok());
    EXPECT_EQ(fake.live.size(), 2u);
  }
  EXPECT_TRUE(fake.live.empty());
}

TEST(Slices, MemoryBudgetRefusesWithoutDisturbing) {
  MemoryBudget m(H100());
  ASSERT_TRUE(m.Reserve("a", int64_t{40} << 30).ok());
  ASSERT_TRUE(m.Reserve("b", int64_t{39} << 30).ok());
  const Status st = m.Reserve("c", int64_t{2} << 30);
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(st.message(), "loading 'c' needs 2.00 GiB"));
  EXPECT_TRUE(Contains(st.message(), "1.00 GiB of the 80.00 GiB budget"));
  EXPECT_TRUE(Contains(st.message(), "held by a 40.00 GiB, b 39.00 GiB"));
  EXPECT_EQ(m.used(), int64_t{79} << 30);
  EXPECT_EQ(m.Reserve("a", 1).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(m.Reserve("d", -1).code(), StatusCode::kInvalidArgument);
  m.Release("a");
  EXPECT_TRUE(m.Reserve("c", int64_t{2} << 30).ok());
  EXPECT_EQ(m.free(), int64_t{39} << 30);
}

}  // namespace
}  // namespace tessera::runtime
