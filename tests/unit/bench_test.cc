// The load generator's pure parts: the latency histogram against known distributions, the arrival
// processes (statistical checks with fixed seeds), the scenario parser's errors, the scheduler's
// ordering and the recorder's accounting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "tessera/bench/arrivals.h"
#include "tessera/bench/histogram.h"
#include "tessera/bench/loadgen.h"
#include "tessera/bench/scenario.h"

namespace tessera::bench {
namespace {

// Exact percentile of a sorted sample, same definition as Histogram::Percentile.
int64_t ExactPercentile(const std::vector<int64_t>& sorted, double p) {
  auto rank = static_cast<int64_t>(std::ceil(p / 100.0 * sorted.size()));
  rank = std::clamp<int64_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

TEST(Histogram, BucketsCoverEveryValueWithBoundedError) {
  Histogram h(10, int64_t{1} << 40);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const int64_t v = static_cast<int64_t>(rng() >> (24 + rng() % 40));
    const size_t idx = h.IndexOf(v);
    const int64_t hi = h.HighestInBucket(idx);
    ASSERT_GE(hi, v);
    ASSERT_LE(hi - v, std::max<int64_t>(0, v >> 10)) << v;  // relative error <= 2^-10
    if (idx > 0) {
      ASSERT_LT(h.HighestInBucket(idx - 1), v) << v;
    }
  }
  EXPECT_EQ(h.IndexOf(0), 0u);
  EXPECT_EQ(h.HighestInBucket(h.IndexOf(2047)), 2047);  // exact below 2^(bits+1)
}

TEST(Histogram, UniformPercentilesMatchExact) {
  Histogram h;
  std::vector<int64_t> all;
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int64_t> u(1000, 50000000);  // 1 µs .. 50 ms in ns
  for (int i = 0; i < 200000; ++i) {
    all.push_back(u(rng));
    h.Record(all.back());
  }
  std::sort(all.begin(), all.end());
  for (double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99}) {
    const double exact = ExactPercentile(all, p);
    EXPECT_NEAR(h.Percentile(p), exact, exact * 0.001 + 1) << p;
  }
  EXPECT_EQ(h.count(), 200000);
  EXPECT_EQ(h.min(), all.front());
  EXPECT_EQ(h.max(), all.back());
  EXPECT_EQ(h.Percentile(100), all.back());
  EXPECT_NEAR(h.mean(), std::accumulate(all.begin(), all.end(), 0.0) / all.size(), 1.0);
}

TEST(Histogram, ExponentialMatchesAnalyticQuantiles) {
  Histogram h;
  std::mt19937_64 rng(2);
  std::exponential_distribution<double> e(1.0 / 2e6);  // mean 2 ms
  for (int i = 0; i < 400000; ++i) h.Record(static_cast<int64_t>(e(rng)));
  for (double p : {50.0, 90.0, 99.0}) {
    const double analytic = -std::log(1 - p / 100) * 2e6;
    EXPECT_NEAR(h.Percentile(p), analytic, analytic * 0.02) << p;
  }
  EXPECT_NEAR(h.FractionAtOrBelow(2000000), 1 - std::exp(-1.0), 0.005);
}

TEST(Histogram, MergeEqualsRecordingEverything) {
  Histogram a, b, both;
  for (int64_t v = 1; v < 100000; v += 7) {
    (v % 2 ? a : b).Record(v * 13);
    both.Record(v * 13);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), both.count());
  for (double p : {0.0, 25.0, 50.0, 75.0, 99.0, 100.0})
    EXPECT_EQ(a.Percentile(p), both.Percentile(p));
  EXPECT_EQ(a.min(), both.min());
  EXPECT_EQ(a.max(), both.max());
  EXPECT_THROW(a.Merge(Histogram(8)), std::invalid_argument);
}

