// The CUDA backend's lowering, checked without a GPU: lowered Programs run on the host
// interpreter (same instruction semantics and scalar math as the device kernels) and must match
// the CPU engine.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/cuda/program.h"
#include "engine/cuda/reference.h"
#include "engine/prepare.h"
#include "tessera/engine/engine.h"
#include "tessera/model/onnx_import.h"
#include "tessera/zoo/zoo.h"
#include "test_graphs.h"

namespace tessera {
namespace {

using testing::kF;
using testing::MakeModel;
using zoo::A;

constexpr int kI64 = onnx::TensorProto::INT64;

Tensor MakeInput(const TensorSpec& s) {
  Tensor t = Tensor::Allocate(s.dtype, s.shape);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (s.dtype == DataType::kFloat32)
      t.data<float>()[i] = std::sin(0.37f * static_cast<float>(i) + 0.1f);
    else if (s.dtype == DataType::kInt64)
      t.data<int64_t>()[i] = s.name.find("mask") != std::string::npos ? (i % 7 != 6) : i % 50;
    else if (s.dtype == DataType::kBool)
      t.data<uint8_t>()[i] = i % 3 == 0;
  }
  return t;
}

// Lowers `g` at `batch`, runs the Program on the host and the CPU engine on the same inputs,
// and returns the worst max|d| / max|ref| over the outputs.
double CompareWithCpu(const Graph& g, int64_t batch, cuda::Program* keep = nullptr) {
  CompileOptions o;
  o.batch = batch;
  auto prepared = PrepareGraph(g, o);
  EXPECT_TRUE(prepared.ok()) << prepared.status().ToString();
  if (!prepared.ok()) return 1e9;
  auto prog = cuda::LowerToProgram(std::move(prepared).value());
  EXPECT_TRUE(prog.ok()) << prog.status().ToString();
  if (!prog.ok()) return 1e9;
  auto cpu = CreateCpuEngine(1)->Compile(g, o);
  EXPECT_TRUE(cpu.ok()) << cpu.status().ToString();
  if (!cpu.ok()) return 1e9;
  std::vector<Tensor> inputs;
  for (const auto& s : prog->info.inputs) inputs.push_back(MakeInput(s));
  std::vector<Tensor> got, want;
  Status st = cuda::RunOnHost(*prog, inputs, &got);
  EXPECT_TRUE(st.ok()) << st.ToString();
  st = (*cpu)->Run(inputs, &want);
  EXPECT_TRUE(st.ok()) << st.ToString();
  if (got.size() != want.size()) return 1e9;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].shape(), want[i].shape());
    EXPECT_EQ(got[i].dtype(), want[i].dtype());
    if (got[i].shape() != want[i].shape() || got[i].dtype() != want[i].dtype()) return 1e9;
    double diff = 0, ref = 0;
    for (int64_t k = 0; k < got[i].numel(); ++k) {
      const double a = got[i].GetAsDouble(k), b = want[i].GetAsDouble(k);
      diff = std::max(diff, std::fabs(a - b));
      ref = std::max(ref, std::fabs(b));
    }
    worst = std::max(worst, diff / std::max(ref, 1e-12));
  }
  if (keep) *keep = std::move(prog).value();
  return worst;
}

Graph Import(const std::string& bytes) {
  auto g = ImportOnnx(bytes);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return std::move(g).value();
}

