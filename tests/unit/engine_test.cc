#include "tessera/engine/engine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "tessera/model/onnx_import.h"
#include "test_graphs.h"

namespace tessera {
namespace {

using testing::kF;
using testing::MakeModel;

Graph ResidualBlock() {
  auto g = ImportOnnx(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 8, 10, 10});
    auto c1 = b.Op("Conv", {x, b.Weight("w1", {8, 8, 3, 3}, -0.3f, 0.3f)},
                   {zoo::A("pads", std::vector<int64_t>{1, 1, 1, 1})});
    auto bn =
        b.Op("BatchNormalization", {c1, b.Weight("g", {8}, 0.5, 1), b.Weight("be", {8}, -0.1, 0.1),
                                    b.Weight("m", {8}, -0.1, 0.1), b.Weight("v", {8}, 0.5, 1.5)});
    auto r = b.Op("Relu", {bn});
    auto c2 = b.Op(
        "Conv", {r, b.Weight("w2", {8, 8, 1, 1}, -0.3f, 0.3f), b.Weight("b2", {8}, -0.1f, 0.1f)});
    auto y = b.Op("Relu", {b.Op("Add", {c2, x})});
    auto p = b.Op("GlobalAveragePool", {y});
    b.Output(b.Op("Flatten", {p}), kF, {1, 8});
  }));
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return std::move(g).value();
}

Tensor Ramp(const Shape& s) {
  Tensor t = Tensor::Allocate(DataType::kFloat32, s);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data<float>()[i] = std::sin(0.1f * static_cast<float>(i));
  return t;
}

TEST(CpuEngine, FusedAndUnfusedGraphsAgree) {
  Graph g = ResidualBlock();
  auto engine = CreateCpuEngine();
  CompileOptions fused, plain;
  fused.batch = plain.batch = 3;
  plain.optimize = false;
  auto a = engine->Compile(g, fused);
  auto b = engine->Compile(g, plain);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_GT((*a)->info().fused, 0);
  EXPECT_LT((*a)->info().nodes, (*b)->info().nodes);
  std::vector<Tensor> in{Ramp({3, 8, 10, 10})}, oa, ob;
  ASSERT_TRUE((*a)->Run(in, &oa).ok());
  ASSERT_TRUE((*b)->Run(in, &ob).ok());
  ASSERT_EQ(oa[0].shape(), (Shape{3, 8}));
  for (int64_t i = 0; i < oa[0].numel(); ++i)
    EXPECT_NEAR(oa[0].data<float>()[i], ob[0].data<float>()[i], 1e-5);
}

TEST(CpuEngine, ResidualThatIsAlsoTheConvInputIsNotOverwrittenInPlace) {
  // y = Relu(Conv(x) + x): the sum may not reuse x's buffer, the conv still reads it.
  auto g = ImportOnnx(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 8, 6, 6});
    auto c = b.Op("Conv", {x, b.Weight("w", {8, 8, 3, 3}, -0.3f, 0.3f)},
                  {zoo::A("pads", std::vector<int64_t>{1, 1, 1, 1})});
    b.Output(b.Op("Relu", {b.Op("Add", {c, x})}), kF, {1, 8, 6, 6});
  }));
  ASSERT_TRUE(g.ok());
  auto engine = CreateCpuEngine();
  CompileOptions plain;
  plain.optimize = false;
  auto a = engine->Compile(*g, {});
  auto b = engine->Compile(*g, plain);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->info().nodes, 1);  // everything fused into one conv
  std::vector<Tensor> in{Ramp({1, 8, 6, 6})}, oa, ob;
  for (int run = 0; run < 2; ++run) {  // a second run must see fresh inputs, not leftovers
    ASSERT_TRUE((*a)->Run(in, &oa).ok());
    ASSERT_TRUE((*b)->Run(in, &ob).ok());
    for (int64_t i = 0; i < oa[0].numel(); ++i)
      ASSERT_NEAR(oa[0].data<float>()[i], ob[0].data<float>()[i], 1e-5) << "run " << run;
  }
}

