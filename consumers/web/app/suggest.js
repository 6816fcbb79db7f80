// "Did you mean …?": the names closest to a mistyped one (edit distance, or
// one containing the other). Pure.

import { natural } from "./format.js";

export function editDistance(a, b) {
  const m = a.length;
  const n = b.length;
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    const cur = [i];
    for (let j = 1; j <= n; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[n];
}

export function closeNames(word, names, max = 3) {
  const w = String(word || "").toLowerCase().slice(0, 100);
  if (!w) return [];
  const scored = [];
  for (const name of new Set(names)) {
    const n = String(name).toLowerCase();
    const d = editDistance(w, n.slice(0, 100));
    const limit = Math.max(1, Math.floor(Math.max(w.length, n.length) / 3));
    if (d <= limit || (w.length >= 3 && (n.includes(w) || w.includes(n)))) scored.push([d, name]);
  }
  scored.sort((a, b) => a[0] - b[0] || natural(a[1], b[1]));
  return scored.slice(0, max).map(([, name]) => name);
}