TEST(CudaLower, MergeDimsCollapsesContiguousRunsAndKeepsBroadcasts) {
  std::vector<int64_t> shape{2, 3, 4}, out{12, 4, 1}, in{0, 4, 1};
  cuda::MergeDims(&shape, {&out, &in});
  // dims 1 and 2 merge for both; dim 0 broadcasts for `in`, so it stays apart.
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 12}));
  EXPECT_EQ(out, (std::vector<int64_t>{12, 1}));
  EXPECT_EQ(in, (std::vector<int64_t>{0, 1}));

  std::vector<int64_t> s2{1, 5, 1}, a{5, 1, 1};
  cuda::MergeDims(&s2, {&a});
  EXPECT_EQ(s2, (std::vector<int64_t>{5}));
  EXPECT_EQ(a, (std::vector<int64_t>{1}));

  std::vector<int64_t> s3{1, 1}, b{1, 1};
  cuda::MergeDims(&s3, {&b});
  EXPECT_EQ(s3, (std::vector<int64_t>{1}));

  // A transpose does not merge: the input walks dim 0 with stride 1 and dim 1 with stride 3.
  std::vector<int64_t> s4{4, 3}, o4{3, 1}, i4{1, 4};
  cuda::MergeDims(&s4, {&o4, &i4});
  EXPECT_EQ(s4, (std::vector<int64_t>{4, 3}));
}

TEST(CudaLower, ConvolutionsAndPoolsMatchTheCpuEngine) {
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 4, 11, 9});
    // Folded BatchNorm, fused Relu and residual, SAME_UPPER with an even kernel (asymmetric pads),
    // grouped and dilated convolutions, pools with ceil mode and count_include_pad.
    auto c1 = b.Op("Conv", {x, b.Weight("w1", {8, 4, 3, 3}, -0.3f, 0.3f)},
                   {A("pads", std::vector<int64_t>{1, 1, 1, 1})});
    auto bn =
        b.Op("BatchNormalization", {c1, b.Weight("g", {8}, 0.5, 1), b.Weight("be", {8}, -0.1, 0.1),
                                    b.Weight("m", {8}, -0.1, 0.1), b.Weight("v", {8}, 0.5, 1.5)});
    auto r = b.Op("Relu", {bn});
    auto c2 = b.Op("Conv",
                   {r, b.Weight("w2", {8, 2, 3, 3}, -0.3f, 0.3f), b.Weight("b2", {8}, -0.1f, 0.1f)},
                   {A("group", int64_t{4}), A("dilations", std::vector<int64_t>{2, 1}),
                    A("pads", std::vector<int64_t>{2, 1, 2, 1})});
    auto sum = b.Op("Relu", {b.Op("Add", {c2, r})});
    auto c3 = b.Op("Conv", {sum, b.Weight("w3", {6, 8, 2, 2}, -0.3f, 0.3f)},
                   {zoo::As("auto_pad", "SAME_UPPER"), A("strides", std::vector<int64_t>{2, 2})});
    auto hs = b.Op("HardSwish", {c3});
    auto mp = b.Op("MaxPool", {hs},
                   {A("kernel_shape", std::vector<int64_t>{3, 3}),
                    A("strides", std::vector<int64_t>{2, 2}), A("ceil_mode", int64_t{1})});
    auto ap =
        b.Op("AveragePool", {hs},
             {A("kernel_shape", std::vector<int64_t>{3, 3}),
              A("pads", std::vector<int64_t>{1, 1, 1, 1}), A("count_include_pad", int64_t{1})});
    auto ap2 = b.Op("AveragePool", {hs},
                    {A("kernel_shape", std::vector<int64_t>{2, 2}),
                     A("pads", std::vector<int64_t>{1, 0, 0, 1})});
    b.Output(b.Op("Flatten", {b.Op("GlobalAveragePool", {ap})}), kF, {1, 6});
    b.Output(mp, kF, {1, 6, 3, 2});
    b.Output(ap2, kF, {1, 6, 6, 5});
    // An unfused BatchNormalization (its input is a graph input).
    b.Output(
        b.Op("BatchNormalization", {x, b.Weight("g2", {4}, 0.5, 1), b.Weight("be2", {4}, -0.1, 0.1),
                                    b.Weight("m2", {4}, -0.1, 0.1), b.Weight("v2", {4}, 0.5, 1.5)}),
        kF, {1, 4, 11, 9});
  }));
  EXPECT_LE(CompareWithCpu(g, 1), 1e-4);
  EXPECT_LE(CompareWithCpu(g, 3), 1e-4);
}

