#include <cfloat>
#include <type_traits>

#include "engine/cuda/kernels.cuh"
#include "engine/cuda/math.h"

namespace tessera::cuda {
namespace {

constexpr int kThreads = 256;

// Enough blocks to cover n with grid-stride loops, capped (each thread then loops).
unsigned Blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

__global__ void EwKernel(const EwInstr e, const void* in0, const void* in1, const void* in2,
                         void* out) {
  const void* in[3] = {in0, in1, in2};
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < e.count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    EwElement(e, in, out, i);
}

// Contiguous unary and same-shape / scalar-broadcast binary ops on mixed float storage (FP32,
// FP16, BF16; the types are the same for every thread, so their switches do not diverge): the
// common cases after fusion (GELU, residual adds, casts between float types), without the index
// walk.
template <int kArity>
__global__ void EwFlatKernel(Ew op, int64_t n, const void* x, DataType tx, int64_t sx,
                             const void* y, DataType ty, int64_t sy, float a, float b, void* out,
                             DataType to) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float xv = LoadF(x, tx, i * sx);
    const float yv = kArity > 1 ? LoadF(y, ty, i * sy) : 0.0f;
    StoreF(out, to, i, EwFloat(op, xv, yv, 0.0f, a, b));
  }
}

// The same with every operand stored as T: the loads and stores compile to plain accesses.
template <int kArity, DataType T>
__global__ void EwFlatTypedKernel(Ew op, int64_t n, const void* x, int64_t sx, const void* y,
                                  int64_t sy, float a, float b, void* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float xv = LoadAs<T>(x, i * sx);
    const float yv = kArity > 1 ? LoadAs<T>(y, i * sy) : 0.0f;
    StoreAs<T>(out, i, EwFloat(op, xv, yv, 0.0f, a, b));
  }
}

template <typename T>
__global__ void CopyKernel(const CopyInstr c, const T* in, T* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < c.count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t a, b;
    CopyOffsets(c, i, &a, &b);
    out[b] = in[a];
  }
}

__global__ void CopyBytesKernel(const CopyInstr c, const uint8_t* in, uint8_t* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < c.count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t a, b;
    CopyOffsets(c, i, &a, &b);
    for (int k = 0; k < c.elem; ++k) out[b * c.elem + k] = in[a * c.elem + k];
  }
}

template <typename T>
__global__ void FillKernel(int64_t n, T v, T* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = v;
}

__device__ float Combine(ReduceInstr::Kind k, float a, float b) {
  if (k == ReduceInstr::Kind::kMax) return fmaxf(a, b);
  if (k == ReduceInstr::Kind::kMin) return fminf(a, b);
  return a + b;
}
__device__ float Identity(ReduceInstr::Kind k) {
  if (k == ReduceInstr::Kind::kMax) return -INFINITY;
  if (k == ReduceInstr::Kind::kMin) return INFINITY;
  return 0.0f;
}

__device__ float WarpReduce(ReduceInstr::Kind k, float v) {
  for (int o = 16; o > 0; o >>= 1) v = Combine(k, v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide reduction (every thread gets the result). `scratch` holds 32 floats.
__device__ float BlockReduce(ReduceInstr::Kind k, float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = WarpReduce(k, v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < warps ? scratch[threadIdx.x] : Identity(k);
  if (warp == 0) v = WarpReduce(k, v);
  if (threadIdx.x == 0) scratch[0] = v;
  __syncthreads();
  return scratch[0];
}

// The kernels below read and write float activations stored as T (FP32, FP16 or BF16) and
// compute in FP32; one instantiation per storage type (see ByFloatType).

// inner == 1: one warp per output row.
template <DataType T>
__global__ void ReduceRowsKernel(const ReduceInstr r, const void* xv, void* y) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= r.outer) return;
  const TypedFloats<T> x{xv};
  const int64_t xr = row * r.len;
  float acc = Identity(r.kind);
  for (int64_t k = lane; k < r.len; k += 32) acc = Combine(r.kind, acc, x[xr + k]);
  acc = WarpReduce(r.kind, acc);
  if (lane == 0)
    StoreAs<T>(y, row, r.kind == ReduceInstr::Kind::kMean ? acc / static_cast<float>(r.len) : acc);
}

// inner > 1: one thread per output, consecutive threads on consecutive inner positions.
template <DataType T>
__global__ void ReduceColumnsKernel(const ReduceInstr r, const void* xv, void* y) {
  const TypedFloats<T> x{xv};
  const int64_t total = r.outer * r.inner;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = t / r.inner, i = t % r.inner;
    const int64_t xs = o * r.len * r.inner + i;
    float acc = Identity(r.kind);
    for (int64_t k = 0; k < r.len; ++k) acc = Combine(r.kind, acc, x[xs + k * r.inner]);
    StoreAs<T>(y, t, r.kind == ReduceInstr::Kind::kMean ? acc / static_cast<float>(r.len) : acc);
  }
}

