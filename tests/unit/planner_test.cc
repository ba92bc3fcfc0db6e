// Planner: profiles, synthetic generator, interference fit, sizing arithmetic, the three
// policies on hand-checked cases, plan invariants and determinism, input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "planner/sizing.h"
#include "tessera/planner/interference.h"
#include "tessera/planner/plan.h"
#include "tessera/planner/profile.h"
#include "tessera/planner/synthetic.h"
#include "tessera/planner/tuner.h"

namespace tessera::planner {
namespace {

using nlohmann::json;

// mean(b, s) = (1 + b) * full / s ms with full = gpu_sms; std 0.
Profile LinearProfile(const std::string& name, int gpu_sms = 132, double scale = 1.0,
                      double intensity = 0.3) {
  std::vector<LatencyPoint> pts;
  std::vector<int> sms;
  for (int s = 8; s < gpu_sms; s += 8) sms.push_back(s);
  sms.push_back(gpu_sms);
  for (int s : sms)
    for (int b = 1; b <= 64; b *= 2) {
      const double t = scale * (1 + b) * gpu_sms / s;
      pts.push_back({s, b, t, 0, t});
    }
  return Profile::FromPoints(name, "test", gpu_sms, 1 << 20, intensity, pts, "t").value();
}

TEST(Profile, RejectsAGridWithAHole) {
  std::vector<LatencyPoint> pts = {{8, 1, 1, 0, 1}, {8, 2, 2, 0, 2}, {16, 1, 1, 0, 1}};
  auto p = Profile::FromPoints("m", "g", 132, 0, 0.1, pts, "f.json");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("no point for (sms 16, batch 2)"), std::string::npos)
      << p.status().message();
}

TEST(Profile, RejectsDuplicateAndInconsistentPoints) {
  auto dup = Profile::FromPoints("m", "g", 132, 0, 0.1, {{8, 1, 1, 0, 1}, {8, 1, 1, 0, 1}}, "f");
  EXPECT_NE(dup.status().message().find("listed twice"), std::string::npos);
  auto p99 = Profile::FromPoints("m", "g", 132, 0, 0.1, {{8, 1, 2, 0, 1}}, "f");
  EXPECT_NE(p99.status().message().find("f.points[0]"), std::string::npos);
  auto big = Profile::FromPoints("m", "g", 132, 0, 0.1, {{200, 1, 2, 0, 3}}, "f");
  EXPECT_NE(big.status().message().find("f.points[0].sms"), std::string::npos);
}

TEST(Profile, InterpolatesLinearlyInBatchAndInverseSms) {
  const Profile p = LinearProfile("m");
  EXPECT_DOUBLE_EQ(p.MeanMs(4, 132), 5.0);
  EXPECT_DOUBLE_EQ(p.MeanMs(3, 132), 4.0);    // between batch 2 and 4
  EXPECT_DOUBLE_EQ(p.MeanMs(12, 132), 13.0);  // between batch 8 and 16
  // time ~ c / s is exact under 1/s interpolation: 20 SMs lies between 16 and 24.
  EXPECT_NEAR(p.MeanMs(1, 20), 2.0 * 132 / 20, 1e-9);
  EXPECT_NEAR(p.MeanMs(1, 4), 2.0 * 132 / 4, 1e-9);  // below 8 SMs: work conservation
  EXPECT_DOUBLE_EQ(p.MeanMs(1, 500), 2.0);           // above the GPU: flat
}

TEST(Profile, JsonRoundTripAndFieldErrors) {
  const Profile p = LinearProfile("m");
  auto back = ProfileFromJson(ProfileToJson(p), "x");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->points().size(), p.points().size());
  EXPECT_DOUBLE_EQ(back->MeanMs(5, 40), p.MeanMs(5, 40));
  auto bad = ParseProfile(R"({"model":"m","gpu_sms":132,"points":[{"sms":8,"batch":1,
      "mean_ms":"fast"}]})",
                          "p.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("p.json.points[0].mean_ms: expected a number > 0"),
            std::string::npos)
      << bad.status().message();
  auto notjson = ParseProfile("{", "p.json");
  EXPECT_NE(notjson.status().message().find("p.json: not valid JSON"), std::string::npos);
  auto missing = ParseProfile(R"({"model":"m","points":[]})", "p.json");
  EXPECT_NE(missing.status().message().find("'gpu_sms' is required"), std::string::npos);
}

TEST(Synthetic, HasAKneeAndScalesWithBatch) {
  const auto m = SyntheticFamily("resnet50").value();
  const Profile p = MakeSyntheticProfile(m, "H100", 132, 8);
  for (int s = 8; s + 8 <= 132; s += 8) {
    EXPECT_GE(p.MeanMs(1, s), p.MeanMs(1, s + 8) - 1e-12);
    EXPECT_GE(p.MeanMs(64, s), p.MeanMs(64, s + 8) - 1e-12);
  }
  // Batch 1 gains little from the second half of the GPU; batch 64 nearly halves.
  EXPECT_GT(p.MeanMs(1, 132) / p.MeanMs(1, 64), 0.9);
  EXPECT_LT(p.MeanMs(64, 132) / p.MeanMs(64, 64), 0.6);
  EXPECT_FALSE(SyntheticFamily("alexnet").ok());
}

TEST(Synthetic, WorkloadIsSeededAndSumsToTheRate) {
  const auto a = SyntheticWorkload(50, 10000, 7, 132);
  const auto b = SyntheticWorkload(50, 10000, 7, 132);
  const auto c = SyntheticWorkload(50, 10000, 8, 132);
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].rate_rps, b[i].rate_rps);
    EXPECT_GE(a[i].slo_ms, 5.0);
    sum += a[i].rate_rps;
  }
  EXPECT_NEAR(sum, 10000, 1e-6);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) differs |= a[i].rate_rps != c[i].rate_rps;
  EXPECT_TRUE(differs);
}

TEST(Interference, FitRecoversAlphaAndReportsError) {
  std::vector<CoLocationSample> s;
  for (int i = 1; i <= 10; ++i) s.push_back({2.0, 2.0 * (1 + 0.45 * 0.05 * i), 0.05 * i});
  auto m = InterferenceModel::Fit(s);
  ASSERT_TRUE(m.ok());
  EXPECT_NEAR(m->alpha(), 0.45, 1e-12);
  EXPECT_NEAR(m->Evaluate(s).max_abs_rel, 0, 1e-12);
  s[0].colocated_ms *= 1.1;  // one measurement 10% off
  const auto e = InterferenceModel::Fit(s)->Evaluate(s);
  EXPECT_EQ(e.samples, 10);
  EXPECT_GT(e.max_abs_rel, 0.05);
  EXPECT_FALSE(InterferenceModel::Fit({{1, 1, 0}}).ok());
  EXPECT_FALSE(InterferenceModel::Fit({{0, 1, 0.5}}).ok());
}

TEST(Sizing, PoissonTableMatchesItsTail) {
  const detail::PoissonTable pt(0.001, 64);
  // P(N > 1) = 1 - e^-l (1 + l) = 0.001 at l = 0.045402.
  EXPECT_NEAR(pt.LambdaMax(1), 0.0454020, 1e-6);
  for (int b : {3, 10, 64})
    EXPECT_NEAR(detail::PoissonTable::Tail(pt.LambdaMax(b), b), 0.001, 1e-6);
  // Beyond the table the normal approximation stays close to the exact tail.
  EXPECT_NEAR(detail::PoissonTable::Tail(pt.LambdaMax(400), 400), 0.001, 0.0005);
}

