#!/usr/bin/env bash
# Grapheme-to-phoneme on CMUdict (issue #19): the performer, transformer and LSTM encoder-decoders of
# configs/g2p_tiny.yaml, each trained for the config's train.budget_minutes (10) with one torch thread,
# one after the other, then scored on the test words: greedy on all of them, greedy and beam 5 on 500
# evenly spaced ones. Results: runs/g2p_bench/<backbone>.{greedy,greedy500,beam5}.json (BENCHMARKS.md).
#   bash benchmarks/g2p.sh [OUT]
set -u
cd "$(dirname "$0")/.."
OUT=${1:-runs/g2p_bench}
mkdir -p "$OUT"
for bb in performer transformer lstm; do
  rm -rf "$OUT/$bb"
  .venv/bin/favor train configs/g2p_tiny.yaml --out "$OUT/$bb" --set model.backbone=$bb --quiet > "$OUT/$bb.train.log" 2>&1
  .venv/bin/favor evaluate "$OUT/$bb" --json --threads 1 > "$OUT/$bb.greedy.json"
  .venv/bin/favor evaluate "$OUT/$bb" --json --threads 1 --max-words 500 > "$OUT/$bb.greedy500.json"
  .venv/bin/favor evaluate "$OUT/$bb" --json --threads 1 --beam 5 --max-words 500 > "$OUT/$bb.beam5.json"
done
