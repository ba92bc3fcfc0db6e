#include "tessera/bench/arrivals.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace tessera::bench {
namespace {

constexpr double kNsPerS = 1e9;

class Constant final : public ArrivalProcess {
 public:
  explicit Constant(double rate) : gap_ns_(kNsPerS / rate) {}
  int64_t Next() override { return static_cast<int64_t>(std::llround(gap_ns_ * n_++)); }

 private:
  double gap_ns_;
  int64_t n_ = 0;
};

// Independent gaps drawn from a distribution in ns: exponential (Poisson arrivals) or gamma.
template <typename Dist>
class RandomGaps final : public ArrivalProcess {
 public:
  RandomGaps(Dist gap, uint64_t seed) : rng_(seed), gap_(gap) {}
  int64_t Next() override {
    t_ += gap_(rng_);
    return static_cast<int64_t>(t_);
  }

 private:
  std::mt19937_64 rng_;
  Dist gap_;
  double t_ = 0;
};

// Two-state MMPP. Memorylessness lets a gap that crosses a state change be redrawn from there.
class Bursty final : public ArrivalProcess {
 public:
  Bursty(const ArrivalSpec& s, double rate, uint64_t seed) : rng_(seed) {
    const double f = std::clamp(s.burst_fraction, 1e-6, 1 - 1e-6);
    low_rate_ = rate / (f * s.burst_ratio + (1 - f));
    high_rate_ = low_rate_ * s.burst_ratio;
    mean_high_ns_ = f * s.burst_period_s * kNsPerS;
    mean_low_ns_ = (1 - f) * s.burst_period_s * kNsPerS;
    // Start in a state chosen by its share of time, so the process is stationary from t = 0.
    high_ = std::uniform_real_distribution<double>(0, 1)(rng_) < f;
    state_end_ = Dwell();
  }
  int64_t Next() override {
    for (;;) {
      const double r = (high_ ? high_rate_ : low_rate_) / kNsPerS;
      const double gap = std::exponential_distribution<double>(r)(rng_);
      if (t_ + gap <= state_end_) {
        t_ += gap;
        return static_cast<int64_t>(t_);
      }
      t_ = state_end_;
      high_ = !high_;
      state_end_ = t_ + Dwell();
    }
  }

 private:
  double Dwell() {
    return std::exponential_distribution<double>(1.0 /
                                                 (high_ ? mean_high_ns_ : mean_low_ns_))(rng_);
  }
  std::mt19937_64 rng_;
  double low_rate_, high_rate_, mean_high_ns_, mean_low_ns_;
  bool high_;
  double t_ = 0, state_end_ = 0;
};

// Non-homogeneous Poisson by thinning: candidates at the peak rate, each kept with probability
// rate(t) / peak.
class Diurnal final : public ArrivalProcess {
 public:
  Diurnal(const ArrivalSpec& s, double rate, uint64_t seed)
      : rng_(seed),
        amp_(std::clamp(s.diurnal_amplitude, 0.0, 1.0)),
        omega_(2 * M_PI / (s.diurnal_period_s * kNsPerS)),
        phase_(2 * M_PI * s.diurnal_phase),
        gap_((rate * (1 + amp_)) / kNsPerS) {}
  int64_t Next() override {
    for (;;) {
      t_ += gap_(rng_);
      const double keep = (1 + amp_ * std::sin(omega_ * t_ + phase_)) / (1 + amp_);
      if (std::uniform_real_distribution<double>(0, 1)(rng_) < keep)
        return static_cast<int64_t>(t_);
    }
  }

 private:
  std::mt19937_64 rng_;
  double amp_, omega_, phase_;
  std::exponential_distribution<double> gap_;
  double t_ = 0;
};

class Trace final : public ArrivalProcess {
 public:
  Trace(const std::vector<int64_t>& times, bool loop, double scale)
      : times_(times), loop_(loop), scale_(scale) {
    // One replay lasts until the last arrival plus the trace's mean gap.
    if (!times_.empty()) {
      const double span = static_cast<double>(times_.back() - times_.front());
      period_ = times_.back() + (times_.size() > 1 ? span / (times_.size() - 1) : 1e6);
    }
  }
  int64_t Next() override {
    if (times_.empty()) return -1;
    if (i_ == times_.size()) {
      if (!loop_) return -1;
      i_ = 0;
      ++round_;
    }
    const double t = static_cast<double>(times_[i_++]) + round_ * period_;
    return static_cast<int64_t>(t / scale_);
  }

