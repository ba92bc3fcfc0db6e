// Winograd F(2x2, 3x3) convolution for 3x3, stride-1, undilated, ungrouped convs whose channel
// counts are multiples of 8, on oneDNN's nChw8c layout (what the direct convs around it use, so
// no reorders). oneDNN 2.6 has no Winograd on AVX2; this cuts those convs' multiplies by 2.25x.
//
//   V[xi][tile][c] = (B^T d B)      input transform, 4x4 input tile d per 2x2 output tile
//   M[xi]          = V[xi] x U[xi]  16 GEMMs (one batched oneDNN matmul), U = G g G^T precomputed
//   y              = A^T M A        output transform, + bias, + residual, activation
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/cpu/steps.h"
#include "engine/ops/nn.h"

namespace tessera::cpu {
namespace {

using dnnl::memory;
using Dims = memory::dims;

constexpr int kB = 8;  // channel block of nChw8c

struct WinoGeometry {
  int64_t n, c, k, h, w, oh, ow, pt, pl, th, tw;  // pt/pl: top/left pads
  int64_t tiles() const { return n * th * tw; }
};

enum class Act { kNone, kRelu, kLeaky, kClip };

struct WinoParams {
  WinoGeometry g;
  Act act = Act::kNone;
  float alpha = 0, beta = 0;
};

#define TESSERA_AVX2 __attribute__((target("avx2,fma")))

// One nChw8c channel block is one 8-lane vector: each transform works on whole vectors, on work
// items [begin, end) of (tile, channel block). The OpenMP region that splits the items is in a
// plain function: clang does not carry target("avx2") into the region it outlines.
TESSERA_AVX2 inline void InputTile(const WinoGeometry& g, const float* x, float* v, int64_t p,
                                   int64_t cb) {
  const int64_t cb_count = g.c / kB, vstride = g.tiles() * g.c;
  const int64_t b = p / (g.th * g.tw), t = p % (g.th * g.tw), ty = t / g.tw, tx = t % g.tw;
  const float* base = x + (b * cb_count + cb) * g.h * g.w * kB;
  __m256 d[4][4];  // the 4x4 input tile, zero outside the image
  for (int i = 0; i < 4; ++i) {
    const int64_t hh = ty * 2 - g.pt + i;
    for (int j = 0; j < 4; ++j) {
      const int64_t ww = tx * 2 - g.pl + j;
      d[i][j] = hh >= 0 && hh < g.h && ww >= 0 && ww < g.w
                    ? _mm256_loadu_ps(base + (hh * g.w + ww) * kB)
                    : _mm256_setzero_ps();
    }
  }
  float* out = v + p * g.c + cb * kB;
  for (int i = 0; i < 4; ++i) {  // row i of B^T d, then times B
    __m256 r[4];
    for (int j = 0; j < 4; ++j) {
      switch (i) {
        case 0:
          r[j] = _mm256_sub_ps(d[0][j], d[2][j]);
          break;
        case 1:
          r[j] = _mm256_add_ps(d[1][j], d[2][j]);
          break;
        case 2:
          r[j] = _mm256_sub_ps(d[2][j], d[1][j]);
          break;
        default:
          r[j] = _mm256_sub_ps(d[1][j], d[3][j]);
      }
    }
    _mm256_storeu_ps(out + (i * 4 + 0) * vstride, _mm256_sub_ps(r[0], r[2]));
    _mm256_storeu_ps(out + (i * 4 + 1) * vstride, _mm256_add_ps(r[1], r[2]));
    _mm256_storeu_ps(out + (i * 4 + 2) * vstride, _mm256_sub_ps(r[2], r[1]));
    _mm256_storeu_ps(out + (i * 4 + 3) * vstride, _mm256_sub_ps(r[1], r[3]));
  }
}

TESSERA_AVX2 void InputTiles(const WinoGeometry& g, const float* x, float* v, int64_t begin,
                             int64_t end) {
  const int64_t cb_count = g.c / kB;
  for (int64_t i = begin; i < end; ++i) InputTile(g, x, v, i / cb_count, i % cb_count);
}

// Splits `items` evenly over the team and runs `fn(begin, end)` on each share.
template <typename F>
void ForShares(int64_t items, F&& fn) {
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
    fn(items * t / n, items * (t + 1) / n);
  }
}

void InputTransform(const WinoGeometry& g, const float* x, float* v) {
  ForShares(g.tiles() * (g.c / kB),
            [&](int64_t begin, int64_t end) { InputTiles(g, x, v, begin, end); });
}

TESSERA_AVX2 inline __m256 Activate(__m256 v, const WinoParams& prm) {
  switch (prm.act) {
    case Act::kNone:
      return v;
    case Act::kRelu:
      return _mm256_max_ps(v, _mm256_setzero_ps());
    case Act::kLeaky:
      return _mm256_blendv_ps(_mm256_mul_ps(v, _mm256_set1_ps(prm.alpha)), v,
                              _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GE_OQ));
    case Act::kClip:
      return _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(prm.alpha)), _mm256_set1_ps(prm.beta));
  }
  return v;
}

