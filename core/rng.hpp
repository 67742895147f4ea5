// Deterministic random numbers for training: xoshiro256** with a Box–Muller normal.
// Not std::normal_distribution, whose output differs between standard libraries; the state is
// plain data so checkpoints can store it and a resumed run continues the same stream.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>

namespace vaelab {

class Rng {
 public:
  struct State {
    std::array<std::uint64_t, 4> s{};
    float spare = 0.0f;
    bool has_spare = false;
  };

  explicit Rng(std::uint64_t seed = 1) { reseed(seed); }

  void reseed(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (auto& w : state_.s) w = splitmix64(x);
    state_.has_spare = false;
  }

  std::uint64_t next_u64() {
    auto& s = state_.s;
    const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
    const std::uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 24 random bits.
  float uniform() { return static_cast<float>(next_u64() >> 40) * 0x1.0p-24f; }

  // Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) { return n ? next_u64() % n : 0; }

  float normal() {
    if (state_.has_spare) {
      state_.has_spare = false;
      return state_.spare;
    }
    // Box–Muller on (0, 1] so log never sees zero.
    const double u1 = (static_cast<double>(next_u64() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double a = 6.283185307179586 * u2;
    state_.spare = static_cast<float>(r * std::sin(a));
    state_.has_spare = true;
    return static_cast<float>(r * std::cos(a));
  }

  const State& state() const { return state_; }
  void set_state(const State& s) { state_ = s; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  State state_;
};

}  // namespace vaelab
