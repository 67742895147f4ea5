// The doctest runner of vaelab_tests and the other doctest binaries; the cases live in
// tests/test_<unit>.cpp. Not doctest's stock main: a run in which no case ran fails, and
// --expect-cases=N (each CTest entry passes 1) fails a run that ran any other number of cases.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <charconv>
#include <cstdio>
#include <string_view>
#include <vector>

namespace {

// Counts the cases doctest starts. A filter that matches nothing (a name cut in two by CTest's
// discovery, a typo) otherwise ends in "test cases: 0 ... Status: SUCCESS!" and exit code 0.
struct CaseCounter : doctest::IReporter {
  static inline bool test_run_started = false;  // false for listings, --help, --count
  static inline int cases_run = 0;

  explicit CaseCounter(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override { test_run_started = true; }
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override { ++cases_run; }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("vaelab_case_counter", 1, CaseCounter);

constexpr std::string_view kExpectCases = "--expect-cases=";

}  // namespace

int main(int argc, char** argv) {
  // --expect-cases=N is ours: taken out before doctest reads the rest.
  std::vector<char*> doctest_args;
  int expected_cases = -1;  // any number but 0
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i > 0 && arg.starts_with(kExpectCases)) {
      const std::string_view value = arg.substr(kExpectCases.size());
      const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), expected_cases);
      if (error != std::errc{} || end != value.data() + value.size() || expected_cases < 1) {
        std::fprintf(stderr, "%s: %s wants a whole number of at least 1\n", argv[0], argv[i]);
        return 2;
      }
    } else {
      doctest_args.push_back(argv[i]);
    }
  }

  doctest::Context context(static_cast<int>(doctest_args.size()), doctest_args.data());
  const int status = context.run();
  if (!CaseCounter::test_run_started) return status;  // a listing or --help: nothing was to run
  if (CaseCounter::cases_run == 0) {
    std::fprintf(stderr, "%s: FAILED: no test case ran; the filters match none (a name with ';' is cut in two by CTest's discovery)\n", argv[0]);
    return 1;
  }
  if (expected_cases > 0 && CaseCounter::cases_run != expected_cases) {
    std::fprintf(stderr, "%s: FAILED: %d test cases ran where %d were expected; the filter matches others too\n", argv[0],
                 CaseCounter::cases_run, expected_cases);
    return 1;
  }
  return status;
}