TESSERA_AVX2 inline void OutputTile(const WinoParams& prm, const float* m, const float* bias,
                                    const float* res, float* y, int64_t p, int64_t kb) {
  const WinoGeometry& g = prm.g;
  const int64_t kb_count = g.k / kB, mstride = g.tiles() * g.k;
  const int64_t b = p / (g.th * g.tw), t = p % (g.th * g.tw), ty = t / g.tw, tx = t % g.tw;
  const float* src = m + p * g.k + kb * kB;
  __m256 r[2][4];  // A^T M
  for (int j = 0; j < 4; ++j) {
    const __m256 m0 = _mm256_loadu_ps(src + (0 * 4 + j) * mstride),
                 m1 = _mm256_loadu_ps(src + (1 * 4 + j) * mstride),
                 m2 = _mm256_loadu_ps(src + (2 * 4 + j) * mstride),
                 m3 = _mm256_loadu_ps(src + (3 * 4 + j) * mstride);
    r[0][j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
    r[1][j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
  }
  const __m256 bv = bias ? _mm256_loadu_ps(bias + kb * kB) : _mm256_setzero_ps();
  const int64_t plane = (b * kb_count + kb) * g.oh * g.ow * kB;
  for (int a = 0; a < 2; ++a) {
    const int64_t oy = ty * 2 + a;
    if (oy >= g.oh) break;
    for (int c = 0; c < 2; ++c) {
      const int64_t ox = tx * 2 + c;
      if (ox >= g.ow) break;
      const int64_t off = plane + (oy * g.ow + ox) * kB;
      __m256 val = c == 0 ? _mm256_add_ps(_mm256_add_ps(r[a][0], r[a][1]), r[a][2])
                          : _mm256_sub_ps(_mm256_sub_ps(r[a][1], r[a][2]), r[a][3]);
      val = _mm256_add_ps(val, bv);
      if (res) val = _mm256_add_ps(val, _mm256_loadu_ps(res + off));
      _mm256_storeu_ps(y + off, Activate(val, prm));
    }
  }
}

TESSERA_AVX2 void OutputTiles(const WinoParams& prm, const float* m, const float* bias,
                              const float* res, float* y, int64_t begin, int64_t end) {
  const int64_t kb_count = prm.g.k / kB;
  for (int64_t i = begin; i < end; ++i)
    OutputTile(prm, m, bias, res, y, i / kb_count, i % kb_count);
}

void OutputTransform(const WinoParams& prm, const float* m, const float* bias, const float* res,
                     float* y) {
  ForShares(prm.g.tiles() * (prm.g.k / kB),
            [&](int64_t begin, int64_t end) { OutputTiles(prm, m, bias, res, y, begin, end); });
}

// U^T[xi][k][c] = (G g G^T)[xi] for weights g[k][c][3][3]; stored K-major per xi so oneDNN's
// sgemm reads it as a transposed [C, K] operand (its faster path, as for MatMul weights).
Tensor TransformWeights(const Tensor& w) {
  const int64_t k = w.dim(0), c = w.dim(1);
  Tensor u = Tensor::Allocate(DataType::kFloat32, {16, k, c});
  const float* g = w.data<float>();
  float* out = u.data<float>();
  for (int64_t ko = 0; ko < k; ++ko)
    for (int64_t ci = 0; ci < c; ++ci) {
      const float* f = g + (ko * c + ci) * 9;
      float t[4][3];  // G g
      for (int j = 0; j < 3; ++j) {
        t[0][j] = f[0 * 3 + j];
        t[1][j] = 0.5f * (f[0 * 3 + j] + f[1 * 3 + j] + f[2 * 3 + j]);
        t[2][j] = 0.5f * (f[0 * 3 + j] - f[1 * 3 + j] + f[2 * 3 + j]);
        t[3][j] = f[2 * 3 + j];
      }
      for (int i = 0; i < 4; ++i) {
        const float v[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]),
                            0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
        for (int j = 0; j < 4; ++j) out[((i * 4 + j) * k + ko) * c + ci] = v[j];
      }
    }
  return u;
}

class WinogradStep final : public Step {
 public:
  WinogradStep(DnnlContext* ctx, WinoParams prm, dnnl::matmul mm,
               std::unordered_map<int, memory> args, const float* x, float* v, const float* m,
               const float* bias, const float* res, float* y)
      : ctx_(ctx),
        prm_(prm),
        mm_(std::move(mm)),
        args_(std::move(args)),
        x_(x),
        v_(v),
        m_(m),
        bias_(bias),
        res_(res),
        y_(y) {}
  Status Run() override {
    InputTransform(prm_.g, x_, v_);
    mm_.execute(ctx_->stream, args_);
    ctx_->stream.wait();
    OutputTransform(prm_, m_, bias_, res_, y_);
    return Status::OK();
  }

 private:
  DnnlContext* ctx_;
  WinoParams prm_;
  dnnl::matmul mm_;
  std::unordered_map<int, memory> args_;
  const float* x_;
  float* v_;
  const float* m_;
  const float* bias_;
  const float* res_;
  float* y_;
};

}  // namespace

