// The discrete-event simulator: exact latencies on a hand-checked case, conservation of
// requests, drops under overload and for unplaced models, interference between running slices,
// shared slices, determinism, and scenario-file errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "planner/sizing.h"
#include "tessera/core/random.h"
#include "tessera/planner/synthetic.h"
#include "tessera/sim/simulator.h"

namespace tessera::sim {
namespace {

using nlohmann::json;
using planner::LatencyPoint;
using planner::Plan;
using planner::Policy;
using planner::Profile;

// mean = p99 = (1 + b) * scale * 132 / s ms, std 0: every batch takes exactly that.
Profile Exact(const std::string& name, double scale = 1.0, double intensity = 0.5) {
  std::vector<LatencyPoint> pts;
  for (int s : {8, 16, 32, 64, 128, 132})
    for (int b = 1; b <= 64; b *= 2) {
      const double t = scale * (1 + b) * 132 / s;
      pts.push_back({s, b, t, 0, t});
    }
  return Profile::FromPoints(name, "test", 132, 1 << 20, intensity, pts, "t").value();
}

SimScenario OneModel(double rate, double slo, bench::ArrivalSpec::Kind kind, Profile p) {
  SimScenario sc;
  sc.plan.gpu.count = 4;
  sc.plan.models.push_back({p.model, rate, slo, std::move(p)});
  bench::ArrivalSpec a;
  a.kind = kind;
  a.rate = rate;
  sc.arrivals.push_back(a);
  sc.duration_s = 10;
  sc.warmup_s = 1;
  return sc;
}

// Several models of the Exact profile (scale 0.05), each at `rate` with SLO 20 ms, on 8 GPUs.
SimScenario Models(std::initializer_list<const char*> names, double rate,
                   bench::ArrivalSpec::Kind kind) {
  SimScenario sc;
  sc.plan.gpu.count = 8;
  for (const char* name : names) {
    sc.plan.models.push_back({name, rate, 20, Exact(name, 0.05)});
    bench::ArrivalSpec a;
    a.kind = kind;
    a.rate = rate;
    sc.arrivals.push_back(a);
  }
  return sc;
}

void ExpectConserved(const SimResult& r) {
  for (const auto& m : r.models) {
    EXPECT_EQ(m.sent, m.ok + m.late + m.dropped) << m.name;
    EXPECT_EQ(m.latency_ns.count(), m.ok + m.late) << m.name;
  }
}

// Kolmogorov-Smirnov distance of sorted samples from a CDF.
template <typename Cdf>
double KsDistance(std::vector<double> xs, Cdf cdf) {
  std::sort(xs.begin(), xs.end());
  double d = 0;
  const double n = static_cast<double>(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    const double f = cdf(xs[i]);
    d = std::max({d, f - i / n, (i + 1) / n - f});
  }
  return d;
}

TEST(SimRandom, ZigguratDrawsHaveTheRightDistributions) {
  // 10^6 draws each: KS distance below 1.63 / sqrt(n) (the 1% critical value), moments, and
  // the tails beyond the base layers (which take the slow paths) at their exact rates.
  constexpr int n = 1'000'000;
  Rng rng(42);
  std::vector<double> e(n), z(n);
  double es = 0, es2 = 0, zs = 0, zs2 = 0;
  int e_tail = 0, z_tail = 0;
  for (int i = 0; i < n; ++i) {
    e[i] = rng.Exp();
    z[i] = rng.Normal();
    ASSERT_GE(e[i], 0);
    es += e[i];
    es2 += e[i] * e[i];
    zs += z[i];
    zs2 += z[i] * z[i];
    e_tail += e[i] > 8;               // beyond r = 7.70: exp(-8) = 3.35e-4
    z_tail += std::fabs(z[i]) > 3.5;  // beyond r = 3.44: 4.65e-4
  }
  EXPECT_NEAR(es / n, 1, 0.005);
  EXPECT_NEAR(es2 / n - (es / n) * (es / n), 1, 0.01);
  EXPECT_NEAR(zs / n, 0, 0.005);
  EXPECT_NEAR(zs2 / n, 1, 0.01);
  const double crit = 1.63 / std::sqrt(n);
  EXPECT_LT(KsDistance(e, [](double x) { return 1 - std::exp(-x); }), crit);
  EXPECT_LT(KsDistance(z, [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }), crit);
  EXPECT_NEAR(e_tail, n * std::exp(-8.0), 5 * std::sqrt(n * std::exp(-8.0)));
  const double p_z = std::erfc(3.5 / std::sqrt(2.0));
  EXPECT_NEAR(z_tail, n * p_z, 5 * std::sqrt(n * p_z));
  // Same seed, same stream.
  Rng a(7), b(7);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a(), b());
}

TEST(Simulator, LoneRequestsTakeExactlyTheirBatchTime) {
  // 50 req/s at constant gaps of 20 ms on a slice where batch 1 takes (1 + 1) x 132 / s ms:
  // every request runs alone and takes exactly that.
  auto sc = OneModel(50, 100, bench::ArrivalSpec::Kind::kConstant, Exact("m", 0.1));
  auto plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  ASSERT_EQ(plan.gpus_used(), 1);
  const double sms = plan.gpus[0].slices[0].sms;
  auto r = Simulate(sc, plan).value();
  ExpectConserved(r);
  const auto& m = r.models[0];
  EXPECT_NEAR(m.sent, 450, 1);  // 9 counted seconds x 50
  EXPECT_EQ(m.ok, m.sent);
  const double want_ns = 0.2 * 132 / sms * 1e6;
  EXPECT_NEAR(m.latency_ns.Percentile(50), want_ns, want_ns * 0.002);
  EXPECT_NEAR(m.latency_ns.max(), want_ns, want_ns * 0.002);
  EXPECT_EQ(r.batches, 500);  // warm-up requests run too
}

TEST(Simulator, LazyPoissonArrivalsAreCountedAndServedOnTime) {
  // A Poisson model on one slice draws its own arrivals when its slice looks (no tuner): the
  // counts match the rate, every window of the timeline sees its arrivals, and a lone request
  // (5 req/s against a 0.2 ms batch) starts the moment it arrives.
  auto sc = OneModel(5, 100, bench::ArrivalSpec::Kind::kPoisson, Exact("m", 0.1));
  sc.duration_s = 400;
  sc.warmup_s = 0;
  auto plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  const double want_ns = 0.2 * 132 / plan.gpus[0].slices[0].sms * 1e6;
  auto r = Simulate(sc, plan).value();
  ExpectConserved(r);
  EXPECT_NEAR(r.models[0].sent, 2000, 4 * std::sqrt(2000.0));
  EXPECT_EQ(r.models[0].ok, r.models[0].sent);
  EXPECT_NEAR(r.models[0].latency_ns.Percentile(50), want_ns, want_ns * 0.002);
  int64_t windows = 0;
  for (const auto& w : r.timeline) windows += w.sent;
  // Every window but the last (which ends at the run's end and is not observed) is counted.
  EXPECT_GE(windows, r.models[0].sent - 30);
  EXPECT_LE(windows, r.models[0].sent);
}

TEST(Simulator, TransitAddsToEveryLatencyAndCountsAgainstTheSlo) {
  // The LoneRequests case with 3 ms of transit: every latency grows by exactly 3 ms; with the
  // SLO just above the batch time the same requests run, but all of them arrive late.
  auto sc = OneModel(50, 100, bench::ArrivalSpec::Kind::kConstant, Exact("m", 0.1));
  auto plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  const double batch_ns = 0.2 * 132 / plan.gpus[0].slices[0].sms * 1e6;
  sc.transit_ms = {3.0};
  auto r = Simulate(sc, plan).value();
  ExpectConserved(r);
  EXPECT_EQ(r.models[0].ok, r.models[0].sent);
  EXPECT_NEAR(r.models[0].latency_ns.Percentile(50), batch_ns + 3e6, (batch_ns + 3e6) * 0.002);
  sc.plan.models[0].slo_ms = batch_ns / 1e6 + 1;  // met on the slice, missed by the client
  r = Simulate(sc, plan).value();
  ExpectConserved(r);
  EXPECT_EQ(r.models[0].ok, 0);
  EXPECT_EQ(r.models[0].dropped, 0);  // the batcher does not see transit
  EXPECT_EQ(r.models[0].late, r.models[0].sent);
}

TEST(Simulator, Pow2BucketsPadBatchesAsTheCpuServerDoes) {
  // Four requests 0.1 ms apart: the first runs alone (batch 1: 2c), the other three then run
  // together on the batch-4 executable (5c, not the 4c of a batch of 3), c = 0.1 x 132 / s ms.
  auto sc = OneModel(50, 100, bench::ArrivalSpec::Kind::kConstant, Exact("m", 0.1));
  auto plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  ASSERT_GE(plan.gpus[0].slices[0].members[0].max_batch, 4);
  const double c_ns = 0.1 * 132 / plan.gpus[0].slices[0].sms * 1e6;
  sc.arrivals[0].kind = bench::ArrivalSpec::Kind::kTrace;
  sc.arrivals[0].trace_ns = {0, 100'000, 200'000, 300'000};
  sc.arrivals[0].trace_loop = false;
  sc.warmup_s = 0;
  sc.batch_buckets = SimScenario::Buckets::kPow2;
  auto r = Simulate(sc, plan).value();
  ExpectConserved(r);
  ASSERT_EQ(r.models[0].ok, 4);
  EXPECT_EQ(r.batches, 2);
  EXPECT_NEAR(r.models[0].latency_ns.max(), 7 * c_ns - 100'000, 7 * c_ns * 0.002);
  // With an executable per batch size the three cost a batch of 3 (4c).
  sc.batch_buckets = SimScenario::Buckets::kEvery;
  r = Simulate(sc, plan).value();
  EXPECT_EQ(r.batches, 2);
  EXPECT_NEAR(r.models[0].latency_ns.max(), 6 * c_ns - 100'000, 6 * c_ns * 0.002);
}

TEST(Simulator, OverloadDropsBeforeDispatchAndNeverAnswersLate) {
  auto sc = OneModel(200, 20, bench::ArrivalSpec::Kind::kPoisson, Exact("m"));
  auto plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  sc.load = 20;  // far beyond what the plan was made for
  auto r = Simulate(sc, plan).value();
  ExpectConserved(r);
  const auto& m = r.models[0];
  EXPECT_GT(m.dropped, m.sent / 2);
  EXPECT_EQ(m.late, 0);  // std 0: the batcher's prediction is exact
  EXPECT_LT(m.attainment(), 0.5);
}

TEST(Simulator, UnplacedModelsLoseEveryRequest) {
  auto sc = OneModel(100, 0.5, bench::ArrivalSpec::Kind::kPoisson, Exact("m"));
  auto plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  ASSERT_EQ(plan.unplaced.size(), 1u);
  auto r = Simulate(sc, plan).value();
  EXPECT_GT(r.models[0].sent, 0);
  EXPECT_EQ(r.models[0].dropped, r.models[0].sent);
}

TEST(Simulator, RunningNeighboursSlowASliceDown) {
  // Two busy models on one GPU: with alpha > 0, their batches take longer than alone.
  SimScenario sc;
  sc.plan.gpu.count = 1;
  for (const char* n : {"a", "b"}) {
    sc.plan.models.push_back({n, 2000, 50, Exact(n, 0.02, 1.0)});
    bench::ArrivalSpec a;
    a.rate = 2000;
    sc.arrivals.push_back(a);
  }
  sc.duration_s = 5;
  sc.warmup_s = 1;
  sc.plan.interference = planner::InterferenceModel(0);
  auto plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  ASSERT_EQ(plan.gpus_used(), 1);
  ASSERT_EQ(plan.gpus[0].slices.size(), 2u);
  auto calm = Simulate(sc, plan).value();
  sc.plan.interference = planner::InterferenceModel(2.0);
  auto stormy = Simulate(sc, plan).value();
  ExpectConserved(stormy);
  EXPECT_GT(stormy.models[0].latency_ns.mean(), 1.05 * calm.models[0].latency_ns.mean());
}

TEST(Simulator, SharedSlicesServeEveryMember) {
  SimScenario sc;
  for (const char* n : {"a", "b", "c"}) {
    sc.plan.models.push_back({n, 5, 100, Exact(n, 0.05)});
    bench::ArrivalSpec a;
    a.rate = 5;
    sc.arrivals.push_back(a);
  }
  sc.duration_s = 60;
  auto plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  ASSERT_EQ(plan.gpus[0].slices.size(), 1u);
  ASSERT_EQ(plan.gpus[0].slices[0].members.size(), 3u);
  auto r = Simulate(sc, plan).value();
  ExpectConserved(r);
  for (const auto& m : r.models) {
    EXPECT_GT(m.sent, 150) << m.name;
    EXPECT_EQ(m.ok, m.sent) << m.name;
  }
}

TEST(Simulator, SameSeedSameResult) {
  planner::GpuSpec gpu;
  gpu.count = 100;
  SimScenario sc;
  sc.plan = planner::SyntheticPlanInput(20, 20000, 5, gpu);
  for (const auto& m : sc.plan.models) {
    bench::ArrivalSpec a;
    a.rate = m.rate_rps;
    sc.arrivals.push_back(a);
  }
  sc.duration_s = 5;
  sc.warmup_s = 1;
  for (Policy p : {Policy::kTessera, Policy::kNexus, Policy::kIgniter}) {
    auto plan = planner::MakePlan(sc.plan, p).value();
    auto a = Simulate(sc, plan).value(), b = Simulate(sc, plan).value();
    ExpectConserved(a);
    EXPECT_EQ(a.total.ok, b.total.ok);
    EXPECT_EQ(a.total.latency_ns.Percentile(99), b.total.latency_ns.Percentile(99));
    sc.seed = 2;
    auto c = Simulate(sc, plan).value();
    sc.seed = 1;
    EXPECT_NE(a.total.sent, c.total.sent);
  }
}

// The planner's queue check (planner/sizing.h, SimulateSlice) re-implements the batching rule
// for one slice; on one slice with no neighbours it must agree with the fleet simulator.
TEST(QueueCheck, AgreesWithTheFleetSimulatorOnOneSlice) {
  auto vit = planner::SyntheticFamily("vit_b16").value();
  const Profile p = planner::MakeSyntheticProfile(vit, "H100", 132, 8);
  struct Case {
    double sms, rate, cv;
    bool pow2 = false;
  };
  // Cases that miss some (about 97.6%, 93.9% with gamma arrivals of cv 2, 99.7%, and one with
  // batches padded to power-of-two executables): where the two could disagree.
  for (const Case c :
       {Case{56, 1500, 1}, Case{56, 1000, 2}, Case{24, 300, 1}, Case{56, 1300, 1, true}}) {
    const double slo = 5;
    const planner::detail::QueueTables t(p, c.sms, 1.0, slo, c.pow2);
    const auto check =
        planner::detail::SimulateSlice({{&t, t.max_batch, c.rate, c.cv}}, 400000, 3, 0);
    SimScenario sc = OneModel(
        c.rate, slo,
        c.cv > 1 ? bench::ArrivalSpec::Kind::kGamma : bench::ArrivalSpec::Kind::kPoisson, p);
    sc.arrivals[0].cv = c.cv;
    if (c.pow2) sc.batch_buckets = SimScenario::Buckets::kPow2;
    sc.plan.interference = planner::InterferenceModel(0);
    sc.duration_s = 400000 / c.rate;
    Plan plan;
    plan.policy = Policy::kTessera;
    plan.gpus.resize(1);
    plan.gpus[0].slices.push_back({});
    plan.gpus[0].slices[0].sms = c.sms;
    plan.gpus[0].slices[0].members.push_back({p.model, c.rate, slo, t.max_batch, 0});
    const SimResult fleet = Simulate(sc, plan).value();
    const double a = fleet.total.attainment();
    EXPECT_GT(a, 0.8) << c.sms << " SMs";
    EXPECT_LT(a, 0.9995) << c.sms << " SMs: pick a case that misses some";
    EXPECT_NEAR(check.attainment, a, 0.1 * (1 - a) + 0.0005)
        << c.sms << " SMs at " << c.rate << " req/s, cv " << c.cv;
  }
}

// A model's equal replicas are fed round-robin, so each sees every n-th arrival: with gamma
// gaps of cv 2 and 3 replicas, gaps of cv 2 / sqrt(3). The planner checks a replica that way
// (Check::split); checking it at the model's own cv would be far too pessimistic.
TEST(QueueCheck, ReplicasFedRoundRobinSeeEveryNthArrival) {
  auto vit = planner::SyntheticFamily("vit_b16").value();
  const Profile p = planner::MakeSyntheticProfile(vit, "H100", 132, 8);
  const double slo = 5, rate = 1150, sms = 56;
  const int n = 3;
  const planner::detail::QueueTables t(p, sms, 1.0, slo);
  auto check = [&](double cv) {
    return planner::detail::SimulateSlice({{&t, t.max_batch, rate, cv}}, 400000, 3, 0).attainment;
  };
  SimScenario sc = OneModel(n * rate, slo, bench::ArrivalSpec::Kind::kGamma, p);
  sc.arrivals[0].cv = 2;
  sc.plan.interference = planner::InterferenceModel(0);
  sc.duration_s = 400000 / rate;
  Plan plan;
  plan.policy = Policy::kTessera;
  plan.gpus.resize(n);
  for (auto& g : plan.gpus) {
    g.slices.push_back({});
    g.slices[0].sms = sms;
    g.slices[0].members.push_back({p.model, rate, slo, t.max_batch, 0});
  }
  const SimResult fleet = Simulate(sc, plan).value();
  const double a = fleet.total.attainment();
  EXPECT_LT(a, 0.9995) << "pick a case that misses some";
  const double split = check(2 / std::sqrt(double{n})), whole = check(2);
  EXPECT_NEAR(split, a, 0.15 * (1 - a) + 0.0005);
  EXPECT_GT(1 - whole, 3 * (1 - a)) << "the model's own cv would overstate the misses";
}

// Checked plans keep their promise in the fleet: each model within SLO for >= 99% of its
// requests and the fleet for >= 99.9%, at the planned rates, neighbours' interference included.
// A bursty model too big for one slice: its replicas, checked at cv / sqrt(replicas), keep the
// check's target in the fleet at the load the check assumed (rate / max_utilization).
TEST(QueueCheck, BurstyReplicasKeepTheTargetAtTheCheckedLoad) {
  auto vit = planner::SyntheticFamily("vit_b16").value();
  const Profile p = planner::MakeSyntheticProfile(vit, "H100", 132, 8);
  SimScenario sc = OneModel(6000, 5, bench::ArrivalSpec::Kind::kGamma, p);
  sc.arrivals[0].cv = 2;
  sc.plan.models[0].arrival_cv = 2;
  sc.plan.gpu.count = 20;
  sc.plan.interference = planner::InterferenceModel(0);
  const Plan plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  ASSERT_GE(plan.models[0].slices, 3) << plan.models[0].why;
  sc.load = 1 / sc.plan.options.max_utilization;
  sc.duration_s = 60;
  const SimResult r = Simulate(sc, plan).value();
  EXPECT_GE(r.total.attainment(), 0.998) << plan.models[0].why;
}

// With gamma arrivals (cv 2), replicas are checked at cv / sqrt(replicas) and shared slices at
// their members' own cv.
class CheckedPlans : public testing::TestWithParam<double> {};

TEST_P(CheckedPlans, MeetTheirTargetInTheFleet) {
  const double cv = GetParam();
  planner::GpuSpec gpu;
  gpu.count = 1000;
  SimScenario sc;
  sc.plan = planner::SyntheticPlanInput(60, 60 * 1500.0, 5, gpu);
  for (auto& m : sc.plan.models) {
    bench::ArrivalSpec a;
    a.kind = cv > 1 ? bench::ArrivalSpec::Kind::kGamma : bench::ArrivalSpec::Kind::kPoisson;
    a.cv = cv;
    a.rate = m.rate_rps;
    m.arrival_cv = cv;
    sc.arrivals.push_back(a);
  }
  sc.duration_s = 12;
  sc.warmup_s = 2;
  const Plan plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  ASSERT_TRUE(planner::CheckPlan(sc.plan, plan).ok());
  const SimResult r = Simulate(sc, plan).value();
  ExpectConserved(r);
  EXPECT_GE(r.total.attainment(), 0.999);
  for (const auto& m : r.models) {
    if (m.sent < 1000) continue;
    EXPECT_GE(m.attainment(), 0.99) << m.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Arrivals, CheckedPlans, testing::Values(1.0, 2.0),
                         [](const testing::TestParamInfo<double>& i) {
                           return i.param > 1 ? std::string("Gamma") : std::string("Poisson");
                         });

// The simulated GPU's interference differs from the planner's (alpha 1.2 against 0.3): the
// windows' slice samples find it. Without neighbours busy there is nothing to fit.
TEST(Simulator, CalibratesInterferenceFromLiveStatistics) {
  planner::GpuSpec gpu;
  gpu.count = 100;
  SimScenario sc;
  sc.plan = planner::SyntheticPlanInput(30, 30 * 1500.0, 2, gpu);
  sc.plan.interference = planner::InterferenceModel(0.3);
  for (const auto& m : sc.plan.models) {
    bench::ArrivalSpec a;
    a.kind = bench::ArrivalSpec::Kind::kPoisson;
    a.rate = m.rate_rps;
    sc.arrivals.push_back(a);
  }
  sc.duration_s = 10;
  sc.warmup_s = 1;
  sc.actual_alpha = 1.2;
  const Plan plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  const SimResult r = Simulate(sc, plan).value();
  const auto& f = r.interference;
  EXPECT_EQ(f.planner_alpha, 0.3);
  EXPECT_EQ(f.actual_alpha, 1.2);
  EXPECT_GT(f.samples, 50);
  EXPECT_EQ(f.samples, static_cast<int64_t>(r.interference_samples.size()));
  ASSERT_TRUE(f.fitted);
  EXPECT_NEAR(f.alpha, 1.2, 0.1);
  EXPECT_LT(f.fit_error.mean_abs_rel, f.planner_error.mean_abs_rel);
  // As planned (no actual_alpha), the fit agrees with the planner's.
  sc.actual_alpha = -1;
  const SimResult same = Simulate(sc, plan).value();
  EXPECT_NEAR(same.interference.alpha, 0.3, 0.05);
  // One model alone on its GPU: no neighbours, no fit.
  SimScenario one = OneModel(
      100, 20, bench::ArrivalSpec::Kind::kPoisson,
      planner::MakeSyntheticProfile(planner::SyntheticFamily("resnet50").value(), "H100", 132, 8));
  one.duration_s = 5;
  one.warmup_s = 1;
  const SimResult alone =
      Simulate(one, planner::MakePlan(one.plan, Policy::kTessera).value()).value();
  EXPECT_FALSE(alone.interference.fitted);
}

TEST(SimScenario, ActualInterferenceIsParsedAndChecked) {
  const std::string dir = testing::TempDir();
  auto parse = [&](const std::string& text) {
    return ParseSimScenario(json::parse(text), "s.json", dir);
  };
  auto ok = parse(R"({"actual_interference": {"alpha": 0.9}, "models": [
      {"name": "a", "rate": 10, "slo_ms": 20, "synthetic": "resnet18"}]})");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->actual_alpha, 0.9);
  EXPECT_LT(parse(R"({"models": [{"name": "a", "rate": 10, "slo_ms": 20,
                "synthetic": "resnet18"}]})")
                ->actual_alpha,
            0);
  // The tuner's keys of this change, read and checked.
  auto tuned = parse(R"({"tune": {"grow_sigma": 1.5, "checked_capacity": false,
      "learn_interference_after": 40, "open_on_evidence": false, "open_above": 1.2}, "models": [
      {"name": "a", "rate": 10, "slo_ms": 20, "synthetic": "resnet18"}]})");
  ASSERT_TRUE(tuned.ok()) << tuned.status().message();
  EXPECT_EQ(tuned->tune.options.grow_sigma, 1.5);
  EXPECT_FALSE(tuned->tune.options.checked_capacity);
  EXPECT_EQ(tuned->tune.options.learn_interference_after, 40);
  EXPECT_FALSE(tuned->tune.options.open_on_evidence);
  EXPECT_EQ(tuned->tune.options.open_above, 1.2);
  for (const auto& [text, field] : std::vector<std::pair<const char*, const char*>>{
           {R"({"tune": {"grow_sigma": -1}, "models": []})", "s.json.tune.grow_sigma"},
           {R"({"tune": {"checked_capacity": "yes"}, "models": []})",
            "s.json.tune.checked_capacity"},
           {R"({"tune": {"learn_interference_after": -3}, "models": []})",
            "s.json.tune.learn_interference_after"},
           {R"({"tune": {"open_on_evidence": 1}, "models": []})", "s.json.tune.open_on_evidence"},
           {R"({"tune": {"open_above": 0.5}, "models": []})", "s.json.tune.open_above"}}) {
    auto r = parse(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
  }
  for (const char* bad : {R"({"actual_interference": {"alpha": -1}, "models": []})",
                          R"({"actual_interference": 0.5, "models": []})",
                          R"({"actual_interference": {"alpha": 1, "beta": 2}, "models": []})"}) {
    auto r = parse(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("s.json.actual_interference"), std::string::npos)
        << r.status().message();
  }
}

