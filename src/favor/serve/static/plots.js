// Heatmaps with the vendored Chart.js + chartjs-chart-matrix (see vendor/README.md for why a library):
// one generic matrix chart, its colour scale and legend, and the page's three maps.
import { STANDARD } from "./scan.js";

const { Chart } = window; // the vendored UMD bundle, loaded before this module

// Colour stops (ColorBrewer RdBu and Blues ends): scores diverge around 0, probabilities grow from 0.
const DIVERGING = [[178, 24, 43], [247, 247, 247], [33, 102, 172]];
const SEQUENTIAL = [[247, 251, 255], [8, 48, 107]];
// Contact maps over this many residues are shown as blocks (the maximum of each block).
const MAX_CONTACT_CELLS = 256;

export function colour(stops, t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0.5)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const rgb = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * (x - i)));
  return `rgb(${rgb.join(",")})`;
}

export function note(panel, text, detail = "") {
  const p = document.createElement("p");
  p.className = "note";
  p.textContent = text;
  if (detail) p.title = detail;
  panel.replaceChildren(p);
}

function fmt(value, digits = 3) {
  return Number.isFinite(value) ? value.toFixed(digits) : "n/a";
}

function legend(stops, caption) {
  const box = document.createElement("div");
  box.className = "legend";
  const [lo, bar, hi, text] = ["span", "div", "span", "span"].map((tag) => document.createElement(tag));
  bar.className = "bar";
  lo.className = "min";
  hi.className = "max";
  bar.style.background = `linear-gradient(to right, ${stops.map((s) => `rgb(${s.join(",")})`).join(", ")})`;
  text.textContent = caption;
  box.append(lo, bar, hi, text);
  return {
    element: box,
    set(min, max, digits) {
      lo.textContent = fmt(min, digits);
      hi.textContent = fmt(max, digits);
      box.dataset.min = min;
      box.dataset.max = max;
    },
  };
}

function tooltipHandler(describe) {
  return ({ chart, tooltip }) => {
    const element = document.getElementById("tooltip");
    if (!tooltip || tooltip.opacity === 0 || !tooltip.dataPoints || !tooltip.dataPoints.length) {
      element.hidden = true;
      return;
    }
    element.textContent = describe(tooltip.dataPoints[0].raw);
    const box = chart.canvas.getBoundingClientRect();
    element.style.left = `${box.left + tooltip.caretX + 14}px`;
    element.style.top = `${box.top + tooltip.caretY + 14}px`;
    element.hidden = false;
  };
}

/**
 * A matrix chart in ``panel``: cells {x, y, v, w?, h?, wt?} centred at (x, y) on axes 0.5..xSpan + 0.5
 * and 0.5..ySpan + 0.5, w x h axis units wide (default 1), coloured by ``colourOf(cell)``, outlined when
 * ``wt``; hover shows ``describe(cell)``. Returns {chart, legend}.
 */
function matrixChart(panel, { xSpan, ySpan, yTick, width, height, colourOf, describe, xTitle, yTitle, scale }) {
  const key = legend(scale.stops, scale.caption);
  const holder = document.createElement("div");
  holder.className = "chart";
  holder.style.width = width === "fit" ? "100%" : `${width}px`;
  holder.style.height = `${height}px`;
  const canvas = document.createElement("canvas");
  holder.append(canvas);
  panel.replaceChildren(key.element, holder);
  const span = (size, units) => (context) => {
    const area = context.chart.chartArea;
    return area ? (size === "w" ? area.width : area.height) * ((context.raw && context.raw[size]) || 1) / units : 0;
  };
  const axis = (max, title, tick, reverse) => ({
    type: "linear",
    min: 0.5,
    max: max + 0.5,
    reverse,
    offset: false,
    grid: { display: false },
    title: { display: true, text: title },
    ticks: { autoSkip: !tick, font: { size: 10 }, callback: tick || integer },
    // Ticks on cell centres (integers), not on steps from the 0.5 edge: one per row on labelled axes.
    afterBuildTicks: (scale) => (scale.ticks = tick ? centres(max, 1) : centres(max, niceStep(scale, max))),
  });
  const chart = new Chart(canvas, {
    type: "matrix",
    data: {
      datasets: [
        {
          data: [],
          backgroundColor: (context) => (context.raw ? colourOf(context.raw) : "transparent"),
          borderColor: "#1f2328",
          borderWidth: (context) => (context.raw && context.raw.wt ? 1 : 0),
          width: span("w", xSpan),
          height: span("h", ySpan),
        },
      ],
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: { legend: { display: false }, tooltip: { enabled: false, external: tooltipHandler(describe) } },
      scales: { x: axis(xSpan, xTitle, null, false), y: axis(ySpan, yTitle, yTick, true) },
    },
  });
  return { chart, legend: key };
}

function centres(max, step) {
  const ticks = [];
  for (let value = step === 1 ? 1 : step; value <= max; value += step) ticks.push({ value });
  return ticks;
}

/** 1, 2 or 5 x 10^k positions between ticks, about 60 px apart along the axis. */
function niceStep(scale, max) {
  const pixels = scale.isHorizontal() ? scale.width : scale.height;
  const raw = max / Math.max(2, Math.floor(pixels / 60));
  const power = 10 ** Math.floor(Math.log10(Math.max(raw, 1)));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw) || 10 * power;
}

