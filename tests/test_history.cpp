// ChunkedLog, the container behind the training history: reads like a vector, copies share the
// sealed chunks (the point: snapshots of a long run stay cheap), copies never see later appends.
// The trainer's use of it (snapshots sharing chunks) is tested in test_trainer.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "core/history.hpp"

using namespace vaelab;

namespace {

using Log = ChunkedLog<std::int64_t, 16>;

Log counting(std::int64_t n) {
  Log log;
  for (std::int64_t i = 0; i < n; ++i) log.push_back(3 * i + 1);
  return log;
}

}  // namespace

TEST_CASE("history: ChunkedLog reads like a vector across chunk boundaries") {
  for (std::int64_t n : {0, 1, 15, 16, 17, 100}) {
    CAPTURE(n);
    const Log log = counting(n);
    REQUIRE(log.size() == static_cast<std::size_t>(n));
    CHECK(log.empty() == (n == 0));
    std::vector<std::int64_t> seen(log.begin(), log.end());
    std::vector<std::int64_t> want(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) want[static_cast<std::size_t>(i)] = 3 * i + 1;
    CHECK(seen == want);
    for (std::size_t i = 0; i < log.size(); ++i) CHECK(log[i] == want[i]);
    if (n > 0) {
      CHECK(log.front() == 1);
      CHECK(log.back() == 3 * (n - 1) + 1);
      CHECK(log.end() - log.begin() == n);
      CHECK(*(log.begin() + (n - 1)) == log.back());
    }
  }
  const Log a = counting(40), b = counting(40), c = counting(39);
  CHECK(a == b);
  CHECK(!(a == c));
  CHECK(Log{1, 4, 7} == counting(3));
  // std algorithms work on the iterators.
  CHECK(std::accumulate(a.begin(), a.end(), std::int64_t{0}) == 3 * (39 * 40 / 2) + 40);
  CHECK(std::lower_bound(a.begin(), a.end(), 31) - a.begin() == 10);
}

TEST_CASE("history: ChunkedLog copies share sealed chunks and do not see later appends") {
  Log log = counting(50);  // 3 sealed chunks of 16 and a tail of 2
  const std::int64_t* first = &log[0];
  const std::int64_t* in_tail = &log[49];
  const Log copy = log;
  CHECK(copy == log);
  CHECK(copy.shared_chunks_with(log) == 3);
  CHECK(&copy[0] == first);   // the same memory, not a copy of it
  CHECK(&copy[47] == &log[47]);
  CHECK(&copy[49] != in_tail);  // the tail is copied

  for (std::int64_t i = 50; i < 100; ++i) log.push_back(3 * i + 1);
  CHECK(copy.size() == 50);
  CHECK(copy == counting(50));
  CHECK(log == counting(100));
  CHECK(log.shared_chunks_with(copy) == 3);
  // Sealing the tail moves its buffer: elements never move while appending.
  CHECK(&log[0] == first);
  CHECK(&log[49] == in_tail);

  // Clearing or resizing the original leaves the copy alone.
  Log other = log;
  log.clear();
  CHECK(log.empty());
  CHECK(other == counting(100));
  CHECK(copy == counting(50));
  other.resize(20);
  CHECK(other == counting(20));
  other.resize(22);
  CHECK(other.size() == 22);
  CHECK(other[21] == 0);
  CHECK(copy == counting(50));
}

TEST_CASE("history: a History copy shares its steps, and equality sees every field") {
  History h;
  for (int i = 0; i < 5000; ++i) h.steps.push_back({i + 1, i / 100.0f, -200.0f + i * 0.01f, -190.0f, 10.0f});
  h.markers.push_back({10, "β 1 → 0.5"});
  const History copy = h;
  CHECK(copy == h);
  CHECK(copy.steps.shared_chunks_with(h.steps) == 5000 / decltype(h.steps)::chunk_size());
  History changed = h;
  changed.markers.push_back({20, "lr"});
  CHECK(!(changed == h));
  changed = h;
  changed.steps.resize(4999);
  CHECK(!(changed == h));
}
