// A latency histogram with bounded relative error (the HdrHistogram layout: exact below
// 2^(bits+1), then 2^bits linear sub-buckets per power of two), so percentiles from millions of
// samples cost a fixed few hundred KiB and O(buckets) to read. Values are int64 (Tessera's bench
// records nanoseconds). Not thread-safe; give each thread its own and Merge.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace tessera::bench {

class Histogram {
 public:
  // Relative error of every reported value <= 2^-sub_bucket_bits (10: under 0.1%). Values above
  // max_value are recorded as max_value and counted in saturated(); negative ones as 0.
  explicit Histogram(int sub_bucket_bits = 10, int64_t max_value = int64_t{1} << 42);

  void Record(int64_t value, int64_t count = 1);
  // Adds another histogram's counts; its layout (bits, max_value) must be the same.
  void Merge(const Histogram& other);
  void Reset();

  int64_t count() const { return count_; }
  int64_t min() const { return count_ ? min_ : 0; }
  int64_t max() const { return count_ ? max_ : 0; }
  int64_t saturated() const { return saturated_; }
  double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }
  // The value at percentile p (0..100): the smallest v such that at least p% of samples are <= v,
  // within the relative error (reported as its bucket's highest value, clamped to [min, max]).
  // 0 when empty.
  int64_t Percentile(double p) const;
  // Fraction of samples <= value (0 when empty).
  double FractionAtOrBelow(int64_t value) const;
  // (value, cumulative fraction) at each non-empty bucket, for CDF plots; at most max_points
  // points (evenly thinned, the last one always kept).
  std::vector<std::pair<int64_t, double>> Cdf(size_t max_points = 200) const;

  // Bucket index of a value, and the highest value of a bucket (exposed for tests).
  size_t IndexOf(int64_t value) const;
  int64_t HighestInBucket(size_t index) const;

 private:
  int bits_;
  int64_t max_value_;
  std::vector<int64_t> counts_;
  int64_t count_ = 0, min_ = 0, max_ = 0, saturated_ = 0;
  double sum_ = 0;
};

// Inline: the simulator records one value per simulated request.
inline size_t Histogram::IndexOf(int64_t value) const {
  const uint64_t v = static_cast<uint64_t>(std::max<int64_t>(value, 0));
  const uint64_t exact = uint64_t{1} << (bits_ + 1);
  if (v < exact) return static_cast<size_t>(v);
  const int msb = 63 - std::countl_zero(v);
  const int shift = msb - bits_;    // >= 1
  const uint64_t top = v >> shift;  // in [2^bits, 2^(bits+1))
  return static_cast<size_t>(exact + (static_cast<uint64_t>(shift) - 1) * (uint64_t{1} << bits_) +
                             (top - (uint64_t{1} << bits_)));
}

inline void Histogram::Record(int64_t value, int64_t count) {
  if (count <= 0) return;
  if (value < 0) value = 0;
  if (value > max_value_) {
    value = max_value_;
    saturated_ += count;
  }
  counts_[IndexOf(value)] += count;
  if (count_ == 0) {
    min_ = max_ = value;
  } else {
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
  }
  count_ += count;
  sum_ += static_cast<double>(value) * static_cast<double>(count);
}

}  // namespace tessera::bench
