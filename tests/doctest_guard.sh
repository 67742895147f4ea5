#!/usr/bin/env bash
# Tests the guard of tests/main.cpp (CTest entry "doctest_entry_guard"): a filter that matches no
# case, or half of a case's name, must fail; --expect-cases=1 must fail a filter matching two; and
# every case's name, escaped as CTest's discovery escapes it, must select exactly that case.
# Not the test cases themselves: it lists and filters, and runs at most two cases.
# usage: doctest_guard.sh <doctest binary built with tests/main.cpp>
set -euo pipefail
bin=$1
failures=0
fail() {
  echo "doctest_guard: $*" >&2
  failures=$((failures + 1))
}

# The names the binary lists, one a line, without doctest's banner and rules (as its discovery reads them).
list_names() { "$bin" --list-test-cases "$@" | grep -v -e '^===*$' -e '^\[doctest\] '; }

# refused <what> <expected message> <arguments…>: the run must exit non-zero and say why.
refused() {
  local what=$1 message=$2 out rc=0
  shift 2
  out=$("$bin" "$@" 2>&1) || rc=$?
  if ((rc == 0)); then
    fail "$what: exit 0, but it must fail"
  elif ! grep -qF -- "$message" <<<"$out"; then
    fail "$what: exit $rc without the guard's message '$message':"$'\n'"$out"
  else
    echo "doctest_guard: $what: refused (exit $rc)"
  fi
}

mapfile -t names < <(list_names)
((${#names[@]} >= 2)) || { echo "doctest_guard: $bin lists ${#names[@]} cases" >&2; exit 1; }

refused "a filter that matches no case" "no test case ran" --test-case='no case has this name'
refused "the first half of a name (what a ';' in it makes of the filter)" "no test case ran" \
  --test-case="${names[0]:0:${#names[0]}/2}" --expect-cases=1
refused "two cases where one is expected" "2 test cases ran where 1 were expected" \
  --test-case='*' --first=1 --last=2 --expect-cases=1
refused "a malformed --expect-cases" "wants a whole number" --expect-cases=0

# Every name through the discovery's path: a ';' splits it into two entries; ',' is escaped as
# '\,'; '*' and '?' are wildcards. The escaped name must select that case and no other.
for name in "${names[@]}"; do
  if [[ $name == *';'* ]]; then
    fail "'$name': a ';' cuts the name in two CTest entries that match nothing"
    continue
  fi
  escaped=${name//,/\\,}
  mapfile -t selected < <(list_names --test-case="$escaped")
  if ((${#selected[@]} != 1)) || [[ ${selected[0]} != "$name" ]]; then
    fail "'$name': its entry's filter selects ${#selected[@]} cases: ${selected[*]:-none}"
  fi
done
echo "doctest_guard: ${#names[@]} names checked, each selects exactly its own case"

((failures == 0)) || { echo "doctest_guard: $failures failures" >&2; exit 1; }
