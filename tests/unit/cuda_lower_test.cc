// The CUDA backend's lowering, checked without a GPU: lowered Programs run on the host
// interpreter (same instruction semantics and scalar math as the device kernels) and must match
// the CPU engine.
#include <gtest/gtest.h>

#include <map>

#include "cuda_test_models.h"
#include "engine/cuda/math.h"
#include "engine/cuda/program.h"
#include "engine/cuda/reference.h"
#include "engine/prepare.h"
#include "tessera/engine/cuda_engine.h"
#include "tessera/zoo/zoo.h"

namespace tessera {
namespace {

using testing::CompareWithCpu;
using testing::Import;
using testing::kF;
using testing::kI64;
using testing::MakeModel;
using zoo::A;

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
  auto host = cuda::CreateHostProgramEngine();
  const Graph g = testing::ConvAndPoolMix();
  EXPECT_LE(CompareWithCpu(*host, g, 1), 1e-4);
  EXPECT_LE(CompareWithCpu(*host, g, 3), 1e-4);
}

TEST(CudaLower, MatMulsNormalizationsAndDataMovementMatchTheCpuEngine) {
  auto host = cuda::CreateHostProgramEngine();
  const Graph g = testing::MatMulAndMovementMix();
  EXPECT_LE(CompareWithCpu(*host, g, 1), 1e-4);
  EXPECT_LE(CompareWithCpu(*host, g, 2), 1e-4);
}

TEST(CudaLower, ZooModelsMatchTheCpuEngine) {
  for (const auto& [name, batch] : std::vector<std::pair<std::string, int64_t>>{
           {"tiny_mlp", 3}, {"bert_small", 2}, {"mobilenet_v2", 1}}) {
    auto m = zoo::Build(name);
    ASSERT_TRUE(m.ok());
    Graph g = Import(m->onnx_bytes);
    auto host = cuda::CreateHostProgramEngine();
    EXPECT_LE(CompareWithCpu(*host, g, batch), 1e-4) << name;
    CompileOptions o;
    o.batch = batch;
    auto prepared = PrepareGraph(g, o);
    ASSERT_TRUE(prepared.ok());
    auto lowered = cuda::LowerToProgram(std::move(prepared).value());
    ASSERT_TRUE(lowered.ok());
    const cuda::Program& prog = *lowered;
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

TEST(CudaLower, UnusedInputsAndFoldedOutputsKeepTheirPlaces) {
  // y = Shape(x) is computed at compile time (x is then unused); z = x passes through.
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {2, 3, 4}, false);
    b.Output(b.Op("Shape", {x}), kI64, {3}, false);
    b.Output(b.Op("Identity", {x}), kF, {2, 3, 4}, false);
  }));
  auto host = cuda::CreateHostProgramEngine();
  EXPECT_LE(CompareWithCpu(*host, g, 1), 0.0);
}

TEST(CudaLower, ResizeMatchesTheCpuEngine) {
  auto host = cuda::CreateHostProgramEngine();
  EXPECT_LE(CompareWithCpu(*host, testing::ResizeMix(), 1), 1e-5);
}

TEST(CudaLower, AnOpTheBackendLacksIsNamedWithItsNode) {
  // The CPU engine computes in FP64 here; the CUDA backend has no FP64.
  constexpr int kF64 = onnx::TensorProto::DOUBLE;
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF64, {1, 2, 4}, false);
    b.Op("Neg", {x}, {}, "negate");
    b.Output("negate_out", kF64, {1, 2, 4}, false);
  }));
  auto prepared = PrepareGraph(g, CompileOptions{});
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  auto prog = cuda::LowerToProgram(std::move(prepared).value());
  ASSERT_FALSE(prog.ok());
  EXPECT_EQ(prog.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(prog.status().message().find("negate"), std::string::npos) << prog.status().ToString();
  EXPECT_NE(prog.status().message().find("FP64"), std::string::npos) << prog.status().ToString();
}

