// Per-model-version statistics: Triton's fields (what the statistics extension and the nv_*
// metrics report) plus Tessera's own (SLO attainment, rejects by reason, histograms).
// Thread-safe: writers are executor threads, readers are frontends.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tessera/runtime/request.h"

namespace tessera {

struct DurationStat {
  uint64_t count = 0;
  uint64_t ns = 0;
};

struct BatchStat {
  uint64_t batch_size = 0;
  DurationStat compute_input, compute_infer, compute_output;
  // Tessera's: the sum over executions of (input + infer + output time in ms)^2, so a reader
  // gets the spread of a batch's compute time (variance = sum_sq / n - mean^2), not only its
  // mean. HTTP statistics carry it as "tessera_compute_ms_sq".
  double compute_ms_sq = 0;
};

// Why the runtime refused or dropped a request.
enum class RejectReason { kQueueFull, kTimeout, kSloUnmeetable, kUnavailable, kCount };
const char* RejectReasonName(RejectReason r);

// Fixed-bucket latency histogram (upper bounds in microseconds), Prometheus-style cumulative
// when exported.
struct LatencyHistogram {
  static constexpr std::array<double, 16> kBoundsUs = {100,   250,   500,   1000,   2500,   5000,
                                                       10000, 25000, 50000, 100000, 250000, 500000,
                                                       1e6,   2.5e6, 5e6,   1e7};
  std::array<uint64_t, kBoundsUs.size() + 1> counts{};  // last: above every bound
  double sum_us = 0;
  uint64_t total = 0;
  void Add(double us);
};

struct ModelStatsSnapshot {
  std::string name;
  int64_t version = 0;
  uint64_t last_inference_ms = 0;  // since the epoch
  uint64_t inference_count = 0;    // rows inferred (a request of batch n counts n)
  uint64_t execution_count = 0;    // batches executed
  DurationStat success, fail, queue, compute_input, compute_infer, compute_output;
  std::vector<BatchStat> batch_stats;  // by executed batch size, ascending
  // Tessera's own.
  std::array<uint64_t, static_cast<size_t>(RejectReason::kCount)> rejects{};
  uint64_t slo_met = 0, slo_missed = 0;  // successful requests vs the model's SLO (if any)
  int64_t queue_depth = 0;
  uint64_t memory_bytes = 0;         // weights + activation arenas (CPU memory for the CPU engine)
  LatencyHistogram request_latency;  // arrive -> response ready
  std::map<uint64_t, uint64_t> batch_rows;  // executed batch rows -> count
};

class ModelStats {
 public:
  ModelStats(std::string name, int64_t version, double slo_ms);
  // One executed batch of `rows` rows; durations in ns.
  void RecordExecution(int64_t rows, int64_t input_ns, int64_t infer_ns, int64_t output_ns);
  // A request answered successfully (timing complete up to output_done; `end_ns` = now).
  void RecordSuccess(const InferenceRequest& r, int64_t end_ns);
  // A request that failed after admission (execution error) or was dropped.
  void RecordFailure(const InferenceRequest& r, int64_t end_ns);
  void RecordReject(RejectReason reason);
  void SetQueueDepth(int64_t depth) { queue_depth_.store(depth); }
  ModelStatsSnapshot Snapshot() const;

 private:
  mutable std::mutex mu_;
  ModelStatsSnapshot s_;
  double slo_ns_;
  std::atomic<int64_t> queue_depth_{0};
};

}  // namespace tessera