TEST(SimScenario, ParsesArrivalsAndNamesBadFields) {
  const std::string dir = testing::TempDir();
  { std::ofstream(dir + "/t.txt") << "0\n0.001\n0.002\n0.004\n"; }
  auto ok = ParseSimScenario(json::parse(R"({"duration_s": 30, "seed": 3, "models": [
      {"name": "a", "rate": 100, "slo_ms": 20, "synthetic": "resnet18", "arrival": "diurnal",
       "diurnal_period_s": 10},
      {"name": "b", "slo_ms": 20, "synthetic": "resnet18", "arrival": "trace", "trace": "t.txt"}]})"),
                             "s.json", dir);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->arrivals[0].kind, bench::ArrivalSpec::Kind::kDiurnal);
  EXPECT_EQ(ok->arrivals[0].diurnal_period_s, 10);
  EXPECT_NEAR(ok->plan.models[1].rate_rps, 750, 1e-6);  // 3 gaps in 4 ms
  EXPECT_EQ(ok->seed, 3u);
  auto err = [&](const std::string& text) {
    return ParseSimScenario(json::parse(text), "s.json", dir).status().message();
  };
  EXPECT_NE(err(R"({"models": [{"name": "a", "rate": 1, "slo_ms": 5, "synthetic": "resnet18",
                "arrival": "weekly"}]})")
                .find("s.json.models[0].arrival: unknown arrival process 'weekly'"),
            std::string::npos);
  EXPECT_NE(err(R"({"models": [{"name": "a", "rate": 1, "slo_ms": 5, "synthetic": "resnet18",
                "cv": 2}]})")
                .find("s.json.models[0].cv: only used with arrival \"gamma\""),
            std::string::npos);
  EXPECT_NE(err(R"({"models": [{"name": "a", "rate": 1, "slo_ms": 5, "synthetic": "resnet18",
                "transit_ms": -1}]})")
                .find("s.json.models[0].transit_ms: expected a number >= 0"),
            std::string::npos);
  EXPECT_NE(err(R"({"batch_buckets": "odd", "models": []})")
                .find("s.json.batch_buckets: expected \"every\" or \"pow2\""),
            std::string::npos);
  auto transit =
      ParseSimScenario(json::parse(R"({"batch_buckets": "pow2", "models": [{"name": "a", "rate": 1,
      "slo_ms": 5, "synthetic": "resnet18", "transit_ms": 0.5}]})"),
                       "s.json", dir);
  ASSERT_TRUE(transit.ok()) << transit.status().message();
  EXPECT_EQ(transit->transit_ms, std::vector<double>{0.5});
  EXPECT_EQ(transit->batch_buckets, SimScenario::Buckets::kPow2);
  EXPECT_NE(err(R"({"duration_s": 5, "warmup_s": 5, "models": []})").find("warmup_s"),
            std::string::npos);
  EXPECT_NE(err(R"({"models": [{"name": "a", "rate": 1, "slo_ms": 5, "synthetic": "resnet18",
                "speed": 2}]})")
                .find("unknown field 'speed'"),
            std::string::npos);
  const std::string m = R"("models": [{"name": "a", "rate": 1, "slo_ms": 5, "synthetic": "resnet18",
                          "arrival": "diurnal", "diurnal_phase": 0.25}])";
  auto tuned =
      ParseSimScenario(json::parse("{\"tune\": {\"interval_s\": 2}, " + m + "}"), "s.json", dir);
  ASSERT_TRUE(tuned.ok()) << tuned.status().message();
  EXPECT_TRUE(tuned->tune.enabled);
  EXPECT_EQ(tuned->tune.interval_s, 2);
  EXPECT_EQ(tuned->tune.options.max_trust, 1.0);  // off unless asked
  auto trusting = ParseSimScenario(
      json::parse("{\"tune\": {\"max_trust\": 1.3, \"enabled\": false}, " + m + "}"), "s.json",
      dir);
  ASSERT_TRUE(trusting.ok()) << trusting.status().message();
  EXPECT_EQ(trusting->tune.options.max_trust, 1.3);
  EXPECT_FALSE(trusting->tune.enabled);
  EXPECT_NE(err("{\"tune\": {\"max_trust\": 0.5}, " + m + "}").find("s.json.tune.max_trust"),
            std::string::npos);
  EXPECT_EQ(tuned->arrivals[0].diurnal_phase, 0.25);
  // Gamma arrivals tell the planner their burstiness.
  auto gamma = ParseSimScenario(json::parse(R"({"models": [{"name": "a", "rate": 1, "slo_ms": 5,
      "synthetic": "resnet18", "arrival": "gamma", "cv": 2.5}]})"),
                                "s.json", dir);
  ASSERT_TRUE(gamma.ok()) << gamma.status().message();
  EXPECT_EQ(gamma->plan.models[0].arrival_cv, 2.5);
  EXPECT_NE(err("{\"tune\": {\"grow_above\": 0.5}, " + m + "}").find("hysteresis"),
            std::string::npos);
  EXPECT_NE(err("{\"tune\": {\"every\": 1}, " + m + "}").find("s.json.tune"), std::string::npos);
  EXPECT_NE(err(R"({"models": [{"name": "a", "rate": 1, "slo_ms": 5, "synthetic": "resnet18",
                "arrival": "diurnal", "diurnal_phase": 1.5}]})")
                .find("diurnal_phase"),
            std::string::npos);
}

