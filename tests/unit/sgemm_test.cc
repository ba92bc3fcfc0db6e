#include "engine/cpu/sgemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "engine/cpu/vec_math.h"

namespace tessera::cpu {
namespace {

struct Case {
  int64_t m, k, n;
};

std::vector<float> Random(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (auto& x : v) x = u(rng);
  return v;
}

// Reference: double-precision product with the same epilogue.
std::vector<float> Reference(const Case& c, const std::vector<float>& a,
                             const std::vector<float>& b, const std::vector<float>& c0,
                             const GemmEpilogue& ep) {
  std::vector<float> out(c.m * c.n);
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      double s = 0;
      for (int64_t kk = 0; kk < c.k; ++kk) s += double(a[i * c.k + kk]) * b[kk * c.n + j];
      if (ep.accumulate) s += c0[i * c.n + j];
      s *= ep.scale;
      if (ep.bias) s += ep.bias[j];
      switch (ep.act) {
        case GemmEpilogue::Act::kNone:
          break;
        case GemmEpilogue::Act::kRelu:
          s = std::max(s, 0.0);
          break;
        case GemmEpilogue::Act::kLeakyRelu:
          s = s < 0 ? s * ep.alpha : s;
          break;
        case GemmEpilogue::Act::kClip:
          s = std::min<double>(ep.beta, std::max<double>(ep.alpha, s));
          break;
        case GemmEpilogue::Act::kGelu:
          s = 0.5 * s * (1.0 + std::erf(s / std::sqrt(2.0)));
          break;
      }
      out[i * c.n + j] = static_cast<float>(s);
    }
  return out;
}

void Check(const Case& c, GemmEpilogue ep, bool with_bias) {
  if (!PackedGemmSupported()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  const auto a = Random(c.m * c.k, 1), b = Random(c.k * c.n, 2), bias = Random(c.n, 3);
  const auto c0 = Random(c.m * c.n, 4);
  if (with_bias) ep.bias = bias.data();
  const PackedMatrix pb = PackedMatrix::Pack(b.data(), c.k, c.n, c.n);
  std::vector<float> out = ep.accumulate ? c0 : std::vector<float>(c.m * c.n, 123.0f);
  PackedGemm(c.m, a.data(), c.k, pb, out.data(), c.n, ep);
  const auto ref = Reference(c, a, b, c0, ep);
  double worst = 0;
  for (size_t i = 0; i < out.size(); ++i)
    worst = std::max(worst, std::fabs(double(out[i]) - ref[i]));
  // fp32 accumulation over k terms of magnitude <= 1.
  EXPECT_LE(worst, 1e-5 * c.k) << c.m << "x" << c.k << "x" << c.n;
}

// Shapes cover: row tails (m % 6), column tails (n % 16), K across several 256-row blocks with
// a tail, fewer panels than threads, and a single row / column.
const Case kShapes[] = {{1, 1, 1},      {6, 16, 16},   {7, 5, 17},     {13, 300, 33},
                        {128, 768, 64}, {5, 513, 100}, {200, 257, 48}, {37, 64, 1}};

TEST(PackedGemm, MatchesReferenceWithoutEpilogue) {
  for (const Case& c : kShapes) Check(c, {}, false);
}

TEST(PackedGemm, AddsBiasInEveryColumnIncludingThePaddedLastPanel) {
  for (const Case& c : kShapes) Check(c, {}, true);
}

TEST(PackedGemm, AccumulatesOntoASeededResidual) {
  GemmEpilogue ep;
  ep.accumulate = true;
  for (const Case& c : kShapes) Check(c, ep, true);
}

TEST(PackedGemm, AppliesScaleBeforeBias) {
  GemmEpilogue ep;
  ep.scale = 0.125f;
  for (const Case& c : kShapes) Check(c, ep, true);
}

TEST(PackedGemm, AppliesActivationsLast) {
  GemmEpilogue ep;
  ep.act = GemmEpilogue::Act::kRelu;
  Check({19, 300, 40}, ep, true);
  ep.act = GemmEpilogue::Act::kLeakyRelu;
  ep.alpha = 0.1f;
  Check({19, 300, 40}, ep, true);
  ep.act = GemmEpilogue::Act::kClip;
  ep.alpha = -0.5f;
  ep.beta = 0.75f;
  Check({19, 300, 40}, ep, true);
  ep.act = GemmEpilogue::Act::kGelu;
  for (const Case& c : kShapes) Check(c, ep, true);
}

// Exp8 and GeluErf8 over `x`, eight lanes at a time (x.size() a multiple of 8).
TESSERA_AVX2 void VectorMath(const std::vector<float>& x, std::vector<float>* e,
                             std::vector<float>* g) {
  e->resize(x.size());
  g->resize(x.size());
  for (size_t i = 0; i < x.size(); i += 8) {
    const __m256 v = _mm256_loadu_ps(x.data() + i);
    _mm256_storeu_ps(e->data() + i, Exp8(v));
    _mm256_storeu_ps(g->data() + i, GeluErf8(v));
  }
}

TEST(VectorMath, ExpAndGeluMatchDoublePrecision) {
  if (!PackedGemmSupported()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  std::vector<float> x;
  for (int i = -96000; i < 96000; ++i) x.push_back(i * 1e-3f);  // [-96, 96) in steps of 1e-3
  std::vector<float> e, g;
  VectorMath(x, &e, &g);
  for (size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i];
    const double ge = 0.5 * xi * (1.0 + std::erf(xi / std::sqrt(2.0)));
    // GELU: the erfc approximation's 1.5e-7 absolute error, scaled by |x| / 2.
    ASSERT_NEAR(g[i], ge, 1e-7 * std::max(1.0, std::fabs(xi)) + 1e-7 * std::fabs(ge)) << xi;
    if (xi < -87.34) {
      ASSERT_LE(e[i], 1.2e-38f) << xi;  // flushed to (at most) the smallest normal
    } else if (xi > -87.33 && xi < 88.37) {
      ASSERT_NEAR(e[i] / std::exp(xi), 1.0, 3e-7) << xi;
    } else if (xi > 88.38) {
      ASSERT_NEAR(e[i] / std::exp(double{88.3762626f}), 1.0, 3e-7) << xi;  // clamped, finite
    }
  }
}

TEST(PackedGemm, HonoursRowStridesOfAAndC) {
  if (!PackedGemmSupported()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  const int64_t m = 9, k = 20, n = 18, lda = 24, ldc = 21;
  const auto a = Random(m * lda, 5), b = Random(k * n, 6);
  std::vector<float> out(m * ldc, -7.0f);
  PackedGemm(m, a.data(), lda, PackedMatrix::Pack(b.data(), k, n, n), out.data(), ldc, {});
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t kk = 0; kk < k; ++kk) s += double(a[i * lda + kk]) * b[kk * n + j];
      EXPECT_NEAR(out[i * ldc + j], s, 1e-4);
    }
    for (int64_t j = n; j < ldc; ++j) EXPECT_EQ(out[i * ldc + j], -7.0f) << "wrote past column n";
  }
}

}  // namespace
}  // namespace tessera::cpu