TEST(Sizing, DedicatedSliceHandChecked) {
  // On the whole GPU mean(b) = p99(b) = 1 + b ms. SLO 20: 2 (1 + b) <= 20 gives max batch 9.
  // A limit b with t = 1 + b leaves k = floor(20 / t) - 1 batches of slack and carries
  // min(0.9 b / t, LambdaMax(k b) / (k t)) with eps 0.1: b=1 345.6, b=2 468.0, b=4 576.4,
  // b=8 603.6, b=9 622.1 req/s (computed independently). 300 req/s needs only b = 1
  // (k = 9): worst case (9 + 1) x 2 ms = 20 ms.
  const Profile p = LinearProfile("m");
  const detail::PoissonTable pt(0.1, 64);
  const auto d = detail::SizeDedicated(p, 132, 300, 20, 1.0, 0.9, pt);
  EXPECT_EQ(d.max_batch, 9);
  EXPECT_NEAR(d.cap_rps, 622.13, 0.01);
  EXPECT_EQ(d.used_batch, 1);
  EXPECT_NEAR(d.predicted_ms, 20, 1e-9);
  // b = 3: t = 4, k = 4, min(675, LambdaMax(12) / 16 ms = 540.4) >= 500; b = 2 carries 468.
  EXPECT_EQ(detail::SizeDedicated(p, 132, 500, 20, 1.0, 0.9, pt).used_batch, 3);
  EXPECT_EQ(detail::SizeDedicated(p, 132, 700, 20, 1.0, 0.9, pt).used_batch, 0);  // over capacity
  EXPECT_EQ(detail::SizeDedicated(p, 132, 10, 3, 1.0, 0.9, pt).max_batch, 0);     // SLO too tight
  // Inflation 1.1 makes 500 req/s need a bigger batch; MaxInflation finds where it breaks.
  const double f = detail::MaxInflation(p, 132, 500, 20, 0.9, pt);
  EXPECT_GT(f, 1.0);
  EXPECT_GT(detail::SizeDedicated(p, 132, 500, 20, f * 0.999, 0.9, pt).used_batch, 0);
  EXPECT_EQ(detail::SizeDedicated(p, 132, 500, 20, f * 1.01, 0.9, pt).used_batch, 0);
}

PlanInput OneModel(double rate, double slo, Profile p) {
  PlanInput in;
  in.gpu.count = 100;
  in.models.push_back({p.model, rate, slo, std::move(p)});
  return in;
}

TEST(Nexus, SaturatedGpusThenAResidualSession) {
  // l(b) = 1.15 (1 + b) ms; SLO 40: b_sat = 16 (l = 19.55 ms <= 20), 818.4 req/s per GPU.
  // 2000 req/s: two saturated GPUs and a residual of 363.2 req/s, whose session batch is the
  // largest b with (b - 1) / r + l(b) <= 40 ms: b = 10.
  const auto in = OneModel(2000, 40, LinearProfile("m"));
  auto plan = MakePlan(in, Policy::kNexus);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->gpus_used(), 3);
  EXPECT_EQ(plan->gpus[0].slices[0].members[0].max_batch, 16);
  EXPECT_NEAR(plan->gpus[0].slices[0].members[0].rate_rps, 16 / 0.01955, 1e-6);
  const auto& res = plan->gpus[2].slices[0].members[0];
  EXPECT_EQ(res.max_batch, 10);
  EXPECT_NEAR(res.rate_rps, 2000 - 2 * 16 / 0.01955, 1e-6);
  EXPECT_TRUE(CheckPlan(in, *plan).ok()) << CheckPlan(in, *plan).message();
}

TEST(Nexus, MergesSessionsOnlyWhenTheCycleHoldsThem) {
  PlanInput in;
  in.gpu.count = 10;
  for (const char* n : {"a", "b"}) in.models.push_back({n, 50, 40, LinearProfile(n)});
  auto two = MakePlan(in, Policy::kNexus);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->gpus_used(), 1);  // two light sessions share one GPU's cycle
  EXPECT_EQ(two->gpus[0].slices[0].members.size(), 2u);
  // Heavy ones (each ~60% of a GPU's cycle) do not fit together.
  for (auto& m : in.models) m.rate_rps = 500;
  auto heavy = MakePlan(in, Policy::kNexus);
  EXPECT_EQ(heavy->gpus_used(), 2);
  EXPECT_TRUE(CheckPlan(in, *heavy).ok());
}

TEST(Igniter, SharesInStepsWithinHalfTheSlo) {
  PlanInput in;
  in.gpu.count = 50;
  for (const auto& w : SyntheticWorkload(30, 30000, 3, 132))
    in.models.push_back(
        {w.name, w.rate_rps, w.slo_ms, MakeSyntheticProfile(w.params, "H100", 132, 8)});
  auto plan = MakePlan(in, Policy::kIgniter);
  ASSERT_TRUE(plan.ok());
  const double step = 0.025 * 132;
  for (const auto& g : plan->gpus)
    for (const auto& s : g.slices) {
      EXPECT_NEAR(std::fmod(s.sms + 1e-9, step), 0, 1e-6) << s.sms;
      EXPECT_NE(s.why.find("<= SLO/2"), std::string::npos);
    }
  EXPECT_TRUE(CheckPlan(in, *plan).ok()) << CheckPlan(in, *plan).message();
}

TEST(Tessera, LowRateModelsShareOneSlice) {
  PlanInput in;
  for (const char* n : {"a", "b", "c"})
    in.models.push_back({n, 5, 100, LinearProfile(n, 132, 0.05)});
  auto plan = MakePlan(in, Policy::kTessera);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->gpus_used(), 1);
  ASSERT_EQ(plan->gpus[0].slices.size(), 1u);
  const Slice& s = plan->gpus[0].slices[0];
  EXPECT_EQ(s.sms, 8);
  EXPECT_GT(s.duty_cycle_ms, 0);
  EXPECT_EQ(s.members.size(), 3u);
  EXPECT_TRUE(CheckPlan(in, *plan).ok()) << CheckPlan(in, *plan).message();
}

TEST(Tessera, BigModelsGetReplicasAndInterferenceSpreadsHeavySlices) {
  auto in = OneModel(20000, 40, LinearProfile("m", 132, 0.1, 0.9));
  auto plan = MakePlan(in, Policy::kTessera);
  ASSERT_TRUE(plan.ok());
  EXPECT_GT(plan->models[0].slices, 1);
  EXPECT_TRUE(CheckPlan(in, *plan).ok()) << CheckPlan(in, *plan).message();
  // The same slices with no interference pack at least as tightly; with a huge alpha,
  // memory-heavy slices cannot share a GPU at all.
  in.interference = InterferenceModel(0);
  const int calm = MakePlan(in, Policy::kTessera)->gpus_used();
  in.interference = InterferenceModel(50);
  auto stormy = MakePlan(in, Policy::kTessera);
  EXPECT_LE(calm, plan->gpus_used());
  EXPECT_GT(stormy->gpus_used(), calm);
  EXPECT_TRUE(CheckPlan(in, *stormy).ok()) << CheckPlan(in, *stormy).message();
}