TEST(CudaLower, LayerNormMeanAndInvStdDevOutputsMatchTheCpuEngine) {
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 3, 8}, false);
    b.Op("LayerNormalization", {x, b.Weight("g", {8}, 0.5, 1.5), b.Weight("b", {8}, -0.2, 0.2)}, {},
         "norm", 3);
    b.Output("norm_out", kF, {1, 3, 8}, false);
    b.Output("norm_out1", kF, {1, 3, 1}, false);
    b.Output("norm_out2", kF, {1, 3, 1}, false);
  }));
  auto host = cuda::CreateHostProgramEngine();
  EXPECT_LE(CompareWithCpu(*host, g, 1), 1e-5);
  // With narrow activations: Mean a graph output, InvStdDev used inside the graph. Both stay
  // FP32 (one stat type per instruction), so this lowers and matches.
  Graph mixed = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 3, 8}, false);
    b.Op("LayerNormalization", {x, b.Weight("g", {8}, 0.5, 1.5), b.Weight("b", {8}, -0.2, 0.2)}, {},
         "norm", 3);
    b.Output("norm_out1", kF, {1, 3, 1}, false);
    b.Output(b.Op("Mul", {"norm_out", "norm_out2"}), kF, {1, 3, 8}, false);
  }));
  for (GpuPrecision p : {GpuPrecision::kFp16, GpuPrecision::kBf16})
    EXPECT_LE(CompareWithCpu(*cuda::CreateHostProgramEngine(p), mixed, 2), 1e-2);
}

TEST(CudaLower, ReflectAndEdgePadsRuntimeClipAndSplitReductionsMatchTheCpuEngine) {
  Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 3, 4, 5}, false);
    auto lo = b.Input("lo", kF, {1}, false);
    b.Output(b.Op("Pad", {x, b.ConstInts("p1", {0, 0, 2, 3, 0, 0, 3, -1})},
                  {zoo::As("mode", "reflect")}),
             kF, {1, 3, 9, 7}, false);
    b.Output(
        b.Op("Pad", {x, b.ConstInts("p2", {0, 1, 1, 0, 0, 0, 2, 4})}, {zoo::As("mode", "edge")}),
        kF, {1, 4, 7, 9}, false);
    b.Output(b.Op("Clip", {x, lo, b.ConstFloat("hi", 0.5f)}), kF, {1, 3, 4, 5}, false);
    b.Output(b.Op("Clip", {x, "", lo}), kF, {1, 3, 4, 5}, false);
    b.Output(
        b.Op("ReduceMean", {x}, {A("axes", std::vector<int64_t>{1, 3}), A("keepdims", int64_t{0})}),
        kF, {1, 4}, false);
    b.Output(
        b.Op("ReduceMax", {x}, {A("axes", std::vector<int64_t>{0, 2}), A("keepdims", int64_t{1})}),
        kF, {1, 3, 1, 5}, false);
  }));
  auto host = cuda::CreateHostProgramEngine();
  EXPECT_LE(CompareWithCpu(*host, g, 1), 1e-6);
}

TEST(CudaLower, CountsTheWorkOfKnownModels) {
  // ResNet-50 at 224 x 224 is 4.1 G multiply-adds (He et al.; torchvision lists 4.09 GFLOPS
  // counted as MACs), 25.6 M parameters.
  auto m = zoo::Build("resnet50");
  ASSERT_TRUE(m.ok());
  Graph g = Import(m->onnx_bytes);
  for (int64_t batch : {1, 4}) {
    CompileOptions o;
    o.batch = batch;
    auto prepared = PrepareGraph(g, o);
    ASSERT_TRUE(prepared.ok());
    auto prog = cuda::LowerToProgram(std::move(prepared).value());
    ASSERT_TRUE(prog.ok());
    const cuda::ProgramWork w = cuda::CountWork(*prog);
    EXPECT_NEAR(w.flops / 2 / static_cast<double>(batch), 4.09e9, 0.05e9) << batch;
    EXPECT_NEAR(w.weight_bytes / 4, 25.6e6, 0.2e6);
    EXPECT_DOUBLE_EQ(w.io_bytes, static_cast<double>(batch) * (3 * 224 * 224 + 1000) * 4);
  }
}