function integer(value) {
  return Number.isInteger(value) ? value : "";
}

/** "fit" (the panel's width) unless the columns need more than 7 px each: then scroll sideways. */
function plotWidth(panel, columns) {
  const needed = 80 + columns * 7;
  return needed > (panel.clientWidth || 800) - 20 ? needed : "fit";
}

/** One row per standard amino acid that the model knows, one column per position. */
function residueRows(letters) {
  return [...STANDARD].filter((a) => letters.includes(a));
}

function residueMap(panel, sequence, letters, { field, stops, caption, centre, digits, describe }) {
  const rows = residueRows(letters);
  let low = 0;
  let high = 1;
  const { chart, legend: key } = matrixChart(panel, {
    xSpan: sequence.length,
    ySpan: rows.length,
    yTick: (value) => rows[value - 1] || "",
    width: plotWidth(panel, sequence.length),
    height: 80 + rows.length * 15,
    colourOf: (cell) => colour(stops, (cell.v - low) / (high - low || 1)),
    describe,
    xTitle: "position",
    yTitle: "residue",
    scale: { stops, caption },
  });
  return {
    chart,
    update(columns) {
      const data = columns.flatMap((c) =>
        rows.map((a, j) => ({
          x: c.position,
          y: j + 1,
          v: c[field][a],
          wt: a === c.wild,
          mutation: `${c.wild}${c.position}${a}`,
          residue: a,
          position: c.position,
          wild: c.wild,
        })),
      );
      const values = data.map((cell) => cell.v).filter(Number.isFinite);
      [low, high] = centre ? symmetric(values) : [0, Math.max(...values, 1e-12)];
      key.set(low, high, digits);
      chart.data.datasets[0].data = data;
      chart.update("none");
    },
  };
}

function symmetric(values) {
  const limit = Math.max(...values.map(Math.abs), 1e-12);
  return [-limit, limit];
}

/** The scan as a heatmap: log p(mutant) - log p(wild type), 0-centred, wild type outlined. */
export function scoreHeatmap(panel, sequence, letters) {
  return residueMap(panel, sequence, letters, {
    field: "scores",
    stops: DIVERGING,
    caption: "score: log p(mutant) − log p(wild type)",
    centre: true,
    digits: 2,
    describe: (cell) =>
      cell.wt ? `${cell.mutation}: wild type, score ${fmt(cell.v)}` : `${cell.mutation}: score ${fmt(cell.v)}`,
  });
}

/** p(residue | the rest) at each masked position, wild type outlined, and the most likely residues. */
export function probabilityHeatmap(panel, sequence, letters) {
  const map = residueMap(panel, sequence, letters, {
    field: "probabilities",
    stops: SEQUENTIAL,
    caption: "probability with the position masked",
    centre: false,
    digits: 3,
    describe: (cell) =>
      `position ${cell.position} (wild type ${cell.wild}): ${cell.residue} p = ${fmt(cell.v, 4)}`,
  });
  const consensus = document.createElement("p");
  consensus.className = "consensus";
  panel.append(consensus);
  return {
    chart: map.chart,
    update(columns) {
      map.update(columns);
      const best = columns.map((c) => Object.entries(c.probabilities).reduce((a, b) => (b[1] > a[1] ? b : a))[0]);
      consensus.textContent = `Most likely residue at each position: ${best.join("")}`;
    },
  };
}

/** The L x L contact probabilities; over MAX_CONTACT_CELLS residues, blocks of s x s show their maximum. */
export function contactMap(panel, contacts) {
  const n = contacts.length;
  const s = Math.ceil(n / MAX_CONTACT_CELLS);
  const data = [];
  for (let i0 = 0; i0 < n; i0 += s) {
    for (let j0 = 0; j0 < n; j0 += s) {
      const i1 = Math.min(n, i0 + s);
      const j1 = Math.min(n, j0 + s);
      let v = -Infinity;
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) v = Math.max(v, contacts[i][j]);
      data.push({ x: (i0 + i1 + 1) / 2, y: (j0 + j1 + 1) / 2, w: i1 - i0, h: j1 - j0, v, i: [i0 + 1, i1], j: [j0 + 1, j1] });
    }
  }
  const side = Math.min(Math.max(panel.clientWidth || 600, 300), 640);
  const range = ([a, b]) => (a === b ? `${a}` : `${a}–${b}`);
  const { chart, legend: key } = matrixChart(panel, {
    xSpan: n,
    ySpan: n,
    yTick: null,
    width: side,
    height: side,
    colourOf: (cell) => colour(SEQUENTIAL, cell.v),
    describe: (cell) =>
      s === 1
        ? `residues ${cell.i[0]} and ${cell.j[0]}: contact probability ${fmt(cell.v)}`
        : `residues ${range(cell.i)} × ${range(cell.j)}: highest contact probability ${fmt(cell.v)}`,
    xTitle: "residue",
    yTitle: "residue",
    scale: { stops: SEQUENTIAL, caption: s === 1 ? "contact probability" : `contact probability (max of ${s} × ${s} blocks)` },
  });
  key.set(0, 1, 1);
  chart.data.datasets[0].data = data;
  chart.update("none");
  return { chart };
}
