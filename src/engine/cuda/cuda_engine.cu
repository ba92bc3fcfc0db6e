// The CUDA backend's device half: binds a lowered Program (program.h) to one GPU and runs it.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/cuda/kernels.cuh"
#include "engine/cuda/libs.h"
#include "engine/cuda/math.h"
#include "engine/cuda/program.h"
#include "tessera/engine/cuda_engine.h"

namespace tessera {
namespace cuda {
namespace {

// Set by CreateCudaEngine before the first engine exists (models load on several threads).
std::atomic<const Libs*> g_libs{nullptr};
const Libs& L() { return *g_libs.load(std::memory_order_acquire); }

cudaDataType_t LibType(DataType t) {
  return t == DataType::kFloat16 ? CUDA_R_16F : t == DataType::kBFloat16 ? CUDA_R_16BF : CUDA_R_32F;
}

Status Cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::OK();
  return Status::Unavailable(std::string(what) + ": " + cudaGetErrorString(e));
}
Status Blas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return Status::OK();
  return Status::Internal(std::string(what) + ": " + L().cublasLtGetStatusString(s));
}
Status Dnn(cudnnStatus_t s, const char* what) {
  if (s == CUDNN_STATUS_SUCCESS) return Status::OK();
  return Status::Internal(std::string(what) + ": " + L().cudnnGetErrorString(s));
}

// Device memory freed with the last owner.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
};

Result<std::shared_ptr<DeviceBuffer>> Allocate(size_t bytes, const char* what) {
  auto b = std::make_shared<DeviceBuffer>();
  b->bytes = bytes;
  if (bytes) TESSERA_RETURN_IF_ERROR(Cuda(cudaMalloc(&b->ptr, bytes), what));
  return b;
}

// Weights on the GPU, one copy per host tensor for the engine's lifetime: every executable
// compiled from the same model (one per batch size and instance) shares them. An entry keeps
// its host tensor alive, so the key (the host bytes' address) cannot be reused by other data.
class WeightCache {
 public:
  Result<std::shared_ptr<DeviceBuffer>> Get(const Tensor& t) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(t.raw());
    if (it != map_.end()) return it->second.device;
    TESSERA_ASSIGN_OR_RETURN(auto buf, Allocate(t.nbytes(), "cudaMalloc (weights)"));
    if (t.nbytes())
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaMemcpy(buf->ptr, t.raw(), t.nbytes(), cudaMemcpyHostToDevice),
               "cudaMemcpy (weights)"));
    map_[t.raw()] = {t, buf};
    return buf;
  }

 private:
  struct Entry {
    Tensor host;
    std::shared_ptr<DeviceBuffer> device;
  };
  mutable std::mutex mu_;
  std::unordered_map<const void*, Entry> map_;
};

// One cuBLASLt product, planned at compile time (descriptors and algorithm).
struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  Act post_act = Act::kNone;  // applied by Tessera's kernel when cuBLASLt has no epilogue for it
  ~GemmPlan() {
    if (desc) L().cublasLtMatmulDescDestroy(desc);
    if (a) L().cublasLtMatrixLayoutDestroy(a);
    if (b) L().cublasLtMatrixLayoutDestroy(b);
    if (c) L().cublasLtMatrixLayoutDestroy(c);
  }
};

struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  size_t workspace = 0;
  // With an SM-count target: cuDNN's graph API plan and its variant pack (the buffers are fixed
  // for the executable's life), run instead of the legacy call; null: the legacy call.
  cudnnBackendDescriptor_t exec_plan = nullptr, variant = nullptr;
  std::vector<cudnnBackendDescriptor_t> held;  // every graph-API descriptor, destroyed last
  // Bias, residual and activation inside cuDNN's fused call (PlanFusedConv), in place of the
  // convolution and Tessera's epilogue kernel; bias_copy: the bias in the operand type, where
  // cuDNN takes it so (null: the step's FP32 bias).
  bool fused = false;
  cudnnActivationDescriptor_t act = nullptr;
  cudnnTensorDescriptor_t bias = nullptr;
  std::shared_ptr<DeviceBuffer> bias_copy;
  ~ConvPlan() {
    if (act) L().cudnnDestroyActivationDescriptor(act);
    if (bias) L().cudnnDestroyTensorDescriptor(bias);
    if (x) L().cudnnDestroyTensorDescriptor(x);
    if (y) L().cudnnDestroyTensorDescriptor(y);
    if (w) L().cudnnDestroyFilterDescriptor(w);
    if (conv) L().cudnnDestroyConvolutionDescriptor(conv);
    for (auto it = held.rbegin(); it != held.rend(); ++it) L().cudnnBackendDestroyDescriptor(*it);
  }
};

std::mutex g_slice_conv_mu;
SliceConvCounts g_slice_conv;    // guarded by g_slice_conv_mu
ConvFusionCounts g_conv_fusion;  // guarded by g_slice_conv_mu

