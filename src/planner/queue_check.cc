// The queues of one slice, simulated with the runtime's batching rule: the planner's check of a
// slice size against the SLO attainment its models must reach. See sizing.h.
#include <algorithm>
#include <bit>
#include <cmath>
#include <random>

#include "sizing.h"
#include "tessera/core/random.h"
#include "tessera/core/time_ring.h"

namespace tessera::planner::detail {
namespace {

struct Stream {
  const QueueTables* t = nullptr;
  int limit = 1;     // batch limit
  TimeRing queue;    // arrival times, oldest first
  double acc = 0;    // arrival clock (ns), exact
  int64_t next = 0;  // the next arrival, rounded
  double mean_gap_ns = 0;
  bool bursty = false;
  std::gamma_distribution<double> gamma;
  std::vector<double> lat_ns;  // counted requests; dropped ones as infinity (with a quantile)
  int64_t ok = 0, counted = 0, drawn = 0;
};

}  // namespace

QueueTables::QueueTables(const Profile& p, double sms, double f, double slo_ms, bool pow2) {
  slo_ns = static_cast<int64_t>(slo_ms * 1e6);
  const int top = p.max_batch();
  p99_ns.assign(top + 1, 0);
  mean_ns.assign(top + 1, 0);
  std_ns.assign(top + 1, 0);
  for (int b = 1; b <= top; ++b) {
    p99_ns[b] = static_cast<int64_t>(p.P99Ms(b, sms) * f * 1e6);
    mean_ns[b] = p.MeanMs(b, sms) * f * 1e6;
    std_ns[b] = p.StdMs(b, sms) * f * 1e6;
    // A batch whose p99 alone passes the SLO is never dispatched.
    if (p99_ns[b] <= slo_ns) max_batch = b;
  }
  if (!pow2) return;
  // Padded: the buckets are the powers of two below max_batch, and max_batch. Latency grows
  // with the batch, so a padded batch still fits the SLO.
  for (int b = top; b >= 1; --b) {
    const int bucket =
        std::min(static_cast<int>(std::bit_ceil(static_cast<unsigned>(b))), std::max(b, max_batch));
    p99_ns[b] = p99_ns[bucket];
    mean_ns[b] = mean_ns[bucket];
    std_ns[b] = std_ns[bucket];
  }
}

SliceOutcome SimulateSlice(const std::vector<QueueMember>& members, int arrivals, uint64_t seed,
                           double quantile, double stop_below) {
  SliceOutcome out;
  out.members.resize(members.size());
  double total_rate = 0;
  for (const auto& m : members) total_rate += m.rate_rps;
  if (members.empty() || !(total_rate > 0) || arrivals <= 0) return out;
  Rng rng(seed);
  // Every member's arrivals over the same span; the first tenth warms the queues up.
  const auto end_ns = static_cast<int64_t>(arrivals / total_rate * 1e9);
  const auto warm_ns = end_ns / 10;
  const bool keep = quantile > 0;  // latencies are kept only for the quantile
  const size_t n = members.size();
  std::vector<Stream> s(n);
  for (size_t i = 0; i < n; ++i) {
    const QueueMember& m = members[i];
    Stream& st = s[i];
    st.t = m.t;
    st.limit = std::max(1, std::min(m.max_batch, m.t->max_batch));
    st.mean_gap_ns = m.rate_rps > 0 ? 1e9 / m.rate_rps : 1e30;
    // Gamma gaps with shape 1/cv^2 for bursty arrivals, exponential otherwise.
    st.bursty = m.cv > 1 + 1e-9;
    const double cv2 = std::max(1.0, m.cv * m.cv);
    st.gamma = std::gamma_distribution<double>(1 / cv2, cv2);
    if (keep) st.lat_ns.reserve(static_cast<size_t>(m.rate_rps * (end_ns - warm_ns) / 1e9) + 16);
  }
  auto advance = [&](Stream& st) {
    ++st.drawn;
    st.acc += (st.bursty ? st.gamma(rng) : rng.Exp()) * st.mean_gap_ns;
    st.next = st.acc < static_cast<double>(end_ns) ? static_cast<int64_t>(st.acc) : INT64_MAX;
  };
  for (auto& st : s) advance(st);
  auto count = [&](Stream& st, int64_t arrived, int64_t lat) {
    if (arrived < warm_ns) return;
    ++st.counted;
    st.ok += lat <= st.t->slo_ns;
    if (keep) st.lat_ns.push_back(static_cast<double>(lat));
  };
  // Early stop, with stop_below: a fail once some member has missed more than (1 - stop_below)
  // of what it can expect to count (it can no longer reach it); a pass once every member has
  // counted 3 / (1 - stop_below) requests without a miss (the rule of three: its miss rate is
  // then below 1 - stop_below with 95% confidence).
  std::vector<int64_t> allowed(n, INT64_MAX);
  int64_t clean = INT64_MAX;
  if (stop_below > 0) {
    for (size_t i = 0; i < n; ++i)
      allowed[i] =
          static_cast<int64_t>((1 - stop_below) * members[i].rate_rps * (end_ns - warm_ns) / 1e9) +
          1;
    clean = static_cast<int64_t>(std::ceil(3 / (1 - stop_below)));
  }
  bool stopped = false, passed = false;
  int64_t batches = 0;
  int64_t now = 0, busy_ns = 0;
  size_t pos = 0;  // round-robin: the member served next, if it has work
  for (;;) {
    for (auto& st : s)
      while (st.next <= now) {
        st.queue.push_back(st.next);
        advance(st);
      }
    bool ran = false;
    for (size_t k = 0, i = pos; k < n; ++k, i = i + 1 == n ? 0 : i + 1) {
      Stream& st = s[i];
      if (st.queue.empty()) continue;
      const QueueTables& t = *st.t;
      // Drop before dispatch what can no longer make its deadline.
      const int64_t last_start = now + t.p99_ns[1] - t.slo_ns;
      while (!st.queue.empty() && st.queue.front() < last_start) {
        if (st.queue.front() >= warm_ns) {
          ++st.counted;
          if (keep) st.lat_ns.push_back(INFINITY);
        }
        st.queue.pop_front();
      }
      if (st.queue.empty()) continue;
      int b = static_cast<int>(std::min<size_t>(st.queue.size(), st.limit));
      const int64_t deadline = st.queue.front() + t.slo_ns;
      while (b > 1 && now + t.p99_ns[b] > deadline) --b;
      double run = t.mean_ns[b];
      if (t.std_ns[b] > 0) run = std::max(0.5 * run, run + t.std_ns[b] * rng.Normal());
      const int64_t done = now + static_cast<int64_t>(run);
      for (int j = 0; j < b; ++j) {
        count(st, st.queue.front(), done - st.queue.front());
        st.queue.pop_front();
      }
      if (now >= warm_ns) busy_ns += done - now;
      now = done;
      pos = i + 1 == n ? 0 : i + 1;
      ran = true;
      stopped = st.counted - st.ok > allowed[i];
      break;
    }
    if (stopped) break;
    if (ran && (++batches & 63) == 0 && clean != INT64_MAX) {
      passed = true;
      for (const auto& st : s) passed &= st.counted >= clean && st.ok == st.counted;
      if (passed) break;
    }
    if (ran) continue;
    // Idle: on to the next arrival, or done.
    int64_t next = INT64_MAX;
    for (const auto& st : s) next = std::min(next, st.next);
    if (next == INT64_MAX) break;
    now = std::max(now, next);
  }
  out.stopped = stopped;
  out.passed_early = passed;
  out.simulated_ns = now;
  for (const auto& st : s) out.drawn += st.drawn;
  out.attainment = 1;
  for (size_t i = 0; i < n; ++i) {
    Stream& st = s[i];
    MemberOutcome& o = out.members[i];
    o.requests = st.counted;
    o.attainment = o.requests ? static_cast<double>(st.ok) / o.requests : 1;
    out.attainment = std::min(out.attainment, o.attainment);
    if (!st.lat_ns.empty()) {
      // The smallest latency with at least `quantile` of them at or below it.
      const double want = std::ceil(quantile * static_cast<double>(st.lat_ns.size()) - 1e-9);
      const auto k = std::min(st.lat_ns.size() - 1, static_cast<size_t>(std::max(1.0, want)) - 1);
      std::nth_element(st.lat_ns.begin(), st.lat_ns.begin() + k, st.lat_ns.end());
      o.quantile_ms = st.lat_ns[k] / 1e6;
    }
  }
  const double span = std::max(1.0, static_cast<double>(now - warm_ns));
  out.busy = std::min(1.0, busy_ns / span);
  return out;
}

}  // namespace tessera::planner::detail
