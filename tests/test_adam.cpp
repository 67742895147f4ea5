// Adam (core/adam.hpp): the first step in closed form (m̂ = g, v̂ = g², so θ −= lr·g/(|g| + eps)),
// the second against the textbook recursion in double, and the finiteness flag the trainer relies
// on instead of its own pass over the gradient: NaN, ±Inf or a square that overflows anywhere (vector body or scalar tail,
// on 1 or 2 threads) must be reported.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/adam.hpp"
#include "core/rng.hpp"
#include "core/thread_pool.hpp"

using vaelab::Adam;

TEST_CASE("adam: first two steps match the recursion, on 1 and 2 threads") {
  const std::size_t n = 100003;  // several pool chunks and a tail that is not a whole vector
  vaelab::Rng rng(3);
  std::vector<float> theta0(n), g1(n), g2(n);
  for (std::size_t i = 0; i < n; ++i) {
    theta0[i] = static_cast<float>(rng.normal());
    g1[i] = static_cast<float>(rng.normal()) * (i % 7 == 0 ? 1e-6f : 1.0f);
    g2[i] = static_cast<float>(rng.normal());
  }
  for (int threads : {1, 2}) {
    vaelab::ThreadPool pool(threads);
    Adam adam;
    adam.reset(n);
    std::vector<float> theta = theta0;
    const float lr = 1e-2f;
    REQUIRE(adam.step(theta.data(), g1.data(), n, lr, &pool));
    int bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double want = theta0[i] - lr * g1[i] / (std::abs(static_cast<double>(g1[i])) + adam.eps);
      if (std::abs(theta[i] - want) > 1e-6 * (1 + std::abs(want))) ++bad;
    }
    CHECK(bad == 0);
    const std::vector<float> theta1 = theta;
    REQUIRE(adam.step(theta.data(), g2.data(), n, lr, &pool));
    for (std::size_t i = 0; i < n; ++i) {
      const double b1 = adam.beta1, b2 = adam.beta2;
      const double m = b1 * (1 - b1) * g1[i] + (1 - b1) * g2[i];
      const double v = b2 * (1 - b2) * g1[i] * g1[i] + (1 - b2) * double(g2[i]) * g2[i];
      const double mhat = m / (1 - b1 * b1), vhat = v / (1 - b2 * b2);
      const double want = theta1[i] - lr * mhat / (std::sqrt(vhat) + adam.eps);
      if (std::abs(theta[i] - want) > 1e-5 * (1 + std::abs(want))) ++bad;
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("adam: a NaN or Inf gradient anywhere is reported") {
  const std::size_t n = 50001;
  for (int threads : {1, 2}) {
    vaelab::ThreadPool pool(threads);
    for (std::size_t at : {std::size_t{0}, std::size_t{12345}, n - 1}) {
      for (float badv : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                         -std::numeric_limits<float>::infinity()}) {
        std::vector<float> theta(n, 0.5f), g(n, 0.25f);
        g[at] = badv;
        Adam adam;
        adam.reset(n);
        CHECK_FALSE(adam.step(theta.data(), g.data(), n, 1e-3f, &pool));
      }
    }
    // A gradient whose square overflows would leave v at Inf: reported too; large ones are not.
    for (float big : {1e18f, 3e19f}) {
      std::vector<float> theta(n, 0.5f), g(n, 0.25f);
      g[n - 2] = big;
      Adam adam;
      adam.reset(n);
      CHECK(adam.step(theta.data(), g.data(), n, 1e-3f, &pool) == (big < 1e19f));
    }
  }
}