TEST(CpuEngine, WinogradConvMatchesDirectConvWithBiasResidualAndActivations) {
  // 3x3 stride-1 convs with 32 channels on 20x22 images: eligible for Winograd F(2x2,3x3).
  // Odd output width exercises the partial last tile; the residual Add and Relu, LeakyRelu and
  // Clip are fused in.
  auto g = ImportOnnx(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {2, 32, 20, 21});
    auto c = b.Op("Conv",
                  {x, b.Weight("w", {32, 32, 3, 3}, -0.2f, 0.2f), b.Weight("b", {32}, -0.1f, 0.1f)},
                  {zoo::A("pads", std::vector<int64_t>{1, 1, 1, 1})});
    auto y = b.Op("Relu", {b.Op("Add", {c, x})});
    auto c2 = b.Op("Conv", {y, b.Weight("w2", {40, 32, 3, 3}, -0.2f, 0.2f)},
                   {zoo::A("pads", std::vector<int64_t>{1, 1, 1, 1})});
    auto l = b.Op("LeakyRelu", {c2}, {zoo::A("alpha", 0.1f)});
    auto c3 = b.Op("Conv", {l, b.Weight("w3", {40, 40, 3, 3}, -0.2f, 0.2f)},
                   {zoo::A("pads", std::vector<int64_t>{1, 1, 1, 1})});
    auto clip = b.Op("Clip", {c3, b.ConstFloat("lo", -0.2f), b.ConstFloat("hi", 0.3f)});
    b.Output(clip, kF, {2, 40, 20, 21});
  }));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  auto engine = CreateCpuEngine();
  CompileOptions wino, direct;
  wino.batch = direct.batch = 2;
  wino.profile = true;
  direct.winograd = false;
  auto a = engine->Compile(*g, wino);
  auto b = engine->Compile(*g, direct);
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<Tensor> in{Ramp({2, 32, 20, 21})}, oa, ob;
  auto sa = (*a)->Run(in, &oa);
  ASSERT_TRUE(sa.ok()) << sa.ToString();
  auto sb = (*b)->Run(in, &ob);
  ASSERT_TRUE(sb.ok()) << sb.ToString();
  double max_ref = 0, max_diff = 0;
  for (int64_t i = 0; i < oa[0].numel(); ++i) {
    max_ref = std::max(max_ref, std::abs(static_cast<double>(ob[0].data<float>()[i])));
    max_diff = std::max(
        max_diff, std::abs(static_cast<double>(oa[0].data<float>()[i] - ob[0].data<float>()[i])));
  }
  EXPECT_GT(max_ref, 0.1);
  // Three chained Winograd convs in fp32 (measured 2.3e-5): the engine's 1e-4 bound.
  EXPECT_LE(max_diff / max_ref, 1e-4);
  EXPECT_EQ((*a)->OpProfileMs().count("Conv 3x3 (Winograd)"), 1u) << "no conv took Winograd";
}

TEST(CpuEngine, PackedGemmMatMulMatchesOneDnnWithBiasResidualAndRelu) {
  // y = Relu(MatMul(h, W) + b + x) with h = Relu(MatMul(x, W0)): both MatMuls have constant
  // weights; the second one fuses bias, the residual x and the Relu into its epilogue.
  auto g = ImportOnnx(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {2, 10, 40});
    auto h = b.Op("Relu", {b.Op("MatMul", {x, b.Weight("w0", {40, 72}, -0.2f, 0.2f)})});
    auto m = b.Op("MatMul", {h, b.Weight("w1", {72, 40}, -0.2f, 0.2f)});
    auto y = b.Op("Add", {b.Op("Add", {m, b.Weight("b1", {40}, -0.1f, 0.1f)}), x});
    b.Output(b.Op("Relu", {y}), kF, {2, 10, 40});
  }));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  auto engine = CreateCpuEngine();
  CompileOptions packed, onednn, plain;
  packed.batch = onednn.batch = plain.batch = 2;
  onednn.packed_gemm = false;
  plain.optimize = false;
  std::vector<Tensor> in{Ramp({2, 10, 40})};
  std::vector<std::vector<Tensor>> outs;
  for (const auto& o : {packed, onednn, plain}) {
    auto exe = engine->Compile(*g, o);
    ASSERT_TRUE(exe.ok()) << exe.status().ToString();
    outs.emplace_back();
    ASSERT_TRUE((*exe)->Run(in, &outs.back()).ok());
  }
  for (size_t v = 1; v < outs.size(); ++v)
    for (int64_t i = 0; i < outs[0][0].numel(); ++i)
      ASSERT_NEAR(outs[0][0].data<float>()[i], outs[v][0].data<float>()[i], 1e-5)
          << "variant " << v;
}