// inner == 1: one block per row.
template <DataType T>
__global__ void SoftmaxRowsKernel(const SoftmaxInstr s, const void* xv, void* y) {
  __shared__ float scratch[32];
  const TypedFloats<T> x{xv};
  const int64_t row = blockIdx.x * s.len;
  float mx = -INFINITY;
  for (int64_t k = threadIdx.x; k < s.len; k += blockDim.x) mx = fmaxf(mx, x[row + k]);
  mx = BlockReduce(ReduceInstr::Kind::kMax, mx, scratch);
  float sum = 0;
  for (int64_t k = threadIdx.x; k < s.len; k += blockDim.x) sum += expf(x[row + k] - mx);
  sum = BlockReduce(ReduceInstr::Kind::kSum, sum, scratch);
  const float ls = logf(sum), inv = 1.0f / sum;
  for (int64_t k = threadIdx.x; k < s.len; k += blockDim.x) {
    const float v = x[row + k];
    StoreAs<T>(y, row + k, s.log ? v - mx - ls : expf(v - mx) * inv);
  }
}

template <DataType T>
__global__ void SoftmaxColumnsKernel(const SoftmaxInstr s, const void* xv, void* y) {
  const TypedFloats<T> x{xv};
  const int64_t total = s.outer * s.inner;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = t / s.inner, i = t % s.inner;
    const int64_t base = o * s.len * s.inner + i;
    float mx = -INFINITY, sum = 0;
    for (int64_t k = 0; k < s.len; ++k) mx = fmaxf(mx, x[base + k * s.inner]);
    for (int64_t k = 0; k < s.len; ++k) sum += expf(x[base + k * s.inner] - mx);
    for (int64_t k = 0; k < s.len; ++k) {
      const float v = x[base + k * s.inner];
      StoreAs<T>(y, base + k * s.inner, s.log ? v - mx - logf(sum) : expf(v - mx) / sum);
    }
  }
}

// One block per row: mean, then the variance around it (two passes over the row, which stays
// in L1 / L2), then the affine output. Scale and bias are FP32; mean / inv_std (per row) are
// stored as l.stat_type.
template <DataType T>
__global__ void LayerNormKernel(const LayerNormInstr l, const void* xv, const float* g,
                                const float* b, void* y, void* mean_out, void* inv_out) {
  __shared__ float scratch[32];
  const TypedFloats<T> x{xv};
  const int64_t row = blockIdx.x * l.cols;
  float s = 0;
  for (int64_t c = threadIdx.x; c < l.cols; c += blockDim.x) s += x[row + c];
  const float mean = BlockReduce(ReduceInstr::Kind::kSum, s, scratch) / static_cast<float>(l.cols);
  float v = 0;
  for (int64_t c = threadIdx.x; c < l.cols; c += blockDim.x) {
    const float d = x[row + c] - mean;
    v += d * d;
  }
  const float var = BlockReduce(ReduceInstr::Kind::kSum, v, scratch) / static_cast<float>(l.cols);
  const float inv = rsqrtf(var + l.eps);
  for (int64_t c = threadIdx.x; c < l.cols; c += blockDim.x) {
    const float o = (x[row + c] - mean) * inv * g[c];
    StoreAs<T>(y, row + c, b ? o + b[c] : o);
  }
  if (threadIdx.x == 0) {
    if (mean_out) StoreF(mean_out, l.stat_type, blockIdx.x, mean);
    if (inv_out) StoreF(inv_out, l.stat_type, blockIdx.x, inv);
  }
}