Result<bool> TryPlanWinogradConv(LayoutPlanner* p, const Node& n) {
  static const bool kCpuOk = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!kCpuOk || n.op != "Conv" || n.inputs.size() < 2 || !p->IsConst(n.inputs[1])) return false;
  const Tensor& w = p->graph()->initializers.at(n.inputs[1]);
  const Shape& xs = p->meta()->at(n.inputs[0]).shape;
  if (xs.size() != 4 || w.rank() != 4 || w.dim(2) != 3 || w.dim(3) != 3) return false;
  if (n.GetInt("group", 1) != 1) return false;
  auto geo = ops::ComputeWindow(n, xs, w.shape());
  if (!geo.ok()) return false;
  for (int i = 0; i < 2; ++i)
    if (geo->strides[i] != 1 || geo->dilations[i] != 1 || geo->pad_begin[i] > 2) return false;
  WinoParams prm;
  WinoGeometry& g = prm.g;
  g = {xs[0],
       xs[1],
       w.dim(0),
       xs[2],
       xs[3],
       geo->out[2],
       geo->out[3],
       geo->pad_begin[0],
       geo->pad_begin[1],
       (geo->out[2] + 1) / 2,
       (geo->out[3] + 1) / 2};
  if (g.c % kB || g.k % kB || g.c < 32 || g.k < 32) return false;
  // Tiny images make the 16 GEMMs too thin to win. With the vectorized transforms, resnet50's
  // three 7 x 7 x 512 convs (16 tiles) took 4.4 ms on Winograd against 5.1 ms direct (profile,
  // 2 threads; the model 0.99x, two A/B runs); below 16 tiles it is not measured.
  if (g.th * g.tw < 16) return false;
  const std::string act = n.GetString("tessera.act", "");
  if (act == "Relu")
    prm.act = Act::kRelu;
  else if (act == "LeakyRelu") {
    prm.act = Act::kLeaky;
    prm.alpha = n.GetFloat("tessera.alpha", 0.01f);
  } else if (act == "Clip") {
    prm.act = Act::kClip;
    prm.alpha = n.GetFloat("tessera.alpha", 0);
    prm.beta = n.GetFloat("tessera.beta", 0);
  } else if (!act.empty()) {
    return false;
  }
  DnnlContext* ctx = p->ctx();
  const memory::desc blocked(Dims{g.n, g.c, g.h, g.w}, memory::data_type::f32,
                             memory::format_tag::nChw8c);
  const memory::desc y_md(Dims{g.n, g.k, g.oh, g.ow}, memory::data_type::f32,
                          memory::format_tag::nChw8c);
  const int64_t tiles = g.tiles();
  const memory::desc v_md(Dims{16, tiles, g.c}, memory::data_type::f32, Dims{tiles * g.c, g.c, 1});
  const memory::desc u_md(Dims{16, g.c, g.k}, memory::data_type::f32, Dims{g.k * g.c, 1, g.c});
  const memory::desc m_md(Dims{16, tiles, g.k}, memory::data_type::f32, Dims{tiles * g.k, g.k, 1});
  try {
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(v_md, u_md, m_md), ctx->engine);
    const std::string x = p->EnsureLayout(n.inputs[0], blocked), y = n.outputs[0];
    const bool has_bias = n.inputs.size() > 2 && !n.inputs[2].empty();
    const bool has_sum = n.inputs.size() > 3 && !n.inputs[3].empty();
    const std::string bias = has_bias ? n.inputs[2] : "";
    const std::string res = has_sum ? p->EnsureLayout(n.inputs[3], y_md) : "";
    p->SetLayout(y, y_md);
    // Scratch for V and M lives in the arena, alive only during this step.
    const std::string vn = y + "#wino_v", mn = y + "#wino_m";
    (*p->meta())[vn] = {DataType::kFloat32, {16, tiles, g.c}, nullptr};
    (*p->meta())[mn] = {DataType::kFloat32, {16, tiles, g.k}, nullptr};
    Tensor u = p->Derive("winograd-f2x3", n.inputs[1], [&] { return TransformWeights(w); });
    p->owned().push_back(u);
    p->MarkRepacked(n.inputs[1]);
    if (has_bias) p->MarkReadRaw(bias);
    void* uptr = u.raw();
    std::vector<std::string> reads{x, vn, mn};
    if (has_bias) reads.push_back(bias);
    if (has_sum) reads.push_back(res);
    p->Add({"Conv 3x3 (Winograd)",
            reads,
            {y, vn, mn},
            has_sum ? res : "",
            has_sum ? y : "",
            [=](const Resolver& ptr) -> Result<std::unique_ptr<Step>> {
              std::unordered_map<int, memory> args{
                  {DNNL_ARG_SRC, memory(v_md, ctx->engine, ptr(vn))},
                  {DNNL_ARG_WEIGHTS, memory(u_md, ctx->engine, uptr)},
                  {DNNL_ARG_DST, memory(m_md, ctx->engine, ptr(mn))}};
              return std::unique_ptr<Step>(std::make_unique<WinogradStep>(
                  ctx, prm, dnnl::matmul(pd), std::move(args), static_cast<float*>(ptr(x)),
                  static_cast<float*>(ptr(vn)), static_cast<float*>(ptr(mn)),
                  has_bias ? static_cast<float*>(ptr(bias)) : nullptr,
                  has_sum ? static_cast<float*>(ptr(res)) : nullptr, static_cast<float*>(ptr(y))));
            }});
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

}  // namespace tessera::cpu