// Runs `g` optimized and unoptimized (every node as written) on the same input and checks they
// agree; returns the optimized executable's profile labels.
std::map<std::string, double> ExpectOptimizedMatchesPlain(const Graph& g, const Shape& in_shape,
                                                          bool packed_gemm = true) {
  auto engine = CreateCpuEngine();
  CompileOptions opt, plain;
  opt.profile = true;
  opt.packed_gemm = packed_gemm;
  opt.batch = plain.batch = in_shape[0];
  plain.optimize = false;
  std::vector<Tensor> in{Ramp(in_shape)}, a, b;
  auto x = engine->Compile(g, opt);
  auto y = engine->Compile(g, plain);
  EXPECT_TRUE(x.ok()) << x.status().ToString();
  EXPECT_TRUE(y.ok()) << y.status().ToString();
  if (!x.ok() || !y.ok()) return {};
  EXPECT_TRUE((*x)->Run(in, &a).ok());
  EXPECT_TRUE((*y)->Run(in, &b).ok());
  EXPECT_EQ(a[0].shape(), b[0].shape());
  for (int64_t i = 0; i < b[0].numel(); ++i)
    EXPECT_NEAR(a[0].data<float>()[i], b[0].data<float>()[i], 1e-5) << "element " << i;
  return (*x)->OpProfileMs();
}

TEST(CpuEngine, AttentionTransposesBecomeMatMulStrides) {
  // Attention's head split and merge: x [batch, seq, heads, dim] read as Q, K^T and V through
  // Transposes, and the result transposed back; on the CPU the four Transposes become strides of
  // the two MatMuls.
  auto g = ImportOnnx(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {2, 6, 4, 8});
    auto head = [&](const std::vector<int64_t>& perm) {
      return b.Op("Transpose", {x}, {zoo::A("perm", perm)});
    };
    auto s = b.Op("MatMul", {head({0, 2, 1, 3}), head({0, 2, 3, 1})});
    auto p = b.Op("Softmax", {s}, {zoo::A("axis", int64_t{-1})});
    auto o = b.Op("MatMul", {p, head({0, 2, 1, 3})});
    b.Output(b.Op("Transpose", {o}, {zoo::A("perm", std::vector<int64_t>{0, 2, 1, 3})}), kF,
             {2, 6, 4, 8});
  }));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const auto labels = ExpectOptimizedMatchesPlain(*g, {2, 6, 4, 8});
  EXPECT_EQ(labels.count("Transpose"), 0u) << "a Transpose was still copied";
  EXPECT_EQ(labels.count("MatMul"), 1u);
}

TEST(CpuEngine, UnusualTransposesAroundAMatMulStillComputeTheRightThing) {
  // Rank 5 with the batch axes shuffled too: right whether folded into strides (where oneDNN
  // has a fast kernel for them) or planned as copies (where it has not).
  auto g = ImportOnnx(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {3, 2, 4, 5, 6});
    auto a = b.Op("Transpose", {x}, {zoo::A("perm", std::vector<int64_t>{4, 1, 0, 3, 2})});
    auto w = b.Op("Transpose", {x}, {zoo::A("perm", std::vector<int64_t>{4, 1, 0, 2, 3})});
    auto y = b.Op("MatMul", {a, w});  // [6, 2, 3, 5, 4] x [6, 2, 3, 4, 5]
    b.Output(b.Op("Transpose", {y}, {zoo::A("perm", std::vector<int64_t>{2, 0, 3, 1, 4})}), kF,
             {3, 6, 5, 2, 5});
  }));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  // oneDNN 2.6 has only its reference kernel for these strides, so this case is planned as the
  // Transposes and a dense MatMul again.
  const auto labels = ExpectOptimizedMatchesPlain(*g, {3, 2, 4, 5, 6});
  EXPECT_EQ(labels.count("MatMul"), 1u);
}

