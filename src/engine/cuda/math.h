// Scalar math of the CUDA backend's element-wise instructions and epilogues, shared by the GPU
// kernels (compiled by nvcc) and the host interpreter (reference.cc), so that the CPU-side tests
// of a Program exercise the same formulas the device runs.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine/cuda/program.h"

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define TESSERA_HD __host__ __device__ inline
#else
#define TESSERA_HD inline
#endif

namespace tessera::cuda {

// IEEE half and bfloat16 conversions, round to nearest even, written out so that the host
// interpreter and the device compute the same bits.
TESSERA_HD uint32_t FloatBits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
#endif
}
TESSERA_HD float BitsFloat(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, 4);
  return f;
#endif
}
TESSERA_HD uint16_t FloatToBf16(float f) {
#ifdef __CUDA_ARCH__
  if (!isnan(f)) return __bfloat16_as_ushort(__float2bfloat16_rn(f));  // the same rounding
#endif
  const uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}
TESSERA_HD float Bf16ToFloat(uint16_t b) { return BitsFloat(static_cast<uint32_t>(b) << 16); }
TESSERA_HD uint16_t FloatToHalf(float f) {
#ifdef __CUDA_ARCH__
  if (!isnan(f)) return __half_as_ushort(__float2half_rn(f));  // the same rounding
#endif
  const uint32_t u = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;           // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;          // rounds to >= 65520: infinity
  if (a < 0x38800000u) {                                // below 2^-14: subnormal or zero
    if (a < 0x33000000u) return sign;                   // below half the smallest subnormal
    const uint32_t mant = (a & 0x7fffffu) | 0x800000u;  // 24-bit significand
    const int shift = 126 - static_cast<int>(a >> 23);  // 14 + (113 - exponent) - 1 ... >= 14
    const uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    return sign | static_cast<uint16_t>(q + (rem > half || (rem == half && (q & 1))));
  }
  const uint32_t r = a + 0xfffu + ((a >> 13) & 1);  // round to nearest even at bit 13
  return sign | static_cast<uint16_t>((r - 0x38000000u) >> 13);
}
TESSERA_HD float HalfToFloat(uint16_t h) {
#ifdef __CUDA_ARCH__
  return __half2float(__ushort_as_half(h));  // exact either way
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu;
  if (e == 0) {  // zero or subnormal: m x 2^-24
    const float v = static_cast<float>(m) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (e == 31) return BitsFloat(sign | 0x7f800000u | (m << 13));
  return BitsFloat(sign | ((e + 112) << 23) | (m << 13));
#endif
}

TESSERA_HD float GeluErfF(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
TESSERA_HD float GeluTanhF(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
TESSERA_HD float SigmoidF(float x) { return 1.0f / (1.0f + expf(-x)); }

TESSERA_HD float ApplyAct(Act act, float x, float a, float b) {
  switch (act) {
    case Act::kNone:
      return x;
    case Act::kRelu:
      return x > 0 ? x : 0.0f;
    case Act::kLeakyRelu:
      return x >= 0 ? x : a * x;
    case Act::kClip:
      return fminf(b, fmaxf(a, x));
    case Act::kSigmoid:
      return SigmoidF(x);
    case Act::kTanh:
      return tanhf(x);
    case Act::kHardSigmoid:
      return fminf(1.0f, fmaxf(0.0f, a * x + b));
    case Act::kHardSwish:
      return x * fminf(1.0f, fmaxf(0.0f, x / 6.0f + 0.5f));
    case Act::kSwish:
      return x * SigmoidF(x);
    case Act::kGelu:
      return GeluErfF(x);
  }
  return x;
}

// Ops with the same rule in both domains (T = float or int64_t): arithmetic that cannot divide,
// comparisons and logic (0 / 1), selection. Other ops return x.
template <typename T>
TESSERA_HD T EwCommon(Ew op, T x, T y, T z) {
  switch (op) {
    case Ew::kNeg:
      return -x;
    case Ew::kCast:
      return x;
    case Ew::kNot:
      return x == 0;
    case Ew::kAdd:
      return x + y;
    case Ew::kSub:
      return x - y;
    case Ew::kMul:
      return x * y;
    case Ew::kMin:
      return x < y ? x : y;
    case Ew::kMax:
      return x > y ? x : y;
    case Ew::kEqual:
      return x == y;
    case Ew::kLess:
      return x < y;
    case Ew::kGreater:
      return x > y;
    case Ew::kLessOrEqual:
      return x <= y;
    case Ew::kGreaterOrEqual:
      return x >= y;
    case Ew::kAnd:
      return (x != 0) && (y != 0);
    case Ew::kOr:
      return (x != 0) || (y != 0);
    case Ew::kXor:
      return (x != 0) != (y != 0);
    case Ew::kWhere:
      return x != 0 ? y : z;
    case Ew::kMulAdd:
      return x * y + z;
    default:
      return x;
  }
}

// Float-domain element-wise op (inputs converted to float).
TESSERA_HD float EwFloat(Ew op, float x, float y, float z, float a, float b) {
  switch (op) {
    case Ew::kRelu:
      return x > 0 ? x : 0.0f;
    case Ew::kLeakyRelu:
      return x >= 0 ? x : a * x;
    case Ew::kSigmoid:
      return SigmoidF(x);
    case Ew::kTanh:
      return tanhf(x);
    case Ew::kErf:
      return erff(x);
    case Ew::kGelu:
      return GeluErfF(x);
    case Ew::kGeluTanh:
      return GeluTanhF(x);
    case Ew::kSqrt:
      return sqrtf(x);
    case Ew::kExp:
      return expf(x);
    case Ew::kLog:
      return logf(x);
    case Ew::kReciprocal:
      return 1.0f / x;
    case Ew::kFloor:
      return floorf(x);
    case Ew::kCeil:
      return ceilf(x);
    case Ew::kSoftplus:
      return log1pf(expf(x));
    case Ew::kHardSwish:
      return x * fminf(1.0f, fmaxf(0.0f, x / 6.0f + 0.5f));
    case Ew::kHardSigmoid:
      return fminf(1.0f, fmaxf(0.0f, a * x + b));
    case Ew::kElu:
      return x >= 0 ? x : a * (expf(x) - 1.0f);
    case Ew::kClip:
      return fminf(b, fmaxf(a, x));
    case Ew::kSwish:
      return x * SigmoidF(x);
    case Ew::kIsNaN:
      return isnan(x) ? 1.0f : 0.0f;
    case Ew::kIsInf:
      return isinf(x) && ((x < 0 && a != 0) || (x > 0 && b != 0)) ? 1.0f : 0.0f;
    case Ew::kAbs:
      return fabsf(x);
    case Ew::kDiv:
      return x / y;
    case Ew::kPow:
      return powf(x, y);
    case Ew::kMod: {  // the result takes the divisor's sign
      float r = fmodf(x, y);
      return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r;
    }
    case Ew::kFmod:
      return fmodf(x, y);
    case Ew::kClamp:  // as Clip: a NaN input gives the lower bound
      return fminf(z, fmaxf(y, x));
    default:
      return EwCommon<float>(op, x, y, z);
  }
}

// Integer-domain element-wise op (integer and bool inputs as int64), with ONNX's integer rules:
// division by zero gives 0, Mod takes the divisor's sign, Fmod truncates. Float-only ops never
// reach it (the lowering checks) and return x.
TESSERA_HD int64_t EwInt(Ew op, int64_t x, int64_t y, int64_t z) {
  switch (op) {
    case Ew::kAbs:
      return x < 0 ? -x : x;
    case Ew::kDiv:
      return y == 0 ? 0 : x / y;
    case Ew::kPow: {
      if (y < 0) return x == 1 ? 1 : (x == -1 ? ((y & 1) ? -1 : 1) : 0);
      int64_t r = 1;
      for (int64_t i = 0; i < y && i < 64; ++i) r *= x;
      return r;
    }
    case Ew::kMod: {
      if (y == 0) return 0;
      int64_t r = x % y;
      return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r;
    }
    case Ew::kFmod:
      return y == 0 ? 0 : x % y;
    case Ew::kClamp:
      return x < y ? y : (x > z ? z : x);
    default:
      return EwCommon<int64_t>(op, x, y, z);
  }
}

// True when the op computes in the float domain for these input types.
TESSERA_HD bool EwUsesFloat(Ew op, DataType first_value_type) {
  if (op == Ew::kWhere) return false;  // selects bytes' values as they are (see EwWhereType)
  return first_value_type == DataType::kFloat32 || first_value_type == DataType::kFloat64 ||
         first_value_type == DataType::kFloat16 || first_value_type == DataType::kBFloat16;
}

// Loads element i of a buffer of type t as float / int64 (the types the lowering accepts:
// FP32, FP16, BF16, INT64, INT32, BOOL, UINT8, INT8).
TESSERA_HD float LoadF(const void* p, DataType t, int64_t i) {
  switch (t) {
    case DataType::kFloat32:
      return static_cast<const float*>(p)[i];
    case DataType::kFloat16:
      return HalfToFloat(static_cast<const uint16_t*>(p)[i]);
    case DataType::kBFloat16:
      return Bf16ToFloat(static_cast<const uint16_t*>(p)[i]);
    case DataType::kInt64:
      return static_cast<float>(static_cast<const int64_t*>(p)[i]);
    case DataType::kInt32:
      return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    case DataType::kInt8:
      return static_cast<float>(static_cast<const int8_t*>(p)[i]);
    default:  // BOOL, UINT8
      return static_cast<float>(static_cast<const uint8_t*>(p)[i]);
  }
}
TESSERA_HD int64_t LoadI(const void* p, DataType t, int64_t i) {
  switch (t) {
    case DataType::kFloat32:
    case DataType::kFloat16:
    case DataType::kBFloat16:
      return static_cast<int64_t>(LoadF(p, t, i));
    case DataType::kInt64:
      return static_cast<const int64_t*>(p)[i];
    case DataType::kInt32:
      return static_cast<const int32_t*>(p)[i];
    case DataType::kInt8:
      return static_cast<const int8_t*>(p)[i];
    default:
      return static_cast<const uint8_t*>(p)[i];
  }
}
// The integer and bool stores of StoreF / StoreI (one rule for both value types).
template <typename V>
TESSERA_HD void StoreInteger(void* p, DataType t, int64_t i, V v) {
  switch (t) {
    case DataType::kInt64:
      static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v);
      break;
    case DataType::kInt32:
      static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v);
      break;
    case DataType::kInt8:
      static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v);
      break;
    case DataType::kBool:
      static_cast<uint8_t*>(p)[i] = v != 0;
      break;
    default:
      static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v);
  }
}
TESSERA_HD void StoreF(void* p, DataType t, int64_t i, float v) {
  switch (t) {
    case DataType::kFloat32:
      static_cast<float*>(p)[i] = v;
      break;
    case DataType::kFloat16:
      static_cast<uint16_t*>(p)[i] = FloatToHalf(v);
      break;
    case DataType::kBFloat16:
      static_cast<uint16_t*>(p)[i] = FloatToBf16(v);
      break;
    default:
      StoreInteger(p, t, i, v);
  }
}
TESSERA_HD void StoreI(void* p, DataType t, int64_t i, int64_t v) {
  switch (t) {
    case DataType::kFloat32:
    case DataType::kFloat16:
    case DataType::kBFloat16:
      StoreF(p, t, i, static_cast<float>(v));
      break;
    default:
      StoreInteger(p, t, i, v);
  }
}

