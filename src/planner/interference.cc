#include "tessera/planner/interference.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace tessera::planner {

Result<InterferenceModel> InterferenceModel::Fit(const std::vector<CoLocationSample>& samples) {
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto& s = samples[i];
    if (!(s.alone_ms > 0) || !(s.colocated_ms > 0) || !(s.neighbour_pressure >= 0))
      return Status::InvalidArgument("co-location sample " + std::to_string(i) +
                                     ": expected alone_ms > 0, colocated_ms > 0 and "
                                     "neighbour_pressure >= 0");
    const double y = s.colocated_ms / s.alone_ms - 1;
    sxy += s.neighbour_pressure * y;
    sxx += s.neighbour_pressure * s.neighbour_pressure;
  }
  if (sxx <= 0)
    return Status::InvalidArgument(
        "cannot fit interference: no co-location sample has neighbour pressure > 0");
  return InterferenceModel(std::max(0.0, sxy / sxx));
}

PredictionError InterferenceModel::Evaluate(const std::vector<CoLocationSample>& samples) const {
  PredictionError e;
  for (const auto& s : samples) {
    if (!(s.colocated_ms > 0)) continue;
    const double rel =
        std::fabs(Predict(s.alone_ms, s.neighbour_pressure) - s.colocated_ms) / s.colocated_ms;
    e.mean_abs_rel += rel;
    e.max_abs_rel = std::max(e.max_abs_rel, rel);
    ++e.samples;
  }
  if (e.samples) e.mean_abs_rel /= e.samples;
  return e;
}

}  // namespace tessera::planner