TEST(CpuEngine, GeluFusedIntoAMatMulMatchesWithPackedGemmAndOneDnn) {
  // torch's erf GELU after a MatMul with constant weights: fused into the packed GEMM's
  // epilogue, or split off again after oneDNN's MatMul.
  auto g = ImportOnnx(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 7, 40});
    auto h = b.Op("Add", {b.Op("MatMul", {x, b.Weight("w", {40, 50}, -0.5f, 0.5f)}),
                          b.Weight("bias", {50}, -0.5f, 0.5f)});
    auto erf = b.Op("Erf", {b.Op("Div", {h, b.ConstFloat("sqrt2", std::sqrt(2.0f))})});
    auto gelu = b.Op("Mul", {b.Op("Mul", {h, b.Op("Add", {erf, b.ConstFloat("one", 1.0f)})}),
                             b.ConstFloat("half", 0.5f)});
    b.Output(gelu, kF, {1, 7, 50});
  }));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  for (bool packed : {true, false}) {
    const auto labels = ExpectOptimizedMatchesPlain(*g, {1, 7, 40}, packed);
    EXPECT_EQ(labels.count("Gelu"), packed ? 0u : 1u) << (packed ? "packed" : "oneDNN");
  }
}

TEST(CpuEngine, CompilesOfOneModelShareDerivedWeightsThroughTheConstantCache) {
  Graph g = ResidualBlock();  // BatchNorm folding + conv weight repacking
  auto cache = std::make_shared<ConstantCache>(g);
  auto engine = CreateCpuEngine();
  CompileOptions o;
  o.constants = cache;
  o.batch = 1;
  auto a = engine->Compile(g, o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  const size_t entries = cache->entries(), bytes = cache->bytes();
  EXPECT_GT(entries, 0u);
  o.batch = 3;
  auto b = engine->Compile(g, o);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(cache->bytes(), bytes) << "the batch-3 compile repacked weights again";
  // Sharing changes nothing in the results.
  CompileOptions plain;
  plain.batch = 3;
  auto c = engine->Compile(g, plain);
  ASSERT_TRUE(c.ok());
  std::vector<Tensor> in{Ramp({3, 8, 10, 10})}, ob, oc;
  ASSERT_TRUE((*b)->Run(in, &ob).ok());
  ASSERT_TRUE((*c)->Run(in, &oc).ok());
  for (int64_t i = 0; i < ob[0].numel(); ++i)
    EXPECT_EQ(ob[0].data<float>()[i], oc[0].data<float>()[i]);
}

TEST(ConstantCache, DoesNotCacheDerivationsOfUnstableTensors) {
  Graph g = ResidualBlock();
  ConstantCache cache(g);
  Tensor temp = Tensor::Allocate(DataType::kFloat32, {4});
  int made = 0;
  auto make = [&] {
    ++made;
    return Tensor::Allocate(DataType::kFloat32, {4});
  };
  cache.GetOrMake("t", {&temp}, make);
  cache.GetOrMake("t", {&temp}, make);
  EXPECT_EQ(made, 2);  // a temporary's address may be reused: never a key
  const Tensor& w = g.initializers.begin()->second;
  cache.GetOrMake("t", {&w}, make);
  cache.GetOrMake("t", {&w}, make);
  cache.GetOrMake("other tag", {&w}, make);
  EXPECT_EQ(made, 4);
  EXPECT_EQ(cache.entries(), 2u);
}

TEST(CpuEngine, ReportsPeakActivationMemoryBelowNoReuse) {
  auto exe = CreateCpuEngine()->Compile(ResidualBlock(), {});
  ASSERT_TRUE(exe.ok());
  const auto& info = (*exe)->info();
  EXPECT_GT(info.activation_bytes, 0u);
  EXPECT_LE(info.activation_bytes, info.activation_bytes_no_reuse);
  EXPECT_GT(info.weight_bytes, 0u);
}

TEST(CpuEngine, RejectsWrongInputsByName) {
  auto exe = CreateCpuEngine()->Compile(ResidualBlock(), {});
  ASSERT_TRUE(exe.ok());
  std::vector<Tensor> out;
  Status st = (*exe)->Run({Ramp({1, 8, 10, 9})}, &out);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'x'"), std::string::npos);
  EXPECT_NE(st.message().find("[1,8,10,10]"), std::string::npos);
  st = (*exe)->Run({Tensor::Allocate(DataType::kInt64, {1, 8, 10, 10})}, &out);
  EXPECT_NE(st.message().find("FP32"), std::string::npos);
  EXPECT_EQ((*exe)->Run({}, &out).code(), StatusCode::kInvalidArgument);
}

TEST(CpuEngine, DynamicNonBatchDimNeedsAShape) {
  onnx::ModelProto m;
  m.ParseFromString(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 4});
    b.Output(b.Op("Relu", {x}), kF, {1, 4});
  }));
  m.mutable_graph()
      ->mutable_input(0)
      ->mutable_type()
      ->mutable_tensor_type()
      ->mutable_shape()
      ->mutable_dim(1)
      ->set_dim_param("seq");
  m.mutable_graph()
      ->mutable_output(0)
      ->mutable_type()
      ->mutable_tensor_type()
      ->mutable_shape()
      ->mutable_dim(1)
      ->set_dim_param("seq");
  auto g = ImportOnnx(m.SerializeAsString());
  ASSERT_TRUE(g.ok());
  auto engine = CreateCpuEngine();
  auto r = engine->Compile(*g, {});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("seq"), std::string::npos);
  CompileOptions o;
  o.input_shapes["x"] = {2, 7};
  EXPECT_TRUE(engine->Compile(*g, o).ok());
}

