// Open-loop arrival processes for the load generator: when each request is due, independent of
// when earlier ones were answered (so slow answers never hold back the offered load).
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tessera/core/status.h"

namespace tessera::bench {

struct ArrivalSpec {
  enum class Kind { kConstant, kPoisson, kGamma, kBursty, kDiurnal, kTrace };
  Kind kind = Kind::kPoisson;
  double rate = 1.0;  // mean requests/s (kTrace: ignored; the trace sets the rate)
  double cv = 1.0;    // kGamma: coefficient of variation of the gaps (1 = Poisson)
  // kBursty (a two-state Markov-modulated Poisson process): the high state's rate is
  // burst_ratio x the low state's; the process spends burst_fraction of the time in it; states
  // last burst_period_s x fraction on average (exponentially distributed). Mean rate = rate.
  double burst_ratio = 8.0;
  double burst_fraction = 0.2;
  double burst_period_s = 1.0;
  // kDiurnal: a Poisson process whose rate follows a day-like cycle,
  // rate x (1 + diurnal_amplitude x sin(2 pi (t / diurnal_period_s + diurnal_phase))); the
  // mean rate is `rate`. Different phases make models peak at different times.
  double diurnal_amplitude = 0.5;
  double diurnal_period_s = 3600;
  double diurnal_phase = 0;  // fraction of a period, [0, 1)
  // kTrace: arrival offsets in ns from the start, non-decreasing; replayed from the start again
  // when it runs out if trace_loop.
  std::vector<int64_t> trace_ns;
  bool trace_loop = true;
};

std::string KindName(ArrivalSpec::Kind kind);
// "constant", "poisson", "gamma", "bursty", "diurnal", "trace"; InvalidArgument otherwise.
Result<ArrivalSpec::Kind> ParseKind(const std::string& name);

// A trace file: one arrival per line, its time in seconds from the start (decimal); blank lines
// and lines starting with '#' are skipped. Errors name the line.
Result<std::vector<int64_t>> ParseTrace(const std::string& text, const std::string& what);
Result<std::vector<int64_t>> ReadTraceFile(const std::string& path);

class ArrivalProcess {
 public:
  virtual ~ArrivalProcess() = default;
  // The next arrival's offset from the start in ns (non-decreasing), or -1 when there are no more.
  virtual int64_t Next() = 0;
};

// `rate_scale` multiplies the offered rate (a trace is replayed that much faster). Deterministic
// for a given seed. The process keeps its own copy of the spec's data.
std::unique_ptr<ArrivalProcess> MakeArrivals(const ArrivalSpec& spec, uint64_t seed,
                                             double rate_scale = 1.0);

}  // namespace tessera::bench
