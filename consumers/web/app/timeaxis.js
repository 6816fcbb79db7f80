// Time-axis labels in UTC, 24-hour clock (uPlot's default is local, 12-hour).

const pad = (n) => String(n).padStart(2, "0");

export function timeLabels(splits, incr) {
  return splits.map((ts) => {
    const d = new Date(ts * 1000);
    if (Number.isNaN(d.getTime())) return "";
    const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    if (incr >= 86400) return `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    if (incr < 60) return `${hm}:${pad(d.getUTCSeconds())}`;
    return d.getUTCHours() === 0 && d.getUTCMinutes() === 0 ? `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` : hm;
  });
}

export function utcAxis(style) {
  return { ...style, values: (u, splits, axisIdx, space, incr) => timeLabels(splits, incr) };
}
