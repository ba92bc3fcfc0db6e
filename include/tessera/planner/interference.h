// Interference between slices of one GPU: SMs are private to a slice, but memory bandwidth and
// L2 are shared, so a slice runs slower when its neighbours stream a lot of memory.
//
// The model (in the spirit of iGniter's L2 term): a slice's latency on a shared GPU is its
// latency alone times
//   inflation = 1 + alpha * sum over neighbour slices of pressure
//   pressure  = mem_intensity * (slice SMs / GPU SMs) * busy   (busy: share of time it runs)
// alpha is fitted from co-location measurements (alone vs together, with the neighbours'
// pressure) by least squares; the fit reports its own prediction error. Pure; thread-safe.
#pragma once

#include <vector>

#include "tessera/core/status.h"

namespace tessera::planner {

// One measurement: a model's latency alone and next to neighbours of the given total pressure.
struct CoLocationSample {
  double alone_ms = 0;
  double colocated_ms = 0;
  double neighbour_pressure = 0;
};

struct PredictionError {
  int samples = 0;
  double mean_abs_rel = 0;  // mean |predicted - measured| / measured
  double max_abs_rel = 0;
};

class InterferenceModel {
 public:
  // A default fitted to published co-location slow-downs (20-40% for bandwidth-heavy pairs).
  static constexpr double kDefaultAlpha = 0.6;

  explicit InterferenceModel(double alpha = kDefaultAlpha) : alpha_(alpha) {}
  double alpha() const { return alpha_; }

  double Inflation(double neighbour_pressure) const { return 1 + alpha_ * neighbour_pressure; }
  double Predict(double alone_ms, double neighbour_pressure) const {
    return alone_ms * Inflation(neighbour_pressure);
  }

  // Least-squares alpha through the origin of (colocated/alone - 1) against pressure, clamped
  // at 0. InvalidArgument when there are no samples with pressure > 0 or a sample has a
  // non-positive time.
  static Result<InterferenceModel> Fit(const std::vector<CoLocationSample>& samples);

  PredictionError Evaluate(const std::vector<CoLocationSample>& samples) const;

 private:
  double alpha_;
};

inline double SlicePressure(double mem_intensity, double sms, double gpu_sms, double busy) {
  return mem_intensity * (sms / gpu_sms) * busy;
}

}  // namespace tessera::planner
