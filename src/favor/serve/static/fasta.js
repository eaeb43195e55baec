// What the user pasted or dropped -> {name, sequence}.

/**
 * The first FASTA record when the text has a ">" header line (lines before it are ignored), otherwise the
 * whole text. Whitespace and line breaks are dropped and letters upper-cased; any other character is kept,
 * so the server can name it and its position.
 */
export function parseInput(text) {
  const lines = text.split(/\r?\n/);
  const start = lines.findIndex((line) => line.startsWith(">"));
  if (start < 0) return { name: "", sequence: clean(text) };
  const next = lines.findIndex((line, i) => i > start && line.startsWith(">"));
  const body = lines.slice(start + 1, next < 0 ? lines.length : next);
  const name = lines[start].slice(1).trim().split(/\s+/)[0] || "";
  return { name, sequence: clean(body.join("")) };
}

function clean(text) {
  return text.replace(/\s+/g, "").toUpperCase();
}
