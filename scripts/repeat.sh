#!/usr/bin/env bash
# Run pytest N times on the given tests, stop at the first failure, print "K of N passed".
# Usage: scripts/repeat.sh N TEST... (from the repository root; extra pytest options may follow the tests)
set -u
n=${1:?usage: scripts/repeat.sh N TEST...}
shift
[ $# -gt 0 ] || { echo "usage: scripts/repeat.sh N TEST..." >&2; exit 2; }
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
passed=0
for i in $(seq 1 "$n"); do
  start=$(date +%s)
  if PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$python" -m pytest -q -p no:cacheprovider "$@"; then
    passed=$((passed + 1))
    echo "run $i: passed in $(( $(date +%s) - start ))s"
  else
    echo "run $i: FAILED after $(( $(date +%s) - start ))s"
    echo "$passed of $n passed"
    exit 1
  fi
done
echo "$passed of $n passed"