TEST(Plans, KeepInvariantsAndAreDeterministic) {
  for (uint64_t seed : {1, 2, 3}) {
    PlanInput in;
    in.gpu.count = 1000;
    for (const auto& w : SyntheticWorkload(150, 150 * 1500.0, seed, 132))
      in.models.push_back(
          {w.name, w.rate_rps, w.slo_ms, MakeSyntheticProfile(w.params, "H100", 132, 8)});
    for (Policy p : {Policy::kTessera, Policy::kNexus, Policy::kIgniter, Policy::kGslice}) {
      auto a = MakePlan(in, p), b = MakePlan(in, p);
      ASSERT_TRUE(a.ok());
      EXPECT_TRUE(CheckPlan(in, *a).ok()) << PolicyName(p) << ": " << CheckPlan(in, *a).message();
      EXPECT_TRUE(a->unplaced.empty()) << PolicyName(p) << ": " << a->unplaced[0].reason;
      EXPECT_EQ(PlanToJson(*a).dump(), PlanToJson(*b).dump()) << PolicyName(p);
    }
  }
}

TEST(Plans, UnplacedModelsSayWhy) {
  auto tight = OneModel(100, 0.5, LinearProfile("m"));
  for (Policy p : {Policy::kTessera, Policy::kNexus, Policy::kIgniter, Policy::kGslice}) {
    auto plan = MakePlan(tight, p);
    ASSERT_TRUE(plan.ok());
    ASSERT_EQ(plan->unplaced.size(), 1u) << PolicyName(p);
    EXPECT_EQ(plan->unplaced[0].model, "m");
    EXPECT_NE(plan->unplaced[0].reason.find("SLO"), std::string::npos) << plan->unplaced[0].reason;
  }
  auto big = OneModel(50000, 40, LinearProfile("m"));
  big.gpu.count = 2;
  auto plan = MakePlan(big, Policy::kTessera);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->gpus_used(), 2);
  ASSERT_FALSE(plan->unplaced.empty());
  EXPECT_NE(plan->unplaced[0].reason.find("on the 2 GPUs given"), std::string::npos);
}

TEST(Plans, CheckCatchesABrokenPlan) {
  auto in = OneModel(600, 20, LinearProfile("m"));
  auto plan = MakePlan(in, Policy::kTessera).value();
  ASSERT_TRUE(CheckPlan(in, plan).ok());
  auto over = plan;
  over.gpus[0].slices[0].sms = 136;
  EXPECT_NE(CheckPlan(in, over).message().find("SMs of 128 used"), std::string::npos);
  auto odd = plan;
  odd.gpus[0].slices[0].sms = 12;
  EXPECT_NE(CheckPlan(in, odd).message().find("not a multiple of 8"), std::string::npos);
  auto late = plan;
  late.gpus[0].slices[0].members[0].predicted_ms = 21;
  EXPECT_NE(CheckPlan(in, late).message().find("> SLO"), std::string::npos);
  auto short_rate = plan;
  short_rate.gpus[0].slices[0].members[0].rate_rps /= 2;
  EXPECT_NE(CheckPlan(in, short_rate).message().find("slices take"), std::string::npos);
}

TEST(PlanInput, ErrorsNameTheField) {
  auto parse = [](const std::string& text) {
    return ParsePlanInput(json::parse(text), "in.json", ".").status().message();
  };
  EXPECT_NE(parse(R"({"models":[{"name":"a","rate":1,"slo_ms":5,"synthetic":"resnet50"},
                    {"name":"b","rate":"x","slo_ms":5,"synthetic":"resnet50"}]})")
                .find("in.json.models[1].rate: expected a number > 0"),
            std::string::npos);
  EXPECT_NE(parse(R"({"models":[{"name":"a","rate":1,"slo_ms":5}]})").find("exactly one of"),
            std::string::npos);
  EXPECT_NE(parse(R"({"models":[{"name":"a","rate":1,"slo_ms":5,"synthetic":"alexnet"}]})")
                .find("in.json.models[0].synthetic: no synthetic family 'alexnet'"),
            std::string::npos);
  EXPECT_NE(parse(R"({"gpu":{"sms":64,"granularity_sms":80},"models":[]})")
                .find("granularity_sms: must be <= sms"),
            std::string::npos);
  EXPECT_NE(parse(R"({"models":[],"extra":1})").find("unknown field 'extra'"), std::string::npos);
  EXPECT_NE(parse(R"({"models":[{"name":"a","rate":1,"slo_ms":5,"profile":"nope.json"}]})")
                .find("in.json.models[0].profile: cannot read"),
            std::string::npos);
  // A profile taken on another GPU is refused by the planner.
  auto in =
      ParsePlanInput(json::parse(R"({"gpu":{"sms":108},"models":[{"name":"a","rate":1,"slo_ms":5,
                   "profile":{"model":"a","gpu_sms":132,"points":[{"sms":8,"batch":1,"mean_ms":1}]}}]})"),
                     "in.json", ".");
  ASSERT_TRUE(in.ok()) << in.status().message();
  auto plan = MakePlan(*in, Policy::kTessera);
  EXPECT_NE(plan.status().message().find("profile is for a GPU with 132 SMs"), std::string::npos);
}

TEST(PlanInput, QueueCheckOptionsAreValidated) {
  auto parse = [](const char* options) {
    json doc =
        json::parse(R"({"models":[{"name":"a","rate":1,"slo_ms":5,"synthetic":"resnet50"}]})");
    doc["options"] = json::parse(options);
    return ParsePlanInput(doc, "in.json", ".");
  };
  EXPECT_NE(parse(R"({"check_attainment":1.5})")
                .status()
                .message()
                .find("in.json.options.check_attainment: expected a number in [0, 1)"),
            std::string::npos);
  EXPECT_NE(parse(R"({"check_arrivals":10})")
                .status()
                .message()
                .find("in.json.options.check_arrivals: expected a number >= 1000"),
            std::string::npos);
  auto ok = parse(
      R"({"check_attainment":0.99,"check_arrivals":5000,"check_budget":0,"tail_probability":0.2})");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->options.tail_probability, 0.2);  // listed before, but was not read
  EXPECT_EQ(ok->options.check_attainment, 0.99);
  EXPECT_EQ(ok->options.check_arrivals, 5000);
  EXPECT_EQ(ok->options.check_budget, 0);
}

TEST(QueueCheck, AnIdleSliceAnswersInOneBatchTime) {
  // On 8 SMs a batch of 1 takes (1 + 1) x 0.05 x 132 / 8 = 1.65 ms, every time (std 0).
  const Profile p = LinearProfile("m", 132, 0.05);
  const detail::QueueTables t(p, 8, 1.0, 20);
  EXPECT_EQ(t.max_batch, 23);  // p99(23) = 24 x 0.825 = 19.8 ms <= 20 < p99(24)
  // 10 req/s: requests almost never meet, so nearly every latency is one batch of 1.
  auto o = detail::SimulateSlice({{&t, 64, 10, 1}}, 5000, 1, 0.5);
  EXPECT_EQ(o.attainment, 1);
  EXPECT_NEAR(o.members[0].quantile_ms, 1.65, 1e-3);
  EXPECT_FALSE(o.stopped);
  EXPECT_NEAR(o.drawn, 5000, 250);
  EXPECT_LT(o.busy, 0.05);
  EXPECT_GT(o.busy, 0.005);
}

