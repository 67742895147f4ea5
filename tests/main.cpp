// The doctest runner for vaelab_tests; the test cases live in tests/test_<unit>.cpp.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
