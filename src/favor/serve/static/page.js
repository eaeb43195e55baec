// The page's controller: read the input, call the API, fill the panels, report errors next to the input.
import { getJson, postJson } from "./api.js";
import { csvText, npyBytes, saveFile } from "./download.js";
import { parseInput } from "./fasta.js";
import { contactMap, note, probabilityHeatmap, scoreHeatmap } from "./plots.js";
import { scanSequence } from "./scan.js";

const $ = (id) => document.getElementById(id);
let health = null;
let embeddings = null; // {name, sequence, layer, matrix: (n, d)} of the last run

function setState(state) {
  document.body.dataset.state = state; // idle | running | done | error (the browser tests wait on it)
}

function showProgress(done, total, text) {
  const box = $("progress");
  const bar = box.querySelector("progress");
  bar.max = Math.max(total, 1);
  bar.value = done;
  bar.hidden = false;
  box.querySelector(".text").textContent = text;
  box.dataset.done = done;
  box.dataset.total = total;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

async function loadHealth() {
  health = await getJson("/health");
  $("model").textContent =
    `${health.model}: ${health.backbone} ${health.task}, ${health.n_layers} layers, ` +
    `d_model ${health.d_model}, up to ${health.max_residues} residues`;
  return health;
}

function reset() {
  $("error").hidden = true;
  $("error").textContent = "";
  for (const id of ["heatmap", "probabilities", "contacts"]) $(id).replaceChildren();
  embeddings = null;
  $("download").disabled = true;
}

async function showContacts(sequence) {
  try {
    const body = await postJson("/contacts", { sequence });
    contactMap($("contacts"), body.contacts);
  } catch (error) {
    // 409: the model has no fitted contact regression; 404/405: a server without the route.
    if ([404, 405, 409].includes(error.status)) note($("contacts"), "this model has no contact predictor", error.message);
    else note($("contacts"), `contact map: ${error.message}`);
  }
}

async function run() {
  const { name, sequence } = parseInput($("sequence").value);
  reset();
  $("run").disabled = true;
  setState("running");
  const started = performance.now();
  try {
    const model = health || (await loadHealth());
    showProgress(0, sequence.length, "embedding…");
    // First call: the server checks the sequence (empty, too long, unknown residue) and says what is wrong.
    const embedded = await postJson("/embed", { sequences: [sequence], per_residue: true });
    embeddings = { name, sequence, layer: embedded.layer, matrix: embedded.residue_embeddings[0] };
    $("download").disabled = false;
    if (model.routes.includes("/score")) {
      const heatmap = scoreHeatmap($("heatmap"), sequence, model.residues);
      const probabilities = probabilityHeatmap($("probabilities"), sequence, model.residues);
      showProgress(0, sequence.length, `scanning 0 / ${sequence.length} positions…`);
      await scanSequence(sequence, model.residues, (columns, requests) => {
        heatmap.update(columns);
        probabilities.update(columns);
        const s = requests === 1 ? "" : "s";
        showProgress(columns.length, sequence.length, `scanned ${columns.length} / ${sequence.length} positions (${requests} request${s})`);
      });
    } else {
      const why = `this model (task '${model.task}') is not a masked language model: no mutation scan`;
      note($("heatmap"), why);
      note($("probabilities"), why);
    }
    await showContacts(sequence);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    showProgress(sequence.length, sequence.length, `done: ${sequence.length} positions in ${seconds} s`);
    setState("done");
  } catch (error) {
    showError(error.message);
    showProgress(0, 1, "stopped");
    setState("error");
  } finally {
    $("run").disabled = false;
  }
}

function download() {
  if (!embeddings) return;
  const base = `${(embeddings.name || "sequence").replace(/[^A-Za-z0-9_.-]+/g, "_")}_embeddings_layer${embeddings.layer}`;
  if ($("download-format").value === "csv") {
    saveFile(csvText(embeddings.matrix, embeddings.sequence), "text/csv", `${base}.csv`);
  } else {
    saveFile(npyBytes(embeddings.matrix), "application/octet-stream", `${base}.npy`);
  }
}

function acceptDrops(area) {
  area.addEventListener("dragover", (event) => {
    event.preventDefault();
    area.classList.add("dragging");
  });
  area.addEventListener("dragleave", () => area.classList.remove("dragging"));
  area.addEventListener("drop", async (event) => {
    event.preventDefault();
    area.classList.remove("dragging");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) area.value = await file.text();
  });
}

$("run").addEventListener("click", run);
$("download").addEventListener("click", download);
acceptDrops($("sequence"));
loadHealth().catch((error) => showError(error.message));