TEST(QueueCheck, Pow2BucketsCostABatchItsBucket) {
  // p99(b) on 8 SMs = (1 + b) x 0.825 ms; padded, a batch of 3 costs 4, 5-8 cost 8, and past 16
  // the max batch (23) is the last bucket.
  const Profile p = LinearProfile("m", 132, 0.05);
  const detail::QueueTables every(p, 8, 1.0, 20), pow2(p, 8, 1.0, 20, true);
  EXPECT_EQ(pow2.max_batch, every.max_batch);
  EXPECT_EQ(pow2.p99_ns[3], every.p99_ns[4]);
  EXPECT_EQ(pow2.p99_ns[4], every.p99_ns[4]);
  EXPECT_EQ(pow2.p99_ns[5], every.p99_ns[8]);
  EXPECT_EQ(pow2.mean_ns[17], every.mean_ns[23]);
  EXPECT_EQ(pow2.p99_ns[23], every.p99_ns[23]);
  EXPECT_EQ(pow2.p99_ns[1], every.p99_ns[1]);
  // Padding costs attainment near the edge: same load, fewer answered in time.
  const double rate = 900;
  const auto a = detail::SimulateSlice({{&every, 64, rate, 1}}, 40000, 5, 0);
  const auto b = detail::SimulateSlice({{&pow2, 64, rate, 1}}, 40000, 5, 0);
  EXPECT_LT(b.attainment, a.attainment);
  EXPECT_GT(b.busy, a.busy);
  auto in = ParsePlanInput(json::parse(R"({"options":{"batch_buckets":"pow2"},
      "models":[{"name":"a","rate":1,"slo_ms":5,"synthetic":"resnet50"}]})"),
                           "in.json", ".");
  ASSERT_TRUE(in.ok()) << in.status().message();
  EXPECT_TRUE(in->options.pow2_buckets);
  EXPECT_NE(ParsePlanInput(json::parse(R"({"options":{"batch_buckets":"odd"},
      "models":[{"name":"a","rate":1,"slo_ms":5,"synthetic":"resnet50"}]})"),
                           "in.json", ".")
                .status()
                .message()
                .find("in.json.options.batch_buckets"),
            std::string::npos);
}

TEST(QueueCheck, AnOverloadedSliceMissesAndStopsEarly) {
  // 8 SMs carry at most 64 / ((1 + 64) x 0.825 ms) = 1194 req/s: 5000 req/s is hopeless.
  const Profile p = LinearProfile("m", 132, 0.05);
  const detail::QueueTables t(p, 8, 1.0, 20);
  auto full = detail::SimulateSlice({{&t, 64, 5000, 1}}, 20000, 1, 0.999);
  EXPECT_LT(full.attainment, 0.3);
  EXPECT_TRUE(std::isinf(full.members[0].quantile_ms));
  EXPECT_GT(full.busy, 0.99);
  auto early = detail::SimulateSlice({{&t, 64, 5000, 1}}, 20000, 1, 0, 0.999);
  EXPECT_TRUE(early.stopped);
  EXPECT_LT(early.drawn, 5000);
  EXPECT_LT(early.attainment, 0.999);
  // Inflation slows every batch: a slice that holds at f = 1 misses at f = 3.
  const detail::QueueTables slow(p, 8, 3.0, 20);
  EXPECT_EQ(detail::SimulateSlice({{&t, 64, 500, 1}}, 20000, 1, 0).attainment, 1);
  EXPECT_LT(detail::SimulateSlice({{&slow, 64, 500, 1}}, 20000, 1, 0).attainment, 0.9);
}

TEST(QueueCheck, RoundRobinMembersWaitForEachOther) {
  // Alone, a request waits at most for its own member's batch in flight: within 5 ms. Sharing
  // the slice, it may wait for its own batch and then the other member's: past 5 ms at times.
  const Profile p = LinearProfile("m", 132, 0.05);
  const detail::QueueTables t(p, 8, 1.0, 5.0);
  auto alone = detail::SimulateSlice({{&t, 64, 100, 1}}, 20000, 7, 0.999);
  auto both = detail::SimulateSlice({{&t, 64, 100, 1}, {&t, 64, 100, 1}}, 40000, 7, 0.999);
  ASSERT_EQ(both.members.size(), 2u);
  EXPECT_EQ(alone.attainment, 1);
  for (const auto& m : both.members) {
    EXPECT_GT(m.requests, 15000);
    EXPECT_LT(m.attainment, 0.999);  // measured 0.995-0.996
    EXPECT_GT(m.attainment, 0.98);
  }
  EXPECT_NEAR(both.busy, 2 * alone.busy, 0.05);
}

TEST(Tessera, QueueChecksSizeSlicesAndKeepInvariants) {
  PlanInput in;
  in.gpu.count = 1000;
  for (const auto& w : SyntheticWorkload(60, 60 * 1500.0, 4, 132))
    in.models.push_back(
        {w.name, w.rate_rps, w.slo_ms, MakeSyntheticProfile(w.params, "H100", 132, 8)});
  PlanInput closed = in;
  closed.options.check_attainment = 0;
  const Plan a = MakePlan(closed, Policy::kTessera).value();
  const Plan b = MakePlan(in, Policy::kTessera).value();
  EXPECT_TRUE(CheckPlan(in, b).ok()) << CheckPlan(in, b).message();
  EXPECT_TRUE(b.unplaced.empty());
  EXPECT_NE(PlanToJson(a).dump(), PlanToJson(b).dump());
  int checked = 0;
  for (const auto& g : b.gpus)
    for (const auto& s : g.slices) {
      EXPECT_EQ(static_cast<int>(s.sms) % 8, 0);
      checked += s.why.find("simulated with the runtime's batching rule") != std::string::npos;
    }
  EXPECT_GT(checked, 20);
  // Deterministic, and a budget of nothing is the closed form.
  EXPECT_EQ(PlanToJson(b).dump(), PlanToJson(MakePlan(in, Policy::kTessera).value()).dump());
  PlanInput none = in;
  none.options.check_budget = 0;
  EXPECT_EQ(PlanToJson(a).dump(), PlanToJson(MakePlan(none, Policy::kTessera).value()).dump());
}

// The eight models of bench/sim/diurnal-8.json at 1.375 x their rates: with each
// multi-replica model at its fewest SMs (bert_base 3 x 96, resnet50 5 x 40) the slices need 6
// GPUs; 4 x 72 and 4 x 56 cost more SMs but fill 5 exactly.
TEST(Tessera, ReplicaOptionsTradeSmsForAGpu) {
  PlanInput in;
  in.gpu.count = 16;
  in.interference = InterferenceModel(0.6);
  const std::vector<std::tuple<const char*, double, double>> models = {
      {"resnet50", 18000, 25}, {"bert_base", 5000, 40},      {"mobilenet_v2", 8000, 10},
      {"vgg16", 1600, 50},     {"efficientnet_b0", 300, 15}, {"distilbert", 120, 20},
      {"resnet18", 80, 10},    {"vit_b16", 600, 30}};
  for (const auto& [name, rate, slo] : models)
    in.models.push_back({name, 1.375 * rate, slo,
                         MakeSyntheticProfile(SyntheticFamily(name).value(), "H100", 132, 8)});
  const Plan plan = MakePlan(in, Policy::kTessera).value();
  EXPECT_TRUE(CheckPlan(in, plan).ok()) << CheckPlan(in, plan).message();
  EXPECT_TRUE(plan.unplaced.empty());
  EXPECT_EQ(plan.gpus_used(), 5);
  int traded = 0;
  for (const auto& m : plan.models) {
    traded += m.why.find("pack onto fewer GPUs than the fewest SMs") != std::string::npos;
    EXPECT_GE(m.slices, 1) << m.model;
  }
  EXPECT_GE(traded, 1);
  double sms = 0;
  for (const auto& g : plan.gpus) sms += g.sms_used;
  EXPECT_GT(sms, 4 * 128);  // the SMs need 5 GPUs anyway: the search did not go below them
  // On a fleet of exactly 5 GPUs the fewest SMs would leave a replica unplaced; the options
  // place everything.
  in.gpu.count = 5;
  const Plan five = MakePlan(in, Policy::kTessera).value();
  EXPECT_TRUE(five.unplaced.empty());
  EXPECT_EQ(PlanToJson(five)["gpus"].dump(), PlanToJson(plan)["gpus"].dump());
}