// Twice the planned load on one slice with room around it: the static plan drops most of the
// excess; the tuner grows the slice live (make-before-break) and holds the SLO.
TEST(Simulator, TunerFollowsUnplannedLoad) {
  auto sc = OneModel(2000, 20, bench::ArrivalSpec::Kind::kPoisson, Exact("m", 0.05));
  sc.duration_s = 30;
  sc.warmup_s = 2;
  sc.load = 2.0;
  auto plan = planner::MakePlan(sc.plan, Policy::kTessera).value();
  ASSERT_EQ(plan.gpus_used(), 1);
  auto fixed = Simulate(sc, plan).value();
  ExpectConserved(fixed);
  EXPECT_LT(fixed.total.attainment(), 0.9);
  EXPECT_EQ(fixed.resizes, 0);
  sc.tune.enabled = true;
  auto tuned = Simulate(sc, plan).value();
  ExpectConserved(tuned);
  EXPECT_GT(tuned.total.attainment(), 0.99);
  EXPECT_GE(tuned.resizes + tuned.replicas_added, 1);
  EXPECT_FALSE(tuned.actions.empty());
  EXPECT_EQ(tuned.timeline.size(), 30u);
  // Back to the planned load, the tuner leaves a right-sized plan alone.
  sc.load = 1.0;
  auto calm = Simulate(sc, plan).value();
  EXPECT_EQ(calm.resizes + calm.replicas_added + calm.replicas_removed, 0);
  EXPECT_GT(calm.total.attainment(), 0.999);
}