TEST(CudaLower, HalfAndBfloat16ConversionsRoundToNearestEven) {
  using cuda::Bf16ToFloat;
  using cuda::FloatToBf16;
  using cuda::FloatToHalf;
  using cuda::HalfToFloat;
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(0.1f), 0x2e66);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);               // the largest half
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7bff);               // below the midpoint to infinity
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);               // the midpoint rounds to even: infinity
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);  // the smallest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);  // half of it: ties to even (0)
  EXPECT_EQ(FloatToHalf(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units: ties to even (2)
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie at 1: stays even
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(3.0f, -11)), 0x3c02);  // tie at 1 + ulp: goes even
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(NAN))));
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie: even
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(3.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(NAN))));
  // Every finite value of each format survives a round trip through float.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;  // inf / NaN
    ASSERT_EQ(FloatToHalf(HalfToFloat(static_cast<uint16_t>(h))), h) << std::hex << h;
    ASSERT_EQ(FloatToBf16(Bf16ToFloat(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

TEST(CudaLower, Fp16AndBf16OperandsStayWithinTheIssuesTolerance) {
  // GEMM and convolution operands rounded as the GPU rounds them, FP32 accumulation: within
  // 1e-2 of the CPU engine's FP32, and visibly not FP32 (the rounding happened).
  for (GpuPrecision p : {GpuPrecision::kFp16, GpuPrecision::kBf16}) {
    auto host = cuda::CreateHostProgramEngine(p);
    for (const auto& [name, batch] :
         std::vector<std::pair<std::string, int64_t>>{{"bert_small", 2}, {"mobilenet_v2", 1}}) {
      auto m = zoo::Build(name);
      ASSERT_TRUE(m.ok());
      const double err = CompareWithCpu(*host, Import(m->onnx_bytes), batch);
      EXPECT_LE(err, 1e-2) << name;
      EXPECT_GT(err, 1e-5) << name;
    }
    // (Not the MatMul mix: it casts products to INT64, where a rounding step flips an integer.)
    EXPECT_LE(CompareWithCpu(*host, testing::ConvAndPoolMix(), 2), 1e-2);
    EXPECT_LE(CompareWithCpu(*host, testing::ResizeMix(), 1), 1e-2);
  }
}

TEST(CudaLower, NarrowActivationsAreStoredNarrowExceptTheResidualStreamAndOutputs) {
  auto m = zoo::Build("bert_small");
  ASSERT_TRUE(m.ok());
  const Graph g = Import(m->onnx_bytes);
  CompileOptions o;
  o.batch = 2;
  auto lower = [&](GpuPrecision p) {
    auto prepared = PrepareGraph(g, o);
    EXPECT_TRUE(prepared.ok());
    auto prog = cuda::LowerToProgram(std::move(prepared).value(), cuda::LowerOptionsFor(p));
    EXPECT_TRUE(prog.ok()) << prog.status().ToString();
    return std::move(prog).value();
  };
  const cuda::Program fp32 = lower(GpuPrecision::kFp32);
  for (GpuPrecision p : {GpuPrecision::kFp16, GpuPrecision::kBf16}) {
    const DataType narrow = p == GpuPrecision::kFp16 ? DataType::kFloat16 : DataType::kBFloat16;
    const cuda::Program prog = lower(p);
    int softmax = 0, layernorm = 0, narrow_gemms = 0, fp32_gemms = 0;
    for (const auto& step : prog.steps) {
      if (const auto* s = std::get_if<cuda::SoftmaxInstr>(&step.instr)) {
        EXPECT_EQ(s->type, narrow) << step.node;  // attention probabilities: narrow
        ++softmax;
      } else if (const auto* l = std::get_if<cuda::LayerNormInstr>(&step.instr)) {
        EXPECT_EQ(l->type, DataType::kFloat32) << step.node;  // the residual stream: FP32
        ++layernorm;
      } else if (const auto* gm = std::get_if<cuda::GemmInstr>(&step.instr)) {
        EXPECT_EQ(gm->ab_type, narrow) << step.node;
        ++(gm->cd_type == narrow ? narrow_gemms : fp32_gemms);
      }
    }
    EXPECT_EQ(softmax, 4);
    EXPECT_EQ(layernorm, 9);  // embeddings + 2 per layer
    // Q, K, V, QK^T, PV and the feed-forward's first GEMM write narrow; the attention output and
    // feed-forward output GEMMs feed a residual sum, the pooler an output: they write FP32.
    EXPECT_GE(narrow_gemms, 4 * 6);
    EXPECT_GE(fp32_gemms, 1);
    // The activations take less room; the outputs keep FP32 bytes.
    EXPECT_LT(prog.naive_bytes, fp32.naive_bytes * 3 / 4) << prog.naive_bytes;
    ASSERT_EQ(prog.outputs.size(), fp32.outputs.size());
    for (size_t i = 0; i < prog.outputs.size(); ++i) {
      EXPECT_EQ(prog.outputs[i].spec.dtype, DataType::kFloat32);
      EXPECT_EQ(prog.outputs[i].bytes, fp32.outputs[i].bytes);
    }
  }
  // Narrow activations with operands of another type: cuBLASLt has no such GEMM.
  cuda::LowerOptions mixed;
  mixed.activation_type = DataType::kFloat16;
  auto prepared = PrepareGraph(g, o);
  ASSERT_TRUE(prepared.ok());
  auto bad = cuda::LowerToProgram(std::move(prepared).value(), mixed);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("need GEMM / convolution operands of that type"),
            std::string::npos)
      << bad.status().ToString();
  // All of it on FP32 / TF32: nothing narrow.
  for (const auto& step : fp32.steps) {
    if (const auto* s = std::get_if<cuda::SoftmaxInstr>(&step.instr)) {
      EXPECT_EQ(s->type, DataType::kFloat32);
    }
  }
}

TEST(CudaLower, AFloatThatBecomesAnIntegerKeepsFp32Storage) {
  // y = Cast<int64>(x * 3.1): with x * 3.1 rounded to FP16 first, 3.1 * 13 = 40.3 would still
  // floor to 40, but 2047.6 (x = 660.5) rounds to 2048 in FP16 and the integer changes.
  const Graph g = Import(MakeModel([](zoo::GraphBuilder& b) {
    auto x = b.Input("x", kF, {1, 4});
    auto y = b.Op("Mul", {x, b.ConstFloat("k", 3.1f)});
    auto r = b.Op("Relu", {y});
    b.Output(b.Op("Cast", {y}, {A("to", static_cast<int64_t>(kI64))}, "to_int"), kI64, {1, 4});
    b.Output(b.Op("Mul", {r, r}), kF, {1, 4});
  }));
  CompileOptions o;
  auto prepared = PrepareGraph(g, o);
  ASSERT_TRUE(prepared.ok());
  auto prog =
      cuda::LowerToProgram(std::move(prepared).value(), cuda::LowerOptionsFor(GpuPrecision::kFp16));
  ASSERT_TRUE(prog.ok()) << prog.status().ToString();
  std::map<std::string, DataType> out_of;
  for (const auto& step : prog->steps)
    if (const auto* e = std::get_if<cuda::EwInstr>(&step.instr)) out_of[step.label] = e->out_type;
  ASSERT_TRUE(out_of.count("Relu"));
  EXPECT_EQ(out_of["Relu"], DataType::kFloat16);  // an intermediate: narrow
  ASSERT_TRUE(out_of.count("Cast"));
  EXPECT_EQ(out_of["Cast"], DataType::kInt64);
  // The Mul that feeds the Cast writes FP32 (its own label; the output Mul is FP32 as well).
  int fp32_muls = 0;
  for (const auto& step : prog->steps)
    if (const auto* e = std::get_if<cuda::EwInstr>(&step.instr);
        e && step.label == "Mul" && e->out_type == DataType::kFloat32)
      ++fp32_muls;
  EXPECT_EQ(fp32_muls, 2);
  auto host = cuda::CreateHostProgramEngine(GpuPrecision::kFp16);
  auto exe = host->Compile(g, o);
  ASSERT_TRUE(exe.ok());
  Tensor x = Tensor::Allocate(DataType::kFloat32, {1, 4});
  const float xs[4] = {660.5f, 13.0f, -2.0f, 0.25f};
  for (int i = 0; i < 4; ++i) x.data<float>()[i] = xs[i];
  std::vector<Tensor> got;
  ASSERT_TRUE((*exe)->Run({x}, &got).ok());
  ASSERT_EQ(got.size(), 2u);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(got[0].data<int64_t>()[i], static_cast<int64_t>(xs[i] * 3.1f)) << xs[i];
}

TEST(CudaLower, PrecisionNamesAreCheckedWithTheChoicesListed) {
  EXPECT_EQ(*ParseGpuPrecision("fp32"), GpuPrecision::kFp32);
  EXPECT_EQ(*ParseGpuPrecision("tf32"), GpuPrecision::kTf32);
  auto bad = ParseGpuPrecision("fp8");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("fp32, tf32, fp16 or bf16"), std::string::npos);
  EXPECT_EQ(*ParseGpuPrecision("fp16"), GpuPrecision::kFp16);
  EXPECT_EQ(*ParseGpuPrecision("bf16"), GpuPrecision::kBf16);
}

}  // namespace
}  // namespace tessera