namespace tuner_test {

// A fleet observation of one model's dedicated slices, all seeing `rate` in total (split evenly)
// with every request answered within SLO.
FleetObservation Observe(const std::vector<std::pair<int, double>>& slices, double rate,
                         std::vector<double> free_sms) {
  FleetObservation o;
  for (size_t i = 0; i < slices.size(); ++i) {
    SliceObservation s;
    s.id = static_cast<int>(i);
    s.gpu = slices[i].first;
    s.sms = slices[i].second;
    s.busy = 0.5;
    const double r = rate / slices.size();
    s.members.push_back({0, r, static_cast<int64_t>(r), static_cast<int64_t>(r), r});
    o.slices.push_back(s);
  }
  o.free_sms = std::move(free_sms);
  return o;
}

double Cap(const PlanInput& in, double sms) {
  const detail::PoissonTable pt(in.options.tail_probability, 64);
  const auto& m = in.models[0];
  // The tuner sizes at the typical neighbourhood's inflation, as the planner does.
  const double f = in.interference.Inflation(0.7 * m.profile.mem_intensity);
  return detail::SliceCapacity(m.profile, sms, m.slo_ms, f, in.options.max_utilization, pt,
                               nullptr);
}

// The band logic on the closed-form capacity (the tuner's defaults size by queue checks, whose
// capacities these tests do not compute): the bands these tests were written for.
TunerOptions ClosedForm() {
  TunerOptions o;
  o.checked_capacity = false;
  o.target_load = 0.85;
  o.shrink_below = 0.5;
  return o;
}

}  // namespace tuner_test

// Two slices of two models on one GPU, both busy `busy`; their batches take the profile's time
// alone (10 ms) inflated by `alpha` x the other's pressure (intensity 0.5, 64 of 132 SMs).
FleetObservation Colocated(double alpha, double busy, int64_t batches, double rate = 10) {
  FleetObservation o;
  const double neighbour = SlicePressure(0.5, 64, 132, busy);
  for (int i = 0; i < 2; ++i) {
    SliceObservation s;
    s.id = i;
    s.gpu = 0;
    s.sms = 64;
    s.busy = busy;
    s.members.push_back({static_cast<size_t>(i), rate, 10, 10, rate});
    s.batches = batches;
    s.alone_ms = 10;
    s.batch_ms = 10 * (1 + alpha * neighbour);
    o.slices.push_back(s);
  }
  o.free_sms = {0};
  return o;
}

PlanInput TwoModels(double alpha) {
  PlanInput in;
  in.gpu.count = 1;
  in.interference = InterferenceModel(alpha);
  for (const char* name : {"a", "b"})
    in.models.push_back({name, 10, 100, LinearProfile(name, 132, 1.0, 0.5)});
  return in;
}

TEST(LiveInterference, FitsAlphaFromSliceWindows) {
  const PlanInput in = TwoModels(0.1);
  LiveInterference live(8);
  EXPECT_FALSE(live.Fit().ok());  // nothing yet
  // Idle neighbours say nothing about alpha; slices with too few batches give no sample.
  live.Observe(in, Colocated(1.5, 0, 10));
  live.Observe(in, Colocated(1.5, 0.8, 2));
  EXPECT_EQ(live.size(), 2u);
  EXPECT_FALSE(live.Fit().ok());
  for (double busy : {0.2, 0.5, 0.9}) live.Observe(in, Colocated(1.5, busy, 10));
  EXPECT_EQ(live.size(), 8u);  // the ring holds the most recent 8
  const auto samples = live.samples();
  EXPECT_NEAR(samples.back().neighbour_pressure, SlicePressure(0.5, 64, 132, 0.9), 1e-12);
  EXPECT_NEAR(samples.front().neighbour_pressure, 0, 1e-12);
  auto fit = live.Fit();
  ASSERT_TRUE(fit.ok()) << fit.status().message();
  EXPECT_NEAR(fit->alpha(), 1.5, 1e-9);
  EXPECT_LT(fit->Evaluate(samples).max_abs_rel, 1e-9);
  EXPECT_GT(InterferenceModel(0.1).Evaluate(samples).mean_abs_rel, 0.05);
}

TEST(Tuner, LearnsInterferenceFromItsWindows) {
  // Told alpha 0.1, shown windows of alpha 1.5: after learn_interference_after samples the
  // tuner predicts with the live fit; with learning off it keeps the plan input's.
  const PlanInput in = TwoModels(0.1);
  TunerOptions learn, fixed;
  learn.learn_interference_after = 20;
  fixed.learn_interference_after = 0;
  Tuner a(in, learn), b(in, fixed);
  for (int w = 0; w < 9; ++w) {
    a.Step(Colocated(1.5, 0.7, 10));
    b.Step(Colocated(1.5, 0.7, 10));
  }
  EXPECT_EQ(a.interference().alpha(), 0.1);  // 18 samples: not yet
  a.Step(Colocated(1.5, 0.7, 10));
  b.Step(Colocated(1.5, 0.7, 10));
  EXPECT_NEAR(a.interference().alpha(), 1.5, 1e-9);
  EXPECT_EQ(b.interference().alpha(), 0.1);
  EXPECT_EQ(a.live_interference().size(), 20u);
  EXPECT_EQ(b.live_interference().size(), 0u);  // not learning: the windows are not kept
  // And sizes with it: a rate at 90% of what a slice carries at the told alpha is past what it
  // carries at the learned one. The learning tuner adds capacity; the other sees no need.
  PlanInput two = in;
  two.gpu.count = 2;
  const detail::PoissonTable pt(two.options.tail_probability, 64);
  const auto& m = two.models[0];
  const double told =
      detail::SliceCapacity(m.profile, 64, m.slo_ms, two.interference.Inflation(0.35),
                            two.options.max_utilization, pt, nullptr);
  Tuner c(two, learn), d(two, fixed);
  bool grew_c = false, grew_d = false;
  for (int w = 0; w < 12; ++w) {
    FleetObservation o = Colocated(1.5, 0.7, 10, 0.9 * told);
    o.free_sms = {4, 128};
    grew_c |= !c.Step(o).empty();
    grew_d |= !d.Step(o).empty();
  }
  EXPECT_TRUE(grew_c);
  EXPECT_FALSE(grew_d);
}

TEST(Tuner, SteadyRateWithinTheBandsDoesNothing) {
  const auto in = OneModel(300, 20, LinearProfile("m"));
  Tuner t(in, tuner_test::ClosedForm());
  const double c = tuner_test::Cap(in, 32);
  for (int w = 0; w < 50; ++w)
    EXPECT_TRUE(t.Step(tuner_test::Observe({{0, 32}}, 0.7 * c, {96, 128})).empty()) << w;
}

