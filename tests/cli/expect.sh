#!/usr/bin/env bash
# One command-line check, the command given in full: passes when COMMAND exits with CODE, its
# stderr (or stdout, with --stdout) matches PATTERN (grep -E) and, with --not, its output does not
# match UNWANTED. Not a test of what the program computes.
# usage: expect.sh CODE PATTERN [--stdout] [--not UNWANTED] -- COMMAND...
set -uo pipefail
code=${1:?usage: expect.sh CODE PATTERN [--stdout] [--not UNWANTED] -- COMMAND...}
pattern=$2
shift 2
stream=err unwanted=
while [[ $1 != -- ]]; do
  case $1 in
    --stdout) stream=out ;;
    --not) unwanted=$2; shift ;;
    *) echo "expect.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
shift
work=$(mktemp -d "${TMPDIR:-/tmp}/vaelab-expect-XXXXXX")
trap 'rm -rf "$work"' EXIT
"$@" >"$work/out" 2>"$work/err" </dev/null
rc=$?
ok=1
((rc == code)) || { echo "FAIL: exit $rc, expected $code"; ok=0; }
grep -Eq -e "$pattern" "$work/$stream" || { echo "FAIL: std$stream does not match /$pattern/"; ok=0; }
if [[ -n $unwanted ]] && cat "$work/out" "$work/err" | grep -Eq -e "$unwanted"; then
  echo "FAIL: the output matches /$unwanted/"
  ok=0
fi
echo "--- stderr:"; head -n 5 "$work/err"
[[ $stream == out ]] && { echo "--- stdout:"; head -n 5 "$work/out"; }
((ok)) && echo "ok: exit $rc"
((ok))