TEST(Histogram, EmptySaturatedAndCdf) {
  Histogram h(10, 1000000);
  EXPECT_EQ(h.Percentile(50), 0);
  EXPECT_EQ(h.count(), 0);
  EXPECT_TRUE(h.Cdf().empty());
  h.Record(5000, 3);
  h.Record(int64_t{1} << 50);  // over the top
  h.Record(-4);                // recorded as 0
  EXPECT_EQ(h.count(), 5);
  EXPECT_EQ(h.saturated(), 1);
  EXPECT_EQ(h.max(), 1000000);
  EXPECT_EQ(h.min(), 0);
  EXPECT_NEAR(h.Percentile(50), 5000, 5);  // within the bucket's 0.1%
  auto cdf = h.Cdf();
  ASSERT_EQ(cdf.size(), 3u);
  EXPECT_DOUBLE_EQ(cdf.back().second, 1.0);
  EXPECT_NEAR(cdf[1].second, 0.8, 1e-12);
  for (size_t i = 1; i < cdf.size(); ++i) EXPECT_GT(cdf[i].first, cdf[i - 1].first);
}

// Gaps of an arrival process.
std::vector<double> Gaps(ArrivalProcess& p, int n) {
  std::vector<double> g;
  int64_t prev = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t t = p.Next();
    EXPECT_GE(t, prev);
    g.push_back(static_cast<double>(t - prev));
    prev = t;
  }
  return g;
}

double Mean(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / v.size();
}
double Cv(const std::vector<double>& v) {
  const double m = Mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / (v.size() - 1)) / m;
}

TEST(Arrivals, ConstantIsExact) {
  ArrivalSpec s;
  s.kind = ArrivalSpec::Kind::kConstant;
  s.rate = 400;
  auto p = MakeArrivals(s, 1);
  EXPECT_EQ(p->Next(), 0);
  EXPECT_EQ(p->Next(), 2500000);
  for (int i = 2; i < 1000; ++i) p->Next();
  EXPECT_EQ(p->Next(), 1000 * 2500000LL);
  auto fast = MakeArrivals(s, 1, 2.0);  // rate scale 2: half the gap
  fast->Next();
  EXPECT_EQ(fast->Next(), 1250000);
}

TEST(Arrivals, PoissonHasItsRateAndUnitCv) {
  ArrivalSpec s;
  s.kind = ArrivalSpec::Kind::kPoisson;
  s.rate = 1000;
  auto p = MakeArrivals(s, 42);
  auto g = Gaps(*p, 200000);
  EXPECT_NEAR(Mean(g), 1e6, 1e6 * 0.01);
  EXPECT_NEAR(Cv(g), 1.0, 0.02);
  // Same seed, same arrivals; another seed, others.
  auto a = MakeArrivals(s, 42), b = MakeArrivals(s, 42), c = MakeArrivals(s, 43);
  bool differ = false;
  for (int i = 0; i < 100; ++i) {
    const int64_t x = a->Next();
    EXPECT_EQ(x, b->Next());
    differ |= x != c->Next();
  }
  EXPECT_TRUE(differ);
}

TEST(Arrivals, GammaHasTheAskedCv) {
  for (double cv : {0.5, 2.0, 4.0}) {
    ArrivalSpec s;
    s.kind = ArrivalSpec::Kind::kGamma;
    s.rate = 500;
    s.cv = cv;
    auto p = MakeArrivals(s, 3);
    auto g = Gaps(*p, 400000);
    EXPECT_NEAR(Mean(g), 2e6, 2e6 * 0.03) << cv;
    EXPECT_NEAR(Cv(g), cv, cv * 0.05) << cv;
  }
}