TEST(Tuner, CalibratedToACheckedPlanItDoesNotGrowAtThePlannedRate) {
  // A plan whose one slice carries 1.4x the tuner's closed-form capacity (as a queue-checked
  // slice may): calibrated, the tuner leaves it be at that rate and grows it past it;
  // uncalibrated, it grows it at once.
  const auto in = OneModel(300, 20, LinearProfile("m"));
  const double c = tuner_test::Cap(in, 32);
  Plan plan;
  plan.gpus.resize(1);
  plan.gpus[0].slices.push_back({});
  plan.gpus[0].slices[0].sms = 32;
  plan.gpus[0].slices[0].members.push_back({"m", 1.4 * c, 20, 8, 10});
  Tuner calibrated(in), plain(in);
  calibrated.Calibrate(plan);
  for (int w = 0; w < 10; ++w)
    EXPECT_TRUE(calibrated.Step(tuner_test::Observe({{0, 32}}, 1.4 * c, {96, 128})).empty()) << w;
  EXPECT_FALSE(plain.Step(tuner_test::Observe({{0, 32}}, 1.4 * c, {96, 128})).empty());
  auto grow = calibrated.Step(tuner_test::Observe({{0, 32}}, 2.0 * c, {96, 128}));
  ASSERT_FALSE(grow.empty());
  EXPECT_EQ(grow[0].kind, TuneAction::Kind::kResize);
  EXPECT_GT(grow[0].sms, 32);
}

TEST(Tuner, ChecksCapacityAsThePlannerDoes) {
  // A queue-checked plan's slice carries its planned rate by the tuner's own check too (no
  // Calibrate needed); 1.6x that rate grows it.
  PlanInput in;
  in.gpu.count = 4;
  in.models.push_back(
      {"vit", 900, 10, MakeSyntheticProfile(SyntheticFamily("vit_b16").value(), "H100", 132, 8)});
  const Plan plan = MakePlan(in, Policy::kTessera).value();
  ASSERT_EQ(plan.gpus_used(), 1);
  const Slice& s = plan.gpus[0].slices[0];
  const double free = 128 - s.sms;
  Tuner checked(in);
  for (int w = 0; w < 10; ++w)
    EXPECT_TRUE(checked.Step(tuner_test::Observe({{0, s.sms}}, 900, {free, 128})).empty()) << w;
  auto grow = checked.Step(tuner_test::Observe({{0, s.sms}}, 1.6 * 900, {free, 128}));
  ASSERT_FALSE(grow.empty());
  EXPECT_EQ(grow[0].kind, TuneAction::Kind::kResize);
  EXPECT_GT(grow[0].sms, s.sms);
  // Sized by the check: one granule less would not carry the rate at target_load.
  EXPECT_GE(grow[0].weight * checked.options().target_load, 1.6 * 900 - 1e-6);
}

TEST(Tuner, GrowsInPlaceThenSettles) {
  const auto in = OneModel(300, 20, LinearProfile("m"));
  Tuner t(in, tuner_test::ClosedForm());
  const double c = tuner_test::Cap(in, 32);
  auto acts = t.Step(tuner_test::Observe({{0, 32}}, 1.5 * c, {96, 128}));
  ASSERT_EQ(acts.size(), 1u);
  EXPECT_EQ(acts[0].kind, TuneAction::Kind::kResize);
  EXPECT_EQ(acts[0].slice, 0);
  EXPECT_EQ(std::fmod(acts[0].sms, 8.0), 0.0);
  EXPECT_GT(acts[0].sms, 32);
  // Sized so the rate is at most target_load of the new capacity, and no bigger than needed.
  EXPECT_GE(acts[0].weight * t.options().target_load, 1.5 * c);
  EXPECT_LT(tuner_test::Cap(in, acts[0].sms - 8) * t.options().target_load, 1.5 * c);
  EXPECT_NE(acts[0].why.find("rate near capacity"), std::string::npos) << acts[0].why;
  // Applied: the same rate on the bigger slice is inside the bands; nothing more happens.
  const double sms = acts[0].sms;
  for (int w = 0; w < 30; ++w)
    EXPECT_TRUE(t.Step(tuner_test::Observe({{0, sms}}, 1.5 * c, {128 - sms, 128})).empty()) << w;
}

TEST(Tuner, AddsAReplicaWhenItsGpuIsFull) {
  const auto in = OneModel(300, 20, LinearProfile("m"));
  Tuner t(in);
  const double c = tuner_test::Cap(in, 32);
  auto acts = t.Step(tuner_test::Observe({{0, 32}}, 1.5 * c, {0, 128}));
  ASSERT_GE(acts.size(), 1u);
  EXPECT_EQ(acts[0].kind, TuneAction::Kind::kAdd);
  EXPECT_EQ(acts[0].gpu, 1);
  EXPECT_GE(acts[0].weight + c, 1.5 * c / t.options().target_load * 0.999);
  // The old slice is routed by capacity from now on, like the new one.
  bool rerouted = false;
  for (const auto& a : acts) rerouted |= a.kind == TuneAction::Kind::kRoute && a.slice == 0;
  EXPECT_TRUE(rerouted);
}

TEST(Tuner, OpensAGpuOnlyOnEvidence) {
  // A full GPU and a rate just past capacity but within the slack capacity keeps
  // (max_utilization): no new GPU yet. Past the raw capacity, or after a missed window, it opens.
  const auto in = OneModel(300, 20, LinearProfile("m"));
  TunerOptions o = tuner_test::ClosedForm();
  o.grow_sigma = 0;
  const double c = tuner_test::Cap(in, 32);
  auto adds = [](const std::vector<TuneAction>& acts) {
    int n = 0;
    for (const auto& a : acts) n += a.kind == TuneAction::Kind::kAdd;
    return n;
  };
  Tuner waits(in, o);
  for (int w = 0; w < 5; ++w)
    EXPECT_EQ(adds(waits.Step(tuner_test::Observe({{0, 32}}, 1.05 * c, {0, 128}))), 0) << w;
  EXPECT_EQ(adds(waits.Step(tuner_test::Observe({{0, 32}}, 1.15 * c, {0, 128}))), 1);
  Tuner missed(in, o);
  auto obs = tuner_test::Observe({{0, 32}}, 1.05 * c, {0, 128});
  obs.slices[0].members[0].finished = 1000;
  obs.slices[0].members[0].within_slo = 900;
  EXPECT_EQ(adds(missed.Step(obs)), 1);
  o.open_on_evidence = false;
  Tuner eager(in, o);
  EXPECT_EQ(adds(eager.Step(tuner_test::Observe({{0, 32}}, 1.05 * c, {0, 128}))), 1);
}

TEST(Tuner, WithoutNewSlicesItOnlyResizesInPlace) {
  // add_slices off (tessera serve --tune): a full GPU gets no replica, a light one is not
  // consolidated; growth in place still happens where there is room.
  const auto in = OneModel(300, 20, LinearProfile("m"));
  TunerOptions o;
  o.add_slices = false;
  const double c = tuner_test::Cap(in, 32);
  Tuner full(in, o);
  for (int w = 0; w < 10; ++w)
    for (const auto& a : full.Step(tuner_test::Observe({{0, 32}}, 1.5 * c, {0, 128})))
      EXPECT_EQ(a.kind, TuneAction::Kind::kResize) << w << ": " << a.why;
  Tuner light(in, o);
  for (int w = 0; w < 10; ++w)
    for (const auto& a : light.Step(tuner_test::Observe({{0, 32}, {1, 32}}, 1.2 * c, {96, 96})))
      EXPECT_NE(a.kind, TuneAction::Kind::kAdd) << w << ": " << a.why;
  Tuner room(in, o);
  auto acts = room.Step(tuner_test::Observe({{0, 32}}, 1.5 * c, {96, 128}));
  ASSERT_EQ(acts.size(), 1u);
  EXPECT_EQ(acts[0].kind, TuneAction::Kind::kResize);
  EXPECT_GT(acts[0].sms, 32);
}