TEST(CudaLower, MatMulsNormalizationsAndDataMovementMatchTheCpuEngine) {
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 6, 8});
    auto ids = b.Input("ids", kI64, {1, 6});
    auto emb = b.Op("Gather", {b.Weight("table", {50, 8}, -1, 1), ids});
    auto h = b.Op("Add", {x, emb});
    auto ln = b.Op("LayerNormalization",
                   {h, b.Weight("lg", {8}, 0.5, 1.5), b.Weight("lb", {8}, -0.2, 0.2)},
                   {zoo::Af("epsilon", 1e-5f)});
    // Fused bias + scale-free MatMul, then a batched attention-like product with a transpose.
    auto q = b.Op("Add", {b.Op("MatMul", {ln, b.Weight("wq", {8, 8}, -0.5, 0.5)}),
                          b.Weight("bq", {8}, -0.1, 0.1)});
    auto qt = b.Op("Transpose", {b.Op("Reshape", {q, b.ConstInts("s1", {0, 6, 2, 4})})},
                   {A("perm", std::vector<int64_t>{0, 2, 1, 3})});
    auto kt = b.Op("Transpose", {qt}, {A("perm", std::vector<int64_t>{0, 1, 3, 2})});
    auto scores = b.Op("Div", {b.Op("MatMul", {qt, kt}), b.ConstFloat("d", 2.0f)});
    auto probs = b.Op("Softmax", {scores}, {A("axis", int64_t{-1})});
    auto ctx = b.Op("MatMul", {probs, qt});
    auto merged =
        b.Op("Reshape", {b.Op("Transpose", {ctx}, {A("perm", std::vector<int64_t>{0, 2, 1, 3})}),
                         b.ConstInts("s2", {0, 6, 8})});
    // Residual fused into a MatMul; a Gemm with transB and a broadcast C.
    auto o = b.Op("Add", {b.Op("MatMul", {merged, b.Weight("wo", {8, 8}, -0.5, 0.5)}), h});
    auto flat = b.Op("Flatten", {o}, {A("axis", int64_t{1})});
    auto gm =
        b.Op("Gemm", {flat, b.Weight("wg", {5, 48}, -0.2, 0.2), b.Weight("cg", {1, 5}, -1, 1)},
             {A("transB", int64_t{1}), zoo::Af("alpha", 0.5f), zoo::Af("beta", 2.0f)});
    b.Output(b.Op("Gelu", {gm}), kF, {1, 5});
    // Slices with steps, Concat, Split, Expand, Tile, Pad, Where, comparisons, Cast, reductions.
    auto sl = b.Op("Slice", {o, b.ConstInts("st", {5, 1}), b.ConstInts("en", {-100, 8}),
                             b.ConstInts("ax", {1, 2}), b.ConstInts("sp", {-2, 3})});
    auto cat = b.Op("Concat", {sl, sl}, {A("axis", int64_t{2})});
    auto parts = b.Op("Split", {o, b.ConstInts("sz", {3, 5})}, {A("axis", int64_t{2})}, "split", 2);
    auto ex = b.Op("Expand", {b.Weight("e", {1, 1, 3}, -1, 1), b.ConstInts("es", {2, 4, 3})});
    auto tl = b.Op("Tile", {parts, b.ConstInts("reps", {1, 1, 2})});
    auto pd = b.Op("Pad", {sl, b.ConstInts("pads", {0, 1, 0, 0, -1, 2}), b.ConstFloat("pv", 7.0f)});
    auto mask = b.Op("Greater", {o, b.ConstFloat("z", 0.0f)});
    auto wh = b.Op("Where", {mask, o, b.Op("Mul", {o, b.ConstFloat("k", 0.1f)})});
    auto cast = b.Op("Cast", {b.Op("Mul", {o, b.ConstFloat("k2", 3.0f)})}, {A("to", int64_t{7})});
    auto rm =
        b.Op("ReduceMean", {wh}, {A("axes", std::vector<int64_t>{1}), A("keepdims", int64_t{0})});
    auto rs = b.Op("ReduceSum", {o, b.ConstInts("rax", {2})}, {A("keepdims", int64_t{1})});
    auto pw = b.Op("Pow", {b.Op("Abs", {o}), b.ConstFloat("pe", 1.5f)});
    b.Output(cat, kF, {1, 3, 6});
    b.Output(ex, kF, {2, 4, 3});
    b.Output(tl, kF, {1, 6, 6});
    b.Output(pd, kF, {1, 3, 5});
    b.Output(cast, kI64, {1, 6, 8});
    b.Output(rm, kF, {1, 8});
    b.Output(rs, kF, {1, 6, 1});
    b.Output(pw, kF, {1, 6, 8});
    b.Output("split_out1", kF, {1, 6, 5});
  }));
  EXPECT_LE(CompareWithCpu(g, 1), 1e-4);
  EXPECT_LE(CompareWithCpu(g, 2), 1e-4);
}