TEST(Arrivals, BurstyKeepsTheMeanRateAndIsOverdispersed) {
  ArrivalSpec s;
  s.kind = ArrivalSpec::Kind::kBursty;
  s.rate = 200;
  s.burst_ratio = 10;
  s.burst_fraction = 0.2;
  s.burst_period_s = 0.5;
  auto p = MakeArrivals(s, 5);
  // Counts per 100 ms window over 2000 s: mean 20; a Poisson process would have variance 20.
  std::vector<double> counts(20000, 0);
  for (;;) {
    const int64_t t = p->Next();
    const size_t w = static_cast<size_t>(t / 100000000);
    if (w >= counts.size()) break;
    counts[w] += 1;
  }
  const double m = Mean(counts);
  double var = 0;
  for (double c : counts) var += (c - m) * (c - m);
  var /= counts.size() - 1;
  EXPECT_NEAR(m, 20, 20 * 0.05);
  EXPECT_GT(var / m, 3.0);  // index of dispersion: far burstier than Poisson (1.0)
}

TEST(Arrivals, TraceReplaysLoopsAndScales) {
  auto t = ParseTrace("# seconds\n0\n0.5\n\n1.5\n", "t.txt");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ArrivalSpec s;
  s.kind = ArrivalSpec::Kind::kTrace;
  s.trace_ns = *t;
  auto p = MakeArrivals(s, 0);
  std::vector<int64_t> got;
  for (int i = 0; i < 5; ++i) got.push_back(p->Next());
  // One replay lasts 1.5 s + the mean gap (0.75 s).
  EXPECT_EQ(got, (std::vector<int64_t>{0, 500000000, 1500000000, 2250000000, 2750000000}));
  s.trace_loop = false;
  auto once = MakeArrivals(s, 0, 2.0);  // twice as fast
  EXPECT_EQ(once->Next(), 0);
  EXPECT_EQ(once->Next(), 250000000);
  EXPECT_EQ(once->Next(), 750000000);
  EXPECT_EQ(once->Next(), -1);
}

TEST(Arrivals, BadTracesNameTheLine) {
  auto bad = ParseTrace("0\n0.2\nabc\n", "t.txt");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("t.txt:3"), std::string::npos) << bad.status().message();
  auto back = ParseTrace("0\n0.5\n0.2\n", "t.txt");
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("t.txt:3: times must not decrease"), std::string::npos);
  EXPECT_FALSE(ParseTrace("# nothing\n", "t.txt").ok());
  EXPECT_FALSE(ParseTrace("-1\n", "t.txt").ok());
  EXPECT_FALSE(ReadTraceFile("/nonexistent/trace.txt").ok());
}

Status ParseError(const std::string& text) {
  auto s = ParseScenario(text, "s.json");
  return s.ok() ? Status::OK() : s.status();
}

TEST(Scenario, ParsesAFullFile) {
  auto s = ParseScenario(R"({
    "name": "mix", "protocol": "http", "url": "h:1", "binary": false, "shared_memory": true,
    "duration_s": 30, "warmup_s": 5, "drain_s": 3, "seed": 9, "connections": 8,
    "models": [
      {"name": "a", "rate": 100, "slo_ms": 20},
      {"name": "b", "version": 2, "rate": 5.5, "slo_ms": 200, "batch": 4, "arrival": "gamma",
       "cv": 3, "inputs": {"x": [3, 32, 32]}, "priority": 1},
      {"name": "c", "rate": 10, "slo_ms": 50, "arrival": "bursty", "burst_ratio": 4,
       "burst_fraction": 0.1, "burst_period_s": 2}
    ]})",
                         "s.json");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->name, "mix");
  EXPECT_EQ(s->protocol, "http");
  EXPECT_EQ(s->EffectiveUrl(), "h:1");
  EXPECT_FALSE(s->binary);
  EXPECT_TRUE(s->shared_memory);
  EXPECT_EQ(s->duration_s, 30);
  EXPECT_EQ(s->seed, 9u);
  EXPECT_EQ(s->connections, 8);
  ASSERT_EQ(s->models.size(), 3u);
  EXPECT_EQ(s->models[0].arrival.kind, ArrivalSpec::Kind::kPoisson);
  EXPECT_EQ(s->models[1].version, "2");
  EXPECT_EQ(s->models[1].batch, 4);
  EXPECT_EQ(s->models[1].arrival.cv, 3);
  EXPECT_EQ(s->models[1].shapes.at("x"), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_EQ(s->models[2].arrival.burst_ratio, 4);
  EXPECT_DOUBLE_EQ(s->OfferedRate(), 115.5);
  // Round trip through the result-file form.
  auto again = ParseScenario(ScenarioToJson(*s), "again");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->models.size(), 3u);
  EXPECT_EQ(again->models[1].arrival.cv, 3);
}