TEST(Tuner, ShrinksOnlyAfterConsecutiveLowWindowsAndOscillationDoesNothing) {
  const auto in = OneModel(300, 20, LinearProfile("m"));
  Tuner t(in, tuner_test::ClosedForm());
  const double c = tuner_test::Cap(in, 64);
  // A rate that swings between the bands every few windows never moves the slice.
  for (int w = 0; w < 60; ++w) {
    const double r = (w / 3) % 2 ? 0.95 * c : 0.55 * c;
    EXPECT_TRUE(t.Step(tuner_test::Observe({{0, 64}}, r, {64})).empty()) << w;
  }
  // Low windows interrupted by a normal one: the count starts again.
  for (int w = 0; w < 4; ++w)
    EXPECT_TRUE(t.Step(tuner_test::Observe({{0, 64}}, 0.2 * c, {64})).empty());
  EXPECT_TRUE(t.Step(tuner_test::Observe({{0, 64}}, 0.9 * c, {64})).empty());
  std::vector<TuneAction> acts;
  int w = 0;
  for (; w < 20 && acts.empty(); ++w) acts = t.Step(tuner_test::Observe({{0, 64}}, 0.2 * c, {64}));
  ASSERT_EQ(acts.size(), 1u);
  EXPECT_GE(w, t.options().shrink_windows);
  EXPECT_EQ(acts[0].kind, TuneAction::Kind::kResize);
  EXPECT_LT(acts[0].sms, 64);
  EXPECT_GE(acts[0].weight * t.options().target_load, 0.2 * c);
}

TEST(Tuner, ConsolidatesALightGpuMakeBeforeBreak) {
  const auto in = OneModel(300, 20, LinearProfile("m"));
  Tuner t(in, tuner_test::ClosedForm());
  const double c = tuner_test::Cap(in, 32);
  // Two GPUs holding 32 of 128 SMs each: one is emptied onto the other.
  auto acts = t.Step(tuner_test::Observe({{0, 32}, {1, 32}}, 1.2 * c, {96, 96}));
  ASSERT_EQ(acts.size(), 2u);
  EXPECT_EQ(acts[0].kind, TuneAction::Kind::kAdd);
  EXPECT_EQ(acts[0].sms, 32);
  EXPECT_EQ(acts[1].kind, TuneAction::Kind::kRemove);
  EXPECT_NE(acts[0].gpu, static_cast<int>(acts[1].gpu));
  EXPECT_NE(acts[0].why.find("consolidating"), std::string::npos) << acts[0].why;
  // Nothing to gain on a GPU holding more than consolidate_below: no move.
  Tuner t2(in, tuner_test::ClosedForm());
  EXPECT_TRUE(
      t2.Step(tuner_test::Observe({{0, 64}, {1, 64}}, 1.4 * tuner_test::Cap(in, 64), {64, 64}))
          .empty());
}

TEST(Tuner, RemovesASpareReplicaAndMissedSloGrows) {
  const auto in = OneModel(300, 20, LinearProfile("m"));
  TunerOptions no_moves = tuner_test::ClosedForm();
  no_moves.consolidate_below = 0;
  Tuner t(in, no_moves);
  const double c = tuner_test::Cap(in, 32);
  std::vector<TuneAction> acts;
  for (int w = 0; w < 10 && acts.empty(); ++w)
    acts = t.Step(tuner_test::Observe({{0, 32}, {1, 32}}, 0.3 * c, {96, 96}));
  ASSERT_FALSE(acts.empty());
  EXPECT_EQ(acts[0].kind, TuneAction::Kind::kRemove);
  // Attainment under the floor grows the slice even at a rate inside the bands.
  Tuner t2(in, tuner_test::ClosedForm());
  auto obs = tuner_test::Observe({{0, 32}}, 0.7 * c, {96});
  obs.slices[0].members[0].finished = 1000;
  obs.slices[0].members[0].within_slo = 900;
  acts = t2.Step(obs);
  ASSERT_FALSE(acts.empty());
  EXPECT_EQ(acts[0].kind, TuneAction::Kind::kResize);
  EXPECT_GT(acts[0].sms, 32);
  EXPECT_NE(acts[0].why.find("SLO attainment"), std::string::npos);
}

TEST(Tuner, AMissWithinCapacityStopsItShrinkingBackIntoMisses) {
  // Two replicas at 0.3x their capacity: the tuner removes one within a few windows. After a
  // window that missed the floor at that rate, the capacity is derated and nothing is removed.
  const auto in = OneModel(300, 20, LinearProfile("m"));
  const double c = tuner_test::Cap(in, 32);
  auto light = [&] { return tuner_test::Observe({{0, 32}, {1, 32}}, 0.6 * c, {96, 96}); };
  TunerOptions o = tuner_test::ClosedForm();
  o.consolidate_below = 0;
  Tuner plain(in, o), burnt(in, o);
  bool removed = false;
  for (int w = 0; w < 12; ++w)
    for (const auto& a : plain.Step(light())) removed |= a.kind == TuneAction::Kind::kRemove;
  EXPECT_TRUE(removed);
  auto missed = light();
  for (auto& s : missed.slices) {
    s.members[0].finished = 1000;
    s.members[0].within_slo = 900;
  }
  const auto grow = burnt.Step(missed);
  ASSERT_FALSE(grow.empty());
  EXPECT_NE(grow[0].why.find("SLO attainment"), std::string::npos) << grow[0].why;
  for (int w = 0; w < 12; ++w)
    for (const auto& a : burnt.Step(light()))
      EXPECT_NE(a.kind, TuneAction::Kind::kRemove) << w << ": " << a.why;
}

TEST(Gslice, SelfTuningFollowsItsRules) {
  // In the rate band, under SLO: p x (1 - headroom / SLO) = 0.5 x 0.2 = 0.10, after 5 in a row.
  GsliceSelfTuner g(0.5, 8, 64);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(g.OnBatch(2, 1, 1, 1000, 1000, 10).resize) << i;
  auto a = g.OnBatch(2, 1, 1, 1000, 1000, 10);
  EXPECT_TRUE(a.resize);
  EXPECT_NEAR(a.share, 0.10, 1e-9);
  // Arrivals 50% above service: p x 1.5, rounded to 5% steps.
  GsliceSelfTuner up(0.5, 8, 64);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(up.OnBatch(9, 1, 1, 1500, 1000, 10).resize);
  EXPECT_NEAR(up.OnBatch(9, 1, 1, 1500, 1000, 10).share, 0.75, 1e-9);
  // Different recommendations reset the count; changes under 3 points are ignored.
  GsliceSelfTuner mixed(0.5, 8, 64);
  for (int i = 0; i < 20; ++i)
    EXPECT_FALSE(mixed.OnBatch(9, 1, 1, i % 2 ? 1500 : 1200, 1000, 10).resize) << i;
  GsliceSelfTuner steady(0.5, 8, 64);
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(steady.OnBatch(9.9, 1, 1, 1050, 1000, 10).resize);
  // Batch limit: over SLO by 2 ms at 1 ms per request cuts 2; 5 ms of headroom adds 5.
  GsliceSelfTuner b(0.5, 8, 64);
  EXPECT_EQ(b.OnBatch(12, 4, 4, 1000, 1000, 10).max_batch, 6);
  EXPECT_EQ(b.OnBatch(5, 4, 4, 1000, 1000, 10).max_batch, 11);
  EXPECT_EQ(b.OnBatch(9.5, 4, 4, 1000, 1000, 10).max_batch, 11);  // within the 10% band
}

