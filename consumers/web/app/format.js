// Display formats. Times are UNIX seconds and shown in UTC.

export function isNum(v) {
  return typeof v === "number" && Number.isFinite(v);
}

export function fmtTime(t) {
  if (!isNum(t)) return "—";
  const d = new Date(t * 1000);
  if (Number.isNaN(d.getTime())) return "—";
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function fmtClock(t) {
  if (!isNum(t)) return "—";
  const d = new Date(t * 1000);
  return Number.isNaN(d.getTime()) ? "—" : d.toISOString().slice(11, 19);
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

export function fmtNum(v, digits = 4) {
  if (v === true) return "true";
  if (v === false) return "false";
  if (!isNum(v)) return v === null || v === undefined ? "—" : String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
  return Number(v.toPrecision(digits)).toLocaleString("en-US", { maximumFractionDigits: 6 });
}

export function fmtPercent(x) {
  return isNum(x) ? `${Math.round(x * 100)}%` : "—";
}

export function fmtRange(seconds) {
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}