template <typename T>
__global__ void GatherKernel(const GatherInstr g, const T* data, const void* index, T* out,
                             int32_t* error) {
  const int64_t total = g.outer * g.count * g.inner;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t % g.inner, j = (t / g.inner) % g.count, o = t / (g.inner * g.count);
    int64_t k = LoadI(index, g.index_type, j);
    if (k < 0) k += g.axis_dim;
    if (k < 0 || k >= g.axis_dim) {
      *error = 1;
      out[t] = T{};
      continue;
    }
    out[t] = data[(o * g.axis_dim + k) * g.inner + i];
  }
}

template <typename T>
__global__ void PadKernel(const PadInstr p, const T* in, T* out) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < p.count;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[t] = in[PadSource(p, t)];
}

template <DataType T>
__global__ void ResizeKernel(const ResizeInstr r, const void* x, const int64_t* i0,
                             const int64_t* i1, const float* w, void* y) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < r.count;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    StoreAs<T>(y, t, ResizeElement(r, TypedFloats<T>{x}, i0, i1, w, t));
}

template <DataType T>
__global__ void PoolKernel(const PoolInstr p, const void* x, void* y) {
  const int64_t total = p.planes * p.oh * p.ow;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ox = t % p.ow, oy = (t / p.ow) % p.oh, pl = t / (p.ow * p.oh);
    StoreAs<T>(y, t, PoolElement(p, TypedFloats<T>{x}, pl, oy, ox));
  }
}

// y (and the residual) stored as T; src as src_type (the library's output, possibly y itself).
template <DataType T>
__global__ void ChannelEpilogueKernel(const void* src, DataType src_type, void* y,
                                      const float* bias, const void* res, int64_t n,
                                      int64_t channels, int64_t plane, Act act, float a, float b) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = LoadF(src, src_type, t);
    if (bias) v += bias[(t / plane) % channels];
    if (res) v += LoadAs<T>(res, t);
    StoreAs<T>(y, t, ApplyAct(act, v, a, b));
  }
}

template <DataType T>
__global__ void ActKernel(void* y, int64_t n, Act act, float a, float b) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    StoreAs<T>(y, t, ApplyAct(act, LoadAs<T>(y, t), a, b));
}

bool AllFloatStorage(const EwInstr& e) {
  if (!IsFloatStorage(e.out_type)) return false;
  for (int k = 0; k < e.arity; ++k)
    if (!IsFloatStorage(e.in_type[k])) return false;
  return true;
}

// Calls f with std::integral_constant<DataType, T> for a float storage type T (FP32, FP16,
// BF16): the kernels above get one instantiation per type. False for another type.
template <typename F>
bool ByFloatType(DataType t, F&& f) {
  switch (t) {
    case DataType::kFloat32:
      f(std::integral_constant<DataType, DataType::kFloat32>{});
      return true;
    case DataType::kFloat16:
      f(std::integral_constant<DataType, DataType::kFloat16>{});
      return true;
    case DataType::kBFloat16:
      f(std::integral_constant<DataType, DataType::kBFloat16>{});
      return true;
    default:
      return false;
  }
}

// Calls f with a value of the unsigned type of `elem` bytes (1, 2, 4 or 8): one switch for the
// kernels that only move elements. False for another size.
template <typename F>
bool ByElementSize(int elem, F&& f) {
  switch (elem) {
    case 1:
      f(uint8_t{});
      return true;
    case 2:
      f(uint16_t{});
      return true;
    case 4:
      f(uint32_t{});
      return true;
    case 8:
      f(uint64_t{});
      return true;
    default:
      return false;
  }
}

}  // namespace