// The float types activations are stored in.
TESSERA_HD bool IsFloatStorage(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

// Float values stored as T (FP32, FP16 or BF16), with T fixed at compile time: the device
// kernels' loads and stores, one instantiation per storage type.
template <DataType T>
TESSERA_HD float LoadAs(const void* p, int64_t i) {
  if constexpr (T == DataType::kFloat16)
    return HalfToFloat(static_cast<const uint16_t*>(p)[i]);
  else if constexpr (T == DataType::kBFloat16)
    return Bf16ToFloat(static_cast<const uint16_t*>(p)[i]);
  else
    return static_cast<const float*>(p)[i];
}
template <DataType T>
TESSERA_HD void StoreAs(void* p, int64_t i, float v) {
  if constexpr (T == DataType::kFloat16)
    static_cast<uint16_t*>(p)[i] = FloatToHalf(v);
  else if constexpr (T == DataType::kBFloat16)
    static_cast<uint16_t*>(p)[i] = FloatToBf16(v);
  else
    static_cast<float*>(p)[i] = v;
}
// Read-only views that index like arrays of float: TypedFloats for the device, AnyFloats (type
// chosen at run time) for the host interpreter. The shared element functions below take either.
template <DataType T>
struct TypedFloats {
  const void* p;
  TESSERA_HD float operator[](int64_t i) const { return LoadAs<T>(p, i); }
};
struct AnyFloats {
  const void* p;
  DataType t;
  TESSERA_HD float operator[](int64_t i) const { return LoadF(p, t, i); }
};

// Element i of an element-wise instruction: walks the output index into each input's offset.
// Shared by the GPU kernel (one thread per element) and the host interpreter.
TESSERA_HD void EwElement(const EwInstr& e, const void* const* in, void* out, int64_t i) {
  int64_t off[3] = {0, 0, 0};
  int64_t rem = i;
  for (int d = e.rank - 1; d >= 0; --d) {
    const int64_t idx = rem % e.shape[d];
    rem /= e.shape[d];
    for (int k = 0; k < e.arity; ++k) off[k] += idx * e.strides[k][d];
  }
  if (e.op == Ew::kWhere) {
    const bool c = LoadI(in[0], e.in_type[0], off[0]) != 0;
    const int src = c ? 1 : 2;
    if (EwUsesFloat(Ew::kCast, e.in_type[src]))
      StoreF(out, e.out_type, i, LoadF(in[src], e.in_type[src], off[src]));
    else
      StoreI(out, e.out_type, i, LoadI(in[src], e.in_type[src], off[src]));
    return;
  }
  if (EwUsesFloat(e.op, e.in_type[0])) {
    const float x = LoadF(in[0], e.in_type[0], off[0]);
    const float y = e.arity > 1 ? LoadF(in[1], e.in_type[1], off[1]) : 0.0f;
    const float z = e.arity > 2 ? LoadF(in[2], e.in_type[2], off[2]) : 0.0f;
    StoreF(out, e.out_type, i, EwFloat(e.op, x, y, z, e.a, e.b));
  } else {
    const int64_t x = LoadI(in[0], e.in_type[0], off[0]);
    const int64_t y = e.arity > 1 ? LoadI(in[1], e.in_type[1], off[1]) : 0;
    const int64_t z = e.arity > 2 ? LoadI(in[2], e.in_type[2], off[2]) : 0;
    StoreI(out, e.out_type, i, EwInt(e.op, x, y, z));
  }
}

// Offsets of element i of a copy: {input, output} in elements.
TESSERA_HD void CopyOffsets(const CopyInstr& c, int64_t i, int64_t* in_off, int64_t* out_off) {
  int64_t a = 0, b = 0, rem = i;
  for (int d = c.rank - 1; d >= 0; --d) {
    const int64_t idx = rem % c.shape[d];
    rem /= c.shape[d];
    a += idx * c.in_strides[d];
    b += idx * c.out_strides[d];
  }
  *in_off = a;
  *out_off = b;
}

// Input element offset that output element i of a reflect / edge Pad reads.
TESSERA_HD int64_t PadSource(const PadInstr& p, int64_t i) {
  int64_t off = 0, rem = i;
  for (int d = p.rank - 1; d >= 0; --d) {
    const int64_t o = rem % p.out_shape[d];
    rem /= p.out_shape[d];
    const int64_t n = p.in_shape[d];
    int64_t s = o - p.pad_begin[d];
    if (p.reflect && n > 1) {
      const int64_t period = 2 * (n - 1);
      s %= period;
      if (s < 0) s += period;
      if (s >= n) s = period - s;
    } else {
      s = s < 0 ? 0 : (s >= n ? n - 1 : s);
    }
    off += s * p.in_strides[d];
  }
  return off;
}

// Output element (plane, oy, ox) of a pooling instruction; x indexes like a float array.
template <typename X>
TESSERA_HD float PoolElement(const PoolInstr& p, const X& x, int64_t plane, int64_t oy,
                             int64_t ox) {
  const int64_t xp = plane * p.h * p.w;
  float acc = p.max ? -INFINITY : 0.0f;
  int64_t n = 0;
  for (int64_t ky = 0; ky < p.kh; ++ky) {
    const int64_t iy = oy * p.stride_h - p.pad_t + ky * p.dil_h;
    for (int64_t kx = 0; kx < p.kw; ++kx) {
      const int64_t ix = ox * p.stride_w - p.pad_l + kx * p.dil_w;
      if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
      const float v = x[xp + iy * p.w + ix];
      if (p.max)
        acc = v > acc ? v : acc;
      else
        acc += v;
      ++n;
    }
  }
  if (p.max) return acc;
  if (p.count_include_pad) {
    // Window positions inside the padded extent [-pad_t, h + pad_b) x [-pad_l, w + pad_r).
    int64_t cnt = 0;
    for (int64_t ky = 0; ky < p.kh; ++ky) {
      const int64_t iy = oy * p.stride_h - p.pad_t + ky * p.dil_h;
      if (iy < -p.pad_t || iy >= p.h + p.pad_b) continue;
      for (int64_t kx = 0; kx < p.kw; ++kx) {
        const int64_t ix = ox * p.stride_w - p.pad_l + kx * p.dil_w;
        if (ix >= -p.pad_l && ix < p.w + p.pad_r) ++cnt;
      }
    }
    n = cnt;
  }
  return n > 0 ? acc / static_cast<float>(n) : 0.0f;
}

// Output element i of a Resize: the corners of the interpolating axes, summed in the CPU
// kernel's order (corner bit j = the j-th interpolating axis takes its upper index); x indexes
// like a float array.
template <typename X>
TESSERA_HD float ResizeElement(const ResizeInstr& r, const X& x, const int64_t* i0,
                               const int64_t* i1, const float* w, int64_t i) {
  int64_t c[kMaxRank];
  int64_t rem = i;
  for (int a = r.rank - 1; a >= 0; --a) {
    c[a] = rem % r.out_shape[a];
    rem /= r.out_shape[a];
  }
  int lin = 0;
  for (int a = 0; a < r.rank; ++a) lin += (r.lin_mask >> a) & 1;
  float acc = 0;
  for (int mask = 0; mask < (1 << lin); ++mask) {
    float wt = 1.0f;
    int64_t off = 0;
    int li = 0;
    for (int a = 0; a < r.rank; ++a) {
      const int64_t t = r.table_offset[a] + c[a];
      if ((r.lin_mask >> a) & 1) {
        const bool hi = (mask >> li) & 1;
        wt *= hi ? w[t] : 1.0f - w[t];
        off += (hi ? i1[t] : i0[t]) * r.in_strides[a];
        ++li;
      } else {
        off += i0[t] * r.in_strides[a];
      }
    }
    acc += wt * x[off];
  }
  return acc;
}

}  // namespace tessera::cuda