// A replica added on another GPU takes traffic only once ready, and the slice it replaces
// (consolidation) drains without losing a request.
TEST(Simulator, TunerMovesSlicesWithoutLosingRequests) {
  auto sc = Models({"a", "b"}, 1000, bench::ArrivalSpec::Kind::kConstant);
  sc.duration_s = 20;
  sc.warmup_s = 0;
  sc.tune.enabled = true;
  sc.tune.resize_delay_s = 0.5;
  // Hand-made plan: each model alone on its own GPU with a 16-SM slice.
  planner::Plan plan;
  plan.policy = Policy::kTessera;
  plan.gpu = sc.plan.gpu;
  for (int g = 0; g < 2; ++g) {
    planner::GpuPlan gp;
    gp.index = g;
    planner::Slice s;
    s.sms = 16;
    s.members.push_back({sc.plan.models[g].name, 1000, 20, 8, 10});
    gp.slices.push_back(s);
    plan.gpus.push_back(gp);
  }
  auto r = Simulate(sc, plan).value();
  ExpectConserved(r);
  EXPECT_EQ(r.replicas_added, 1);
  EXPECT_EQ(r.replicas_removed, 1);
  EXPECT_EQ(r.peak_gpus, 2);
  EXPECT_LT(r.mean_gpus, 1.99);
  EXPECT_EQ(r.total.dropped, 0);
  EXPECT_EQ(r.total.late, 0);
  EXPECT_EQ(r.timeline.back().gpus, 1);
}

