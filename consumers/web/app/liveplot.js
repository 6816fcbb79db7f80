// A live time-series plot of one field: history from get_data (binned to the
// plot's stride), then the node's live batches appended. Drawing happens in
// the page's frame loop, at most once per frame, and never while paused.
// After an outage the history is loaded again and merged with what the plot
// showed: nothing on screen is thrown away. The plot's points can be saved
// as CSV, as shown (binned, in the visible time range).

import uPlot from "../node_modules/uplot/dist/uPlot.esm.js";
import { h, setText } from "./dom.js";
import { fmtClock, fmtNum, fmtTime, fmtValue, tzLabel, unitText } from "./format.js";
import { prefs } from "./prefs.js";
import { Series, niceStride } from "./series.js";
import { tzDate, utcAxis } from "./timeaxis.js";
import { valueAxis, valueRange } from "./yaxis.js";

const PALETTE = ["#2563eb", "#0d9488", "#d97706", "#7c3aed", "#dc2626", "#0891b2", "#65a30d", "#db2777"];
const MAX_QUEUED = 2000; // live batches held while history loads
const HEIGHT = 170;
// Redraw at most this often: a plot moves by less than a pixel between frames
// anyway (5 min over 400 px is 0.75 s a pixel), and every redraw costs paint.
const MIN_REDRAW_MS = 50;
const MAX_REDRAW_MS = 250;

export const axisStyle = {
  stroke: "#64748b",
  font: "11px system-ui, sans-serif",
  grid: { stroke: "#eef1f5", width: 1 },
  ticks: { stroke: "#e2e8f0", width: 1, size: 4 },
};

// kept for the views that import it: the reader's chosen clock
export const utcDate = tzDate;

// The stride a too_many_points error asks for ("... min_stride >= 20 s ..").
export function strideFromError(message) {
  const m = /min_stride >= ([0-9.eE+-]+)/.exec(message || "");
  const s = m ? Number(m[1]) : NaN;
  return Number.isFinite(s) && s > 0 ? s : null;
}

// The CSV of points (times ascending) in [left, right]: what a plot shows.
export function plotCsv(field, units, t, v, left, right) {
  const head = `time_utc,unix_time,${field}${units ? ` (${units})` : ""}`;
  const rows = [head];
  for (let i = 0; i < t.length; i++) {
    if (!(t[i] >= left && t[i] <= right)) continue;
    const iso = new Date(t[i] * 1000).toISOString();
    rows.push(`${iso},${t[i].toFixed(3)},${v[i] === null || v[i] === undefined ? "" : v[i]}`);
  }
  return `${rows.join("\n")}\n`;
}

// A readable reason for a failed history call (no raw WAMP URIs).
export function historyError(err) {
  const uri = (err && err.uri) || "";
  if (uri.endsWith("no_such_procedure")) return "the node does not answer (not on the mesh right now)";
  if (uri.endsWith("no_such_field")) return (err.message || "no such field").replace(/^node '[^']*' has /, "");
  if (uri === "obsmesh.offline") return "not connected to the mesh";
  if (uri === "obsmesh.timeout") return "the node did not answer in time";
  return err && err.message ? err.message : String(err);
}

export class LivePlot {
  constructor({ mesh, frames, hooks, node, field, meta, range, paused, index }) {
    this.mesh = mesh;
    this.frames = frames;
    this.node = node;
    this.field = field;
    this.meta = meta || {};
    this.range = range;
    this.paused = !!paused;
    this.pausedAt = this.paused ? Date.now() / 1000 : null;
    this.color = PALETTE[(index || 0) % PALETTE.length];
    this.id = `${node}/${field}`;
    this.stats = { node, field, historyPoints: 0, livePoints: 0, liveBatches: 0, taken: 0, loads: 0, failedLoads: 0, draws: 0, kept: 0, error: null };
    hooks.plots[this.id] = this.stats;
    hooks.live.set(this.id, this);
    this.hooks = hooks;
    this.loading = false;
    this.queue = [];
    this.generation = 0;
    this.series = new Series(niceStride(range));
    this.hover = null;
    this.shown = null; // [left, right] of the last draw
    this._build();
    this.unlisten = mesh.subscribe(mesh.nodeUri(node, "live"), (args) => this.onLive(args[0]), { retained: true });
    this.onOpen = () => this.load(); // first join, or back after an outage: (re)load history
    mesh.addEventListener("open", this.onOpen);
    this.resizer = new ResizeObserver(() => this._resize());
    this.resizer.observe(this.body);
    this.readyAt = 0;
    this.visible = true;
    this.watcher = new IntersectionObserver((entries) => {
      this.visible = entries[entries.length - 1].isIntersecting;
      if (this.visible) this.frames.mark(this); // catch up on what arrived offscreen
    });
    this.watcher.observe(this.el);
    if (mesh.connected) this.load();
  }