TEST(Gslice, AdmitsAtTheKneeOrWhatTheRateNeeds) {
  // LinearProfile's batch-1 latency 2 x 132 / s ms is within 10% of the whole GPU's only near
  // 100%: the knee is 95%.
  auto in = OneModel(100, 40, LinearProfile("m"));
  auto plan = MakePlan(in, Policy::kGslice).value();
  ASSERT_EQ(plan.gpus_used(), 1);
  ASSERT_EQ(plan.gpus[0].slices.size(), 1u);
  EXPECT_NEAR(plan.gpus[0].slices[0].sms, 0.95 * 132, 1e-9);
  EXPECT_TRUE(CheckPlan(in, plan).ok());
  // A flat profile (flat from 8 SMs; below the grid latency scales by work conservation) has
  // its knee at 10%; two such models share one GPU.
  std::vector<LatencyPoint> pts;
  for (int s : {8, 16, 32, 64, 132})
    for (int b = 1; b <= 64; b *= 2) pts.push_back({s, b, 0.1 * (1 + b), 0, 0.1 * (1 + b)});
  auto flat = Profile::FromPoints("f", "test", 132, 1 << 20, 0.3, pts, "t").value();
  PlanInput two;
  two.gpu.count = 4;
  two.models.push_back({"a", 50, 20, flat});
  two.models.push_back({"b", 50, 20, flat});
  two.models[1].profile.model.assign(1, 'b');  // (= "b" trips GCC 12's -Wrestrict)
  plan = MakePlan(two, Policy::kGslice).value();
  ASSERT_EQ(plan.gpus_used(), 1);
  EXPECT_EQ(plan.gpus[0].slices.size(), 2u);
  EXPECT_NEAR(plan.gpus[0].slices[0].sms, 0.10 * 132, 1e-9);
  EXPECT_TRUE(CheckPlan(two, plan).ok());
}

}  // namespace
}  // namespace tessera::planner

namespace tessera::planner {
namespace {

TEST(Tuner, OneWindowsPoissonNoiseDoesNotGrowASlice) {
  // A window's count at rate r has standard deviation sqrt(r) per second: 1.5 of them past
  // capacity is noise the plan's slack absorbs; 3.5 is a rise. grow_sigma 0 grows at either.
  const auto in = OneModel(300, 20, LinearProfile("m"));
  const double c = tuner_test::Cap(in, 32);
  const double sd = std::sqrt(c);
  Tuner t(in, tuner_test::ClosedForm());
  for (int w = 0; w < 10; ++w)
    EXPECT_TRUE(t.Step(tuner_test::Observe({{0, 32}}, c + 1.5 * sd, {96})).empty()) << w;
  EXPECT_FALSE(t.Step(tuner_test::Observe({{0, 32}}, c + 3.5 * sd, {96})).empty());
  TunerOptions any = tuner_test::ClosedForm();
  any.grow_sigma = 0;
  Tuner eager(in, any);
  EXPECT_FALSE(eager.Step(tuner_test::Observe({{0, 32}}, c + 1.5 * sd, {96})).empty());
}

TEST(Tuner, LearnedTrustDelaysGrowthUntilTheSloSlips) {
  const auto in = OneModel(300, 20, LinearProfile("m"));
  const double c = tuner_test::Cap(in, 32);
  // Default (no trust): 1.05x capacity grows at once (with any excess counted: grow_sigma 0).
  TunerOptions o = tuner_test::ClosedForm();
  o.grow_sigma = 0;
  Tuner plain(in, o);
  EXPECT_FALSE(plain.Step(tuner_test::Observe({{0, 32}}, 1.05 * c, {96})).empty());
  // With trust: windows that hold the SLO just under capacity build it up...
  o.max_trust = 1.3;
  Tuner t(in, o);
  for (int w = 0; w < 10; ++w)
    ASSERT_TRUE(t.Step(tuner_test::Observe({{0, 32}}, 0.99 * c, {96})).empty()) << w;
  // ...so 1.05x is carried as long as the SLO holds...
  for (int w = 0; w < 5; ++w)
    EXPECT_TRUE(t.Step(tuner_test::Observe({{0, 32}}, 1.05 * c, {96})).empty()) << w;
  // ...and a window that slips takes the trust back: the slice grows.
  auto obs = tuner_test::Observe({{0, 32}}, 1.05 * c, {96});
  obs.slices[0].members[0].finished = 1000;
  obs.slices[0].members[0].within_slo = 995;
  auto acts = t.Step(obs);
  ASSERT_FALSE(acts.empty());
  EXPECT_EQ(acts[0].kind, TuneAction::Kind::kResize);
  EXPECT_GT(acts[0].sms, 32);
}

}  // namespace
}  // namespace tessera::planner

namespace tessera::planner {
namespace {

// Regression: a lone Nexus session whose cycle is exactly SLO - l(b) failed its own merge by
// one rounding step and its batches were read past the end (a crash in the headroom search).
TEST(Nexus, EveryResidualSessionIsPlacedAcrossHeadrooms) {
  PlanInput base;
  base.gpu.count = 1000;
  for (const auto& w : SyntheticWorkload(100, 1.5e5, 3, 132))
    base.models.push_back(
        {w.name, w.rate_rps, w.slo_ms, MakeSyntheticProfile(w.params, "H100", 132, 8)});
  // The headrooms `tessera simulate --target` tries: 0.5 + k / 64 up to 2.5.
  for (int k = 0; k <= 128; ++k) {
    const double h = 0.5 + k / 64.0;
    PlanInput in = base;
    for (auto& m : in.models) m.rate_rps *= h;
    auto plan = MakePlan(in, Policy::kNexus);
    ASSERT_TRUE(plan.ok());
    EXPECT_TRUE(plan->unplaced.empty()) << h << ": " << plan->unplaced[0].reason;
    EXPECT_TRUE(CheckPlan(in, *plan).ok()) << h << ": " << CheckPlan(in, *plan).message();
  }
}

}  // namespace
}  // namespace tessera::planner

namespace tessera::planner {
namespace {

TEST(Sizing, BurstyArrivalsGetSmallerLoadsPerBatch) {
  const detail::PoissonTable poisson(0.1, 64), bursty(0.1, 64, 2.0);
  for (int n : {1, 4, 16, 64, 200}) {
    EXPECT_LT(bursty.LambdaMax(n), poisson.LambdaMax(n)) << n;
    // lambda + z cv sqrt(lambda) = n + 1/2, z = 1.2816 for eps 0.1.
    const double l = bursty.LambdaMax(n);
    EXPECT_NEAR(l + 1.28155 * 2 * std::sqrt(l), n + 0.5, 1e-3) << n;
  }
  // cv <= 1 is Poisson.
  EXPECT_EQ(detail::PoissonTable(0.1, 64, 0.5).LambdaMax(8), poisson.LambdaMax(8));
  // The planner gives a bursty model more capacity for the same rate.
  auto in = OneModel(3000, 20, LinearProfile("m"));
  auto calm = MakePlan(in, Policy::kTessera).value();
  in.models[0].arrival_cv = 3;
  auto bursty_plan = MakePlan(in, Policy::kTessera).value();
  EXPECT_TRUE(CheckPlan(in, bursty_plan).ok());
  double calm_sms = 0, bursty_sms = 0;
  for (const auto& g : calm.gpus) calm_sms += g.sms_used;
  for (const auto& g : bursty_plan.gpus) bursty_sms += g.sms_used;
  EXPECT_GT(bursty_sms, calm_sms);
  // The field in plan inputs.
  auto parsed = ParsePlanInput(json::parse(R"({"models": [{"name": "a", "rate": 10, "slo_ms": 20,
      "synthetic": "resnet18", "arrival_cv": 2.5}]})"),
                               "p.json", ".");
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->models[0].arrival_cv, 2.5);
}

}  // namespace
}  // namespace tessera::planner
