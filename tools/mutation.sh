#!/usr/bin/env bash
# Mutation testing with mutmut (configured in pyproject.toml [tool.mutmut]): mutants of src/favor/ops and of
# the masking, alphabet and checkpoint modules; each runs the tests (tests/ops, tests/data,
# tests/train/test_checkpoint.py) that cover it. Prints the kill counts and the survivors.
#   bash tools/mutation.sh                          # every mutant (several thousand: hours on one core)
#   bash tools/mutation.sh "favor.ops.segments*"    # the mutants of one module (a glob of mutant names)
#   SAMPLE=400 SEED=0 bash tools/mutation.sh "favor.ops*"   # a uniform random sample of those mutants
#   MAX_CHILDREN=1 ...                              # parallel test processes (default: mutmut's, one per core)
#   EXCLUDE=FILE SAMPLE=400 SEED=1 ...              # a sample disjoint from the mutants named in FILE
#                                                   # (one 'name:' per line, as mutants/sample.txt; copy it first,
#                                                   # each sampled run rewrites mutants/sample.txt)
#   SAMPLE=400 SEED=0 DRAW_ONLY=1 bash tools/mutation.sh "favor.ops*" > first.txt
#                                                   # print the sample's names ('name:' lines), run nothing
# Not run in CI (too slow for its budget). Needs the dev environment (.venv); installs mutmut.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip install --quiet --disable-pip-version-check "mutmut>=3.3,<4"
children=()
if [ -n "${MAX_CHILDREN:-}" ]; then children=(--max-children "$MAX_CHILDREN"); fi
pattern=${1:-"*"}
if [ -n "${SAMPLE:-}" ]; then
  # Generate every mutant and map tests to functions without running any mutant, then draw the sample.
  .venv/bin/mutmut run "${children[@]}" "no-such-mutant-$$" >/dev/null 2>&1 || true
  mapfile -t names < <(.venv/bin/mutmut results --all true | awk -F': ' '{print $1}' | sed 's/^ *//' \
    | .venv/bin/python -c "
import fnmatch, random, sys
excluded = {line.strip().rstrip(':') for line in open(sys.argv[4])} if sys.argv[4] else set()
names = sorted(n.strip() for n in sys.stdin if fnmatch.fnmatch(n.strip(), sys.argv[1]) and n.strip() not in excluded)
random.Random(int(sys.argv[3])).shuffle(names)
print('\n'.join(sorted(names[: int(sys.argv[2])])))
" "$pattern" "$SAMPLE" "${SEED:-0}" "${EXCLUDE:-}")
  if [ -n "${DRAW_ONLY:-}" ]; then printf '%s:\n' "${names[@]}"; exit 0; fi
  echo "sampled ${#names[@]} mutants matching $pattern (seed ${SEED:-0})"
  .venv/bin/mutmut run "${children[@]}" "${names[@]}" || true
  printf '%s:\n' "${names[@]}" > mutants/sample.txt   # 'name:' so that _1 never matches _10
  .venv/bin/mutmut results --all true | grep -F -f mutants/sample.txt | awk -F': ' '{print $2}' | sort | uniq -c
  echo "survivors:"
  .venv/bin/mutmut results | grep -F -f mutants/sample.txt | grep -v "not checked" || true
  exit 0
fi
.venv/bin/mutmut run "${children[@]}" "$pattern" || true
.venv/bin/mutmut results --all true | awk -F': ' '{print $2}' | sort | uniq -c
echo "survivors:"
.venv/bin/mutmut results | grep -v "not checked" || true
