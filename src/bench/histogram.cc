#include "tessera/bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>

namespace tessera::bench {

Histogram::Histogram(int sub_bucket_bits, int64_t max_value)
    : bits_(std::clamp(sub_bucket_bits, 1, 20)), max_value_(std::max<int64_t>(max_value, 1)) {
  counts_.assign(IndexOf(max_value_) + 1, 0);
}

int64_t Histogram::HighestInBucket(size_t index) const {
  const uint64_t exact = uint64_t{1} << (bits_ + 1);
  if (index < exact) return static_cast<int64_t>(index);
  const uint64_t half = uint64_t{1} << bits_;
  const uint64_t rest = index - exact;
  const int shift = static_cast<int>(rest / half) + 1;
  const uint64_t top = half + rest % half;
  return static_cast<int64_t>(((top + 1) << shift) - 1);
}

void Histogram::Merge(const Histogram& other) {
  if (other.bits_ != bits_ || other.max_value_ != max_value_)
    throw std::invalid_argument("Histogram::Merge: different layouts");
  if (other.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  if (count_ == 0) {
    min_ = other.min_;
    max_ = other.max_;
  } else {
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }
  count_ += other.count_;
  sum_ += other.sum_;
  saturated_ += other.saturated_;
}

void Histogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = min_ = max_ = saturated_ = 0;
  sum_ = 0;
}

int64_t Histogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  p = std::clamp(p, 0.0, 100.0);
  // Rank of the sample wanted (1-based): at least p% of samples at or below it.
  int64_t rank = static_cast<int64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<int64_t>(rank, 1, count_);
  int64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(HighestInBucket(i), min_, max_);
  }
  return max_;
}

double Histogram::FractionAtOrBelow(int64_t value) const {
  if (count_ == 0) return 0;
  if (value >= max_) return 1.0;
  const size_t last = IndexOf(value);
  int64_t seen = 0;
  for (size_t i = 0; i <= last && i < counts_.size(); ++i) seen += counts_[i];
  return static_cast<double>(seen) / static_cast<double>(count_);
}

std::vector<std::pair<int64_t, double>> Histogram::Cdf(size_t max_points) const {
  std::vector<std::pair<int64_t, double>> all;
  int64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (!counts_[i]) continue;
    seen += counts_[i];
    all.emplace_back(std::clamp(HighestInBucket(i), min_, max_),
                     static_cast<double>(seen) / static_cast<double>(count_));
  }
  if (max_points == 0 || all.size() <= max_points) return all;
  std::vector<std::pair<int64_t, double>> out;
  const double step = static_cast<double>(all.size() - 1) / static_cast<double>(max_points - 1);
  for (size_t k = 0; k < max_points; ++k)
    out.push_back(all[std::min(all.size() - 1, static_cast<size_t>(k * step + 0.5))]);
  out.back() = all.back();
  return out;
}

}  // namespace tessera::bench
