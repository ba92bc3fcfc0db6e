#include "tessera/core/random.h"

#include <cmath>

namespace tessera {
namespace {

// Right edges of the base layers (Marsaglia and Tsang 2000), and the layers' common area.
constexpr double kExpR = 7.697117470131487, kExpV = 3.949659822581572e-3;
constexpr double kNormR = 3.442619855899, kNormV = 9.91256303526217e-3;

detail::ZigguratTables Build() {
  detail::ZigguratTables z{};
  constexpr double m32 = 4294967296.0, m31 = 2147483648.0;
  // Exponential, f(x) = exp(-x): layer i spans [0, x_i]; layer 0 is the base strip and tail.
  double de = kExpR, te = kExpR;
  const double qe = kExpV / std::exp(-de);
  z.ke[0] = static_cast<uint32_t>(de / qe * m32);
  z.ke[1] = 0;
  z.we[0] = qe / m32;
  z.we[255] = de / m32;
  z.fe[0] = 1;
  z.fe[255] = std::exp(-de);
  for (int i = 254; i >= 1; --i) {
    de = -std::log(kExpV / de + std::exp(-de));
    z.ke[i + 1] = static_cast<uint32_t>(de / te * m32);
    te = de;
    z.fe[i] = std::exp(-de);
    z.we[i] = de / m32;
  }
  // Normal, f(x) = exp(-x^2 / 2) on |x|, magnitudes from a signed 32-bit integer.
  double dn = kNormR, tn = kNormR;
  const double qn = kNormV / std::exp(-0.5 * dn * dn);
  z.kn[0] = static_cast<uint32_t>(dn / qn * m31);
  z.kn[1] = 0;
  z.wn[0] = qn / m31;
  z.wn[127] = dn / m31;
  z.fn[0] = 1;
  z.fn[127] = std::exp(-0.5 * dn * dn);
  for (int i = 126; i >= 1; --i) {
    dn = std::sqrt(-2 * std::log(kNormV / dn + std::exp(-0.5 * dn * dn)));
    z.kn[i + 1] = static_cast<uint32_t>(dn / tn * m31);
    tn = dn;
    z.fn[i] = std::exp(-0.5 * dn * dn);
    z.wn[i] = dn / m31;
  }
  return z;
}

}  // namespace

Rng::Rng(uint64_t seed) {
  // splitmix64 spreads any seed (0 included) over the state.
  for (auto& w : s_) {
    seed += 0x9e3779b97f4a7c15ull;
    uint64_t z = seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    w = z ^ (z >> 31);
  }
}

const detail::ZigguratTables detail::kZiggurat = Build();

double Rng::ExpSlow(uint64_t u) {
  const auto& z = detail::kZiggurat;
  for (;;) {
    const unsigned i = u & 255;
    const auto j = static_cast<uint32_t>(u >> 32);
    if (j < z.ke[i]) return j * z.we[i];
    if (i == 0) return kExpR - std::log(UniformPositive());  // the tail: r + Exp(1)
    const double x = j * z.we[i];
    if (z.fe[i] + Uniform() * (z.fe[i - 1] - z.fe[i]) < std::exp(-x)) return x;
    u = (*this)();
  }
}

double Rng::NormalSlow(uint64_t u) {
  const auto& z = detail::kZiggurat;
  for (;;) {
    const unsigned i = u & 127;
    const auto h = static_cast<int32_t>(static_cast<uint32_t>(u >> 32));
    const uint32_t a = h < 0 ? 0u - static_cast<uint32_t>(h) : static_cast<uint32_t>(h);
    if (a < z.kn[i]) return h * z.wn[i];
    const double x = h * z.wn[i];
    if (i == 0) {  // the tail beyond r (Marsaglia's method)
      double xt, y;
      do {
        xt = -std::log(UniformPositive()) / kNormR;
        y = -std::log(UniformPositive());
      } while (y + y < xt * xt);
      return h > 0 ? kNormR + xt : -kNormR - xt;
    }
    if (z.fn[i] + Uniform() * (z.fn[i - 1] - z.fn[i]) < std::exp(-0.5 * x * x)) return x;
    u = (*this)();
  }
}

}  // namespace tessera
