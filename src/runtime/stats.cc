#include "tessera/runtime/stats.h"

#include <algorithm>
#include <chrono>

namespace tessera {

const char* RejectReasonName(RejectReason r) {
  switch (r) {
    case RejectReason::kQueueFull:
      return "queue_full";
    case RejectReason::kTimeout:
      return "timeout";
    case RejectReason::kSloUnmeetable:
      return "slo_unmeetable";
    case RejectReason::kUnavailable:
      return "unavailable";
    case RejectReason::kCount:
      break;
  }
  return "unknown";
}

void LatencyHistogram::Add(double us) {
  size_t i = std::lower_bound(kBoundsUs.begin(), kBoundsUs.end(), us) - kBoundsUs.begin();
  ++counts[i];
  sum_us += us;
  ++total;
}

ModelStats::ModelStats(std::string name, int64_t version, double slo_ms)
    : slo_ns_(slo_ms > 0 ? slo_ms * 1e6 : 0) {
  s_.name = std::move(name);
  s_.version = version;
}

namespace {
void Add(DurationStat* d, int64_t ns, uint64_t n = 1) {
  d->count += n;
  d->ns += static_cast<uint64_t>(std::max<int64_t>(0, ns));
}
uint64_t NowMsSinceEpoch() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}
}  // namespace

void ModelStats::RecordExecution(int64_t rows, int64_t input_ns, int64_t infer_ns,
                                 int64_t output_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  ++s_.execution_count;
  s_.last_inference_ms = NowMsSinceEpoch();
  ++s_.batch_rows[static_cast<uint64_t>(rows)];
  auto it = std::find_if(s_.batch_stats.begin(), s_.batch_stats.end(),
                         [&](const BatchStat& b) { return b.batch_size == uint64_t(rows); });
  if (it == s_.batch_stats.end()) {
    BatchStat b;
    b.batch_size = static_cast<uint64_t>(rows);
    it = s_.batch_stats.insert(std::upper_bound(s_.batch_stats.begin(), s_.batch_stats.end(), b,
                                                [](const BatchStat& x, const BatchStat& y) {
                                                  return x.batch_size < y.batch_size;
                                                }),
                               b);
  }
  Add(&it->compute_input, input_ns);
  Add(&it->compute_infer, infer_ns);
  Add(&it->compute_output, output_ns);
  const double ms =
      static_cast<double>(std::max<int64_t>(0, input_ns) + std::max<int64_t>(0, infer_ns) +
                          std::max<int64_t>(0, output_ns)) /
      1e6;
  it->compute_ms_sq += ms * ms;
}

void ModelStats::RecordSuccess(const InferenceRequest& r, int64_t end_ns) {
  const RequestTiming& t = r.timing;
  std::lock_guard<std::mutex> lock(mu_);
  s_.inference_count += static_cast<uint64_t>(r.rows);
  const int64_t total = end_ns - t.arrive;
  Add(&s_.success, total);
  Add(&s_.queue, t.dispatch - t.enqueue);
  Add(&s_.compute_input, t.input_done - t.dispatch);
  Add(&s_.compute_infer, t.infer_done - t.input_done);
  Add(&s_.compute_output, t.output_done - t.infer_done);
  s_.request_latency.Add(static_cast<double>(total) / 1e3);
  if (slo_ns_ > 0) {
    if (static_cast<double>(total) <= slo_ns_)
      ++s_.slo_met;
    else
      ++s_.slo_missed;
  }
}

void ModelStats::RecordFailure(const InferenceRequest& r, int64_t end_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  Add(&s_.fail, end_ns - r.timing.arrive);
  if (slo_ns_ > 0) ++s_.slo_missed;
}

void ModelStats::RecordReject(RejectReason reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++s_.rejects[static_cast<size_t>(reason)];
}

ModelStatsSnapshot ModelStats::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  ModelStatsSnapshot s = s_;
  s.queue_depth = queue_depth_.load();
  return s;
}

}  // namespace tessera
