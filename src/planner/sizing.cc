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

PoissonTable::PoissonTable(double eps, int max_b, double cv)
    : eps_(eps), cv_(std::max(1.0, cv)), lam_(cv_ > 1 ? 0 : max_b + 1, 0) {
  // Beyond the table a normal approximation: lambda + z sqrt(lambda) = n + 1/2.
  double lo = 0, hi = 10;
  for (int it = 0; it < 60; ++it) {
    const double mid = (lo + hi) / 2;
    (0.5 * std::erfc(mid / std::sqrt(2.0)) > eps ? lo : hi) = mid;
  }
  z_ = hi;
  for (int b = 0; b < static_cast<int>(lam_.size()); ++b) {
    double l = 0, h = b + 10 * std::sqrt(b + 1.0) + 10;
    for (int it = 0; it < 60; ++it) {
      const double mid = (l + h) / 2;
      (Tail(mid, b) <= eps ? l : h) = mid;
    }
    lam_[b] = l;
  }
}

double PoissonTable::LambdaMax(int n) const {
  if (n < static_cast<int>(lam_.size())) return lam_[n];
  const double zc = z_ * cv_;
  const double r = (-zc + std::sqrt(zc * zc + 4 * (n + 0.5))) / 2;
  return r * r;
}

const PoissonTable& PoissonTables::For(double cv) {
  for (const auto& [c, t] : tables_)
    if (c == cv) return t;
  tables_.emplace_back(cv, PoissonTable(eps_, max_b_, cv));
  return tables_.back().second;
}

double PoissonTable::Tail(double lambda, int b) {
  if (lambda <= 0) return 0;
  double term = std::exp(-lambda), cdf = term;
  for (int k = 1; k <= b; ++k) {
    term *= lambda / k;
    cdf += term;
  }
  return std::max(0.0, 1 - cdf);
}

double Carry(const Profile& p, double sms, int b, double slo_ms, double f, double rho,
             const PoissonTable& pt, int* k_out) {
  const double t = p.P99Ms(b, sms) * f;
  if (2 * t > slo_ms) return 0;
  // A request waits at most for the batch in flight and k more batches within its SLO; the
  // arrivals of k batch times must fit k batches except with probability eps.
  const int k = std::max(1, static_cast<int>(std::floor(slo_ms / t)) - 1);
  if (k_out) *k_out = k;
  return std::min(rho * b * 1000.0 / (p.MeanMs(b, sms) * f),
                  pt.LambdaMax(k * b) * 1000.0 / (k * t));
}

double SliceCapacity(const Profile& p, double sms, double slo_ms, double f, double rho,
                     const PoissonTable& pt, int* max_batch) {
  // p99 grows with the batch: the largest batch whose worst case fits is found by bisection.
  int lo = 0, hi = p.max_batch();
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (2 * p.P99Ms(mid, sms) * f <= slo_ms)
      lo = mid;
    else
      hi = mid - 1;
  }
  if (max_batch) *max_batch = lo;
  if (lo == 0) return 0;
  double cap = Carry(p, sms, lo, slo_ms, f, rho, pt, nullptr);
  for (int b : p.batches())
    if (b < lo) cap = std::max(cap, Carry(p, sms, b, slo_ms, f, rho, pt, nullptr));
  return cap;
}

Dedicated SizeDedicated(const Profile& p, double sms, double rate, double slo_ms, double f,
                        double rho, const PoissonTable& pt) {
  Dedicated d;
  d.cap_rps = SliceCapacity(p, sms, slo_ms, f, rho, pt, &d.max_batch);
  if (d.max_batch == 0 || rate > d.cap_rps) return d;
  for (int b = 1; b <= d.max_batch; ++b) {
    int k = 1;
    if (Carry(p, sms, b, slo_ms, f, rho, pt, &k) >= rate) {
      d.used_batch = b;
      d.predicted_ms = (k + 1) * p.P99Ms(b, sms) * f;
      d.busy = rate * p.MeanMs(b, sms) * f / (1000.0 * b);
      break;
    }
  }
  return d;
}

double MaxInflation(const Profile& p, double sms, double rate, double slo_ms, double rho,
                    const PoissonTable& pt) {
  auto holds = [&](double f) { return SliceCapacity(p, sms, slo_ms, f, rho, pt, nullptr) >= rate; };
  double lo = 1, hi = 4;
  if (holds(hi)) return hi;
  for (int it = 0; it < 20; ++it) {
    const double mid = (lo + hi) / 2;
    (holds(mid) ? lo : hi) = mid;
  }
  return lo;
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
                       const LatencyFn& lat, double rho, const PoissonTable* pt) {
  DutyPlan out;
  out.d_ms = *std::min_element(own_d.begin(), own_d.end());
  double sum = 0;
  out.batches.reserve(members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    const auto& m = members[i];
    const double lambda = out.d_ms * m.rate_rps / 1000.0;
    int b = std::max(1, static_cast<int>(std::ceil(lambda - 1e-9)));
    if (pt)
      while (b <= m.max_batch && PoissonTable::Tail(lambda, b) > pt->eps()) ++b;
    if (b > m.max_batch) return out;
    const double l = lat(i, b);
    // d = SLO - l(b) for a lone session: equality must survive rounding.
    if (out.d_ms + l > m.slo_ms * (1 + 1e-12)) return out;
    out.batches.push_back(b);
    sum += l;
  }
  out.occupancy = sum / out.d_ms;
  out.feasible = sum <= rho * out.d_ms * (1 + 1e-12);
  return out;
}

}  // namespace tessera::planner::detail