TEST(Scenario, DefaultsAndDemo) {
  auto s = ParseScenario(R"({"models": [{"name": "m", "rate": 1, "slo_ms": 1}]})", "s");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->protocol, "grpc");
  EXPECT_EQ(s->EffectiveUrl(), "localhost:8001");
  EXPECT_TRUE(s->binary);
  Scenario d = DemoScenario();
  EXPECT_GE(d.models.size(), 3u);
  EXPECT_TRUE(ParseScenario(ScenarioToJson(d), "demo").ok());
}

TEST(Scenario, ErrorsNameTheField) {
  struct Case {
    const char* text;
    const char* expect;
  };
  const Case cases[] = {
      {"{", "not valid JSON"},
      {"[1]", "s.json: expected a JSON object"},
      {R"({"modles": []})", "unknown field 'modles'"},
      {R"({"duration_s": 1})", "'models' is required"},
      {R"({"models": []})", "s.json.models: expected a non-empty array"},
      {R"({"protocol": "udp", "models": [{"name":"m","rate":1,"slo_ms":1}]})",
       "s.json.protocol: expected \"grpc\" or \"http\", got string \"udp\""},
      {R"({"duration_s": -2, "models": [{"name":"m","rate":1,"slo_ms":1}]})",
       "s.json.duration_s: expected a number > 0, got number -2"},
      {R"({"models": [{"rate": 1, "slo_ms": 1}]})", "s.json.models[0]: 'name' is required"},
      {R"({"models": [{"name": "m", "slo_ms": 1}]})", "s.json.models[0]: 'rate'"},
      {R"({"models": [{"name": "m", "rate": "fast", "slo_ms": 1}]})",
       "s.json.models[0].rate: expected a number > 0, got string \"fast\""},
      {R"({"models": [{"name": "m", "rate": 1}]})", "s.json.models[0]: 'slo_ms'"},
      {R"({"models": [{"name":"m","rate":1,"slo_ms":1},{"name":"n","rate":1,"slo_ms":1,"batch":0}]})",
       "s.json.models[1].batch: expected an integer >= 1, got number 0"},
      {R"({"models": [{"name":"m","rate":1,"slo_ms":1,"arrival":"weibull"}]})",
       "s.json.models[0].arrival: unknown arrival process 'weibull'"},
      {R"({"models": [{"name":"m","rate":1,"slo_ms":1,"cv":2}]})",
       "s.json.models[0].cv: only used with arrival \"gamma\""},
      {R"({"models": [{"name":"m","rate":1,"slo_ms":1,"arrival":"bursty","burst_fraction":1.5}]})",
       "s.json.models[0].burst_fraction: expected a number in (0, 1)"},
      {R"({"models": [{"name":"m","slo_ms":1,"arrival":"trace"}]})", "needs 'trace'"},
      {R"({"models": [{"name":"m","slo_ms":1,"arrival":"trace","trace":"/no/such/file"}]})",
       "s.json.models[0].trace: cannot read trace file /no/such/file"},
      {R"({"models": [{"name":"m","rate":1,"slo_ms":1,"inputs":{"x":[3,-1]}}]})",
       "s.json.models[0].inputs.x: expected dims that are integers >= 1, got number -1"},
      {R"({"models": [{"name":"m","rate":1,"slo_ms":1},{"name":"m","rate":2,"slo_ms":1}]})",
       "s.json.models[1]: model 'm' is listed twice"},
      {R"({"models": [{"name":"m","rate":1,"slo_ms":1,"speed":3}]})",
       "s.json.models[0]: unknown field 'speed'"},
  };
  for (const auto& c : cases) {
    const Status st = ParseError(c.text);
    ASSERT_FALSE(st.ok()) << c.text;
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(st.message().find(c.expect), std::string::npos)
        << "for " << c.text << "\n got: " << st.message();
  }
}

