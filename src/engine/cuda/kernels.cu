#include <cfloat>

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

// Contiguous FP32 unary and same-shape / scalar-broadcast binary ops: the common cases after
// fusion (GELU, residual adds), without the index walk.
template <int kArity>
__global__ void EwFlatKernel(Ew op, int64_t n, const float* x, int64_t sx, const float* y,
                             int64_t sy, float a, float b, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float xv = x[i * sx];
    const float yv = kArity > 1 ? y[i * sy] : 0.0f;
    out[i] = EwFloat(op, xv, yv, 0.0f, a, b);
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

// inner == 1: one warp per output row.
__global__ void ReduceRowsKernel(const ReduceInstr r, const float* x, float* y) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= r.outer) return;
  const float* xr = x + row * r.len;
  float acc = Identity(r.kind);
  for (int64_t k = lane; k < r.len; k += 32) acc = Combine(r.kind, acc, xr[k]);
  acc = WarpReduce(r.kind, acc);
  if (lane == 0)
    y[row] = r.kind == ReduceInstr::Kind::kMean ? acc / static_cast<float>(r.len) : acc;
}

// inner > 1: one thread per output, consecutive threads on consecutive inner positions.
__global__ void ReduceColumnsKernel(const ReduceInstr r, const float* x, float* y) {
  const int64_t total = r.outer * r.inner;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = t / r.inner, i = t % r.inner;
    const float* xs = x + o * r.len * r.inner + i;
    float acc = Identity(r.kind);
    for (int64_t k = 0; k < r.len; ++k) acc = Combine(r.kind, acc, xs[k * r.inner]);
    y[t] = r.kind == ReduceInstr::Kind::kMean ? acc / static_cast<float>(r.len) : acc;
  }
}

// inner == 1: one block per row.
__global__ void SoftmaxRowsKernel(const SoftmaxInstr s, const float* x, float* y) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * s.len;
  float* yr = y + blockIdx.x * s.len;
  float mx = -INFINITY;
  for (int64_t k = threadIdx.x; k < s.len; k += blockDim.x) mx = fmaxf(mx, xr[k]);
  mx = BlockReduce(ReduceInstr::Kind::kMax, mx, scratch);
  float sum = 0;
  for (int64_t k = threadIdx.x; k < s.len; k += blockDim.x) sum += expf(xr[k] - mx);
  sum = BlockReduce(ReduceInstr::Kind::kSum, sum, scratch);
  const float ls = logf(sum), inv = 1.0f / sum;
  for (int64_t k = threadIdx.x; k < s.len; k += blockDim.x)
    yr[k] = s.log ? xr[k] - mx - ls : expf(xr[k] - mx) * inv;
}

__global__ void SoftmaxColumnsKernel(const SoftmaxInstr s, const float* x, float* y) {
  const int64_t total = s.outer * s.inner;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = t / s.inner, i = t % s.inner;
    const float* xs = x + o * s.len * s.inner + i;
    float* ys = y + o * s.len * s.inner + i;
    float mx = -INFINITY, sum = 0;
    for (int64_t k = 0; k < s.len; ++k) mx = fmaxf(mx, xs[k * s.inner]);
    for (int64_t k = 0; k < s.len; ++k) sum += expf(xs[k * s.inner] - mx);
    for (int64_t k = 0; k < s.len; ++k)
      ys[k * s.inner] = s.log ? xs[k * s.inner] - mx - logf(sum) : expf(xs[k * s.inner] - mx) / sum;
  }
}

// One block per row: mean, then the variance around it (two passes over the row, which stays
// in L1 / L2), then the affine output.
__global__ void LayerNormKernel(const LayerNormInstr l, const float* x, const float* g,
                                const float* b, float* y, float* mean_out, float* inv_out) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * l.cols;
  float* yr = y + blockIdx.x * l.cols;
  float s = 0;
  for (int64_t c = threadIdx.x; c < l.cols; c += blockDim.x) s += xr[c];
  const float mean = BlockReduce(ReduceInstr::Kind::kSum, s, scratch) / static_cast<float>(l.cols);
  float v = 0;
  for (int64_t c = threadIdx.x; c < l.cols; c += blockDim.x) {
    const float d = xr[c] - mean;
    v += d * d;
  }
  const float var = BlockReduce(ReduceInstr::Kind::kSum, v, scratch) / static_cast<float>(l.cols);
  const float inv = rsqrtf(var + l.eps);
  for (int64_t c = threadIdx.x; c < l.cols; c += blockDim.x) {
    const float o = (xr[c] - mean) * inv * g[c];
    yr[c] = b ? o + b[c] : o;
  }
  if (threadIdx.x == 0) {
    if (mean_out) mean_out[blockIdx.x] = mean;
    if (inv_out) inv_out[blockIdx.x] = inv;
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

__global__ void ResizeKernel(const ResizeInstr r, const float* x, const int64_t* i0,
                             const int64_t* i1, const float* w, float* y) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < r.count;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[t] = ResizeElement(r, x, i0, i1, w, t);
}

__global__ void PoolKernel(const PoolInstr p, const float* x, float* y) {
  const int64_t total = p.planes * p.oh * p.ow;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ox = t % p.ow, oy = (t / p.ow) % p.oh, pl = t / (p.ow * p.oh);
    y[t] = PoolElement(p, x, pl, oy, ox);
  }
}

