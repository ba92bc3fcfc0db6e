// Running per-batch-size latency of one model version, the batcher's prediction of how long a
// batch will take. Seeded by warm-up runs, updated after every execution. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>

namespace tessera::runtime {

class LatencyEstimator {
 public:
  // `alpha`: weight of a new sample in the exponential averages.
  explicit LatencyEstimator(double alpha = 0.1) : alpha_(alpha) {}
  void Record(int64_t rows, int64_t ns);
  // A cautious prediction for `rows` rows: mean + 2 x mean absolute deviation at that size;
  // between measured sizes linearly interpolated, beyond them extrapolated proportionally.
  // 0 when nothing has been measured yet (no basis to refuse anything).
  int64_t PredictNs(int64_t rows) const;
  bool empty() const;

 private:
  struct Entry {
    double mean = 0, dev = 0;
    uint64_t n = 0;
  };
  double Upper(const Entry& e) const { return e.mean + 2 * e.dev; }
  double alpha_;
  mutable std::mutex mu_;
  std::map<int64_t, Entry> by_rows_;
};

}  // namespace tessera::runtime