cudaError_t LaunchEw(const EwInstr& e, const void* in0, const void* in1, const void* in2, void* out,
                     cudaStream_t stream) {
  if (e.count == 0) return cudaSuccess;
  // rank 1 after merging: every operand is contiguous or a broadcast scalar.
  if (e.rank == 1 && e.arity <= 2 && AllFloatStorage(e) && e.op != Ew::kWhere &&
      e.op != Ew::kMulAdd) {
    const bool same = e.in_type[0] == e.out_type && (e.arity == 1 || e.in_type[1] == e.out_type);
    if (same) {
      ByFloatType(e.out_type, [&](auto t) {
        constexpr DataType T = decltype(t)::value;
        if (e.arity == 1)
          EwFlatTypedKernel<1, T><<<Blocks(e.count), kThreads, 0, stream>>>(
              e.op, e.count, in0, e.strides[0][0], nullptr, 0, e.a, e.b, out);
        else
          EwFlatTypedKernel<2, T><<<Blocks(e.count), kThreads, 0, stream>>>(
              e.op, e.count, in0, e.strides[0][0], in1, e.strides[1][0], e.a, e.b, out);
      });
      return cudaGetLastError();
    }
    if (e.arity == 1)
      EwFlatKernel<1><<<Blocks(e.count), kThreads, 0, stream>>>(
          e.op, e.count, in0, e.in_type[0], e.strides[0][0], nullptr, DataType::kFloat32, 0, e.a,
          e.b, out, e.out_type);
    else
      EwFlatKernel<2><<<Blocks(e.count), kThreads, 0, stream>>>(
          e.op, e.count, in0, e.in_type[0], e.strides[0][0], in1, e.in_type[1], e.strides[1][0],
          e.a, e.b, out, e.out_type);
    return cudaGetLastError();
  }
  EwKernel<<<Blocks(e.count), kThreads, 0, stream>>>(e, in0, in1, in2, out);
  return cudaGetLastError();
}

cudaError_t LaunchCopy(const CopyInstr& c, const void* in, void* out, cudaStream_t stream) {
  if (c.count == 0) return cudaSuccess;
  const unsigned blocks = Blocks(c.count);
  const bool sized = ByElementSize(c.elem, [&](auto t) {
    using T = decltype(t);
    CopyKernel<T>
        <<<blocks, kThreads, 0, stream>>>(c, static_cast<const T*>(in), static_cast<T*>(out));
  });
  if (!sized)
    CopyBytesKernel<<<blocks, kThreads, 0, stream>>>(c, static_cast<const uint8_t*>(in),
                                                     static_cast<uint8_t*>(out));
  return cudaGetLastError();
}

cudaError_t LaunchFill(const FillInstr& f, void* out, cudaStream_t stream) {
  if (f.count == 0) return cudaSuccess;
  const bool sized = ByElementSize(f.elem, [&](auto t) {
    using T = decltype(t);
    FillKernel<T><<<Blocks(f.count), kThreads, 0, stream>>>(f.count, static_cast<T>(f.bits),
                                                            static_cast<T*>(out));
  });
  return sized ? cudaGetLastError() : cudaErrorInvalidValue;
}

cudaError_t LaunchReduce(const ReduceInstr& r, const void* in, void* out, cudaStream_t stream) {
  if (r.outer * r.inner == 0) return cudaSuccess;
  const bool typed = ByFloatType(r.type, [&](auto t) {
    constexpr DataType T = decltype(t)::value;
    if (r.inner == 1) {
      const int64_t rows_per_block = kThreads / 32;
      ReduceRowsKernel<T><<<static_cast<unsigned>((r.outer + rows_per_block - 1) / rows_per_block),
                            kThreads, 0, stream>>>(r, in, out);
    } else {
      ReduceColumnsKernel<T><<<Blocks(r.outer * r.inner), kThreads, 0, stream>>>(r, in, out);
    }
  });
  return typed ? cudaGetLastError() : cudaErrorInvalidValue;
}

cudaError_t LaunchSoftmax(const SoftmaxInstr& s, const void* in, void* out, cudaStream_t stream) {
  if (s.outer * s.inner == 0) return cudaSuccess;
  const bool typed = ByFloatType(s.type, [&](auto t) {
    constexpr DataType T = decltype(t)::value;
    if (s.inner == 1) {
      const int threads = s.len >= 256 ? 256 : (s.len >= 128 ? 128 : 32);
      SoftmaxRowsKernel<T><<<static_cast<unsigned>(s.outer), threads, 0, stream>>>(s, in, out);
    } else {
      SoftmaxColumnsKernel<T><<<Blocks(s.outer * s.inner), kThreads, 0, stream>>>(s, in, out);
    }
  });
  return typed ? cudaGetLastError() : cudaErrorInvalidValue;
}

