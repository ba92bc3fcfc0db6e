#include "engine/cpu/sgemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/cpu/vec_math.h"

namespace tessera::cpu {
namespace {

constexpr int kMr = 6;                      // rows of C per micro-kernel call
constexpr int kNr = PackedMatrix::kPanel;   // columns of C per micro-kernel call
constexpr int64_t kKc = PackedMatrix::kKc;  // a 256x16 block of B (16 KiB) stays in L1
constexpr int64_t kMc = 192;                // M block: a 192x256 A block (192 KiB) stays in L2

TESSERA_AVX2 inline __m256 Activate(__m256 v, const GemmEpilogue& ep) {
  switch (ep.act) {
    case GemmEpilogue::Act::kNone:
      return v;
    case GemmEpilogue::Act::kRelu:
      return _mm256_max_ps(v, _mm256_setzero_ps());
    case GemmEpilogue::Act::kLeakyRelu: {
      const __m256 neg = _mm256_mul_ps(v, _mm256_set1_ps(ep.alpha));
      return _mm256_blendv_ps(v, neg, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
    }
    case GemmEpilogue::Act::kClip:
      return _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(ep.alpha)), _mm256_set1_ps(ep.beta));
    case GemmEpilogue::Act::kGelu:
      return GeluErf8(v);
  }
  return v;
}

// Finishes one 8-wide vector of C: previous contents, scale, bias, activation.
TESSERA_AVX2 inline __m256 Finish(__m256 acc, const float* prev, const float* bias, bool last,
                                  const GemmEpilogue& ep) {
  if (prev) acc = _mm256_add_ps(acc, _mm256_loadu_ps(prev));
  if (!last) return acc;
  if (ep.scale != 1.0f) acc = _mm256_mul_ps(acc, _mm256_set1_ps(ep.scale));
  if (bias) acc = _mm256_add_ps(acc, _mm256_loadu_ps(bias));
  return Activate(acc, ep);
}

// C[MR x 16] (op)= A[MR x kc] x Bpanel[kc x 16]. A is packed: for each k, kMr consecutive
// values (one per row; rows past MR are padding), so its broadcasts come from one stream. `cols`
// < 16 only at the right edge, where the panel is zero-padded and only `cols` columns of C are
// touched. `bias` points at this panel's 16 (padded) bias values or is null.
template <int MR>
TESSERA_AVX2 void MicroKernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                              int cols, bool load_c, bool last, const float* bias,
                              const GemmEpilogue& ep) {
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  if (load_c)  // C's tile arrives while the product is computed
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + kNr - 1), _MM_HINT_T0);
    }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b + k * kNr), b1 = _mm256_load_ps(b + k * kNr + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + k * kMr + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    if (cols == kNr) {
      _mm256_storeu_ps(ci, Finish(acc[i][0], load_c ? ci : nullptr, bias, last, ep));
      _mm256_storeu_ps(ci + 8, Finish(acc[i][1], load_c ? ci + 8 : nullptr,
                                      bias ? bias + 8 : nullptr, last, ep));
    } else {
      alignas(32) float tmp[kNr] = {};
      if (load_c) std::memcpy(tmp, ci, sizeof(float) * cols);
      _mm256_store_ps(tmp, Finish(acc[i][0], load_c ? tmp : nullptr, bias, last, ep));
      _mm256_store_ps(tmp + 8, Finish(acc[i][1], load_c ? tmp + 8 : nullptr,
                                      bias ? bias + 8 : nullptr, last, ep));
      std::memcpy(ci, tmp, sizeof(float) * cols);
    }
  }
}

using KernelFn = void (*)(int64_t, const float*, const float*, float*, int64_t, int, bool, bool,
                          const float*, const GemmEpilogue&);
constexpr KernelFn kKernels[kMr + 1] = {nullptr,        MicroKernel<1>, MicroKernel<2>,
                                        MicroKernel<3>, MicroKernel<4>, MicroKernel<5>,
                                        MicroKernel<6>};

// Packs row groups [g0, g1) of A (m x k, row stride lda) for the micro-kernel: K blocks of kKc,
// each holding every row group as kc_len x kMr floats (k-major, rows past m zero). Packed, the
// six rows' values for one k share a cache line, and rows whose stride is a multiple of 4 KiB no
// longer compete for the same L1 sets (BERT's FFN output has 3072-float rows).
void PackA(const float* a, int64_t lda, int64_t m, int64_t k, int64_t g0, int64_t g1, float* ap) {
  const int64_t groups = (m + kMr - 1) / kMr;
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t kc = 0; kc < k; kc += kKc) {
      const int64_t kc_len = std::min(kKc, k - kc);
      float* dst = ap + kc * groups * kMr + g * kc_len * kMr;
      const int64_t r0 = g * kMr, rows = std::min<int64_t>(kMr, m - r0);
      for (int64_t i = 0; i < rows; ++i) {
        const float* src = a + (r0 + i) * lda + kc;
        for (int64_t kk = 0; kk < kc_len; ++kk) dst[kk * kMr + i] = src[kk];
      }
      for (int64_t i = rows; i < kMr; ++i)
        for (int64_t kk = 0; kk < kc_len; ++kk) dst[kk * kMr + i] = 0.0f;
    }
}

// A per-thread, 64-byte-aligned scratch buffer that only grows.
class Scratch {
 public:
  ~Scratch() { ::operator delete(p_, std::align_val_t(64)); }
  float* Get(size_t n) {
    if (n > n_) {
      ::operator delete(p_, std::align_val_t(64));
      p_ = static_cast<float*>(::operator new(n * sizeof(float), std::align_val_t(64)));
      n_ = n;
    }
    return p_;
  }