// A float of storage type t (FP32, FP16 or BF16) at element i of p, as FP32 (host side).
float HostFloat(const std::vector<uint8_t>& p, size_t i, DataType t) {
  if (t == DataType::kFloat32) {
    float f;
    std::memcpy(&f, p.data() + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p.data() + 2 * i, 2);
  uint32_t bits;
  if (t == DataType::kBFloat16) {
    bits = uint32_t{h} << 16;
  } else {  // IEEE half
    const uint32_t sign = uint32_t{h & 0x8000u} << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {  // zero or subnormal
      const float v = std::ldexp(static_cast<float>(man), -24);
      return sign ? -v : v;
    }
    bits =
        exp == 0x1f ? sign | 0x7f800000u | (man << 13) : sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// A convolution's two ways on the same data agree: max |want - got| within 1e-3 (FP32 / TF32)
// or 2e-2 (narrow) of max |want|, every value finite. Internal "`differs` by R (relative)"
// otherwise.
Status SameOutput(const std::vector<uint8_t>& want, const std::vector<uint8_t>& got, size_t n,
                  DataType t, const char* differs) {
  float most = 0, worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const float a = HostFloat(want, i, t), b = HostFloat(got, i, t);
    if (!std::isfinite(a) || !std::isfinite(b)) return Status::Internal("a non-finite output");
    most = std::max(most, std::fabs(a));
    worst = std::max(worst, std::fabs(a - b));
  }
  const float tol = t == DataType::kFloat32 ? 1e-3f : 2e-2f;
  if (worst > tol * std::max(most, 1e-6f))
    return Status::Internal(std::string(differs) + " by " +
                            std::to_string(worst / std::max(most, 1e-6f)) + " (relative)");
  return Status::OK();
}

class CudaExecutable final : public GpuExecutable {
 public:
  CudaExecutable(const CudaEngineOptions& o, std::shared_ptr<WeightCache> weights)
      : opts_(o), weights_(std::move(weights)) {}
  ~CudaExecutable() override {
    if (stream_) cudaStreamSynchronize(stream_);
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    if (graph_) cudaGraphDestroy(graph_);
    gemms_.clear();
    convs_.clear();
    if (lt_) L().cublasLtDestroy(lt_);
    if (dnn_) L().cudnnDestroy(dnn_);
    if (staging_) cudaFreeHost(staging_);
    if (own_stream_) cudaStreamDestroy(own_stream_);
  }

  Status Build(Program p) {
    prog_ = std::move(p);
    info_ = prog_.info;
    TESSERA_RETURN_IF_ERROR(Cuda(cudaSetDevice(opts_.device), "cudaSetDevice"));
    TESSERA_RETURN_IF_ERROR(
        Cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
    own_stream_ = stream_;
    TESSERA_RETURN_IF_ERROR(Blas(L().cublasLtCreate(&lt_), "cublasLtCreate"));
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnCreate(&dnn_), "cudnnCreate"));
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnSetStream(dnn_, stream_), "cudnnSetStream"));
    for (const auto& t : prog_.constants) {
      TESSERA_ASSIGN_OR_RETURN(auto buf, weights_->Get(t));
      consts_.push_back(std::move(buf));
    }
    TESSERA_ASSIGN_OR_RETURN(arena_, Allocate(prog_.arena_bytes, "cudaMalloc (activations)"));
    TESSERA_ASSIGN_OR_RETURN(workspace_, Allocate(opts_.workspace_bytes, "cudaMalloc (workspace)"));
    info_.activation_bytes = prog_.arena_bytes + opts_.workspace_bytes;
    // Pinned staging for inputs, outputs and the error word: the copies are DMA transfers.
    size_t staged = sizeof(int32_t);
    for (const auto& s : prog_.inputs) staged += s.bytes;
    for (const auto& s : prog_.outputs) staged += s.bytes;
    TESSERA_RETURN_IF_ERROR(
        Cuda(cudaHostAlloc(&staging_, staged, cudaHostAllocDefault), "cudaHostAlloc (staging)"));
    for (auto& s : prog_.steps) TESSERA_RETURN_IF_ERROR(Plan(s));
    for (const auto& s : prog_.inputs)
      dev_in_.push_back({s.spec, static_cast<uint8_t*>(arena_->ptr) + s.ref.offset, s.bytes});
    for (const auto& s : prog_.outputs)
      dev_out_.push_back({s.spec, const_cast<void*>(In(s.ref)), s.bytes});
    // One uncaptured run loads every kernel module and library kernel; then capture.
    TESSERA_RETURN_IF_ERROR(
        Cuda(cudaMemsetAsync(arena_->ptr, 0, prog_.arena_bytes, stream_), "cudaMemsetAsync"));
    TESSERA_RETURN_IF_ERROR(EnqueueSteps());
    TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "warm-up run"));
    if (opts_.cuda_graphs) TESSERA_RETURN_IF_ERROR(Capture());
    return Status::OK();
  }

  Status Run(const std::vector<Tensor>& inputs, std::vector<Tensor>* outputs) override {
    TESSERA_RETURN_IF_ERROR(CheckRunInputs(info_, inputs));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaSetDevice(opts_.device), "cudaSetDevice"));
    uint8_t* stage = static_cast<uint8_t*>(staging_);
    uint8_t* arena = static_cast<uint8_t*>(arena_->ptr);
    size_t at = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const auto& s = prog_.inputs[i];
      std::memcpy(stage + at, inputs[i].raw(), s.bytes);
      TESSERA_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(arena + s.ref.offset, stage + at, s.bytes,
                                                   cudaMemcpyHostToDevice, stream_),
                                   "cudaMemcpyAsync (input)"));
      at += s.bytes;
    }
    TESSERA_RETURN_IF_ERROR(
        Cuda(cudaMemsetAsync(arena + prog_.error_offset, 0, sizeof(int32_t), stream_),
             "cudaMemsetAsync"));
    if (graph_exec_)
      TESSERA_RETURN_IF_ERROR(Cuda(cudaGraphLaunch(graph_exec_, stream_), "cudaGraphLaunch"));
    else
      TESSERA_RETURN_IF_ERROR(EnqueueSteps());
    const size_t out_base = at;
    for (const auto& s : prog_.outputs) {
      const void* src = s.ref.is_const()
                            ? static_cast<const uint8_t*>(consts_[s.ref.konst]->ptr) + s.ref.offset
                            : arena + s.ref.offset;
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaMemcpyAsync(stage + at, src, s.bytes, cudaMemcpyDeviceToHost, stream_),
               "cudaMemcpyAsync (output)"));
      at += s.bytes;
    }
    TESSERA_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(stage + at, arena + prog_.error_offset,
                                                 sizeof(int32_t), cudaMemcpyDeviceToHost, stream_),
                                 "cudaMemcpyAsync (error word)"));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "running the model"));
    int32_t err = 0;
    std::memcpy(&err, stage + at, sizeof(err));
    if (err)
      return Status::InvalidArgument(
          "an index in the input is out of range (a Gather met an index outside its data)");
    outputs->clear();
    at = out_base;
    for (const auto& s : prog_.outputs) {
      Tensor t = Tensor::Allocate(s.spec.dtype, s.spec.shape);
      std::memcpy(t.raw(), stage + at, s.bytes);
      at += s.bytes;
      outputs->push_back(std::move(t));
    }
    return Status::OK();
  }

  const ExecutableInfo& info() const override { return info_; }
  const std::vector<DeviceSlot>& device_inputs() const override { return dev_in_; }
  const std::vector<DeviceSlot>& device_outputs() const override { return dev_out_; }
  Status Bind(void* stream) override {
    auto s = static_cast<cudaStream_t>(stream);
    if (!s || s == stream_) return Status::OK();
    TESSERA_RETURN_IF_ERROR(Cuda(cudaSetDevice(opts_.device), "cudaSetDevice"));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"));
    stream_ = s;
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnSetStream(dnn_, stream_), "cudnnSetStream"));
    if (!graph_exec_) return Status::OK();
    // Captured again on the bound stream: its kernels then belong to the stream's (green)
    // context when replayed there.
    cudaGraphExecDestroy(graph_exec_);
    cudaGraphDestroy(graph_);
    graph_exec_ = nullptr;
    graph_ = nullptr;
    return Capture();
  }
  const void* device_error_word() const override {
    return static_cast<const uint8_t*>(arena_->ptr) + prog_.error_offset;
  }
  Status Enqueue(void* stream) override {
    auto s = static_cast<cudaStream_t>(stream);
    TESSERA_RETURN_IF_ERROR(Cuda(cudaSetDevice(opts_.device), "cudaSetDevice"));
    TESSERA_RETURN_IF_ERROR(
        Cuda(cudaMemsetAsync(static_cast<uint8_t*>(arena_->ptr) + prog_.error_offset, 0,
                             sizeof(int32_t), s),
             "cudaMemsetAsync"));
    if (graph_exec_) return Cuda(cudaGraphLaunch(graph_exec_, s), "cudaGraphLaunch");
    if (s == stream_) return EnqueueSteps();
    // Without a graph the steps go to the executable's own stream, ordered after `s`'s work.
    cudaEvent_t ready;
    TESSERA_RETURN_IF_ERROR(
        Cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate"));
    cudaEventRecord(ready, s);
    cudaStreamWaitEvent(stream_, ready, 0);
    Status st = EnqueueSteps();
    cudaEventRecord(ready, stream_);
    cudaStreamWaitEvent(s, ready, 0);
    cudaEventDestroy(ready);
    return st;
  }

 private:
  const void* In(const Ref& r) const {
    if (!r.valid()) return nullptr;
    if (r.is_const()) return static_cast<const uint8_t*>(consts_[r.konst]->ptr) + r.offset;
    return static_cast<const uint8_t*>(arena_->ptr) + r.offset;
  }
  void* Out(const Ref& r) const { return static_cast<uint8_t*>(arena_->ptr) + r.offset; }
  const float* F(const Ref& r) const { return static_cast<const float*>(In(r)); }
  void* OptOut(const Ref& r) const { return r.valid() ? Out(r) : nullptr; }

  Status Plan(const Step& s) {
    if (const auto* g = std::get_if<GemmInstr>(&s.instr)) return PlanGemm(s, *g);
    if (const auto* c = std::get_if<ConvInstr>(&s.instr)) return PlanConv(s, *c);
    return Status::OK();
  }

  // Row-major D = op(A) op(B) is column-major D^T = op(B)^T op(A)^T: cuBLASLt's "A" is our B and
  // its "B" our A, with m and n swapped (see program.h for the row-major conventions).
  Status PlanGemm(const Step& s, const GemmInstr& g) {
    auto plan = std::make_unique<GemmPlan>();
    const std::string where = s.label + " '" + s.node + "'";
    const cublasComputeType_t compute =
        opts_.precision == GpuPrecision::kTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    // A and B in the operand type; C, D and the bias in D's type (cuBLASLt's default bias type
    // is D's); alpha / beta and the accumulation in FP32.
    const cudaDataType_t ab = LibType(g.ab_type), cd = LibType(g.cd_type);
    TESSERA_RETURN_IF_ERROR(Blas(L().cublasLtMatmulDescCreate(&plan->desc, compute, CUDA_R_32F),
                                 "cublasLtMatmulDescCreate"));
    const cublasOperation_t op_a = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    TESSERA_RETURN_IF_ERROR(Blas(L().cublasLtMatmulDescSetAttribute(
                                     plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)),
                                 "TRANSA"));
    TESSERA_RETURN_IF_ERROR(Blas(L().cublasLtMatmulDescSetAttribute(
                                     plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)),
                                 "TRANSB"));
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    const bool bias = g.bias.valid();
    if (g.act == Act::kRelu)
      epi = bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    else if (bias)
      epi = CUBLASLT_EPILOGUE_BIAS;
    // cuBLASLt applies its epilogue after beta * C, so a fused residual stays inside the ReLU,
    // as the fuse pass means it (act(scale AB + bias + residual)).
    if (g.act != Act::kNone && g.act != Act::kRelu) plan->post_act = g.act;
    TESSERA_RETURN_IF_ERROR(Blas(L().cublasLtMatmulDescSetAttribute(
                                     plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)),
                                 "EPILOGUE"));
    if (bias) {
      const void* bp = In(g.bias);
      TESSERA_RETURN_IF_ERROR(
          Blas(L().cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                  &bp, sizeof(bp)),
               "BIAS_POINTER"));
    }
    if (opts_.sm_count_target > 0) {
      const int32_t sms = opts_.sm_count_target;
      TESSERA_RETURN_IF_ERROR(
          Blas(L().cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET,
                                                  &sms, sizeof(sms)),
               "SM_COUNT_TARGET"));
    }
    // Column-major shapes of the stored matrices.
    const uint64_t a_rows = g.tb ? g.k : g.n, a_cols = g.tb ? g.n : g.k;  // our B
    const uint64_t b_rows = g.ta ? g.m : g.k, b_cols = g.ta ? g.k : g.m;  // our A
    TESSERA_RETURN_IF_ERROR(
        Blas(L().cublasLtMatrixLayoutCreate(&plan->a, ab, a_rows, a_cols, g.ldb), "layout B"));
    TESSERA_RETURN_IF_ERROR(
        Blas(L().cublasLtMatrixLayoutCreate(&plan->b, ab, b_rows, b_cols, g.lda), "layout A"));
    TESSERA_RETURN_IF_ERROR(
        Blas(L().cublasLtMatrixLayoutCreate(&plan->c, cd, g.n, g.m, g.ldc), "layout D"));
    if (g.batch > 1) {
      const int32_t count = static_cast<int32_t>(g.batch);
      struct {
        cublasLtMatrixLayout_t l;
        int64_t stride;
      } layouts[] = {{plan->a, g.sb}, {plan->b, g.sa}, {plan->c, g.sc}};
      for (auto& l : layouts) {
        TESSERA_RETURN_IF_ERROR(
            Blas(L().cublasLtMatrixLayoutSetAttribute(l.l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                      &count, sizeof(count)),
                 "BATCH_COUNT"));
        TESSERA_RETURN_IF_ERROR(
            Blas(L().cublasLtMatrixLayoutSetAttribute(
                     l.l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &l.stride, sizeof(l.stride)),
                 "STRIDED_BATCH_OFFSET"));
      }
    }
    cublasLtMatmulPreference_t pref = nullptr;
    TESSERA_RETURN_IF_ERROR(Blas(L().cublasLtMatmulPreferenceCreate(&pref), "preference"));
    const uint64_t ws = opts_.workspace_bytes;
    L().cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                             sizeof(ws));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t st = L().cublasLtMatmulAlgoGetHeuristic(
        lt_, plan->desc, plan->a, plan->b, plan->c, plan->c, pref, 1, &result, &found);
    L().cublasLtMatmulPreferenceDestroy(pref);
    TESSERA_RETURN_IF_ERROR(Blas(st, "cublasLtMatmulAlgoGetHeuristic"));
    if (found == 0)
      return Status::Unimplemented(where + ": cuBLASLt has no algorithm for " +
                                   std::to_string(g.m) + " x " + std::to_string(g.n) + " x " +
                                   std::to_string(g.k));
    plan->algo = result.algo;
    gemms_[&s] = std::move(plan);
    return Status::OK();
  }

  Status PlanConv(const Step& s, const ConvInstr& c) {
    auto plan = std::make_unique<ConvPlan>();
    auto i = [](int64_t v) { return static_cast<int>(v); };
    // x, w and the convolution's output in the operand type; FP32 accumulation (cuDNN's
    // "pseudo half" configurations for FP16 / BF16). The output goes to y when y has that type,
    // else to tmp (see ConvInstr).
    const cudnnDataType_t t = c.xw_type == DataType::kFloat16    ? CUDNN_DATA_HALF
                              : c.xw_type == DataType::kBFloat16 ? CUDNN_DATA_BFLOAT16
                                                                 : CUDNN_DATA_FLOAT;
    const bool narrow = c.xw_type != DataType::kFloat32;
    void* out = c.tmp.valid() ? Out(c.tmp) : Out(c.y);
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnCreateTensorDescriptor(&plan->x), "x descriptor"));
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnCreateTensorDescriptor(&plan->y), "y descriptor"));
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnCreateFilterDescriptor(&plan->w), "w descriptor"));
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnCreateConvolutionDescriptor(&plan->conv), "conv descriptor"));
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnSetTensor4dDescriptor(plan->x, CUDNN_TENSOR_NCHW, t,
                                                               i(c.n), i(c.c), i(c.h), i(c.w)),
                                "x shape"));
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnSetTensor4dDescriptor(plan->y, CUDNN_TENSOR_NCHW, t,
                                                               i(c.n), i(c.k), i(c.oh), i(c.ow)),
                                "y shape"));
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnSetFilter4dDescriptor(plan->w, t, CUDNN_TENSOR_NCHW, i(c.k), i(c.c / c.groups),
                                           i(c.r), i(c.s)),
            "w shape"));
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnSetConvolution2dDescriptor(plan->conv, i(c.pad_h), i(c.pad_w), i(c.stride_h),
                                                i(c.stride_w), i(c.dil_h), i(c.dil_w),
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
            "convolution"));
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnSetConvolutionGroupCount(plan->conv, i(c.groups)), "group count"));
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnSetConvolutionMathType(plan->conv, narrow ? CUDNN_TENSOR_OP_MATH
                                                        : opts_.precision == GpuPrecision::kTf32
                                                            ? CUDNN_DEFAULT_MATH
                                                            : CUDNN_FMA_MATH),
            "math type"));
    int oc = 0, oh = 0, ow = 0, on = 0;
    TESSERA_RETURN_IF_ERROR(Dnn(
        L().cudnnGetConvolution2dForwardOutputDim(plan->conv, plan->x, plan->w, &on, &oc, &oh, &ow),
        "output dims"));
    if (oh != c.oh || ow != c.ow || oc != c.k)
      return Status::Internal(s.label + " '" + s.node + "': cuDNN's output " + std::to_string(oh) +
                              " x " + std::to_string(ow) + " differs from the graph's " +
                              std::to_string(c.oh) + " x " + std::to_string(c.ow));
    // Timed choice on the real buffers (the arena holds garbage now; only time matters).
    cudnnConvolutionFwdAlgoPerf_t perf[8];
    int found = 0;
    TESSERA_RETURN_IF_ERROR(Dnn(
        L().cudnnFindConvolutionForwardAlgorithmEx(dnn_, plan->x, In(c.x), plan->w, In(c.weight),
                                                   plan->conv, plan->y, out, 8, &found, perf,
                                                   workspace_->ptr, opts_.workspace_bytes),
        "cudnnFindConvolutionForwardAlgorithmEx"));
    bool chosen = false;
    for (int k = 0; k < found && !chosen; ++k)
      if (perf[k].status == CUDNN_STATUS_SUCCESS && perf[k].memory <= opts_.workspace_bytes) {
        plan->algo = perf[k].algo;
        plan->workspace = perf[k].memory;
        chosen = true;
      }
    if (!chosen)
      return Status::Unimplemented(s.label + " '" + s.node + "': cuDNN has no algorithm within " +
                                   std::to_string(opts_.workspace_bytes >> 20) +
                                   " MiB of workspace");
    if (opts_.sm_count_target > 0) {
      // On a slice: cuDNN's graph API, whose heuristics take the slice's SM count (the legacy
      // API's assume the whole GPU). Checked against the legacy call on the same data first.
      Status st = PlanGraphConv(c, t, out, plan.get());
      std::lock_guard<std::mutex> lock(g_slice_conv_mu);
      if (st.ok()) {
        ++g_slice_conv.graph_api;
      } else {
        ++g_slice_conv.fallback;
        g_slice_conv.last_fallback = s.label + " '" + s.node + "': " + st.message();
        plan->exec_plan = nullptr;
        plan->variant = nullptr;
        for (auto it = plan->held.rbegin(); it != plan->held.rend(); ++it)
          L().cudnnBackendDestroyDescriptor(*it);
        plan->held.clear();
      }
    }
    if (c.bias.valid() || c.residual.valid() || c.act != Act::kNone) {
      // (On a slice the graph API's plan keeps the epilogue kernel.)
      Status st = plan->exec_plan ? Status::FailedPrecondition("it runs the graph API's plan")
                                  : PlanFusedConv(c, t, plan.get());
      std::lock_guard<std::mutex> lock(g_slice_conv_mu);
      if (st.ok()) {
        ++g_conv_fusion.fused;
      } else if (st.code() == StatusCode::kFailedPrecondition) {
        ++g_conv_fusion.not_fusable;
      } else {
        ++g_conv_fusion.failed;
        g_conv_fusion.last_failure = s.label + " '" + s.node + "': " + st.message();
      }
    }
    convs_[&s] = std::move(plan);
    return Status::OK();
  }

  // cuDNN's fused y = act(conv(x) + z + bias) (cudnnConvolutionBiasActivationForward) in place of
  // the convolution and Tessera's epilogue kernel, where cuDNN's rules allow it: the output is
  // written in the operand type (no tmp), there is a bias, and the activation is ReLU or none
  // (none only with the implicit precomputed GEMM algorithm, the one cuDNN fuses then). The bias
  // goes in the operand type (a converted copy of a constant bias) or, failing that, in FP32.
  // Both ways then run once on the same data (x and the residual filled with 0x3c bytes unless
  // constant) and must agree as PlanGraphConv's check does. FailedPrecondition: cuDNN's rules
  // leave this convolution to the epilogue kernel; another error: the fused call was refused or
  // wrong here. Either way the plan is left unfused.
  Status PlanFusedConv(const ConvInstr& c, cudnnDataType_t t, ConvPlan* plan) {
    if (c.tmp.valid())
      return Status::FailedPrecondition("its output is converted to another type after it");
    if (!c.bias.valid()) return Status::FailedPrecondition("it has no bias");
    if (c.act != Act::kNone && c.act != Act::kRelu)
      return Status::FailedPrecondition("cuDNN fuses ReLU only");
    if (c.act == Act::kNone && plan->algo != CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM)
      return Status::FailedPrecondition(
          "without an activation cuDNN fuses only the implicit precomputed GEMM algorithm, and "
          "another one was chosen");
    auto i = [](int64_t v) { return static_cast<int>(v); };
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnCreateActivationDescriptor(&plan->act), "activation descriptor"));
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnSetActivationDescriptor(
                plan->act, c.act == Act::kRelu ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY,
                CUDNN_PROPAGATE_NAN, 0.0),
            "activation"));
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnCreateTensorDescriptor(&plan->bias), "bias descriptor"));
    // The unfused way on the fixed data first: what the fused call must reproduce.
    void* y = Out(c.y);
    const void* x = In(c.x);
    const DataType dt = c.xw_type;
    const size_t elem = dt == DataType::kFloat32 ? 4 : 2;
    const size_t y_elems = static_cast<size_t>(c.n * c.k * c.oh * c.ow);
    if (!c.x.is_const())
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaMemsetAsync(const_cast<void*>(x), 0x3c,
                               static_cast<size_t>(c.n * c.c * c.h * c.w) * elem, stream_),
               "cudaMemsetAsync"));
    if (c.residual.valid() && !c.residual.is_const())
      TESSERA_RETURN_IF_ERROR(
          Cuda(cudaMemsetAsync(Out(c.residual), 0x3c, y_elems * elem, stream_), "cudaMemsetAsync"));
    const float one = 1.0f, zero = 0.0f;
    std::vector<uint8_t> want(y_elems * elem), got(y_elems * elem);
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnConvolutionForward(dnn_, &one, plan->x, x, plan->w, In(c.weight), plan->conv,
                                        plan->algo, workspace_->ptr, plan->workspace, &zero,
                                        plan->y, y),
            "cudnnConvolutionForward"));
    TESSERA_RETURN_IF_ERROR(
        Cuda(LaunchChannelEpilogue(y, dt, y, c.y_type, F(c.bias), In(c.residual), c.n * c.k, c.k,
                                   c.oh * c.ow, c.act, c.act_a, c.act_b, stream_),
             "convolution epilogue"));
    TESSERA_RETURN_IF_ERROR(Cuda(
        cudaMemcpyAsync(want.data(), y, want.size(), cudaMemcpyDeviceToHost, stream_), "copy"));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "the unfused convolution"));
    // The bias types to try: the operand type (cuDNN's half configurations take it so) from a
    // converted constant, then FP32.
    std::vector<cudnnDataType_t> bias_types;
    if (t != CUDNN_DATA_FLOAT && c.bias.is_const()) bias_types.push_back(t);
    bias_types.push_back(CUDNN_DATA_FLOAT);
    std::string refused;
    for (const cudnnDataType_t bt : bias_types) {
      plan->bias_copy.reset();
      if (bt != CUDNN_DATA_FLOAT) {
        std::vector<float> f(static_cast<size_t>(c.k));
        TESSERA_RETURN_IF_ERROR(
            Cuda(cudaMemcpy(f.data(), F(c.bias), f.size() * sizeof(float), cudaMemcpyDeviceToHost),
                 "copy (bias)"));
        std::vector<uint16_t> narrow(f.size());
        for (size_t j = 0; j < f.size(); ++j)
          StoreF(narrow.data(), dt, static_cast<int64_t>(j), f[j]);
        TESSERA_ASSIGN_OR_RETURN(plan->bias_copy,
                                 Allocate(narrow.size() * 2, "cudaMalloc (fused bias)"));
        TESSERA_RETURN_IF_ERROR(Cuda(cudaMemcpy(plan->bias_copy->ptr, narrow.data(),
                                                narrow.size() * 2, cudaMemcpyHostToDevice),
                                     "copy (bias)"));
      }
      TESSERA_RETURN_IF_ERROR(
          Dnn(L().cudnnSetTensor4dDescriptor(plan->bias, CUDNN_TENSOR_NCHW, bt, 1, i(c.k), 1, 1),
              "bias shape"));
      TESSERA_RETURN_IF_ERROR(Cuda(cudaMemsetAsync(y, 0, got.size(), stream_), "cudaMemset"));
      const cudnnStatus_t r = RunFusedConv(c, *plan);
      if (r != CUDNN_STATUS_SUCCESS) {
        refused = L().cudnnGetErrorString(r);
        continue;
      }
      TESSERA_RETURN_IF_ERROR(Cuda(
          cudaMemcpyAsync(got.data(), y, got.size(), cudaMemcpyDeviceToHost, stream_), "copy"));
      TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "the fused convolution"));
      TESSERA_RETURN_IF_ERROR(
          SameOutput(want, got, y_elems, dt, "cuDNN's fused output differs from the unfused one"));
      if (plan->bias_copy) info_.activation_bytes += plan->bias_copy->bytes;
      plan->fused = true;
      return Status::OK();
    }
    plan->bias_copy.reset();
    return Status::Internal("cudnnConvolutionBiasActivationForward refused it: " + refused);
  }

  cudnnStatus_t RunFusedConv(const ConvInstr& c, const ConvPlan& plan) {
    const float one = 1.0f, has_residual = c.residual.valid() ? 1.0f : 0.0f;
    void* y = Out(c.y);
    // Without a residual z is y itself, weighted 0 (cuDNN allows z to alias y).
    const void* z = c.residual.valid() ? In(c.residual) : y;
    const void* bias = plan.bias_copy ? plan.bias_copy->ptr : In(c.bias);
    return L().cudnnConvolutionBiasActivationForward(
        dnn_, &one, plan.x, In(c.x), plan.w, In(c.weight), plan.conv, plan.algo, workspace_->ptr,
        plan.workspace, &has_residual, plan.y, z, plan.bias, bias, plan.act, plan.y, y);
  }

  // The convolution as a one-operation cuDNN graph with SM-count target opts_.sm_count_target:
  // the first plan of the heuristics' list that finalizes within the workspace (and, at strict
  // FP32, uses no tensor-core math), with its variant pack over the step's fixed buffers. Then
  // both it and the legacy algorithm run once on x filled with 0x3c bytes (finite in every
  // float type; a constant x on its own data) and their outputs must agree (1e-3 relative at
  // FP32 / TF32, 2e-2 narrow). An error says why the legacy call is kept instead.
  Status PlanGraphConv(const ConvInstr& c, cudnnDataType_t t, void* out, ConvPlan* plan) {
    auto make = [&](cudnnBackendDescriptorType_t type, cudnnBackendDescriptor_t* d) -> Status {
      TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnBackendCreateDescriptor(type, d), "create"));
      plan->held.push_back(*d);
      return Status::OK();
    };
    auto set = [](cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a,
                  cudnnBackendAttributeType_t type, int64_t n, const void* v, const char* what) {
      return Dnn(L().cudnnBackendSetAttribute(d, a, type, n, v), what);
    };
    const void* x_ptr = In(c.x);
    const void* w_ptr = In(c.weight);
    int64_t align = 16;
    for (const void* p : {x_ptr, w_ptr, static_cast<const void*>(out)})
      while (align > 1 && reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(align))
        align /= 2;
    auto tensor = [&](int64_t uid, std::array<int64_t, 4> dims,
                      cudnnBackendDescriptor_t* d) -> Status {
      const std::array<int64_t, 4> strides{dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3],
                                           1};
      TESSERA_RETURN_IF_ERROR(make(CUDNN_BACKEND_TENSOR_DESCRIPTOR, d));
      TESSERA_RETURN_IF_ERROR(
          set(*d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &t, "tensor type"));
      TESSERA_RETURN_IF_ERROR(
          set(*d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data(), "tensor dims"));
      TESSERA_RETURN_IF_ERROR(set(*d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4,
                                  strides.data(), "tensor strides"));
      TESSERA_RETURN_IF_ERROR(
          set(*d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor id"));
      TESSERA_RETURN_IF_ERROR(set(*d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align,
                                  "tensor alignment"));
      return Dnn(L().cudnnBackendFinalize(*d), "tensor");
    };
    cudnnBackendDescriptor_t x, w, y, conv, op, graph, heur;
    TESSERA_RETURN_IF_ERROR(tensor(1, {c.n, c.c, c.h, c.w}, &x));
    TESSERA_RETURN_IF_ERROR(tensor(2, {c.k, c.c / c.groups, c.r, c.s}, &w));
    TESSERA_RETURN_IF_ERROR(tensor(3, {c.n, c.k, c.oh, c.ow}, &y));
    TESSERA_RETURN_IF_ERROR(make(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, &conv));
    const cudnnDataType_t acc = CUDNN_DATA_FLOAT;
    const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    const int64_t dims = 2;
    const int64_t dil[2] = {c.dil_h, c.dil_w}, stride[2] = {c.stride_h, c.stride_w},
                  pad[2] = {c.pad_h, c.pad_w};
    TESSERA_RETURN_IF_ERROR(
        set(conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &acc, "comp type"));
    TESSERA_RETURN_IF_ERROR(set(conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE,
                                1, &mode, "conv mode"));
    TESSERA_RETURN_IF_ERROR(
        set(conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims, "dims"));
    TESSERA_RETURN_IF_ERROR(
        set(conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil, "dilations"));
    TESSERA_RETURN_IF_ERROR(
        set(conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, stride, "strides"));
    TESSERA_RETURN_IF_ERROR(
        set(conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad, "paddings"));
    TESSERA_RETURN_IF_ERROR(
        set(conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad, "paddings"));
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnBackendFinalize(conv), "convolution"));
    TESSERA_RETURN_IF_ERROR(make(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, &op));
    const float one = 1.0f, zero = 0.0f;
    TESSERA_RETURN_IF_ERROR(set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X,
                                CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x, "op x"));
    TESSERA_RETURN_IF_ERROR(set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
                                CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &w, "op w"));
    TESSERA_RETURN_IF_ERROR(set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
                                CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y, "op y"));
    TESSERA_RETURN_IF_ERROR(set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
                                CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv, "op conv"));
    TESSERA_RETURN_IF_ERROR(set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
                                CUDNN_TYPE_FLOAT, 1, &one, "alpha"));
    TESSERA_RETURN_IF_ERROR(
        set(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &zero, "beta"));
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnBackendFinalize(op), "convolution operation"));
    TESSERA_RETURN_IF_ERROR(make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &graph));
    TESSERA_RETURN_IF_ERROR(set(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                1, &op, "graph ops"));
    // The handle attributes are deprecated in cuDNN 9 (ignored or refused by newer libraries,
    // needed by older ones): set where accepted.
    (void)L().cudnnBackendSetAttribute(graph, static_cast<cudnnBackendAttributeName_t>(800),
                                       CUDNN_TYPE_HANDLE, 1, &dnn_);
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnBackendFinalize(graph), "operation graph"));
    TESSERA_RETURN_IF_ERROR(make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur));
    const cudnnBackendHeurMode_t heur_mode = CUDNN_HEUR_MODE_A;
    const int32_t sms = opts_.sm_count_target;
    TESSERA_RETURN_IF_ERROR(set(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                                CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph, "heuristics graph"));
    TESSERA_RETURN_IF_ERROR(
        set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &heur_mode, "heur mode"));
    TESSERA_RETURN_IF_ERROR(set(heur, CUDNN_ATTR_ENGINEHEUR_SM_COUNT_TARGET, CUDNN_TYPE_INT32, 1,
                                &sms, "SM count target"));
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnBackendFinalize(heur), "engine heuristics"));
    int64_t count = 0;
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
            "heuristics results"));
    count = std::min<int64_t>(count, 16);
    if (count <= 0) return Status::NotFound("cuDNN's heuristics offer no engine");
    std::vector<cudnnBackendDescriptor_t> cfgs(static_cast<size_t>(count));
    for (auto& cfg : cfgs) TESSERA_RETURN_IF_ERROR(make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfg));
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count, cfgs.data()),
            "heuristics results"));
    const bool strict_fp32 = t == CUDNN_DATA_FLOAT && opts_.precision == GpuPrecision::kFp32;
    std::string why = "no engine config finalized within the workspace";
    for (int64_t k = 0; k < count && !plan->exec_plan; ++k) {
      if (strict_fp32) {  // tensor cores on FP32 data mean TF32: not at strict FP32
        cudnnBackendDescriptor_t engine;
        TESSERA_RETURN_IF_ERROR(make(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine));
        int64_t n = 0;
        if (L().cudnnBackendGetAttribute(cfgs[k], CUDNN_ATTR_ENGINECFG_ENGINE,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n,
                                         &engine) != CUDNN_STATUS_SUCCESS)
          continue;
        cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
        n = 0;
        if (L().cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                         CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT,
                                         &n, notes) != CUDNN_STATUS_SUCCESS)
          continue;
        bool tf32 = false;
        for (int64_t j = 0; j < n; ++j)
          tf32 |= notes[j] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE ||
                  notes[j] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS;
        if (tf32) continue;
      }
      cudnnBackendDescriptor_t candidate;
      TESSERA_RETURN_IF_ERROR(make(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &candidate));
      (void)L().cudnnBackendSetAttribute(candidate, static_cast<cudnnBackendAttributeName_t>(400),
                                         CUDNN_TYPE_HANDLE, 1, &dnn_);
      if (L().cudnnBackendSetAttribute(candidate, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                       CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                       &cfgs[k]) != CUDNN_STATUS_SUCCESS ||
          L().cudnnBackendFinalize(candidate) != CUDNN_STATUS_SUCCESS)
        continue;
      int64_t ws = 0, n = 0;
      if (L().cudnnBackendGetAttribute(candidate, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                       CUDNN_TYPE_INT64, 1, &n, &ws) != CUDNN_STATUS_SUCCESS ||
          ws < 0 || static_cast<size_t>(ws) > opts_.workspace_bytes) {
        why = "no engine config within " + std::to_string(opts_.workspace_bytes >> 20) +
              " MiB of workspace";
        continue;
      }
      plan->exec_plan = candidate;
    }
    if (!plan->exec_plan) return Status::NotFound(why);
    TESSERA_RETURN_IF_ERROR(make(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &plan->variant));
    void* ptrs[3] = {const_cast<void*>(x_ptr), const_cast<void*>(w_ptr), out};
    const int64_t uids[3] = {1, 2, 3};
    void* ws_ptr = workspace_->ptr;
    TESSERA_RETURN_IF_ERROR(set(plan->variant, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                CUDNN_TYPE_VOID_PTR, 3, ptrs, "variant pointers"));
    TESSERA_RETURN_IF_ERROR(set(plan->variant, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
                                3, uids, "variant ids"));
    TESSERA_RETURN_IF_ERROR(set(plan->variant, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                CUDNN_TYPE_VOID_PTR, 1, &ws_ptr, "variant workspace"));
    TESSERA_RETURN_IF_ERROR(Dnn(L().cudnnBackendFinalize(plan->variant), "variant pack"));
    // Both ways on the same data (the arena is cleared after planning).
    const DataType dt = c.xw_type;
    const size_t elem = dt == DataType::kFloat32 ? 4 : 2;
    const size_t x_bytes = static_cast<size_t>(c.n * c.c * c.h * c.w) * elem;
    const size_t y_elems = static_cast<size_t>(c.n * c.k * c.oh * c.ow);
    // (A constant input is checked on its own data, which must stay.)
    if (!c.x.is_const())
      TESSERA_RETURN_IF_ERROR(Cuda(
          cudaMemsetAsync(const_cast<void*>(x_ptr), 0x3c, x_bytes, stream_), "cudaMemsetAsync"));
    std::vector<uint8_t> legacy(y_elems * elem), graph_out(y_elems * elem);
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnConvolutionForward(dnn_, &one, plan->x, x_ptr, plan->w, w_ptr, plan->conv,
                                        plan->algo, workspace_->ptr, plan->workspace, &zero,
                                        plan->y, out),
            "cudnnConvolutionForward"));
    TESSERA_RETURN_IF_ERROR(
        Cuda(cudaMemcpyAsync(legacy.data(), out, legacy.size(), cudaMemcpyDeviceToHost, stream_),
             "cudaMemcpyAsync"));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaMemsetAsync(out, 0, legacy.size(), stream_), "cudaMemset"));
    TESSERA_RETURN_IF_ERROR(
        Dnn(L().cudnnBackendExecute(dnn_, plan->exec_plan, plan->variant), "cudnnBackendExecute"));
    TESSERA_RETURN_IF_ERROR(Cuda(
        cudaMemcpyAsync(graph_out.data(), out, graph_out.size(), cudaMemcpyDeviceToHost, stream_),
        "cudaMemcpyAsync"));
    TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "checking the graph-API plan"));
    return SameOutput(legacy, graph_out, y_elems, dt, "its output differs from the legacy API's");
  }

  Status EnqueueSteps() {
    for (const auto& s : prog_.steps) {
      Status st = std::visit([&](const auto& x) { return Enqueue(s, x); }, s.instr);
      if (!st.ok()) return st.WithContext(s.label + " '" + s.node + "'");
    }
    return Status::OK();
  }

  Status Enqueue(const Step&, const EwInstr& e) {
    return Cuda(LaunchEw(e, In(e.in[0]), e.arity > 1 ? In(e.in[1]) : nullptr,
                         e.arity > 2 ? In(e.in[2]) : nullptr, Out(e.out), stream_),
                "element-wise kernel");
  }
  Status Enqueue(const Step&, const CopyInstr& c) {
    return Cuda(LaunchCopy(c, In(c.in), Out(c.out), stream_), "copy kernel");
  }
  Status Enqueue(const Step&, const FillInstr& f) {
    return Cuda(LaunchFill(f, Out(f.out), stream_), "fill kernel");
  }
  Status Enqueue(const Step&, const ReduceInstr& r) {
    return Cuda(LaunchReduce(r, In(r.in), Out(r.out), stream_), "reduce kernel");
  }
  Status Enqueue(const Step&, const SoftmaxInstr& s) {
    return Cuda(LaunchSoftmax(s, In(s.in), Out(s.out), stream_), "softmax kernel");
  }
  Status Enqueue(const Step&, const LayerNormInstr& l) {
    return Cuda(LaunchLayerNorm(l, In(l.in), F(l.scale), F(l.bias), Out(l.out), OptOut(l.mean),
                                OptOut(l.inv_std), stream_),
                "layernorm kernel");
  }
  Status Enqueue(const Step&, const GatherInstr& g) {
    auto* err = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(arena_->ptr) + prog_.error_offset);
    return Cuda(LaunchGather(g, In(g.data), In(g.index), Out(g.out), err, stream_),
                "gather kernel");
  }
  Status Enqueue(const Step&, const PadInstr& p) {
    return Cuda(LaunchPad(p, In(p.in), Out(p.out), stream_), "pad kernel");
  }
  Status Enqueue(const Step&, const ResizeInstr& r) {
    return Cuda(LaunchResize(r, In(r.x), static_cast<const int64_t*>(In(r.i0)),
                             static_cast<const int64_t*>(In(r.i1)), F(r.w), Out(r.y), stream_),
                "resize kernel");
  }
  Status Enqueue(const Step&, const PoolInstr& p) {
    return Cuda(LaunchPool(p, In(p.x), Out(p.y), stream_), "pool kernel");
  }
  Status Enqueue(const Step& s, const GemmInstr& g) {
    const GemmPlan& plan = *gemms_.at(&s);
    const float alpha = g.alpha, beta = g.c.valid() ? g.beta : 0.0f;
    void* d = Out(g.d);
    const void* c = g.c.valid() ? In(g.c) : d;
    TESSERA_RETURN_IF_ERROR(
        Blas(L().cublasLtMatmul(lt_, plan.desc, &alpha, In(g.b), plan.a, In(g.a), plan.b, &beta, c,
                                plan.c, d, plan.c, &plan.algo, workspace_->ptr,
                                opts_.workspace_bytes, stream_),
             "cublasLtMatmul"));
    if (plan.post_act != Act::kNone)
      return Cuda(LaunchActInPlace(d, g.cd_type, g.batch * g.m * g.n, plan.post_act, g.act_a,
                                   g.act_b, stream_),
                  "activation kernel");
    return Status::OK();
  }
  Status Enqueue(const Step& s, const ConvInstr& c) {
    const ConvPlan& plan = *convs_.at(&s);
    const float one = 1.0f, zero = 0.0f;
    void* y = Out(c.y);
    void* out = c.tmp.valid() ? Out(c.tmp) : y;
    if (plan.fused) return Dnn(RunFusedConv(c, plan), "cudnnConvolutionBiasActivationForward");
    if (plan.exec_plan)
      TESSERA_RETURN_IF_ERROR(
          Dnn(L().cudnnBackendExecute(dnn_, plan.exec_plan, plan.variant), "cudnnBackendExecute"));
    else
      TESSERA_RETURN_IF_ERROR(
          Dnn(L().cudnnConvolutionForward(dnn_, &one, plan.x, In(c.x), plan.w, In(c.weight),
                                          plan.conv, plan.algo, workspace_->ptr, plan.workspace,
                                          &zero, plan.y, out),
              "cudnnConvolutionForward"));
    if (out == y && !c.bias.valid() && !c.residual.valid() && c.act == Act::kNone)
      return Status::OK();
    // Bias, residual and activation in one pass (and tmp's type into y's, when they differ).
    return Cuda(
        LaunchChannelEpilogue(out, c.xw_type, y, c.y_type, F(c.bias), In(c.residual), c.n * c.k,
                              c.k, c.oh * c.ow, c.act, c.act_a, c.act_b, stream_),
        "convolution epilogue");
  }

  Status Capture() {
    TESSERA_RETURN_IF_ERROR(Cuda(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
                                 "cudaStreamBeginCapture"));
    Status st = EnqueueSteps();
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    if (!st.ok()) {
      if (graph) cudaGraphDestroy(graph);
      return st.WithContext("capturing the CUDA graph");
    }
    TESSERA_RETURN_IF_ERROR(Cuda(end, "cudaStreamEndCapture"));
    graph_ = graph;
    return Cuda(cudaGraphInstantiate(&graph_exec_, graph_, 0), "cudaGraphInstantiate");
  }

  CudaEngineOptions opts_;
  std::shared_ptr<WeightCache> weights_;
  Program prog_;
  ExecutableInfo info_;
  cudaStream_t stream_ = nullptr;      // where the steps run: its own, or a slice's (Bind)
  cudaStream_t own_stream_ = nullptr;  // created here, destroyed here
  cublasLtHandle_t lt_ = nullptr;
  cudnnHandle_t dnn_ = nullptr;
  std::vector<std::shared_ptr<DeviceBuffer>> consts_;
  std::shared_ptr<DeviceBuffer> arena_, workspace_;
  void* staging_ = nullptr;
  std::unordered_map<const Step*, std::unique_ptr<GemmPlan>> gemms_;
  std::unordered_map<const Step*, std::unique_ptr<ConvPlan>> convs_;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t graph_exec_ = nullptr;
  std::vector<DeviceSlot> dev_in_, dev_out_;
};

