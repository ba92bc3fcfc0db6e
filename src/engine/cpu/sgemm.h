// A single-precision GEMM for constant right-hand sides (model weights), on AVX2 + FMA.
//
// C[M, N] = epilogue(A[M, K] x B[K, N]), with B packed once at compile time into 16-column
// panels (K-major inside a panel, zero-padded at the right edge), so the inner loop streams B
// from L1 while a 6x16 block of C stays in twelve registers. Used by the CPU backend for MatMul
// with constant 2-D weights, where oneDNN 2.6's sgemm (which re-packs B on every call) measured
// 5-10% slower than ONNX Runtime on BERT's shapes (see bench/README.md).
#pragma once

#include <cstdint>

#include "tessera/core/tensor.h"

namespace tessera::cpu {

// What happens to each output element after the product, in this order:
//   v = A x B (+ C's previous contents when `accumulate`); v *= scale; v += bias[n];
//   v = act(v)
struct GemmEpilogue {
  enum class Act { kNone, kRelu, kLeakyRelu, kClip, kGelu };  // kGelu: the erf form
  const float* bias = nullptr;                                // [N] or null
  float scale = 1.0f;
  bool accumulate = false;  // add into C (a residual already seeded there)
  Act act = Act::kNone;
  float alpha = 0.0f, beta = 0.0f;  // LeakyRelu slope; Clip min / max
};

class PackedMatrix {
 public:
  static constexpr int kPanel = 16;    // columns per panel
  static constexpr int64_t kKc = 256;  // rows of B per K block

  PackedMatrix() = default;
  // Adopts storage that Pack produced for a k x n matrix (e.g. shared through a cache).
  PackedMatrix(Tensor storage, int64_t k, int64_t n) : k_(k), n_(n), data_(std::move(storage)) {}
  // Packs B, a K x N row-major matrix with row stride `ldb` (>= n).
  static PackedMatrix Pack(const float* b, int64_t k, int64_t n, int64_t ldb);
  int64_t k() const { return k_; }
  int64_t n() const { return n_; }
  int64_t panels() const { return (n_ + kPanel - 1) / kPanel; }
  // The packed floats (64-byte aligned); copies share them.
  const Tensor& storage() const { return data_; }
  // Rows [k0, k0 + kKc) of panel p, as (rows x kPanel) floats. Within a K block the panels lie
  // one after another, so a pass over one K block reads B as a single sequential stream.
  const float* block(int64_t k0, int64_t p) const {
    const int64_t rows = k0 + kKc <= k_ ? kKc : k_ - k0;
    return data_.data<float>() + k0 * panels() * kPanel + p * rows * kPanel;
  }

 private:
  int64_t k_ = 0, n_ = 0;
  Tensor data_;
};

// True when this CPU runs the AVX2 + FMA kernel (otherwise callers use another GEMM).
bool PackedGemmSupported();

// C (M x N, row stride ldc) = epilogue(A (M x K, row stride lda) x B). Multi-threaded with
// OpenMP over column panels. A and C must not overlap.
void PackedGemm(int64_t m, const float* a, int64_t lda, const PackedMatrix& b, float* c,
                int64_t ldc, const GemmEpilogue& ep);

}  // namespace tessera::cpu