TEST(CpuEngine, DeclaredOutputShapeMismatchIsInvalidArgument) {
  auto g = ImportOnnx(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 4});
    b.Output(b.Op("Relu", {x}), kF, {1, 5});
  }));
  ASSERT_TRUE(g.ok());
  auto r = CreateCpuEngine()->Compile(*g, {});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("inconsistent"), std::string::npos);
}

TEST(CpuEngine, OutOfRangeGatherIndexFailsTheRunNotTheProcess) {
  auto g = ImportOnnx(MakeModel([](zoo::GraphBuilder& b) {
    auto ids = b.Input("ids", onnx::TensorProto::INT64, {1, 3});
    b.Output(b.Op("Gather", {b.Weight("emb", {10, 4}, -1, 1), ids}), kF, {1, 3, 4});
  }));
  ASSERT_TRUE(g.ok());
  auto exe = CreateCpuEngine()->Compile(*g, {});
  ASSERT_TRUE(exe.ok());
  Tensor ids = Tensor::Allocate(DataType::kInt64, {1, 3});
  ids.data<int64_t>()[1] = 99;
  std::vector<Tensor> out;
  Status st = (*exe)->Run({ids}, &out);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("99"), std::string::npos);
  ids.data<int64_t>()[1] = 9;
  EXPECT_TRUE((*exe)->Run({ids}, &out).ok());
}

TEST(LatencyProfile, InterpolatesAndExtrapolates) {
  LatencyProfile p;
  p.latency_us = {{1, 100}, {4, 250}, {8, 450}};
  EXPECT_DOUBLE_EQ(*p.LatencyUs(1), 100);
  EXPECT_DOUBLE_EQ(*p.LatencyUs(2), 150);
  EXPECT_DOUBLE_EQ(*p.LatencyUs(6), 350);
  EXPECT_DOUBLE_EQ(*p.LatencyUs(16), 850);
  EXPECT_FALSE(p.LatencyUs(0).ok());
}

TEST(LatencyProfile, ParsesJsonAndRejectsBadFiles) {
  auto p = LatencyProfile::FromJson(R"({"latency_us": {"1": 120, "8": 400}})");
  ASSERT_TRUE(p.ok());
  EXPECT_DOUBLE_EQ(*p->LatencyUs(8), 400);
  EXPECT_FALSE(LatencyProfile::FromJson("{").ok());
  EXPECT_FALSE(LatencyProfile::FromJson(R"({"latency_us": {"x": 1}})").ok());
  EXPECT_FALSE(LatencyProfile::FromJson(R"({"latency_us": {"2": -5}})").ok());
  EXPECT_FALSE(LatencyProfile::FromJson(R"({"other": 1})").ok());
}

TEST(SimEngine, TakesProfileTimeOnTheClockAndComputesShapes) {
  ManualClock clock(1000);
  LatencyProfile p;
  p.latency_us = {{1, 100}, {8, 450}};
  auto exe = CreateSimEngine(p, &clock)->Compile(ResidualBlock(), [] {
    CompileOptions o;
    o.batch = 8;
    return o;
  }());
  ASSERT_TRUE(exe.ok()) << exe.status().ToString();
  std::vector<Tensor> out;
  ASSERT_TRUE((*exe)->Run({Ramp({8, 8, 10, 10})}, &out).ok());
  EXPECT_EQ(clock.NowNs(), 1000 + 450 * 1000);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].shape(), (Shape{8, 8}));
}

}  // namespace
}  // namespace tessera