 private:
  float* p_ = nullptr;
  size_t n_ = 0;
};

// One thread's share: rows [m0, m1) x panels [p0, p1). `ap` is A (m rows) packed by PackA.
void GemmBlock(int64_t m0, int64_t m1, int64_t p0, int64_t p1, const float* ap, int64_t m,
               const PackedMatrix& b, float* c, int64_t ldc, const GemmEpilogue& ep,
               const float* padded_bias) {
  const int64_t groups = (m + kMr - 1) / kMr;
  const int64_t k = b.k(), n = b.n();
  for (int64_t mc = m0; mc < m1; mc += kMc) {
    const int64_t mc_end = std::min(m1, mc + kMc);
    for (int64_t kc = 0; kc < k; kc += kKc) {
      const int64_t kc_len = std::min(kKc, k - kc);
      const bool last = kc + kc_len == k, load_c = kc > 0 || ep.accumulate;
      for (int64_t p = p0; p < p1; ++p) {
        const float* bp = b.block(kc, p);
        const int64_t col = p * kNr;
        const int cols = static_cast<int>(std::min<int64_t>(kNr, n - col));
        const float* bias = padded_bias ? padded_bias + col : nullptr;
        // B comes from DRAM (a model's weights do not stay in cache): the hardware prefetcher
        // alone leaves the kernel waiting, so the next block's lines are requested into L2 a
        // few at a time, spread over this block's row loop.
        const float* next = p + 1 < p1     ? b.block(kc, p + 1)
                            : kc + kKc < k ? b.block(kc + kKc, p0)
                                           : nullptr;
        const int64_t next_rows = p + 1 < p1 ? kc_len : std::min(kKc, k - kc - kKc);
        const int64_t lines = next ? next_rows * kNr * 4 / 64 : 0;
        const int64_t calls = (mc_end - mc + kMr - 1) / kMr;
        const int64_t per_call = (lines + calls - 1) / std::max<int64_t>(calls, 1);
        int64_t issued = 0;
        for (int64_t r = mc; r < mc_end; r += kMr) {
          for (int64_t l = 0; l < per_call && issued < lines; ++l, ++issued)
            _mm_prefetch(reinterpret_cast<const char*>(next) + issued * 64, _MM_HINT_T1);
          const int rows = static_cast<int>(std::min<int64_t>(kMr, mc_end - r));
          kKernels[rows](kc_len, ap + kc * groups * kMr + (r / kMr) * kc_len * kMr, bp,
                         c + r * ldc + col, ldc, cols, load_c, last, bias, ep);
        }
      }
    }
  }
}

}  // namespace

PackedMatrix PackedMatrix::Pack(const float* b, int64_t k, int64_t n, int64_t ldb) {
  PackedMatrix out;
  out.k_ = k;
  out.n_ = n;
  out.data_ = Tensor::Allocate(DataType::kFloat32, {out.panels() * k * kPanel});  // zeroed
  for (int64_t k0 = 0; k0 < k; k0 += kKc)
    for (int64_t p = 0; p < out.panels(); ++p) {
      float* dst = const_cast<float*>(out.block(k0, p));
      const int64_t col = p * kPanel, cols = std::min<int64_t>(kPanel, n - col);
      for (int64_t kk = k0; kk < std::min(k, k0 + kKc); ++kk)
        std::memcpy(dst + (kk - k0) * kPanel, b + kk * ldb + col, sizeof(float) * cols);
    }
  return out;
}

bool PackedGemmSupported() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

void PackedGemm(int64_t m, const float* a, int64_t lda, const PackedMatrix& b, float* c,
                int64_t ldc, const GemmEpilogue& ep) {
  const int64_t panels = b.panels();
  // The micro-kernel reads 16 bias values per panel; pad a partial last panel's.
  std::vector<float> padded_bias;
  const float* pb = ep.bias;
  if (ep.bias && b.n() % kNr) {
    padded_bias.assign(static_cast<size_t>(panels * kNr), 0.0f);
    std::memcpy(padded_bias.data(), ep.bias, sizeof(float) * b.n());
    pb = padded_bias.data();
  }
  const int64_t k = b.k(), groups = (m + kMr - 1) / kMr;
  thread_local Scratch scratch;  // A packed: the caller's, shared with its team
  float* ap = scratch.Get(static_cast<size_t>(groups * kMr * k));
  // Small products run on the calling thread: waking a team costs more than they take.
  const bool parallel = static_cast<double>(m) * b.k() * b.n() > 2e5;
#pragma omp parallel if (parallel)
  {
    {  // every thread packs a share of A's row groups, then all of them use all of A
      const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
      PackA(a, lda, m, k, groups * t / threads, groups * (t + 1) / threads, ap);
    }
#pragma omp barrier
    // Split columns (panels) first: each thread then owns whole columns of C and streams only
    // its part of B. With fewer panels than threads, split rows too.
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t tn = std::min<int64_t>(threads, panels), tm = std::max<int64_t>(1, threads / tn);
    if (t < tn * tm) {
      const int64_t ti = t / tn, tj = t % tn;
      const int64_t row_blocks = (m + kMr - 1) / kMr;
      const int64_t m0 = std::min(m, row_blocks * ti / tm * kMr);
      const int64_t m1 = std::min(m, row_blocks * (ti + 1) / tm * kMr);
      const int64_t p0 = panels * tj / tn, p1 = panels * (tj + 1) / tn;
      if (m0 < m1 && p0 < p1) GemmBlock(m0, m1, p0, p1, ap, m, b, c, ldc, ep, pb);
    }
  }
}

}  // namespace tessera::cpu
