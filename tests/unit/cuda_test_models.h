// Models and a comparison helper shared by the CUDA backend's tests: the host-interpreter tests
// (unit/cuda_lower_test.cc, every machine) and the GPU tests (gpu/cuda_engine_test.cc).
#pragma once

#include <gtest/gtest.h>

#include <cmath>

#include "tessera/engine/engine.h"
#include "tessera/model/onnx_import.h"
#include "test_graphs.h"

namespace tessera::testing {

constexpr int kI64 = onnx::TensorProto::INT64;

// Deterministic inputs: smooth floats, small int64 ids (1s and some 0s for "mask" inputs).
inline Tensor MakeInput(const TensorSpec& s) {
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

inline Graph Import(const std::string& bytes) {
  auto g = ImportOnnx(bytes);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return std::move(g).value();
}

// Compiles `g` at `batch` on `engine` and on the CPU engine, runs both on the same inputs and
// returns the worst max|d| / max|ref| over the outputs (1e9 when something fails).
inline double CompareWithCpu(Engine& engine, const Graph& g, int64_t batch) {
  CompileOptions o;
  o.batch = batch;
  auto test = engine.Compile(g, o);
  EXPECT_TRUE(test.ok()) << test.status().ToString();
  auto cpu = CreateCpuEngine(1)->Compile(g, o);
  EXPECT_TRUE(cpu.ok()) << cpu.status().ToString();
  if (!test.ok() || !cpu.ok()) return 1e9;
  std::vector<Tensor> inputs;
  for (const auto& s : (*test)->info().inputs) inputs.push_back(MakeInput(s));
  std::vector<Tensor> got, want;
  Status st = (*test)->Run(inputs, &got);
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
  return worst;
}

// Convolutions: folded and unfolded BatchNorm, fused Relu and residual, SAME_UPPER with an even
// kernel (asymmetric pads), grouped and dilated convolutions, pools with ceil mode and
// count_include_pad, asymmetric pool pads.
inline Graph ConvAndPoolMix() {
  using zoo::A;
  return Import(MakeModel([](zoo::GraphBuilder& b) {
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
}

// Transformer-like: Gather embedding, LayerNorm, MatMuls with fused bias / scale / residual,
// batched products with transposes, Softmax, Gemm with transB and a broadcast C, GELU; then
// Slice with negative steps, Concat, Split, Expand, Tile, Pad with cropping, Where, comparisons,
// Cast, reductions and Pow.
inline Graph MatMulAndMovementMix() {
  using zoo::A;
  return Import(MakeModel([](zoo::GraphBuilder& b) {
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
    // Batch dims broadcast on both sides: [B, 1, 6, 8] x [3, 8, 4] -> [B, 3, 6, 4].
    auto un = b.Op("Unsqueeze", {ln, b.ConstInts("ua", {1})});
    b.Output(b.Op("MatMul", {un, b.Weight("wb", {3, 8, 4}, -0.5, 0.5)}), kF, {1, 3, 6, 4});
  }));
}

// Resize: nearest with scales (asymmetric, floor), linear with sizes (align_corners), linear
// down / up with fractional scales (half_pixel), nearest with the default modes.
inline Graph ResizeMix() {
  using zoo::A;
  using zoo::As;
  return Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 2, 4, 6}, /*batch_dynamic=*/false);
    auto floats = [&](const std::string& name, std::vector<int64_t> v, float div) {
      return b.Op("Div", {b.Op("Cast", {b.ConstInts(name, v)}, {A("to", int64_t{1})}),
                          b.ConstFloat(name + "_d", div)});
    };
    b.Output(
        b.Op("Resize", {x, "", floats("s1", {1, 1, 2, 2}, 1)},
             {As("coordinate_transformation_mode", "asymmetric"), As("nearest_mode", "floor")}),
        kF, {1, 2, 8, 12}, false);
    b.Output(b.Op("Resize", {x, "", "", b.ConstInts("sz", {1, 2, 7, 5})},
                  {As("mode", "linear"), As("coordinate_transformation_mode", "align_corners")}),
             kF, {1, 2, 7, 5}, false);
    b.Output(b.Op("Resize", {x, "", floats("s2", {4, 4, 6, 3}, 4)}, {As("mode", "linear")}), kF,
             {1, 2, 6, 4}, false);
    b.Output(b.Op("Resize", {x, "", "", b.ConstInts("sz2", {1, 2, 5, 9})}), kF, {1, 2, 5, 9},
             false);
  }));
}

}  // namespace tessera::testing
