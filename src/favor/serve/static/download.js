// The per-residue embeddings as a file: NumPy .npy (float32, the model's own precision) or CSV.

/** NumPy format 1.0: magic, header length, a Python-dict header padded to 64 bytes, little-endian data. */
export function npyBytes(matrix) {
  const n = matrix.length;
  const d = n ? matrix[0].length : 0;
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${n}, ${d}), }`;
  const start = Math.ceil((10 + dict.length + 1) / 64) * 64;
  const header = `${dict.padEnd(start - 10 - 1, " ")}\n`;
  const buffer = new ArrayBuffer(start + n * d * 4);
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]); // \x93NUMPY v1.0
  view.setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) bytes[10 + i] = header.charCodeAt(i);
  let offset = start;
  for (const row of matrix) {
    for (const value of row) {
      view.setFloat32(offset, value, true);
      offset += 4;
    }
  }
  return buffer;
}

/** One row per residue: its 1-based position, its letter, then the vector. */
export function csvText(matrix, sequence) {
  const d = matrix.length ? matrix[0].length : 0;
  const head = ["position", "residue", ...Array.from({ length: d }, (_, j) => `dim_${j}`)].join(",");
  const rows = matrix.map((row, i) => `${i + 1},${sequence[i]},${row.join(",")}`);
  return `${head}\n${rows.join("\n")}\n`;
}

export function saveFile(data, type, filename) {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