// GPUs that share no model are simulated apart (in parallel) and merged back in model order.
TEST(Simulator, IndependentGpuGroupsMergeBackInOrder) {
  auto sc = Models({"a", "b", "c"}, 800, bench::ArrivalSpec::Kind::kPoisson);
  sc.duration_s = 10;
  sc.warmup_s = 1;
  // a alone on GPU 0; b on GPUs 1 and 2 (two replicas); c alone on GPU 3.
  planner::Plan plan;
  plan.policy = Policy::kTessera;
  plan.gpu = sc.plan.gpu;
  auto gpu = [&](std::vector<std::pair<std::string, double>> members) {
    planner::GpuPlan gp;
    gp.index = static_cast<int>(plan.gpus.size());
    for (const auto& [name, rate] : members) {
      planner::Slice s;
      s.sms = 32;
      s.members.push_back({name, rate, 20, 8, 10});
      gp.slices.push_back(s);
    }
    plan.gpus.push_back(gp);
  };
  gpu({{"a", 800}});
  gpu({{"b", 400}});
  gpu({{"b", 400}});
  gpu({{"c", 800}});
  auto r = Simulate(sc, plan).value(), again = Simulate(sc, plan).value();
  ExpectConserved(r);
  ASSERT_EQ(r.models.size(), 3u);
  int64_t sent = 0, ok = 0;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.models[i].name, sc.plan.models[i].name);
    EXPECT_NEAR(r.models[i].sent, 800 * 9, 5 * std::sqrt(800 * 9.0)) << i;
    EXPECT_GT(r.models[i].attainment(), 0.99) << i;
    EXPECT_EQ(r.models[i].ok, again.models[i].ok) << i;
    sent += r.models[i].sent;
    ok += r.models[i].ok;
  }
  EXPECT_EQ(r.total.sent, sent);
  EXPECT_EQ(r.total.ok, ok);
  EXPECT_EQ(r.peak_gpus, 4);
  EXPECT_EQ(r.timeline.size(), 10u);
  int64_t window_sent = 0;
  for (const auto& w : r.timeline) window_sent += w.sent;
  EXPECT_GE(window_sent, sent);  // the windows count the warm-up too
}

TEST(Simulator, GsliceSelfTunesAndConservesRequests) {
  auto sc = OneModel(2000, 20, bench::ArrivalSpec::Kind::kPoisson, Exact("m", 0.05));
  auto plan = planner::MakePlan(sc.plan, Policy::kGslice).value();
  ASSERT_EQ(plan.policy, Policy::kGslice);
  auto a = Simulate(sc, plan).value(), b = Simulate(sc, plan).value();
  ExpectConserved(a);
  EXPECT_GT(a.resizes, 0);
  EXPECT_EQ(a.actions.front().rfind("0.", 0), 0u) << a.actions.front();
  EXPECT_EQ(a.total.ok, b.total.ok);
  EXPECT_EQ(a.resizes, b.resizes);
}

}  // namespace
}  // namespace tessera::sim
