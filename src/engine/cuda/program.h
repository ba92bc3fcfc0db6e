// The CUDA backend's compile-time half, in plain C++ so that it builds and is tested on machines
// without a GPU: a prepared graph is lowered to a Program, a flat list of device instructions
// (element-wise, strided copy, reductions, GEMM, convolution, ...) over one activation arena
// whose layout is planned here. The GPU side (cuda_engine.cu) only binds the arena and the
// constants to device memory and launches one kernel or library call per instruction; the host
// interpreter (reference.h) runs the same Program with the same scalar math (math.h), which is
// how the lowering (index and stride arithmetic, GEMM mapping, memory plan) is checked against
// the CPU engine on every machine.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "engine/prepare.h"
#include "tessera/engine/cuda_engine.h"

namespace tessera::cuda {

constexpr int kMaxRank = 8;

// Where an operand's bytes live: a constant (index into Program::constants, plus a byte offset)
// or the arena (byte offset). Invalid refs stand for omitted optional operands.
struct Ref {
  int32_t konst = -1;
  int32_t value = -1;  // lowering only: the arena value the offset is relative to
  int64_t offset = -1;
  bool valid() const { return konst >= 0 || offset >= 0; }
  bool is_const() const { return konst >= 0; }
};

// Element-wise operations. Unary ones read in[0]; a and b are their parameters (LeakyRelu and
// Elu slope; HardSigmoid alpha / beta; Clip min / max).
enum class Ew : uint8_t {
  // unary, float
  kRelu,
  kLeakyRelu,
  kSigmoid,
  kTanh,
  kErf,
  kGelu,
  kGeluTanh,
  kSqrt,
  kExp,
  kLog,
  kReciprocal,
  kFloor,
  kCeil,
  kSoftplus,
  kHardSwish,
  kHardSigmoid,
  kElu,
  kClip,
  kSwish,
  kIsNaN,  // 1 / 0 (a BOOL output)
  kIsInf,  // 1 / 0; a: detect negative, b: detect positive
  // unary, any numeric type
  kNeg,
  kAbs,
  kCast,
  kNot,
  // binary (a broadcast against b)
  kAdd,
  kSub,
  kMul,
  kDiv,
  kPow,
  kMin,
  kMax,
  kMod,
  kFmod,
  kEqual,
  kLess,
  kGreater,
  kLessOrEqual,
  kGreaterOrEqual,
  kAnd,
  kOr,
  kXor,
  // ternary
  kWhere,   // in[0] (bool) ? in[1] : in[2]
  kMulAdd,  // in[0] * in[1] + in[2] (unfused BatchNormalization)
  kClamp,   // min(max(in[0], in[1]), in[2]) (Clip with run-time bounds)
};
int EwArity(Ew op);
const char* EwName(Ew op);

// Activations applied in GEMM / convolution epilogues (the fuse pass's tessera.act).
enum class Act : uint8_t {
  kNone,
  kRelu,
  kLeakyRelu,
  kClip,
  kSigmoid,
  kTanh,
  kHardSigmoid,
  kHardSwish,
  kSwish,
  kGelu
};

struct EwInstr {
  Ew op = Ew::kAdd;
  int arity = 1;
  DataType out_type = DataType::kFloat32;
  DataType in_type[3] = {DataType::kFloat32, DataType::kFloat32, DataType::kFloat32};
  int rank = 1;                       // after merging dims that every operand walks contiguously
  int64_t shape[kMaxRank] = {};       // output shape
  int64_t strides[3][kMaxRank] = {};  // per input, in elements; 0 where the input broadcasts
  int64_t count = 0;                  // output elements
  float a = 0, b = 0;
  Ref in[3], out;
};

// out[idx] = in[sum(idx_d * in_strides[d])], walking `shape` with out_strides (elements of
// `elem` bytes). Transpose, Slice, Concat, Split, Expand, Tile, Pad's interior.
struct CopyInstr {
  int elem = 4;
  int rank = 1;
  int64_t shape[kMaxRank] = {};
  int64_t in_strides[kMaxRank] = {};
  int64_t out_strides[kMaxRank] = {};
  int64_t count = 0;
  Ref in, out;
};

// `count` elements of `elem` bytes set to the low `elem` bytes of `bits`.
struct FillInstr {
  int elem = 4;
  int64_t count = 0;
  uint64_t bits = 0;
  Ref out;
};

// The instructions below that compute in float (reduce, softmax, layernorm, pooling, resize,
// GEMM and convolution outputs) read and write their activations in a storage type `type`:
// FP32, or FP16 / BF16 when a model runs with narrow activations. Arithmetic is FP32 inside.

// x viewed as [outer, len, inner]; y[o, i] = reduce over len. GlobalAveragePool, Reduce*.
struct ReduceInstr {
  enum class Kind : uint8_t { kSum, kMean, kMax, kMin } kind = Kind::kSum;
  DataType type = DataType::kFloat32;  // x and y
  int64_t outer = 1, len = 1, inner = 1;
  Ref in, out;
};

struct SoftmaxInstr {
  bool log = false;
  DataType type = DataType::kFloat32;  // x and y
  int64_t outer = 1, len = 1, inner = 1;
  Ref in, out;
};

// Rows of `cols` values normalized to zero mean / unit variance, then * scale[c] (+ bias[c]);
// scale and bias are FP32.
struct LayerNormInstr {
  DataType type = DataType::kFloat32;       // in and out
  DataType stat_type = DataType::kFloat32;  // mean and inv_std
  int64_t rows = 1, cols = 1;
  float eps = 1e-5f;
  Ref in, scale, bias, out;
  Ref mean, inv_std;  // optional outputs 1 and 2: per row
};

// data viewed as [outer, axis_dim, inner]; out[o, j, i] = data[o, idx[j], i] for `count`
// indices (negative ones count from the end). An index out of range sets the arena's error word.
struct GatherInstr {
  int elem = 4;
  DataType index_type = DataType::kInt64;
  int64_t outer = 1, axis_dim = 1, inner = 1, count = 1;
  Ref data, index, out;
};

// Row-major, per batch entry b: D[b] = act(alpha * op(A[b]) x op(B[b]) + beta * C[b] + bias),
// op = transpose when ta / tb. A is m x k (k x m when ta), B is k x n (n x k when tb); lda / ldb
// / ldc are row strides; sa / sb / sc batch strides in elements (0: shared by every entry). C is
// optional (beta ignored without it) and has D's layout; bias has n elements of D's type (as
// cuBLASLt's bias epilogue reads it).
struct GemmInstr {
  DataType ab_type = DataType::kFloat32;  // A and B (FP32, or FP16 / BF16 with FP32 accumulation)
  DataType cd_type = DataType::kFloat32;  // C, D and bias
  bool ta = false, tb = false;
  int64_t m = 1, n = 1, k = 1, lda = 1, ldb = 1, ldc = 1;
  int64_t batch = 1, sa = 0, sb = 0, sc = 0;
  float alpha = 1, beta = 0;
  Act act = Act::kNone;
  float act_a = 0, act_b = 0;
  Ref a, b, c, bias, d;
};

// 2-D convolution, NCHW / KCRS (1-D convolutions come as H = 1), symmetric zero padding (the
// lowering pads explicitly otherwise): y = act(conv(x, w) + bias[k] + residual), bias FP32. With
// FP16 / BF16 x and w (xw_type) the convolution accumulates in FP32 and writes its output in
// xw_type: into y itself when y_type is the same (the epilogue then runs in place), else into
// `tmp`, which the epilogue reads to write y in y_type.
struct ConvInstr {
  DataType xw_type = DataType::kFloat32;
  DataType y_type = DataType::kFloat32;  // y and residual
  int64_t n = 1, c = 1, h = 1, w = 1, k = 1, r = 1, s = 1, oh = 1, ow = 1;
  int64_t pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1, groups = 1;
  Act act = Act::kNone;
  float act_a = 0, act_b = 0;
  Ref x, weight, bias, residual, y, tmp;
};

// Max / average pooling over planes (N x C) of h x w; pad_t / pad_l are the leading pads (the
// trailing ones only matter for count_include_pad, through pad_b / pad_r).
struct PoolInstr {
  bool max = true, count_include_pad = false;
  DataType type = DataType::kFloat32;  // x and y
  int64_t planes = 1, h = 1, w = 1, oh = 1, ow = 1, kh = 1, kw = 1;
  int64_t stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int64_t pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0;
  Ref x, y;
};

// Resize (nearest / linear) through per-axis tables (constants): output coordinate o on axis a
// reads source indices i0[off[a] + o] / i1[off[a] + o] with weight w[off[a] + o] on i1; the
// axes in lin_mask interpolate, so an element sums 2^popcount(lin_mask) corners.
// Pad in reflect or edge mode: output coordinate o on dim d reads input coordinate
// o - pad_begin[d], mirrored (reflect: -1 -> 1) or clamped (edge) into [0, in_shape[d]).
struct PadInstr {
  bool reflect = true;  // else edge
  int elem = 4;
  int rank = 1;
  int64_t out_shape[kMaxRank] = {};
  int64_t in_shape[kMaxRank] = {};
  int64_t in_strides[kMaxRank] = {};
  int64_t pad_begin[kMaxRank] = {};
  int64_t count = 0;
  Ref in, out;
};

struct ResizeInstr {
  DataType type = DataType::kFloat32;  // x and y (the weight table is FP32)
  int rank = 1;
  int64_t out_shape[kMaxRank] = {};
  int64_t in_strides[kMaxRank] = {};
  int64_t table_offset[kMaxRank] = {};
  uint32_t lin_mask = 0;
  int64_t count = 0;
  Ref x, y, i0, i1, w;
};

using Instr = std::variant<EwInstr, CopyInstr, FillInstr, ReduceInstr, SoftmaxInstr, LayerNormInstr,
                           GatherInstr, GemmInstr, ConvInstr, PoolInstr, ResizeInstr, PadInstr>;

struct Step {
  std::string label;  // the ONNX op it came from (for profiles and errors)
  std::string node;   // the node's name
  Instr instr;
};

// A graph input or output: its bytes in the arena (or, for an output the graph computes at
// compile time, a constant).
struct IoSlot {
  TensorSpec spec;
  Ref ref;
  size_t bytes = 0;
};

struct Program {
  std::vector<Step> steps;
  std::vector<Tensor> constants;  // host copies; the engine uploads each once
  std::vector<IoSlot> inputs, outputs;
  size_t arena_bytes = 0;    // includes the error word
  size_t naive_bytes = 0;    // what the activations would take without reuse
  int64_t error_offset = 0;  // an int32 set non-zero by a kernel that meets bad data
  ExecutableInfo info;
};

struct LowerOptions {
  // The operand type of GEMMs and convolutions: FP32, or FP16 / BF16 (weights converted once at
  // compile time, FP32 accumulation).
  DataType matmul_type = DataType::kFloat32;
  // How the graph's FP32 activations are stored in the arena: FP32, or FP16 / BF16 end to end
  // (every kernel loads them as FP32, computes in FP32 and rounds on store). These stay FP32:
  // graph inputs (a GEMM or convolution that reads one casts it once) and outputs (their
  // producer writes FP32); the residual stream of a transformer (LayerNormalization's input and
  // output); a value that a Cast turns into integers (rounding could change the integer); and
  // constants other than GEMM / convolution weights.
  DataType activation_type = DataType::kFloat32;
};

// The GEMM / convolution operand type of a precision (TF32 keeps FP32 storage).
DataType MatmulTypeOf(GpuPrecision p);
// A precision's lowering: fp16 / bf16 narrow operands and activations; fp32 / tf32 neither.
LowerOptions LowerOptionsFor(GpuPrecision p);

// Lowers a prepared graph. Unimplemented names the op and node the CUDA backend cannot run.
Result<Program> LowerToProgram(PreparedGraph prepared, const LowerOptions& options = {});

// The arithmetic and the unavoidable memory traffic of a Program, for roofline floors: FLOPs of
// GEMMs (2 m n k per batch entry) and convolutions (2 per multiply-add); weight bytes (read at
// least once per run) and input + output bytes (moved at least once).
struct ProgramWork {
  double flops = 0;
  double weight_bytes = 0;
  double io_bytes = 0;
};
ProgramWork CountWork(const Program& program);

// Merges adjacent dims that every operand walks contiguously (strides[k][d] ==
// strides[k][d + 1] * shape[d + 1] for all k) and drops dims of extent 1; used by the lowering
// for element-wise and copy instructions, exposed for its tests. A walk of no dims becomes one
// dim of extent 1.
void MergeDims(std::vector<int64_t>* shape, const std::vector<std::vector<int64_t>*>& strides);

// Calls fn(Ref&) for every operand of an instruction (inputs and outputs).
template <typename Fn>
void ForEachRef(Instr& instr, Fn&& fn) {
  std::visit(
      [&](auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, EwInstr>) {
          for (int k = 0; k < x.arity; ++k) fn(x.in[k]);
          fn(x.out);
        } else if constexpr (std::is_same_v<T, CopyInstr> || std::is_same_v<T, PadInstr> ||
                             std::is_same_v<T, ReduceInstr> || std::is_same_v<T, SoftmaxInstr>) {
          fn(x.in);
          fn(x.out);
        } else if constexpr (std::is_same_v<T, FillInstr>) {
          fn(x.out);
        } else if constexpr (std::is_same_v<T, LayerNormInstr>) {
          fn(x.in);
          fn(x.scale);
          fn(x.bias);
          fn(x.out);
          fn(x.mean);
          fn(x.inv_std);
        } else if constexpr (std::is_same_v<T, GatherInstr>) {
          fn(x.data);
          fn(x.index);
          fn(x.out);
        } else if constexpr (std::is_same_v<T, GemmInstr>) {
          fn(x.a);
          fn(x.b);
          fn(x.c);
          fn(x.bias);
          fn(x.d);
        } else if constexpr (std::is_same_v<T, ConvInstr>) {
          fn(x.x);
          fn(x.weight);
          fn(x.bias);
          fn(x.residual);
          fn(x.y);
          fn(x.tmp);
        } else if constexpr (std::is_same_v<T, ResizeInstr>) {
          fn(x.x);
          fn(x.i0);
          fn(x.i1);
          fn(x.w);
          fn(x.y);
        } else {
          static_assert(std::is_same_v<T, PoolInstr>);
          fn(x.x);
          fn(x.y);
        }
      },
      instr);
}

}  // namespace tessera::cuda
