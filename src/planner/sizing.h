// Shared latency arithmetic of the planner policies (private to src/planner).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "tessera/planner/plan.h"

namespace tessera::planner::detail {

// For each batch limit b, the largest Poisson mean lambda with P(N > b) <= eps: the most
// arrivals per batch time that still fit the next batch except with probability eps. Requests
// beyond the next batch wait a batch longer, so this is what keeps the 2 x p99 bound honest
// under random arrivals.
// With cv > 1 (bursty arrivals: gaps with that coefficient of variation) the counts are taken as
// over-dispersed, variance lambda x cv^2 (a renewal process over many gaps), and LambdaMax uses
// the normal approximation lambda + z cv sqrt(lambda) <= n + 1/2 throughout.
class PoissonTable {
 public:
  PoissonTable(double eps, int max_b, double cv = 1);
  double eps() const { return eps_; }
  double LambdaMax(int n) const;
  // P(N > b) for N ~ Poisson(lambda).
  static double Tail(double lambda, int b);

 private:
  double eps_;
  double z_ = 0;  // the normal quantile of 1 - eps
  double cv_ = 1;
  std::vector<double> lam_;
};

// One table per distinct arrival cv among the models, built on first use.
class PoissonTables {
 public:
  PoissonTables(double eps, int max_b) : eps_(eps), max_b_(max_b) {}
  const PoissonTable& For(double cv);
  const PoissonTable& For(const ModelDemand& m) { return For(m.arrival_cv); }

 private:
  double eps_;
  int max_b_;
  std::deque<std::pair<double, PoissonTable>> tables_;  // references stay valid
};

// The best Carry over the profiled batches up to the largest batch B with 2 p99(B) f <= SLO
// (*max_batch = B; 0 and capacity 0 when no batch fits).
double SliceCapacity(const Profile& p, double sms, double slo_ms, double f, double rho,
                     const PoissonTable& pt, int* max_batch);

// A slice that serves one model, batches back to back up to max_batch. The worst case for a
// request is to wait for the batch in flight and then run in the next: 2 x p99(batch) x f.
struct Dedicated {
  int max_batch = 0;   // 0: no batch meets the SLO on this slice
  double cap_rps = 0;  // rho * max_batch / (mean(max_batch) * f)
  int used_batch = 0;  // smallest batch that carries the rate (0 when rate > cap)
  double predicted_ms = 0;
  double busy = 0;   // rate * mean(used) * f / used
  double f_max = 1;  // largest inflation under which rate and SLO still hold with max_batch
};
Dedicated SizeDedicated(const Profile& p, double sms, double rate, double slo_ms, double f,
                        double rho, const PoissonTable& pt);

// The largest inflation (up to 4) under which the slice still carries `rate` within the SLO.
double MaxInflation(const Profile& p, double sms, double rate, double slo_ms, double rho,
                    const PoissonTable& pt);

// Time-shared sessions (Nexus' duty cycles): members take turns, each running one batch per
// cycle of d ms. `lat(i, b)` is member i's planning latency for batch b.
struct DutyMember {
  double rate_rps = 0;
  double slo_ms = 0;
  int max_batch = 1;
};
using LatencyFn = std::function<double(size_t member, int batch)>;

// A session alone: the largest b with (b-1)/r + lat(b) <= SLO, d = min(SLO - lat(b), b/r).
// Returns false when even batch 1 misses the SLO.
bool SessionAlone(const DutyMember& m, size_t i, const LatencyFn& lat, int* batch, double* d_ms);

// Members merged on one slice with cycle d = the smallest of their own cycles: batch
// b_i = ceil(d r_i) (with `pt`: the smallest b_i with P(Poisson(d r_i) > b_i) <= eps);
// feasible when sum lat(b_i) <= rho d and d + lat(b_i) <= SLO_i.
struct DutyPlan {
  bool feasible = false;
  double d_ms = 0;
  std::vector<int> batches;
  double occupancy = 0;  // sum lat(b_i) / d
};
DutyPlan MergeSessions(const std::vector<DutyMember>& members, const std::vector<double>& own_d,
                       const LatencyFn& lat, double rho, const PoissonTable* pt = nullptr);

// The queues of one slice, simulated on a virtual clock with the runtime's batching rule
// (runtime/model_queue.h, and the fleet simulator's): when the slice is free, the next member in
// round-robin order with work drops what can no longer make its deadline, then runs the largest
// batch, up to its limit, whose p99 meets its oldest request's deadline; a batch takes
// mean + std x N(0,1) (at least half the mean). The planner checks slice sizes with it: the
// closed-form bound (2 x p99, Poisson overflow, rho) asks 20-30% more SMs than a slice needs.
struct QueueTables {
  // With `pow2`, a batch of b costs its bucket: the smallest power of two >= b, or max_batch
  // when that is smaller (the executables the CPU server compiles).
  QueueTables(const Profile& p, double sms, double f, double slo_ms, bool pow2 = false);
  int64_t slo_ns = 0;
  int max_batch = 0;  // the largest batch whose p99 fits the SLO (0: none)
  std::vector<int64_t> p99_ns;
  std::vector<double> mean_ns, std_ns;
};
struct QueueMember {
  const QueueTables* t = nullptr;
  int max_batch = 0;
  double rate_rps = 0;
  double cv = 1;  // arrival gaps' coefficient of variation (1: Poisson; more: gamma)
};
struct MemberOutcome {
  int64_t requests = 0;    // counted (after the first tenth of the span)
  double attainment = 1;   // share answered within SLO
  double quantile_ms = 0;  // latency at the quantile asked for (dropped: infinite)
};
struct SliceOutcome {
  std::vector<MemberOutcome> members;
  double attainment = 0;      // the lowest member's
  double busy = 0;            // share of time the slice computes
  bool stopped = false;       // stopped early: a member could no longer reach stop_below
  bool passed_early = false;  // stopped early: every member clean for 3 / (1 - stop_below)
  int64_t drawn = 0;          // arrivals drawn
  int64_t simulated_ns = 0;
};
// About `arrivals` requests in all; quantile_ms only when `quantile` > 0. With `stop_below` > 0
// it stops as soon as some member's misses rule out that attainment, or as soon as every member
// has answered 3 / (1 - stop_below) requests in a row within SLO (rule of three), so a check far
// from the threshold costs a fraction of one near it. Deterministic for a seed.
SliceOutcome SimulateSlice(const std::vector<QueueMember>& members, int arrivals, uint64_t seed,
                           double quantile, double stop_below = 0);

// Printf into a std::string.
std::string Fmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

Plan PlanTessera(const PlanInput& in);
Plan PlanNexus(const PlanInput& in);
Plan PlanIgniter(const PlanInput& in);
Plan PlanGslice(const PlanInput& in);

}  // namespace tessera::planner::detail
