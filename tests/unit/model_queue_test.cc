#include "runtime/model_queue.h"

#include <gtest/gtest.h>

namespace tessera::runtime {
namespace {

constexpr int64_t kMs = 1000000;

RequestPtr Req(int64_t rows, int64_t arrive_ns, uint64_t priority = 0, uint64_t timeout_us = 0,
               const std::string& id = "") {
  auto r = std::make_unique<InferenceRequest>();
  r->model = "m";
  r->rows = rows;
  r->priority = priority;
  r->timeout_us = timeout_us;
  r->timing.arrive = arrive_ns;
  r->id = id;
  return r;
}

QueueSettings Batching(int max_batch, int64_t delay_ns = 0) {
  QueueSettings s;
  s.max_batch_size = max_batch;
  s.dynamic_batching = true;
  s.max_queue_delay_ns = delay_ns;
  for (int64_t b = 1; b < max_batch; b *= 2) s.buckets.push_back(b);
  s.buckets.push_back(max_batch);
  return s;
}

void Push(ModelQueue& q, RequestPtr r, int64_t now, const std::string& key = "k") {
  ASSERT_TRUE(q.Push(r, key, now).ok());
}

std::vector<std::string> Ids(const std::vector<RequestPtr>& batch) {
  std::vector<std::string> out;
  for (const auto& r : batch) out.push_back(r->id);
  return out;
}

TEST(ModelQueue, WithoutDynamicBatchingRunsRequestsOneAtATimeInArrivalOrder) {
  QueueSettings s;
  s.max_batch_size = 8;
  s.buckets = {1, 2, 4, 8};
  ModelQueue q(s);
  LatencyEstimator est;
  Push(q, Req(2, 0, 0, 0, "a"), 0);
  Push(q, Req(1, 1, 0, 0, "b"), 1);
  auto d = q.Next(10, est);
  EXPECT_EQ(Ids(d.batch), (std::vector<std::string>{"a"}));
  EXPECT_EQ(Ids(q.Next(10, est).batch), (std::vector<std::string>{"b"}));
  EXPECT_TRUE(q.empty());
}

TEST(ModelQueue, DispatchesAFullBatchAtOnceAndWaitsForMoreUpToTheQueueDelay) {
  ModelQueue q(Batching(4, 5 * kMs));
  LatencyEstimator est;
  Push(q, Req(1, 0, 0, 0, "a"), 0);
  Push(q, Req(2, 0, 0, 0, "b"), 1 * kMs);
  auto d = q.Next(2 * kMs, est);
  EXPECT_TRUE(d.batch.empty());
  EXPECT_EQ(d.wake_at_ns, 5 * kMs);  // oldest (enqueued at 0) + delay
  Push(q, Req(1, 0, 0, 0, "c"), 3 * kMs);
  d = q.Next(3 * kMs, est);  // 1 + 2 + 1 = 4 rows = max_batch_size: go
  EXPECT_EQ(Ids(d.batch), (std::vector<std::string>{"a", "b", "c"}));
  Push(q, Req(1, 0, 0, 0, "d"), 4 * kMs);
  EXPECT_TRUE(q.Next(8 * kMs, est).batch.empty());
  EXPECT_EQ(Ids(q.Next(9 * kMs, est).batch), (std::vector<std::string>{"d"}));  // delay over
}

TEST(ModelQueue, LeavesARequestThatWouldOverflowTheBatchForTheNextOne) {
  ModelQueue q(Batching(4));
  LatencyEstimator est;
  Push(q, Req(3, 0, 0, 0, "a"), 0);
  Push(q, Req(2, 0, 0, 0, "b"), 1);
  EXPECT_EQ(Ids(q.Next(2, est).batch), (std::vector<std::string>{"a"}));
  EXPECT_EQ(Ids(q.Next(2, est).batch), (std::vector<std::string>{"b"}));
}

TEST(ModelQueue, ABatchLimitCapsTheRowsGatheredUntilLifted) {
  ModelQueue q(Batching(8, 5 * kMs));
  LatencyEstimator est;
  q.SetBatchLimit(3);
  EXPECT_EQ(q.batch_limit(), 3);
  for (int i = 0; i < 6; ++i) Push(q, Req(1, 0, 0, 0, std::string(1, char('a' + i))), 0);
  // Full at 3 rows: dispatched at once, without waiting for the queue delay.
  EXPECT_EQ(Ids(q.Next(0, est).batch), (std::vector<std::string>{"a", "b", "c"}));
  // A request carrying more rows than the limit still runs, alone.
  Push(q, Req(5, 0, 0, 0, "big"), 0);
  EXPECT_EQ(Ids(q.Next(0, est).batch), (std::vector<std::string>{"d", "e", "f"}));
  EXPECT_EQ(Ids(q.Next(0, est).batch), (std::vector<std::string>{"big"}));
  // Lifted (0), or set past max_batch_size: the config's 8 again.
  q.SetBatchLimit(0);
  EXPECT_EQ(q.batch_limit(), 8);
  q.SetBatchLimit(100);
  EXPECT_EQ(q.batch_limit(), 8);
  for (int i = 0; i < 6; ++i) Push(q, Req(1, 0, 0, 0, std::string(1, char('a' + i))), 0);
  EXPECT_TRUE(q.Next(0, est).batch.empty());  // 6 < 8: waits for more
  EXPECT_EQ(q.Next(5 * kMs, est).batch.size(), 6u);
}

TEST(ModelQueue, SendsTheLargestPreferredBatchSizeWithoutWaiting) {
  QueueSettings s = Batching(8, 100 * kMs);
  s.preferred = {2, 4};
  ModelQueue q(s);
  LatencyEstimator est;
  Push(q, Req(1, 0, 0, 0, "a"), 0);
  EXPECT_TRUE(q.Next(1, est).batch.empty());
  Push(q, Req(1, 0, 0, 0, "b"), 1);
  Push(q, Req(1, 0, 0, 0, "c"), 2);
  // 3 queued: the preferred size 2 is formed (3 is not preferred): send 2 now.
  EXPECT_EQ(Ids(q.Next(3, est).batch), (std::vector<std::string>{"a", "b"}));
}

TEST(ModelQueue, BatchesOnlyRequestsWhoseShapesMatch) {
  ModelQueue q(Batching(8));
  LatencyEstimator est;
  Push(q, Req(1, 0, 0, 0, "a"), 0, "seq128");
  Push(q, Req(1, 0, 0, 0, "b"), 1, "seq64");
  Push(q, Req(1, 0, 0, 0, "c"), 2, "seq128");
  EXPECT_EQ(Ids(q.Next(3, est).batch), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(Ids(q.Next(3, est).batch), (std::vector<std::string>{"b"}));
}

TEST(ModelQueue, ServesHigherPriorityLevelsFirst) {
  QueueSettings s = Batching(1);
  s.priority_levels = 3;
  s.default_level = 2;
  ModelQueue q(s);
  LatencyEstimator est;
  Push(q, Req(1, 0, 0, 0, "default"), 0);
  Push(q, Req(1, 0, 3, 0, "low"), 1);
  Push(q, Req(1, 0, 1, 0, "high"), 2);
  EXPECT_EQ(Ids(q.Next(3, est).batch), (std::vector<std::string>{"high"}));
  EXPECT_EQ(Ids(q.Next(3, est).batch), (std::vector<std::string>{"default"}));
  EXPECT_EQ(Ids(q.Next(3, est).batch), (std::vector<std::string>{"low"}));
  RequestPtr bad = Req(1, 0, 4);
  EXPECT_EQ(q.Push(bad, "k", 3).code(), StatusCode::kInvalidArgument);
}

TEST(ModelQueue, OrdersByDeadlineWithinALevel) {
  ModelQueue q(Batching(1));
  LatencyEstimator est;
  Push(q, Req(1, 0, 0, 0, "no-deadline"), 0);
  Push(q, Req(1, 0, 0, 50000, "50ms"), 1);
  Push(q, Req(1, 0, 0, 10000, "10ms"), 2);
  EXPECT_EQ(Ids(q.Next(3, est).batch), (std::vector<std::string>{"10ms"}));
  EXPECT_EQ(Ids(q.Next(3, est).batch), (std::vector<std::string>{"50ms"}));
  EXPECT_EQ(Ids(q.Next(3, est).batch), (std::vector<std::string>{"no-deadline"}));
}

TEST(ModelQueue, RejectsARequestWhoseQueueTimeoutExpires) {
  ModelQueue q(Batching(4, 100 * kMs));
  LatencyEstimator est;
  Push(q, Req(1, 0, 0, 2000, "t"), 0);  // 2 ms timeout
  auto d = q.Next(1 * kMs, est);
  EXPECT_TRUE(d.batch.empty());
  EXPECT_EQ(d.wake_at_ns, 2 * kMs);  // wakes for the timeout, not the 100 ms delay
  d = q.Next(2 * kMs, est);
  ASSERT_EQ(d.dropped.size(), 1u);
  EXPECT_EQ(d.dropped[0].second.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(d.drop_reasons[0], RejectReason::kTimeout);
  EXPECT_TRUE(q.empty());
}

TEST(ModelQueue, DelayActionKeepsATimedOutRequestBehindTheOthers) {
  QueueSettings s = Batching(1);
  s.default_policy.delay_on_timeout = true;
  s.default_policy.default_timeout_us = 1000;
  ModelQueue q(s);
  LatencyEstimator est;
  Push(q, Req(1, 0, 0, 0, "old"), 0);
  Push(q, Req(1, 0, 0, 0, "new"), 2 * kMs);
  auto d = q.Next(2 * kMs, est);  // "old" timed out at 1 ms: delayed, not dropped
  EXPECT_TRUE(d.dropped.empty());
  EXPECT_EQ(Ids(d.batch), (std::vector<std::string>{"new"}));
  EXPECT_EQ(Ids(q.Next(2 * kMs, est).batch), (std::vector<std::string>{"old"}));
}

TEST(ModelQueue, TheRequestTimeoutOverridesThePolicyOnlyWhenAllowed) {
  QueueSettings s = Batching(1, 0);
  s.default_policy.default_timeout_us = 10000;  // 10 ms
  ModelQueue q(s);
  RequestPtr r = Req(1, 0, 0, 1000);  // asks for 1 ms: ignored
  ASSERT_TRUE(q.Push(r, "k", 0).ok());
  LatencyEstimator est;
  auto d = q.Next(0, est);
  ASSERT_EQ(d.batch.size(), 1u);
  EXPECT_EQ(d.batch[0]->timeout_at_ns, 10 * kMs);
  s.default_policy.allow_timeout_override = true;
  ModelQueue q2(s);
  r = Req(1, 0, 0, 1000);
  ASSERT_TRUE(q2.Push(r, "k", 0).ok());
  EXPECT_EQ(q2.Next(0, est).batch[0]->timeout_at_ns, 1 * kMs);
}

TEST(ModelQueue, BoundedQueuesRejectAtOnce) {
  QueueSettings s = Batching(4);
  s.max_queue = 2;
  ModelQueue q(s);
  Push(q, Req(1, 0), 0);
  Push(q, Req(1, 0), 0);
  RequestPtr r = Req(1, 0);
  EXPECT_EQ(q.Push(r, "k", 0).code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r, nullptr);  // not taken
  QueueSettings p = Batching(4);
  p.default_policy.max_queue_size = 1;
  ModelQueue q2(p);
  Push(q2, Req(1, 0), 0);
  r = Req(1, 0);
  EXPECT_EQ(q2.Push(r, "k", 0).code(), StatusCode::kResourceExhausted);
}

TEST(ModelQueue, WithAnSloDropsBeforeDispatchWhatCannotMeetItsDeadline) {
  QueueSettings s = Batching(8);
  s.slo_ns = 10 * kMs;
  ModelQueue q(s);
  LatencyEstimator est;
  for (int64_t b : {1, 2, 4, 8}) est.Record(b, b * 2 * kMs);  // 2 ms per row
  Push(q, Req(1, 0, 0, 0, "stale"), 0);                       // arrived at 0: deadline 10 ms
  Push(q, Req(1, 5 * kMs, 0, 0, "fresh"), 5 * kMs);
  auto d = q.Next(9 * kMs, est);  // 9 + 2 > 10: "stale" cannot make it
  ASSERT_EQ(d.dropped.size(), 1u);
  EXPECT_EQ(d.dropped[0].first->id, "stale");
  EXPECT_EQ(d.drop_reasons[0], RejectReason::kSloUnmeetable);
  EXPECT_EQ(d.dropped[0].second.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(Ids(d.batch), (std::vector<std::string>{"fresh"}));
}

TEST(ModelQueue, WithAnSloTakesTheLargestBatchThatStillMeetsTheEarliestDeadline) {
  QueueSettings s = Batching(8);
  s.slo_ns = 20 * kMs;
  ModelQueue q(s);
  LatencyEstimator est;
  for (int64_t b : {1, 2, 4, 8}) est.Record(b, b * 3 * kMs);  // 3 ms per row
  for (int i = 0; i < 8; ++i) Push(q, Req(1, 0, 0, 0, std::to_string(i)), 0);
  // At 5 ms, 15 ms remain: 4 rows (12 ms) fit, 8 rows (24 ms) do not.
  auto d = q.Next(5 * kMs, est);
  EXPECT_EQ(d.batch.size(), 4u);
  EXPECT_TRUE(d.dropped.empty());
}

TEST(ModelQueue, WithAnSloWaitsForMoreOnlyWhileTheDeadlineAllows) {
  QueueSettings s = Batching(8, 50 * kMs);  // would wait up to 50 ms
  s.slo_ns = 20 * kMs;
  ModelQueue q(s);
  LatencyEstimator est;
  for (int64_t b : {1, 2, 4, 8}) est.Record(b, 5 * kMs);
  Push(q, Req(1, 0, 0, 0, "a"), 0);
  auto d = q.Next(1 * kMs, est);
  EXPECT_TRUE(d.batch.empty());
  EXPECT_EQ(d.wake_at_ns, 15 * kMs);  // deadline 20 ms - predicted 5 ms
  EXPECT_EQ(q.Next(15 * kMs, est).batch.size(), 1u);
}

TEST(QueueSettings, BucketsArePowersOfTwoTheMaxAndPreferredSizes) {
  ModelConfig c;
  c.max_batch_size = 12;
  c.dynamic_batching = DynamicBatching{};
  c.dynamic_batching->preferred_batch_sizes = {6};
  auto s = QueueSettings::FromConfig(c, 100);
  EXPECT_EQ(s.buckets, (std::vector<int64_t>{1, 2, 4, 6, 8, 12}));
  EXPECT_EQ(s.BucketFor(5), 6);
  EXPECT_EQ(s.BucketFor(9), 12);
  EXPECT_TRUE(s.dynamic_batching);
}

TEST(LatencyEstimator, InterpolatesBetweenMeasuredBatchSizes) {
  LatencyEstimator est;
  EXPECT_EQ(est.PredictNs(4), 0);
  est.Record(2, 2000);
  est.Record(8, 8000);
  EXPECT_EQ(est.PredictNs(2), 2000);
  EXPECT_EQ(est.PredictNs(4), 4000);
  EXPECT_EQ(est.PredictNs(16), 16000);
  EXPECT_EQ(est.PredictNs(1), 2000);  // never predicts below the smallest measurement
}

}  // namespace
}  // namespace tessera::runtime
