#include "sizing.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>

namespace tessera::planner::detail {

std::string Fmt(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

Dedicated SizeDedicated(const Profile& p, double sms, double rate, double slo_ms, double f,
                        double rho) {
  Dedicated d;
  // p99 grows with the batch: the largest batch whose worst case fits is found by bisection.
  int lo = 0, hi = p.max_batch();
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (2 * p.P99Ms(mid, sms) * f <= slo_ms)
      lo = mid;
    else
      hi = mid - 1;
  }
  d.max_batch = lo;
  if (lo == 0) return d;
  const double mean_max = p.MeanMs(lo, sms);
  d.cap_rps = rho * lo * 1000.0 / (mean_max * f);
  d.f_max = std::min(slo_ms / (2 * p.P99Ms(lo, sms)), rho * lo * 1000.0 / (mean_max * rate));
  if (rate > d.cap_rps) return d;
  // Throughput b / mean(b) grows with b, so the smallest batch that carries the rate bisects too.
  int a = 1, b = lo;
  while (a < b) {
    const int mid = (a + b) / 2;
    if (rho * mid * 1000.0 / (p.MeanMs(mid, sms) * f) >= rate)
      b = mid;
    else
      a = mid + 1;
  }
  d.used_batch = a;
  d.predicted_ms = 2 * p.P99Ms(a, sms) * f;
  d.busy = rate * p.MeanMs(a, sms) * f / (1000.0 * a);
  return d;
}

bool SessionAlone(const DutyMember& m, size_t i, const LatencyFn& lat, int* batch, double* d_ms) {
  int best = 0;
  for (int b = 1; b <= m.max_batch; ++b) {
    const double fill_ms = (b - 1) * 1000.0 / m.rate_rps;
    if (fill_ms + lat(i, b) <= m.slo_ms)
      best = b;
    else if (fill_ms > m.slo_ms)
      break;
  }
  if (best == 0) return false;
  *batch = best;
  *d_ms = std::min(m.slo_ms - lat(i, best), best * 1000.0 / m.rate_rps);
  return true;
}

DutyPlan MergeSessions(const std::vector<DutyMember>& members, const std::vector<double>& own_d,
                       const LatencyFn& lat, double rho) {
  DutyPlan out;
  out.d_ms = *std::min_element(own_d.begin(), own_d.end());
  double sum = 0;
  out.batches.reserve(members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    const auto& m = members[i];
    const int b = std::max(1, static_cast<int>(std::ceil(out.d_ms * m.rate_rps / 1000.0 - 1e-9)));
    if (b > m.max_batch) return out;
    const double l = lat(i, b);
    if (out.d_ms + l > m.slo_ms) return out;
    out.batches.push_back(b);
    sum += l;
  }
  out.occupancy = sum / out.d_ms;
  out.feasible = sum <= rho * out.d_ms;
  return out;
}

}  // namespace tessera::planner::detail
