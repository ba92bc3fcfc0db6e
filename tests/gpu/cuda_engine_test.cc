// The CUDA engine against the CPU engine. Labelled "gpu": tests that need a device skip where
// none is visible (CI); the library-loading and device-check tests run everywhere.
#include "tessera/engine/cuda_engine.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>

#include "cuda_test_models.h"
#include "engine/cuda/libs.h"
#include "gpu/device_info.h"
#include "tessera/zoo/zoo.h"

namespace tessera {
namespace {

using testing::CompareWithCpu;
using testing::Import;

bool HaveGpu() {
  auto d = gpu::ListDevices();
  return d.ok() && !d->empty();
}

std::unique_ptr<Engine> Gpu(GpuPrecision p = GpuPrecision::kFp32, bool graphs = true) {
  CudaEngineOptions o;
  o.precision = p;
  o.cuda_graphs = graphs;
  auto e = CreateCudaEngine(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

TEST(CudaEngine, LoadsEveryCublasLtAndCudnnFunctionItUses) {
  // Needs the toolkit's libraries, not a device: catches a misspelt or removed symbol on CI.
  auto libs = cuda::LoadLibs();
  ASSERT_TRUE(libs.ok()) << libs.status().ToString();
  EXPECT_NE((*libs)->cublasLtMatmul, nullptr);
  EXPECT_NE((*libs)->cudnnConvolutionForward, nullptr);
  EXPECT_NE((*libs)->cudnnBackendExecute, nullptr);  // the graph API, for sliced convolutions
  EXPECT_NE((*libs)->cudnnConvolutionBiasActivationForward, nullptr);  // fused epilogues
}

TEST(CudaEngine, ABadDeviceIsAClearError) {
  CudaEngineOptions o;
  o.device = 99;
  auto e = CreateCudaEngine(o);
  ASSERT_FALSE(e.ok());
  if (HaveGpu()) {
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(e.status().message().find("GPU 99 does not exist"), std::string::npos);
  } else {
    EXPECT_EQ(e.status().code(), StatusCode::kUnavailable);
  }
}

TEST(CudaEngine, OpMixesMatchTheCpuEngine) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  auto gpu = Gpu();
  ASSERT_NE(gpu, nullptr);
  for (const Graph& g : {testing::ConvAndPoolMix(), testing::MatMulAndMovementMix()})
    for (int64_t batch : {1, 3}) EXPECT_LE(CompareWithCpu(*gpu, g, batch), 1e-4) << batch;
  EXPECT_LE(CompareWithCpu(*gpu, testing::ResizeMix(), 1), 1e-5);
}

TEST(CudaEngine, ZooModelsMatchTheCpuEngineInEveryPrecision) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  auto fp32 = Gpu(GpuPrecision::kFp32), tf32 = Gpu(GpuPrecision::kTf32),
       fp16 = Gpu(GpuPrecision::kFp16), bf16 = Gpu(GpuPrecision::kBf16),
       eager = Gpu(GpuPrecision::kFp32, /*graphs=*/false);
  ASSERT_TRUE(fp32 && tf32 && fp16 && bf16 && eager);
  for (const auto& [name, batch] : std::vector<std::pair<std::string, int64_t>>{
           {"tiny_mlp", 3}, {"bert_small", 2}, {"mobilenet_v2", 1}, {"resnet18", 4}}) {
    auto m = zoo::Build(name);
    ASSERT_TRUE(m.ok());
    Graph g = Import(m->onnx_bytes);
    EXPECT_LE(CompareWithCpu(*fp32, g, batch), 1e-4) << name << " fp32";
    EXPECT_LE(CompareWithCpu(*eager, g, batch), 1e-4) << name << " fp32 without CUDA graphs";
    EXPECT_LE(CompareWithCpu(*tf32, g, batch), 1e-2) << name << " tf32";
    EXPECT_LE(CompareWithCpu(*fp16, g, batch), 1e-2) << name << " fp16";
    EXPECT_LE(CompareWithCpu(*bf16, g, batch), 1e-2) << name << " bf16";
  }
  // FP16 / BF16 activations through the typed pool, resize, reduce, pad and epilogue kernels
  // (not the MatMul mix: it casts products to INT64, where a rounding step flips an integer).
  for (auto* narrow : {fp16.get(), bf16.get()}) {
    EXPECT_LE(CompareWithCpu(*narrow, testing::ConvAndPoolMix(), 2), 1e-2);
    EXPECT_LE(CompareWithCpu(*narrow, testing::ResizeMix(), 1), 1e-2);
  }
}

TEST(CudaEngine, ConvolutionsOnASliceGoThroughTheGraphApiAndMatchTheCpuEngine) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  const SliceConvCounts before = GetSliceConvCounts();
  for (GpuPrecision p : {GpuPrecision::kFp32, GpuPrecision::kFp16}) {
    CudaEngineOptions o;
    o.precision = p;
    o.sm_count_target = 16;  // a 16-SM slice: cuDNN's heuristics are told so
    auto e = CreateCudaEngine(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    const double tol = p == GpuPrecision::kFp32 ? 1e-4 : 1e-2;
    EXPECT_LE(CompareWithCpu(**e, testing::ConvAndPoolMix(), 2), tol);
    auto m = zoo::Build("mobilenet_v2");
    ASSERT_TRUE(m.ok());
    EXPECT_LE(CompareWithCpu(**e, Import(m->onnx_bytes), 1), tol);
  }
  const SliceConvCounts after = GetSliceConvCounts();
  EXPECT_GT(after.graph_api, before.graph_api)
      << "no convolution took the graph API; the last fallback: " << after.last_fallback;
  EXPECT_EQ(after.fallback, before.fallback) << after.last_fallback;
}

TEST(CudaEngine, BiasResidualAndReluFuseIntoCudnnsConvolutionAndMatchTheCpuEngine) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  // The mix's first convolution has a folded BatchNorm's bias and a ReLU, its second a bias, a
  // residual and a ReLU; its third ends in HardSwish, which stays with Tessera's kernel.
  for (GpuPrecision p : {GpuPrecision::kFp32, GpuPrecision::kFp16}) {
    const ConvFusionCounts before = GetConvFusionCounts();
    auto e = Gpu(p);
    ASSERT_NE(e, nullptr);
    const double tol = p == GpuPrecision::kFp32 ? 1e-4 : 1e-2;
    EXPECT_LE(CompareWithCpu(*e, testing::ConvAndPoolMix(), 2), tol);
    auto m = zoo::Build("resnet18");
    ASSERT_TRUE(m.ok());
    EXPECT_LE(CompareWithCpu(*e, Import(m->onnx_bytes), 1), tol);
    const ConvFusionCounts after = GetConvFusionCounts();
    EXPECT_GT(after.not_fusable, before.not_fusable);  // the HardSwish convolution
    if (p == GpuPrecision::kFp32) {
      EXPECT_GT(after.fused, before.fused)
          << "no convolution fused at FP32; the last failure: " << after.last_failure;
      EXPECT_EQ(after.failed, before.failed) << after.last_failure;
    }
    std::printf("%s: %lld fused, %lld left to the epilogue kernel, %lld refused%s%s\n",
                p == GpuPrecision::kFp32 ? "fp32" : "fp16",
                static_cast<long long>(after.fused - before.fused),
                static_cast<long long>(after.not_fusable - before.not_fusable),
                static_cast<long long>(after.failed - before.failed),
                after.failed > before.failed ? "; last: " : "", after.last_failure.c_str());
  }
}

TEST(CudaEngine, AGatherIndexOutOfRangeFailsThatRunOnly) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  Graph g = Import(testing::MakeModel([](zoo::GraphBuilder& b) {
    auto ids = b.Input("ids", testing::kI64, {1, 4});
    b.Output(b.Op("Gather", {b.Weight("table", {10, 3}, -1, 1), ids}), testing::kF, {1, 4, 3});
  }));
  auto gpu = Gpu();
  ASSERT_NE(gpu, nullptr);
  auto exe = gpu->Compile(g, CompileOptions{});
  ASSERT_TRUE(exe.ok()) << exe.status().ToString();
  Tensor ids = Tensor::Allocate(DataType::kInt64, {1, 4});
  ids.data<int64_t>()[3] = 10;
  std::vector<Tensor> out;
  Status st = (*exe)->Run({ids}, &out);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  ids.data<int64_t>()[3] = -10;  // -10 + 10 = row 0: valid
  st = (*exe)->Run({ids}, &out);
  EXPECT_TRUE(st.ok()) << st.ToString();
}