  // Field metadata that arrived after the plot was made (a plot from the URL).
  setMeta(meta) {
    this.meta = { ...meta, ...this.meta };
    const units = unitText(this.meta.units);
    setText(this.unitsEl, units ? ` (${units})` : "");
    this.titleEl.title = this.meta.description || this.field;
    this._showValue();
    this.frames.mark(this);
  }

  _build() {
    const units = unitText(this.meta.units);
    this.unitsEl = h("span", { class: "muted" }, units ? ` (${units})` : "");
    this.valueEl = h("span", { class: "plot-value" }, "—");
    this.infoEl = h("span", { class: "plot-info" }, "loading…");
    this.csvBtn = h("button", { type: "button", class: "btn small csv", title: "download the points shown as CSV", onclick: () => this.download() }, "CSV");
    this.body = h("div", { class: "plot-body" });
    this.el = h(
      "section",
      { class: "card plot", dataset: { plot: this.id } },
      h(
        "header",
        { class: "plot-head" },
        h("span", { class: "swatch", style: { background: this.color } }),
        (this.titleEl = h("span", { class: "plot-title", title: this.meta.description || this.field }, this.field, this.unitsEl)),
        this.valueEl,
      ),
      this.body,
      h("footer", { class: "plot-foot" }, this.infoEl, this.csvBtn),
    );
    const bool = this.meta.type === "bool";
    const unitsNow = () => this.meta.units;
    const opts = {
      width: 400,
      height: HEIGHT,
      tzDate,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      scales: { x: { time: true }, y: bool ? { range: [-0.1, 1.1] } : { auto: true, range: valueRange(unitsNow) } },
      series: [
        {},
        {
          label: this.field,
          stroke: this.color,
          width: 1.25,
          fill: `${this.color}14`,
          points: { show: false },
          paths: bool ? uPlot.paths.stepped({ align: 1 }) : undefined,
        },
      ],
      axes: [utcAxis(axisStyle), bool ? { ...axisStyle, size: 40, splits: [0, 1], values: ["false", "true"] } : valueAxis(axisStyle, unitsNow)],
      hooks: { setCursor: [(u) => this._cursor(u)] },
    };
    this.plot = new uPlot(opts, [[], []], this.body);
  }

  _resize() {
    const width = Math.floor(this.body.clientWidth);
    if (width > 50 && width !== this.plot.width) {
      this.plot.setSize({ width, height: HEIGHT });
      this.frames.mark(this);
    }
  }

  _cursor(u) {
    const i = u.cursor.idx;
    this.hover = i === null || i === undefined ? null : i;
    this._showValue();
  }

  _showValue() {
    const s = this.series;
    if (this.hover !== null && this.hover < s.t.length) {
      setText(this.valueEl, `${fmtValue(s.v[this.hover], this.meta)} @ ${fmtClock(s.t[this.hover])}`);
    } else {
      setText(this.valueEl, fmtValue(s.lastV, this.meta));
    }
  }