TEST(CudaLower, ZooModelsMatchTheCpuEngine) {
  for (const auto& [name, batch] : std::vector<std::pair<std::string, int64_t>>{
           {"tiny_mlp", 3}, {"bert_small", 2}, {"mobilenet_v2", 1}}) {
    auto m = zoo::Build(name);
    ASSERT_TRUE(m.ok());
    Graph g = Import(m->onnx_bytes);
    cuda::Program prog;
    EXPECT_LE(CompareWithCpu(g, batch, &prog), 1e-4) << name;
    // The arena reuses memory: less than every activation side by side.
    if (name != "tiny_mlp") {
      EXPECT_LT(prog.arena_bytes, prog.naive_bytes) << name;
    }
    EXPECT_GT(prog.info.weight_bytes, 0u) << name;
  }
}

TEST(CudaLower, GatherIndexOutOfRangeIsABadInputNotACrash) {
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto ids = b.Input("ids", kI64, {1, 4});
    b.Output(b.Op("Gather", {b.Weight("table", {10, 3}, -1, 1), ids}), kF, {1, 4, 3});
  }));
  auto prepared = PrepareGraph(g, CompileOptions{});
  ASSERT_TRUE(prepared.ok());
  auto prog = cuda::LowerToProgram(std::move(prepared).value());
  ASSERT_TRUE(prog.ok()) << prog.status().ToString();
  Tensor ids = Tensor::Allocate(DataType::kInt64, {1, 4});
  ids.data<int64_t>()[0] = 3;
  ids.data<int64_t>()[1] = -1;  // counts from the end: row 9
  ids.data<int64_t>()[2] = 9;
  std::vector<Tensor> out;
  ASSERT_TRUE(cuda::RunOnHost(*prog, {ids}, &out).ok());
  ids.data<int64_t>()[3] = 10;
  Status st = cuda::RunOnHost(*prog, {ids}, &out);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("out of range"), std::string::npos) << st.ToString();
}

TEST(CudaLower, AnOpTheBackendLacksIsNamedWithItsNode) {
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 2, 4, 4});
    b.Output(b.Op("Resize", {x, "", b.Weight("sc", {4}, 1, 1)}, {zoo::As("mode", "nearest")},
                  "upsample"),
             kF, {1, 2, 4, 4});
  }));
  auto prepared = PrepareGraph(g, CompileOptions{});
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  auto prog = cuda::LowerToProgram(std::move(prepared).value());
  ASSERT_FALSE(prog.ok());
  EXPECT_EQ(prog.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(prog.status().message().find("Resize"), std::string::npos);
  EXPECT_NE(prog.status().message().find("upsample"), std::string::npos);
}

}  // namespace
}  // namespace tessera