TEST(Scenario, TraceFileIsReadRelativeToTheScenario) {
  const auto dir = std::filesystem::temp_directory_path() / "tessera_bench_test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "arrivals.txt") << "0\n0.1\n0.3\n";
  std::ofstream(dir / "s.json")
      << R"({"models": [{"name":"m","slo_ms":5,"arrival":"trace","trace":"arrivals.txt"}]})";
  auto s = LoadScenario((dir / "s.json").string());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->models[0].arrival.trace_ns.size(), 3u);
  EXPECT_NEAR(s->models[0].arrival.rate, 2 / 0.3, 1e-9);
  EXPECT_EQ(LoadScenario((dir / "missing.json").string()).status().code(), StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST(Scheduler, MergesModelsInDueOrderWithinTheRun) {
  Scenario s;
  for (double rate : {1000.0, 300.0, 50.0}) {
    ModelLoad m;
    m.name = "m" + std::to_string(s.models.size());
    m.arrival.kind = ArrivalSpec::Kind::kPoisson;
    m.arrival.rate = rate;
    m.slo_ms = 1;
    s.models.push_back(m);
  }
  const int64_t end = 20000000000LL;  // 20 s
  Scheduler sched(s, 1.0, end);
  std::vector<int64_t> per(3, 0);
  int64_t prev = -1;
  while (sched.PeekNs() >= 0) {
    const auto [m, t] = sched.Pop();
    ASSERT_GE(t, prev);
    ASSERT_LT(t, end);
    prev = t;
    ++per[m];
  }
  EXPECT_NEAR(per[0], 20000, 20000 * 0.03);
  EXPECT_NEAR(per[1], 6000, 6000 * 0.05);
  EXPECT_NEAR(per[2], 1000, 1000 * 0.12);
  Scheduler doubled(s, 2.0, end);
  int64_t n = 0;
  while (doubled.PeekNs() >= 0) {
    doubled.Pop();
    ++n;
  }
  EXPECT_NEAR(n, 2 * (per[0] + per[1] + per[2]), 0.05 * 2 * 27000);
}

TEST(Recorder, CountsOnlyTheMeasuredWindowAndAgainstTheDueTime) {
  Scenario s;
  s.warmup_s = 1;
  s.duration_s = 2;
  ModelLoad m;
  m.name = "m";
  m.arrival.rate = 10;
  m.slo_ms = 10;
  s.models = {m, m};
  s.models[1].name = "n";
  s.models[1].slo_ms = 100;
  Recorder r(s, 1.0);
  const int64_t ms = 1000000;
  auto send = [&](int model, int64_t due, int64_t done, Outcome o = {}) {
    r.Sent(model, due, due + 2 * ms);  // sent 2 ms late
    r.Done(model, due, done, o);
  };
  send(0, 500 * ms, 501 * ms);    // warm-up: not counted
  send(0, 1000 * ms, 1005 * ms);  // 5 ms: within SLO
  send(0, 1100 * ms, 1120 * ms);  // 20 ms: late (an answer, but a miss)
  send(0, 1200 * ms, 1201 * ms, {false, "http_429", "queue full"});
  send(0, 1300 * ms, 1301 * ms, {false, "http_500", "boom"});
  send(0, 1400 * ms, 9000 * ms, {false, "no_response", "drain"});
  send(1, 2999 * ms, 3050 * ms);  // 51 ms, SLO 100 ms
  send(1, 3000 * ms, 3001 * ms);  // after the window: not counted
  auto res = r.Results();
  ASSERT_EQ(res.size(), 2u);
  const auto& a = res[0];
  EXPECT_EQ(a.sent, 5);
  EXPECT_EQ(a.ok, 2);
  EXPECT_EQ(a.within_slo, 1);
  EXPECT_EQ(a.rejected, 1);
  EXPECT_EQ(a.errors, 2);
  EXPECT_EQ(a.unanswered, 1);
  EXPECT_EQ(a.errors_by_kind.at("http_429"), 1);
  EXPECT_EQ(a.errors_by_kind.at("http_500"), 1);
  EXPECT_EQ(a.first_error, "http_429: queue full");
  EXPECT_DOUBLE_EQ(a.attainment(), 0.2);
  EXPECT_DOUBLE_EQ(a.goodput_rps(), 0.5);
  EXPECT_NEAR(a.latency_ns.Percentile(100), 20 * ms, 20 * ms / 1000);
  EXPECT_EQ(a.send_lag_ns.count(), 5);
  EXPECT_NEAR(a.send_lag_ns.Percentile(50), 2 * ms, 2 * ms / 1000);
  EXPECT_EQ(a.timeline[0].sent, 1);  // the warm-up second is on the timeline
  EXPECT_EQ(a.timeline[1].sent, 5);
  EXPECT_EQ(a.timeline[1].within_slo, 1);
  EXPECT_EQ(res[1].sent, 1);
  EXPECT_EQ(res[1].within_slo, 1);
  auto total = r.Total();
  EXPECT_EQ(total.sent, 6);
  EXPECT_EQ(total.within_slo, 2);
  EXPECT_EQ(total.latency_ns.count(), 3);
  EXPECT_EQ(r.sent_total(), 8);
  EXPECT_EQ(r.measured_done(), 6);
  RunResult rr;
  rr.models = res;
  EXPECT_FALSE(rr.Held(0.99));
  EXPECT_TRUE(rr.Held(0.2));
  EXPECT_TRUE(IsRejection("grpc_RESOURCE_EXHAUSTED"));
  EXPECT_FALSE(IsRejection("grpc_INVALID_ARGUMENT"));
}

}  // namespace
}  // namespace tessera::bench

