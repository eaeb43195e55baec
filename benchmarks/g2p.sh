#!/usr/bin/env bash
# Grapheme-to-phoneme on CMUdict (issue #19): encoder-decoders of configs/g2p_tiny.yaml, each trained for
# BUDGET training-minutes (train.budget_minutes) with one torch thread, one after the other, then scored on
# the test words: greedy on all of them, greedy and beam 5 on 500 evenly spaced ones.
# Results: OUT/<name>.{greedy,greedy500,beam5}.json (BENCHMARKS.md).
#   bash benchmarks/g2p.sh [OUT] [BUDGET] [NAME=OVERRIDES ...]
# Default runs: performer, transformer and lstm (model.backbone=NAME, the config's shape), e.g.
#   bash benchmarks/g2p.sh runs/g2p20 20 performer=model.backbone=performer \
#       lstm256=model.backbone=lstm,model.d_model=256
set -u
cd "$(dirname "$0")/.."
OUT=${1:-runs/g2p_bench}
BUDGET=${2:-10}
shift 2 2>/dev/null || shift $#
SPECS=("$@")
if [ ${#SPECS[@]} -eq 0 ]; then
  SPECS=(performer=model.backbone=performer transformer=model.backbone=transformer lstm=model.backbone=lstm)
fi
mkdir -p "$OUT"
for spec in "${SPECS[@]}"; do
  name=${spec%%=*}
  sets=()
  IFS=',' read -ra pairs <<< "${spec#*=}"
  for pair in "${pairs[@]}"; do sets+=(--set "$pair"); done
  rm -rf "${OUT:?}/$name"
  .venv/bin/favor train configs/g2p_tiny.yaml --out "$OUT/$name" "${sets[@]}" \
    --set train.budget_minutes="$BUDGET" --quiet > "$OUT/$name.train.log" 2>&1
  .venv/bin/favor evaluate "$OUT/$name" --json --threads 1 > "$OUT/$name.greedy.json"
  .venv/bin/favor evaluate "$OUT/$name" --json --threads 1 --max-words 500 > "$OUT/$name.greedy500.json"
  .venv/bin/favor evaluate "$OUT/$name" --json --threads 1 --beam 5 --max-words 500 > "$OUT/$name.beam5.json"
done
