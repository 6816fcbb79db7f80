// Which fields a node page plots first. A node kind says so in its hub entry
// (`plots`: names, or patterns where `*` stands for one part of a name
// between dots, such as "*.velocity"); fields matching the same `*` (one radar, one unit) come
// together, in natural order ("co2_2" before "co2_10"). Without a list: the
// first number fields in natural order. Never a time stamp, text or a flag.

import { isTimeField, natural } from "./format.js";

export const MAX_DEFAULT_PLOTS = 6;
const FALLBACK_PLOTS = 4;

export function plottableField(meta) {
  return !!meta && (meta.type === "number" || meta.type === "bool" || meta.type === undefined) && !isTimeField(meta);
}

function numberField(meta) {
  return plottableField(meta) && meta.type !== "bool";
}

function escape(text) {
  return text.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
}

export function defaultPlots(fields, patterns, max = MAX_DEFAULT_PLOTS) {
  const names = Object.keys(fields || {}).filter((f) => numberField(fields[f]));
  const list = Array.isArray(patterns) ? patterns.filter((p) => typeof p === "string" && p) : [];
  if (!list.length) return names.sort(natural).slice(0, FALLBACK_PLOTS);
  const have = new Set(names);
  const chosen = [];
  const add = (f) => {
    if (have.has(f) && !chosen.includes(f)) chosen.push(f);
  };
  const wild = [];
  for (const p of list) {
    if (!p.includes("*")) add(p);
    else wild.push({ p, re: new RegExp(`^${p.split("*").map(escape).join("([^.]+)")}$`) });
  }
  const parts = new Set();
  for (const f of names) {
    for (const w of wild) {
      const m = w.re.exec(f);
      if (m) parts.add(m[1]);
    }
  }
  for (const part of [...parts].sort(natural)) for (const w of wild) add(w.p.split("*").join(part));
  return chosen.slice(0, max);
}
