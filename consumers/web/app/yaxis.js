// A value axis that fits its labels: ticks in the field's units scaled with
// SI prefixes (k, M, G; bytes as kB, MB, GB), and a width measured from the
// widest label, so nothing is clipped whatever the magnitude.

import uPlot from "../node_modules/uplot/dist/uPlot.esm.js";
import { tickLabels, unitText } from "./format.js";

let measure = null;

function textWidth(text, font) {
  if (!measure) measure = document.createElement("canvas").getContext("2d");
  measure.font = font;
  return measure.measureText(text).width;
}

// `units()` is read on every draw: field metadata may arrive after the plot is made.
export function valueAxis(style, units = () => "") {
  const gap = style.gap ?? 5;
  const ticks = style.ticks && style.ticks.show !== false ? style.ticks.size ?? 10 : 0;
  return {
    ...style,
    gap,
    space: 24, // room for at least three labels on a short plot (uPlot's default is 30 px)
    values: (u, splits, axisIdx, space, incr) => tickLabels(splits, units(), incr),
    size: (u, values) => {
      const widest = values && values.length ? Math.max(...values.map((v) => textWidth(String(v ?? ""), style.font))) : 24;
      return Math.ceil(widest) + gap + ticks + 6;
    },
  };
}

// The y range: percentages on 0-100 (wider only if the data is), else uPlot's.
export function valueRange(units = () => "") {
  return (u, min, max) => {
    if (unitText(units()) === "%") {
      if (min === null || max === null || !Number.isFinite(min)) return [0, 100];
      return [Math.min(0, min), Math.max(100, max)];
    }
    if (min === null || max === null) return [0, 1];
    return uPlot.rangeNum(min, max, 0.1, true);
  };
}
