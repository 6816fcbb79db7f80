// Time-axis labels on a 24-hour clock, in UTC or local time as the reader
// chose (uPlot's default is local time on a 12-hour clock), and the Date
// uPlot uses to place ticks in that zone.

import uPlot from "../node_modules/uplot/dist/uPlot.esm.js";
import { dateParts } from "./format.js";
import { prefs } from "./prefs.js";

const pad = (n) => String(n).padStart(2, "0");

export function timeLabels(splits, incr, tz = prefs.tz) {
  return splits.map((ts) => {
    const d = new Date(ts * 1000);
    if (Number.isNaN(d.getTime())) return "";
    const p = dateParts(d, tz);
    const hm = `${pad(p.h)}:${pad(p.mi)}`;
    if (incr >= 86400) return `${pad(p.mo)}-${pad(p.d)}`;
    if (incr < 60) return `${hm}:${pad(p.s)}`;
    return p.h === 0 && p.mi === 0 ? `${pad(p.mo)}-${pad(p.d)}` : hm;
  });
}

// uPlot's tzDate: where a time falls on the reader's chosen clock.
export function tzDate(ts) {
  const d = new Date(ts * 1e3);
  return prefs.tz === "local" ? d : uPlot.tzDate(d, "Etc/UTC");
}

export function utcAxis(style) {
  return { ...style, values: (u, splits, axisIdx, space, incr) => timeLabels(splits, incr) };
}
