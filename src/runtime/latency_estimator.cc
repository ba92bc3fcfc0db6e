#include "runtime/latency_estimator.h"

#include <algorithm>
#include <cmath>

namespace tessera::runtime {

void LatencyEstimator::Record(int64_t rows, int64_t ns) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = by_rows_[rows];
  const double x = static_cast<double>(ns);
  if (e.n == 0) {
    e.mean = x;
    e.dev = 0;
  } else {
    // Few samples: plain averages; afterwards exponential, so the estimate follows drift.
    const double a = std::max(alpha_, 1.0 / static_cast<double>(e.n + 1));
    e.dev = (1 - a) * e.dev + a * std::fabs(x - e.mean);
    e.mean = (1 - a) * e.mean + a * x;
  }
  ++e.n;
}

int64_t LatencyEstimator::PredictNs(int64_t rows) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (by_rows_.empty() || rows <= 0) return 0;
  auto hi = by_rows_.lower_bound(rows);
  if (hi != by_rows_.end() && hi->first == rows) return static_cast<int64_t>(Upper(hi->second));
  if (hi == by_rows_.begin())  // below the smallest measured size: no faster than it
    return static_cast<int64_t>(Upper(hi->second));
  auto lo = std::prev(hi);
  if (hi == by_rows_.end())  // beyond the largest: proportional to rows
    return static_cast<int64_t>(Upper(lo->second) * static_cast<double>(rows) /
                                static_cast<double>(lo->first));
  const double f =
      static_cast<double>(rows - lo->first) / static_cast<double>(hi->first - lo->first);
  return static_cast<int64_t>(Upper(lo->second) + f * (Upper(hi->second) - Upper(lo->second)));
}

bool LatencyEstimator::empty() const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_rows_.empty();
}

}  // namespace tessera::runtime