TEST(CudaEngine, EnqueueOnACallersStreamMatchesRun) {
  if (!HaveGpu()) GTEST_SKIP() << "no GPU visible";
  auto m = zoo::Build("bert_small");
  ASSERT_TRUE(m.ok());
  Graph g = Import(m->onnx_bytes);
  auto gpu = Gpu();
  ASSERT_NE(gpu, nullptr);
  CompileOptions o;
  o.batch = 2;
  auto exe = gpu->Compile(g, o);
  ASSERT_TRUE(exe.ok()) << exe.status().ToString();
  auto* dev = dynamic_cast<GpuExecutable*>(exe->get());
  ASSERT_NE(dev, nullptr);
  std::vector<Tensor> inputs, want;
  for (const auto& s : dev->info().inputs) inputs.push_back(testing::MakeInput(s));
  ASSERT_TRUE((*exe)->Run(inputs, &want).ok());
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  for (size_t i = 0; i < inputs.size(); ++i)
    ASSERT_EQ(cudaMemcpyAsync(dev->device_inputs()[i].device, inputs[i].raw(),
                              dev->device_inputs()[i].bytes, cudaMemcpyHostToDevice, stream),
              cudaSuccess);
  ASSERT_TRUE(dev->Enqueue(stream).ok());
  std::vector<Tensor> got;
  for (const auto& slot : dev->device_outputs()) {
    got.push_back(Tensor::Allocate(slot.spec.dtype, slot.spec.shape));
    ASSERT_EQ(
        cudaMemcpyAsync(got.back().raw(), slot.device, slot.bytes, cudaMemcpyDeviceToHost, stream),
        cudaSuccess);
  }
  int32_t err = -1;
  ASSERT_EQ(
      cudaMemcpyAsync(&err, dev->device_error_word(), sizeof(err), cudaMemcpyDeviceToHost, stream),
      cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  cudaStreamDestroy(stream);
  EXPECT_EQ(err, 0);
  ASSERT_EQ(got.size(), want.size());
  // Same graph, same buffers: equal up to the libraries' run-to-run order of additions.
  for (size_t i = 0; i < got.size(); ++i)
    for (int64_t k = 0; k < got[i].numel(); ++k)
      ASSERT_NEAR(got[i].GetAsDouble(k), want[i].GetAsDouble(k),
                  1e-5 * (1 + std::fabs(want[i].GetAsDouble(k))))
          << i << " " << k;
}

}  // namespace
}  // namespace tessera