 private:
  std::vector<int64_t> times_;
  bool loop_;
  double scale_;
  double period_ = 0;
  size_t i_ = 0;
  int64_t round_ = 0;
};

}  // namespace

std::string KindName(ArrivalSpec::Kind kind) {
  switch (kind) {
    case ArrivalSpec::Kind::kConstant:
      return "constant";
    case ArrivalSpec::Kind::kPoisson:
      return "poisson";
    case ArrivalSpec::Kind::kGamma:
      return "gamma";
    case ArrivalSpec::Kind::kBursty:
      return "bursty";
    case ArrivalSpec::Kind::kDiurnal:
      return "diurnal";
    case ArrivalSpec::Kind::kTrace:
      return "trace";
  }
  return "?";
}

Result<ArrivalSpec::Kind> ParseKind(const std::string& name) {
  for (auto k :
       {ArrivalSpec::Kind::kConstant, ArrivalSpec::Kind::kPoisson, ArrivalSpec::Kind::kGamma,
        ArrivalSpec::Kind::kBursty, ArrivalSpec::Kind::kDiurnal, ArrivalSpec::Kind::kTrace})
    if (KindName(k) == name) return k;
  return Status::InvalidArgument("unknown arrival process '" + name +
                                 "' (expected constant, poisson, gamma, bursty, diurnal or trace)");
}

Result<std::vector<int64_t>> ParseTrace(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const auto b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const auto e = line.find_last_not_of(" \t\r");
    const std::string field = line.substr(b, e - b + 1);
    size_t used = 0;
    double s = 0;
    try {
      s = std::stod(field, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != field.size() || !std::isfinite(s) || s < 0)
      return Status::InvalidArgument(what + ":" + std::to_string(lineno) + ": expected a time in " +
                                     "seconds >= 0, got '" + field + "'");
    const auto ns = static_cast<int64_t>(std::llround(s * kNsPerS));
    if (!out.empty() && ns < out.back())
      return Status::InvalidArgument(what + ":" + std::to_string(lineno) +
                                     ": times must not decrease (" + field + " s comes after " +
                                     std::to_string(out.back() / kNsPerS) + " s)");
    out.push_back(ns);
  }
  if (out.empty()) return Status::InvalidArgument(what + ": the trace has no arrivals");
  return out;
}

Result<std::vector<int64_t>> ReadTraceFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Status::NotFound("cannot read trace file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ParseTrace(ss.str(), path);
}

std::unique_ptr<ArrivalProcess> MakeArrivals(const ArrivalSpec& spec, uint64_t seed,
                                             double rate_scale) {
  const double rate = spec.rate * rate_scale;
  switch (spec.kind) {
    case ArrivalSpec::Kind::kConstant:
      return std::make_unique<Constant>(rate);
    case ArrivalSpec::Kind::kPoisson:
      return std::make_unique<RandomGaps<std::exponential_distribution<double>>>(
          std::exponential_distribution<double>(rate / kNsPerS), seed);
    case ArrivalSpec::Kind::kGamma:
      if (spec.cv <= 1e-9) return std::make_unique<Constant>(rate);
      // Gaps ~ Gamma(k, theta) with k = 1/cv^2 and mean k * theta = 1/rate.
      return std::make_unique<RandomGaps<std::gamma_distribution<double>>>(
          std::gamma_distribution<double>(1.0 / (spec.cv * spec.cv),
                                          kNsPerS / rate * spec.cv * spec.cv),
          seed);
    case ArrivalSpec::Kind::kBursty:
      return std::make_unique<Bursty>(spec, rate, seed);
    case ArrivalSpec::Kind::kDiurnal:
      return std::make_unique<Diurnal>(spec, rate, seed);
    case ArrivalSpec::Kind::kTrace:
      return std::make_unique<Trace>(spec.trace_ns, spec.trace_loop, rate_scale);
  }
  return nullptr;
}

}  // namespace tessera::bench