namespace tessera::bench {
namespace {

TEST(ArrivalsDiurnal, FollowsItsCycleAndKeepsTheMeanRate) {
  // rate 1000/s, amplitude 0.8, 10 s cycle: over 100 s, 100,000 arrivals; the half-cycles where
  // the sine is positive get (1 + 2A/pi) / (1 - 2A/pi) = 3.07x the arrivals of the others.
  ArrivalSpec s;
  s.kind = ArrivalSpec::Kind::kDiurnal;
  s.rate = 1000;
  s.diurnal_amplitude = 0.8;
  s.diurnal_period_s = 10;
  auto p = MakeArrivals(s, 42);
  int64_t n = 0, up = 0, prev = 0;
  for (int64_t t = p->Next(); t < 100'000'000'000; t = p->Next()) {
    ASSERT_GE(t, prev);
    prev = t;
    ++n;
    if ((t / 5'000'000'000) % 2 == 0) ++up;
  }
  EXPECT_NEAR(n, 100000, 2000);
  const double ratio = static_cast<double>(up) / (n - up);
  const double want = (1 + 1.6 / M_PI) / (1 - 1.6 / M_PI);
  EXPECT_NEAR(ratio, want, 0.1 * want);
  EXPECT_EQ(KindName(ArrivalSpec::Kind::kDiurnal), "diurnal");
  EXPECT_TRUE(ParseKind("diurnal").ok());
}

}  // namespace
}  // namespace tessera::bench