__global__ void ChannelEpilogueKernel(const void* src, DataType src_type, float* y,
                                      const float* bias, const float* res, int64_t n,
                                      int64_t channels, int64_t plane, Act act, float a, float b) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = LoadF(src, src_type, t);
    if (bias) v += bias[(t / plane) % channels];
    if (res) v += res[t];
    y[t] = ApplyAct(act, v, a, b);
  }
}

__global__ void ActKernel(float* y, int64_t n, Act act, float a, float b) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[t] = ApplyAct(act, y[t], a, b);
}

bool AllFloat(const EwInstr& e) {
  if (e.out_type != DataType::kFloat32) return false;
  for (int k = 0; k < e.arity; ++k)
    if (e.in_type[k] != DataType::kFloat32) return false;
  return true;
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
  if (e.rank == 1 && e.arity <= 2 && AllFloat(e) && e.op != Ew::kWhere && e.op != Ew::kMulAdd &&
      e.op != Ew::kCast) {
    const auto* x = static_cast<const float*>(in0);
    const auto* y = static_cast<const float*>(in1);
    auto* o = static_cast<float*>(out);
    if (e.arity == 1)
      EwFlatKernel<1><<<Blocks(e.count), kThreads, 0, stream>>>(e.op, e.count, x, e.strides[0][0],
                                                                nullptr, 0, e.a, e.b, o);
    else
      EwFlatKernel<2><<<Blocks(e.count), kThreads, 0, stream>>>(e.op, e.count, x, e.strides[0][0],
                                                                y, e.strides[1][0], e.a, e.b, o);
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

cudaError_t LaunchReduce(const ReduceInstr& r, const float* in, float* out, cudaStream_t stream) {
  if (r.outer * r.inner == 0) return cudaSuccess;
  if (r.inner == 1) {
    const int64_t rows_per_block = kThreads / 32;
    ReduceRowsKernel<<<static_cast<unsigned>((r.outer + rows_per_block - 1) / rows_per_block),
                       kThreads, 0, stream>>>(r, in, out);
  } else {
    ReduceColumnsKernel<<<Blocks(r.outer * r.inner), kThreads, 0, stream>>>(r, in, out);
  }
  return cudaGetLastError();
}

cudaError_t LaunchSoftmax(const SoftmaxInstr& s, const float* in, float* out, cudaStream_t stream) {
  if (s.outer * s.inner == 0) return cudaSuccess;
  if (s.inner == 1) {
    const int threads = s.len >= 256 ? 256 : (s.len >= 128 ? 128 : 32);
    SoftmaxRowsKernel<<<static_cast<unsigned>(s.outer), threads, 0, stream>>>(s, in, out);
  } else {
    SoftmaxColumnsKernel<<<Blocks(s.outer * s.inner), kThreads, 0, stream>>>(s, in, out);
  }
  return cudaGetLastError();
}

cudaError_t LaunchLayerNorm(const LayerNormInstr& l, const float* in, const float* scale,
                            const float* bias, float* out, float* mean, float* inv_std,
                            cudaStream_t stream) {
  if (l.rows == 0) return cudaSuccess;
  const int threads = l.cols >= 256 ? 256 : (l.cols >= 128 ? 128 : 32);
  LayerNormKernel<<<static_cast<unsigned>(l.rows), threads, 0, stream>>>(l, in, scale, bias, out,
                                                                         mean, inv_std);
  return cudaGetLastError();
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

cudaError_t LaunchResize(const ResizeInstr& r, const float* x, const int64_t* i0, const int64_t* i1,
                         const float* w, float* y, cudaStream_t stream) {
  if (r.count == 0) return cudaSuccess;
  ResizeKernel<<<Blocks(r.count), kThreads, 0, stream>>>(r, x, i0, i1, w, y);
  return cudaGetLastError();
}

cudaError_t LaunchPool(const PoolInstr& p, const float* x, float* y, cudaStream_t stream) {
  const int64_t total = p.planes * p.oh * p.ow;
  if (total == 0) return cudaSuccess;
  PoolKernel<<<Blocks(total), kThreads, 0, stream>>>(p, x, y);
  return cudaGetLastError();
}

cudaError_t LaunchChannelEpilogue(const void* src, DataType src_type, float* y, const float* bias,
                                  const float* residual, int64_t planes, int64_t channels,
                                  int64_t plane, Act act, float a, float b, cudaStream_t stream) {
  const int64_t n = planes * plane;
  if (n == 0) return cudaSuccess;
  ChannelEpilogueKernel<<<Blocks(n), kThreads, 0, stream>>>(src, src_type, y, bias, residual, n,
                                                            channels, plane, act, a, b);
  return cudaGetLastError();
}

cudaError_t LaunchActInPlace(float* y, int64_t n, Act act, float a, float b, cudaStream_t stream) {
  if (n == 0 || act == Act::kNone) return cudaSuccess;
  ActKernel<<<Blocks(n), kThreads, 0, stream>>>(y, n, act, a, b);
  return cudaGetLastError();
}

}  // namespace tessera::cuda
