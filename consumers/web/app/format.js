// Display formats. Times are UNIX seconds, shown in UTC or local time as the
// reader chose (prefs.tz). Values show at their field's precision (the
// field's `precision`, decimal places, when the node declares one), with
// their units; bytes and large numbers are scaled (kB, MB, GB; k, M, G).

import { prefs } from "./prefs.js";

export function isNum(v) {
  return typeof v === "number" && Number.isFinite(v);
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

// The parts of a date in the chosen time zone.
export function dateParts(d, tz = prefs.tz) {
  if (tz === "local") {
    return { y: d.getFullYear(), mo: d.getMonth() + 1, d: d.getDate(), h: d.getHours(), mi: d.getMinutes(), s: d.getSeconds() };
  }
  return { y: d.getUTCFullYear(), mo: d.getUTCMonth() + 1, d: d.getUTCDate(), h: d.getUTCHours(), mi: d.getUTCMinutes(), s: d.getUTCSeconds() };
}

// "UTC" or the reader's offset, "UTC+01:00".
export function tzLabel(tz = prefs.tz, when = new Date()) {
  if (tz !== "local") return "UTC";
  const off = -when.getTimezoneOffset();
  if (off === 0) return "UTC+00:00";
  const a = Math.abs(off);
  return `UTC${off > 0 ? "+" : "−"}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

export function fmtTime(t, tz = prefs.tz) {
  if (!isNum(t)) return "—";
  const d = new Date(t * 1000);
  if (Number.isNaN(d.getTime())) return "—";
  const p = dateParts(d, tz);
  return `${p.y}-${pad(p.mo)}-${pad(p.d)} ${pad(p.h)}:${pad(p.mi)}:${pad(p.s)}${tz === "local" ? "" : "Z"}`;
}

export function fmtClock(t, tz = prefs.tz) {
  if (!isNum(t)) return "—";
  const d = new Date(t * 1000);
  if (Number.isNaN(d.getTime())) return "—";
  const p = dateParts(d, tz);
  return `${pad(p.h)}:${pad(p.mi)}:${pad(p.s)}`;
}

export function fmtAge(seconds) {
  if (!isNum(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) {
    const m = Math.floor((s % 3600) / 60);
    return `${Math.floor(s / 3600)} h${m ? ` ${m} min` : ""}`;
  }
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

// A plain number for tables and counters: grouped thousands, `digits` significant.
export function fmtNum(v, digits = 4) {
  if (v === true) return "true";
  if (v === false) return "false";
  if (!isNum(v)) return v === null || v === undefined ? "—" : String(v);
  const a = Math.abs(v);
  if (a !== 0 && a < 1e-3) return v.toExponential(2);
  if (a >= 1e15) return scaled(v, "", 3);
  const d = a === 0 ? 0 : Math.max(0, digits - 1 - Math.floor(Math.log10(a)));
  return v.toLocaleString("en-US", { maximumFractionDigits: Math.min(d, 6) });
}

export function fmtPercent(x) {
  return isNum(x) ? `${Math.round(x * 100)}%` : "—";
}

export function fmtRange(seconds) {
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

// Natural order: "co2_2" before "co2_10", "cpu.2" before "cpu.10".
const collator = new Intl.Collator("en", { numeric: true, sensitivity: "base" });
export function natural(a, b) {
  return collator.compare(String(a), String(b));
}

// -- values of fields ---------------------------------------------------------

// Unit spellings of older or foreign nodes, as shown.
const UNIT_NAMES = { degC: "°C", deg_C: "°C", celsius: "°C", degF: "°F", deg: "°", degree: "°", degrees: "°" };
const TIME_UNITS = /^\s*(s|sec|seconds?)\s+since\s+1970-01-01/i;
const NO_SPACE = new Set(["%", "°"]);
const PREFIXES = [
  [1e12, "T"],
  [1e9, "G"],
  [1e6, "M"],
  [1e3, "k"],
];

export function unitText(units) {
  if (typeof units !== "string") return "";
  const u = units.trim();
  if (TIME_UNITS.test(u)) return "UNIX time";
  return UNIT_NAMES[u] ?? u;
}

export function isBytes(units) {
  return units === "B" || units === "B/s";
}

// A number field whose values are UNIX times: listed and shown as times, never plotted as values.
export function isTimeField(meta) {
  return !!meta && typeof meta.units === "string" && TIME_UNITS.test(meta.units);
}

function withUnits(text, units) {
  if (!units) return text;
  return NO_SPACE.has(units) ? `${text}${units}` : `${text} ${units}`;
}

// Decimal places: the field's precision, else five significant digits (none past 6).
export function decimals(v, precision) {
  if (Number.isInteger(precision) && precision >= 0 && precision <= 12) return precision;
  if (!isNum(v) || v === 0) return 0;
  return Math.max(0, Math.min(6, 4 - Math.floor(Math.log10(Math.abs(v)))));
}

function grouped(v, d, trim) {
  const text = v.toLocaleString("en-US", { minimumFractionDigits: trim ? 0 : d, maximumFractionDigits: d });
  return text === "-0" ? "0" : text;
}

// x with an SI prefix and three significant digits: 6.65e9 -> "6.65 G".
function scaled(v, units, sig = 3) {
  for (const [factor, prefix] of PREFIXES) {
    const x = v / factor;
    if (Math.abs(x) >= 1) {
      const d = Math.abs(x) < 10 ? sig - 1 : Math.abs(x) < 100 ? sig - 2 : Math.max(0, sig - 3);
      return `${x.toFixed(d)} ${prefix}${units}`;
    }
  }
  return `${v.toFixed(0)} ${units}`.trim();
}

// One value of a field, as the reader sees it: "1,012.8 hPa", "6.65 GB", "48.2%".
export function fmtValue(v, meta = {}) {
  meta = meta || {};
  if (v === true) return "true";
  if (v === false) return "false";
  if (v === null || v === undefined) return "—";
  if (typeof v === "string") return v;
  if (!isNum(v)) return "—";
  if (isTimeField(meta)) return fmtTime(v);
  const units = unitText(meta.units);
  if (isBytes(units)) return scaled(v, units);
  if (Math.abs(v) >= 1e7 && !Number.isInteger(meta.precision)) return scaled(v, units).trim();
  const explicit = Number.isInteger(meta.precision);
  return withUnits(grouped(v, decimals(v, meta.precision), !explicit), units);
}

// -- axis ticks -----------------------------------------------------------------

// How an axis shows values: a factor to divide by, a suffix, and decimals.
export function axisScale(units, lo, hi, incr) {
  const u = unitText(units);
  const top = Math.max(Math.abs(lo), Math.abs(hi));
  let factor = 1;
  let prefix = "";
  if (isBytes(u) || top >= 1e4) {
    for (const [f, p] of PREFIXES) {
      if (top >= f) {
        factor = f;
        prefix = p;
        break;
      }
    }
  }
  const step = Math.abs(incr) / factor;
  let d = step > 0 && Number.isFinite(step) ? Math.max(0, -Math.floor(Math.log10(step) + 1e-9)) : 0;
  if (step > 0 && Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) > 1e-6) d += 1; // steps of 2.5
  const suffix = isBytes(u) ? `${prefix}${u}` : prefix;
  return { factor, suffix, decimals: Math.min(d, 8) };
}

export function tickLabels(splits, units, incr) {
  if (!splits.length) return [];
  const finite = splits.filter(isNum);
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  const { factor, suffix, decimals: d } = axisScale(units, lo, hi, incr);
  return splits.map((v) => {
    if (!isNum(v)) return "";
    const text = grouped(v / factor, d, false);
    return suffix ? (isBytes(unitText(units)) ? `${text} ${suffix}` : `${text}${suffix}`) : text;
  });
}