  async load() {
    const generation = ++this.generation;
    this.loading = true;
    this.queue = [];
    let stride = this.series.stride;
    const uri = this.mesh.nodeUri(this.node, "get_data");
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        const kwargs = stride ? { min_stride: stride } : {};
        const reply = await this.mesh.call(uri, [[this.field], -this.range, 0], kwargs);
        if (generation !== this.generation) return;
        this._history(reply, stride);
        return;
      } catch (err) {
        if (generation !== this.generation) return;
        const wider = err.uri && err.uri.endsWith(".error.too_many_points") ? strideFromError(err.message) : null;
        if (wider && wider > (stride || 0)) {
          stride = wider;
          continue;
        }
        this.stats.error = err.message;
        this.errorText = `history unavailable: ${historyError(err)}`;
        this.el.classList.add("has-error");
        this._retryLater(generation);
        break;
      }
    }
    // No history: keep what the plot shows and add live data to it.
    this._history(null, stride);
  }

  // A node not listed yet, or busy: ask again, less and less often.
  _retryLater(generation) {
    this.retryDelay = Math.min(30, (this.retryDelay || 1) * 2);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (generation === this.generation && this.mesh.connected) this.load();
    }, this.retryDelay * 1000);
  }

  _history(reply, stride) {
    const old = this.series;
    let series = old;
    if (reply || old.stride !== stride) {
      series = new Series(stride);
      const col = reply && reply.data && reply.data[this.field];
      const tl = reply && reply.timeline && reply.timeline[this.meta.timeline];
      const times = tl && tl.t ? tl.t : reply && reply.timeline ? Object.values(reply.timeline)[0]?.t : null;
      if (Array.isArray(col) && Array.isArray(times)) this.stats.historyPoints = series.setHistory(times, col);
      else this.stats.historyPoints = 0;
      this.stats.kept = series.keepBefore(old);
    }
    this.series = series;
    if (reply) {
      this.stats.loads += 1;
      this.retryDelay = 0;
      this.stats.error = null;
      this.errorText = null;
      this.el.classList.remove("has-error");
    } else {
      this.stats.failedLoads += 1;
    }
    this.loading = false;
    const queued = this.queue;
    this.queue = [];
    for (const [t, v] of queued) this.stats.taken += this.series.append(t, v);
    this._info();
    this.frames.mark(this);
  }

  onLive(payload) {
    if (!payload || typeof payload !== "object" || !payload.data) return;
    const col = payload.data[this.field];
    const t = payload.t;
    if (!Array.isArray(col) || !Array.isArray(t)) return;
    this.stats.liveBatches += 1;
    this.stats.livePoints += Math.min(t.length, col.length);
    if (this.loading) {
      if (this.queue.length < MAX_QUEUED) this.queue.push([t, col]);
      return;
    }
    this.stats.taken += this.series.append(t, col);
    if (!this.paused) this.frames.mark(this);
  }

  setRange(range) {
    this.range = range;
    this.series = new Series(niceStride(range));
    this.load();
  }

  setPaused(paused) {
    this.paused = paused;
    this.pausedAt = paused ? Date.now() / 1000 : null;
    this.el.classList.toggle("paused", paused);
    if (!paused) this.frames.mark(this);
    this._info();
  }

  _info() {
    if (this.errorText) {
      setText(this.infoEl, this.errorText);
      return;
    }
    const s = this.series;
    const what = s.stride ? `means over ${fmtNum(s.stride, 3)} s` : "every sample";
    const state = this.paused ? "paused · " : "";
    let text = `${state}${what} · ${tzLabel()}`;
    if (prefs.details) {
      const n = (x) => x.toLocaleString("en-US");
      text += ` · ${n(s.length)} points · history ${n(this.stats.historyPoints)} · live ${n(this.stats.livePoints)}`;
    }
    setText(this.infoEl, text);
  }

  // The points shown, as a CSV file the browser saves.
  csv() {
    const [left, right] = this.shown || [-Infinity, Infinity];
    return plotCsv(this.field, unitText(this.meta.units), this.series.t, this.series.v, left, right);
  }

  download() {
    const text = this.csv();
    const [left] = this.shown || [Date.now() / 1000 - this.range];
    const stamp = fmtTime(left, "utc").replace(/[-: ]/g, "");
    const a = h("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: `${this.node}_${this.field}_${stamp}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  draw() {
    if (this.paused && this.stats.draws > 0) return;
    const now = this.pausedAt ?? Date.now() / 1000;
    const right = Math.max(now, Number.isFinite(this.series.lastT) ? Math.min(this.series.lastT, now + 60) : now);
    const left = right - this.range;
    if (!this.paused) this.series.trim(left);
    const u = this.plot;
    u.batch(() => {
      u.setData(this.series.view(), false);
      u.setScale("x", { min: left, max: right });
    });
    this.shown = [left, right];
    const perPixelMs = (this.range * 1000) / Math.max(1, u.width);
    this.readyAt = performance.now() + Math.min(MAX_REDRAW_MS, Math.max(MIN_REDRAW_MS, perPixelMs));
    this.stats.draws += 1;
    this.stats.points = this.series.length;
    // what the value axis shows (tests read these: labels, the room they got, the range)
    const axis = u.axes[1];
    this.stats.yTicks = Array.isArray(axis._values) ? axis._values.map(String) : [];
    this.stats.ySize = axis._size;
    this.stats.yRange = [u.scales.y.min, u.scales.y.max];
    this._showValue();
    this._info();
  }

  destroy() {
    this.generation++;
    clearTimeout(this.retryTimer);
    this.unlisten();
    this.mesh.removeEventListener("open", this.onOpen);
    this.resizer.disconnect();
    this.watcher.disconnect();
    this.frames.forget(this);
    this.plot.destroy();
    this.el.remove();
    delete this.hooks.plots[this.id];
    this.hooks.live.delete(this.id);
  }
}
