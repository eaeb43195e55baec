#!/usr/bin/env bash
# Mutation testing of favor.ops with mutmut (configured in pyproject.toml [tool.mutmut]): every mutant of
# src/favor/ops runs the tests of tests/ops that cover it; prints the kill counts and the survivors.
#   bash tools/mutation.sh                       # all of favor.ops (about 2,400 mutants)
#   bash tools/mutation.sh "favor.ops.segments*" # one module
# Not run in CI (too slow for its budget). Needs the dev environment (.venv) and mutmut.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip install --quiet --disable-pip-version-check "mutmut>=3.3,<4"
.venv/bin/mutmut run "$@" || true
.venv/bin/mutmut results --all true | awk -F': ' '{print $2}' | sort | uniq -c
echo "survivors:"
.venv/bin/mutmut results | grep -v "not checked" || true