class CudaEngine final : public Engine {
 public:
  explicit CudaEngine(const CudaEngineOptions& o)
      : opts_(o), weights_(std::make_shared<WeightCache>()) {}
  std::string name() const override { return "cuda"; }
  std::string device() const override { return "cuda:" + std::to_string(opts_.device); }
  int64_t memory_capacity_bytes() const override {
    size_t free = 0, total = 0;
    if (cudaSetDevice(opts_.device) != cudaSuccess || cudaMemGetInfo(&free, &total) != cudaSuccess)
      return 0;
    return static_cast<int64_t>(total);
  }
  Result<std::unique_ptr<Executable>> Compile(const Graph& graph,
                                              const CompileOptions& options) override {
    TESSERA_ASSIGN_OR_RETURN(auto prepared, PrepareGraph(graph, options));
    LowerOptions lo = LowerOptionsFor(opts_.precision);
    TESSERA_ASSIGN_OR_RETURN(auto program, LowerToProgram(std::move(prepared), lo));
    CudaEngineOptions o = opts_;
    if (options.sm_count_target > 0) o.sm_count_target = options.sm_count_target;
    auto exe = std::make_unique<CudaExecutable>(o, weights_);
    TESSERA_RETURN_IF_ERROR(exe->Build(std::move(program)));
    return std::unique_ptr<Executable>(std::move(exe));
  }