cudaError_t LaunchLayerNorm(const LayerNormInstr& l, const void* in, const float* scale,
                            const float* bias, void* out, void* mean, void* inv_std,
                            cudaStream_t stream) {
  if (l.rows == 0) return cudaSuccess;
  const int threads = l.cols >= 256 ? 256 : (l.cols >= 128 ? 128 : 32);
  const bool typed = ByFloatType(l.type, [&](auto t) {
    LayerNormKernel<decltype(t)::value><<<static_cast<unsigned>(l.rows), threads, 0, stream>>>(
        l, in, scale, bias, out, mean, inv_std);
  });
  return typed ? cudaGetLastError() : cudaErrorInvalidValue;
}

cudaError_t LaunchGather(const GatherInstr& g, const void* data, const void* index, void* out,
                         int32_t* error, cudaStream_t stream) {
  const int64_t total = g.outer * g.count * g.inner;
  if (total == 0) return cudaSuccess;
  const bool sized = ByElementSize(g.elem, [&](auto t) {
    using T = decltype(t);
    GatherKernel<T><<<Blocks(total), kThreads, 0, stream>>>(g, static_cast<const T*>(data), index,
                                                            static_cast<T*>(out), error);
  });
  return sized ? cudaGetLastError() : cudaErrorInvalidValue;
}

cudaError_t LaunchPad(const PadInstr& p, const void* in, void* out, cudaStream_t stream) {
  if (p.count == 0) return cudaSuccess;
  const bool sized = ByElementSize(p.elem, [&](auto t) {
    using T = decltype(t);
    PadKernel<T><<<Blocks(p.count), kThreads, 0, stream>>>(p, static_cast<const T*>(in),
                                                           static_cast<T*>(out));
  });
  return sized ? cudaGetLastError() : cudaErrorInvalidValue;
}

cudaError_t LaunchResize(const ResizeInstr& r, const void* x, const int64_t* i0, const int64_t* i1,
                         const float* w, void* y, cudaStream_t stream) {
  if (r.count == 0) return cudaSuccess;
  const bool typed = ByFloatType(r.type, [&](auto t) {
    ResizeKernel<decltype(t)::value><<<Blocks(r.count), kThreads, 0, stream>>>(r, x, i0, i1, w, y);
  });
  return typed ? cudaGetLastError() : cudaErrorInvalidValue;
}

cudaError_t LaunchPool(const PoolInstr& p, const void* x, void* y, cudaStream_t stream) {
  const int64_t total = p.planes * p.oh * p.ow;
  if (total == 0) return cudaSuccess;
  const bool typed = ByFloatType(p.type, [&](auto t) {
    PoolKernel<decltype(t)::value><<<Blocks(total), kThreads, 0, stream>>>(p, x, y);
  });
  return typed ? cudaGetLastError() : cudaErrorInvalidValue;
}

cudaError_t LaunchChannelEpilogue(const void* src, DataType src_type, void* y, DataType y_type,
                                  const float* bias, const void* residual, int64_t planes,
                                  int64_t channels, int64_t plane, Act act, float a, float b,
                                  cudaStream_t stream) {
  const int64_t n = planes * plane;
  if (n == 0) return cudaSuccess;
  if (!IsFloatStorage(src_type)) return cudaErrorInvalidValue;
  const bool typed = ByFloatType(y_type, [&](auto t) {
    ChannelEpilogueKernel<decltype(t)::value><<<Blocks(n), kThreads, 0, stream>>>(
        src, src_type, y, bias, residual, n, channels, plane, act, a, b);
  });
  return typed ? cudaGetLastError() : cudaErrorInvalidValue;
}

cudaError_t LaunchActInPlace(void* y, DataType type, int64_t n, Act act, float a, float b,
                             cudaStream_t stream) {
  if (n == 0 || act == Act::kNone) return cudaSuccess;
  const bool typed = ByFloatType(type, [&](auto t) {
    ActKernel<decltype(t)::value><<<Blocks(n), kThreads, 0, stream>>>(y, n, act, a, b);
  });
  return typed ? cudaGetLastError() : cudaErrorInvalidValue;
}

}  // namespace tessera::cuda
