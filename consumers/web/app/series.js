// A plot's time series: history from get_data, then live samples appended.
//
// Live samples are binned like the server bins history (bins aligned to
// multiples of `stride`, one mean point per bin at the bin's centre), so a plot holds about
// range / stride points whatever the sample rate: memory and drawing cost stay
// bounded. Samples not after the last one held are dropped: a retained batch
// or a batch the history already covered is not drawn twice.

export const TARGET_POINTS = 1500;

// A readable stride (1, 2, 5 x 10^k seconds) giving about TARGET_POINTS over `range`.
export function niceStride(range, points = TARGET_POINTS) {
  const raw = range / points;
  if (!(raw > 0) || !Number.isFinite(raw)) return null;
  const exp = Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) {
    const s = m * 10 ** exp;
    if (s >= raw) return Number(s.toPrecision(6));
  }
  return 10 ** (exp + 1);
}

// A value as a plottable number (bool as 0/1), or null (a gap).
export function plottable(v) {
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (typeof v === "boolean") return v ? 1 : 0;
  return null;
}

export class Series {
  constructor(stride = null) {
    this.stride = stride;
    this.t = [];
    this.v = [];
    this.head = 0; // points before head are out of range, kept until compaction
    this.bin = null; // the open live bin: {index, nv, sumV}
    this.lastRaw = -Infinity; // newest sample time taken (a bin's point sits at its centre)
  }

  get length() {
    return this.t.length - this.head;
  }

  get lastT() {
    return this.t.length ? this.t[this.t.length - 1] : -Infinity;
  }

  get lastV() {
    return this.v.length ? this.v[this.v.length - 1] : null;
  }

  // Replace everything with history (times ascending); returns points kept.
  setHistory(t, v) {
    this.t = [];
    this.v = [];
    this.head = 0;
    this.bin = null;
    const n = Math.min(t.length, v.length);
    let last = -Infinity;
    for (let i = 0; i < n; i++) {
      const ti = t[i];
      if (typeof ti !== "number" || !(ti > last)) continue;
      this.t.push(ti);
      this.v.push(plottable(v[i]));
      last = ti;
    }
    this.lastRaw = last;
    return this.t.length;
  }

  // After a reload (the mesh came back): the points of the series shown before
  // that lie before this history's first point stay, so an outage or a node
  // restart with a shorter history never wipes what the plot showed.
  keepBefore(old) {
    if (!old || old.stride !== this.stride || !old.length) return 0;
    const first = this.t.length ? this.t[0] : Infinity;
    const t = [];
    const v = [];
    for (let i = old.head; i < old.t.length && old.t[i] < first; i++) {
      t.push(old.t[i]);
      v.push(old.v[i]);
    }
    if (!t.length) return 0;
    if (!this.t.length) this.lastRaw = Math.max(this.lastRaw, old.lastRaw);
    this.t = t.concat(this.t);
    this.v = v.concat(this.v);
    this.head = 0;
    return t.length;
  }

  // Append live samples; returns how many were taken (not dropped as old).
  append(t, v) {
    const n = Math.min(t.length, v.length);
    let taken = 0;
    for (let i = 0; i < n; i++) {
      const ti = t[i];
      if (typeof ti !== "number" || !Number.isFinite(ti) || !(ti > this.lastRaw)) continue;
      this._add(ti, plottable(v[i]));
      this.lastRaw = ti;
      taken++;
    }
    return taken;
  }

  _add(t, v) {
    const s = this.stride;
    if (!s) {
      this.t.push(t);
      this.v.push(v);
      return;
    }
    const index = Math.floor(t / s);
    let bin = this.bin;
    if (!bin || bin.index !== index) {
      const last = this.t.length - 1;
      if (last >= 0 && Math.floor(this.t[last] / s) === index) {
        // The last point (from history) is this bin's: carry on its mean.
        const lv = this.v[last];
        bin = this.bin = { index, nv: lv === null ? 0 : 1, sumV: lv ?? 0 };
      } else {
        bin = this.bin = { index, nv: 0, sumV: 0 };
        this.t.push((index + 0.5) * s); // the bin's centre, where the server stamps it
        this.v.push(null);
      }
    }
    if (v !== null) {
      bin.nv++;
      bin.sumV += v;
    }
    this.v[this.v.length - 1] = bin.nv ? bin.sumV / bin.nv : null;
  }

  // Forget points before tmin (lazily: arrays are compacted now and then).
  trim(tmin) {
    const t = this.t;
    let h = this.head;
    while (h < t.length && t[h] < tmin) h++;
    this.head = h;
    if (h > 2048 && h > t.length / 2) {
      t.splice(0, h);
      this.v.splice(0, h);
      this.head = 0;
    }
  }

  // The arrays for the plot, without copying: points before head lie left of
  // the plot's time range, where uPlot does not draw or scale.
  view() {
    return [this.t, this.v];
  }
}
