// The single-mutation scan: every substitution at every position, in batches that fit one POST /score.
import { postJson } from "./api.js";

// The 20 standard amino acids: the rows of the heatmaps.
export const STANDARD = "ACDEFGHIKLMNPQRSTVWY";
// The server's default per-request limits (ServeSettings.max_mutations = 1024, max_sites = 4096); each
// mutation here is one site.
export const MAX_MUTATIONS = 1024;
export const MAX_SITES = 4096;

/** Positions per /score request when each position gets one mutation per residue letter. */
export function positionsPerRequest(nLetters) {
  return Math.max(1, Math.floor(Math.min(MAX_MUTATIONS, MAX_SITES) / nLetters));
}

/**
 * Score ``sequence`` against every residue letter of the model's alphabet at every position, one request
 * per batch of positions; ``onBatch(columns, requests)`` after each. Returns one column per position:
 * {position, wild, scores: {letter: log p(letter) - log p(wild)}, probabilities: {letter: p}}.
 *
 * The scores at a position are log-probability differences, with that position masked, over the same
 * residue letters POST /fill-mask normalizes over, so their softmax is the model's distribution there
 * (what /fill-mask returns for that one masked position): no extra forward pass is needed.
 */
export async function scanSequence(sequence, letters, onBatch) {
  const per = positionsPerRequest(letters.length);
  const columns = [];
  let requests = 0;
  for (let start = 0; start < sequence.length; start += per) {
    const positions = [];
    for (let i = start; i < Math.min(start + per, sequence.length); i++) positions.push(i + 1);
    const mutations = positions.flatMap((p) => [...letters].map((m) => `${sequence[p - 1]}${p}${m}`));
    const body = await postJson("/score", { sequence, mutations });
    requests += 1;
    let k = 0;
    for (const position of positions) {
      const scores = {};
      for (const letter of letters) scores[letter] = body.scores[k++].score;
      columns.push({ position, wild: sequence[position - 1], scores, probabilities: softmax(scores) });
    }
    onBatch(columns, requests);
  }
  return columns;
}

function softmax(scores) {
  const top = Math.max(...Object.values(scores));
  const weights = Object.fromEntries(Object.entries(scores).map(([a, s]) => [a, Math.exp(s - top)]));
  const total = Object.values(weights).reduce((x, y) => x + y, 0);
  return Object.fromEntries(Object.entries(weights).map(([a, w]) => [a, w / total]));
}