 private:
  CudaEngineOptions opts_;
  std::shared_ptr<WeightCache> weights_;
};

}  // namespace
}  // namespace cuda

SliceConvCounts GetSliceConvCounts() {
  std::lock_guard<std::mutex> lock(cuda::g_slice_conv_mu);
  return cuda::g_slice_conv;
}

ConvFusionCounts GetConvFusionCounts() {
  std::lock_guard<std::mutex> lock(cuda::g_slice_conv_mu);
  return cuda::g_conv_fusion;
}

Result<std::unique_ptr<Engine>> CreateCudaEngine(const CudaEngineOptions& options) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess)
    return Status::Unavailable(std::string("no usable CUDA device: ") + cudaGetErrorString(e));
  if (options.device < 0 || options.device >= count)
    return Status::InvalidArgument("GPU " + std::to_string(options.device) + " does not exist (" +
                                   std::to_string(count) + " visible)");
  if (options.workspace_bytes == 0)
    return Status::InvalidArgument("the CUDA engine's workspace must be > 0 bytes");
  TESSERA_ASSIGN_OR_RETURN(const cuda::Libs* libs, cuda::LoadLibs());
  cuda::g_libs.store(libs, std::memory_order_release);
  return std::unique_ptr<Engine>(std::make_unique<cuda::CudaEngine>(options));
}

}  // namespace tessera
