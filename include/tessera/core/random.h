// Random draws for the simulator and the planner's queue checks, where a simulated hour makes
// billions of them: xoshiro256** (Blackman and Vigna) for the bits, and Marsaglia and Tsang's
// ziggurat for exponential and normal variates (a table lookup and a compare ~98-99% of the
// time, instead of a log per exponential or a log, a square root and a rejection loop per normal
// pair). The layer index and the magnitude come from different bits of one 64-bit draw, which
// avoids the correlation of the original 32-bit version.
#pragma once

#include <bit>
#include <cstdint>
#include <string_view>

namespace tessera {

// FNV-1a of `s`, continuing from `h`: a seed from a name that is the same on every platform
// and build (chain calls to hash several names).
constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t Fnv1a(std::string_view s, uint64_t h = kFnvOffset) {
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

class Rng {
 public:
  using result_type = uint64_t;
  explicit Rng(uint64_t seed);
  static constexpr uint64_t min() { return 0; }
  static constexpr uint64_t max() { return UINT64_MAX; }
  uint64_t operator()() {
    const uint64_t out = std::rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = std::rotl(s_[3], 45);
    return out;
  }
  // Uniform in [0, 1), 53 bits.
  double Uniform() { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }
  // Uniform in (0, 1].
  double UniformPositive() { return static_cast<double>(((*this)() >> 11) + 1) * 0x1.0p-53; }
  // Exponential with mean 1.
  double Exp();
  // Standard normal.
  double Normal();

 private:
  double ExpSlow(uint64_t u);
  double NormalSlow(uint64_t u);
  uint64_t s_[4];
};

namespace detail {
struct ZigguratTables {
  // Exponential: 256 layers; normal: 128 layers (of |x|, with a random sign).
  uint32_t ke[256];
  double we[256], fe[256];
  uint32_t kn[128];
  double wn[128], fn[128];
};
// Built when the program starts (not from static initializers of other files).
extern const ZigguratTables kZiggurat;
}  // namespace detail

inline double Rng::Exp() {
  const uint64_t u = (*this)();
  const auto& z = detail::kZiggurat;
  const unsigned i = u & 255;
  const auto j = static_cast<uint32_t>(u >> 32);
  if (j < z.ke[i]) return j * z.we[i];
  return ExpSlow(u);
}

inline double Rng::Normal() {
  const uint64_t u = (*this)();
  const auto& z = detail::kZiggurat;
  const unsigned i = u & 127;
  const auto h = static_cast<int32_t>(static_cast<uint32_t>(u >> 32));
  const uint32_t a = h < 0 ? 0u - static_cast<uint32_t>(h) : static_cast<uint32_t>(h);
  if (a < z.kn[i]) return h * z.wn[i];
  return NormalSlow(u);
}

}  // namespace tessera
