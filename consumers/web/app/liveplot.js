// A live time-series plot of one field: history from get_data (binned to the
// plot's stride), then the node's live batches appended. Drawing happens in
// the page's frame loop, at most once per frame, and never while paused.

import uPlot from "../node_modules/uplot/dist/uPlot.esm.js";
import { h, setText } from "./dom.js";
import { fmtNum, fmtTime } from "./format.js";
import { Series, niceStride } from "./series.js";
import { utcAxis } from "./timeaxis.js";

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

export function utcDate(ts) {
  return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
}

// The stride a too_many_points error asks for ("... min_stride >= 20 s ..").
export function strideFromError(message) {
  const m = /min_stride >= ([0-9.eE+-]+)/.exec(message || "");
  const s = m ? Number(m[1]) : NaN;
  return Number.isFinite(s) && s > 0 ? s : null;
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
    this.stats = { node, field, historyPoints: 0, livePoints: 0, liveBatches: 0, taken: 0, loads: 0, failedLoads: 0, draws: 0, error: null };
    hooks.plots[this.id] = this.stats;
    hooks.live.set(this.id, this);
    this.hooks = hooks;
    this.loading = false;
    this.queue = [];
    this.generation = 0;
    this.series = new Series(niceStride(range));
    this.hover = null;
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
    setText(this.unitsEl, this.meta.units ? ` (${this.meta.units})` : "");
    this.titleEl.title = this.meta.description || this.field;
  }

  _build() {
    const units = this.meta.units ? ` (${this.meta.units})` : "";
    this.unitsEl = h("span", { class: "muted" }, units);
    this.valueEl = h("span", { class: "plot-value" }, "—");
    this.infoEl = h("span", { class: "plot-info" }, "loading…");
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
      h("footer", { class: "plot-foot" }, this.infoEl),
    );
    const bool = this.meta.type === "bool";
    const opts = {
      width: 400,
      height: HEIGHT,
      tzDate: utcDate,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      scales: { x: { time: true }, y: bool ? { range: [-0.1, 1.1] } : { auto: true } },
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
      axes: [utcAxis(axisStyle), { ...axisStyle, size: 58 }],
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
      setText(this.valueEl, `${fmtNum(s.v[this.hover])} @ ${fmtTime(s.t[this.hover]).slice(11)}`);
    } else {
      setText(this.valueEl, fmtNum(s.lastV));
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
        setText(this.infoEl, `history unavailable: ${err.message}`);
        this.el.classList.add("has-error");
        this._retryLater(generation);
        break;
      }
    }
    // No history: show live data anyway.
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
    const series = new Series(stride);
    let n = 0;
    const col = reply && reply.data && reply.data[this.field];
    const tl = reply && reply.timeline && reply.timeline[this.meta.timeline];
    const times = tl && tl.t ? tl.t : reply && reply.timeline ? Object.values(reply.timeline)[0]?.t : null;
    if (Array.isArray(col) && Array.isArray(times)) n = series.setHistory(times, col);
    this.series = series;
    this.stats.historyPoints = n;
    if (reply) {
      this.stats.loads += 1;
      this.retryDelay = 0;
      this.stats.error = null;
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
    const s = this.series;
    const stride = s.stride ? `${fmtNum(s.stride, 3)} s bins` : "raw";
    const state = this.paused ? "paused · " : "";
    setText(this.infoEl, `${state}UTC · ${s.length.toLocaleString("en-US")} points · ${stride} · history ${this.stats.historyPoints.toLocaleString("en-US")} · live ${this.stats.livePoints.toLocaleString("en-US")}`);
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
    const perPixelMs = (this.range * 1000) / Math.max(1, u.width);
    this.readyAt = performance.now() + Math.min(MAX_REDRAW_MS, Math.max(MIN_REDRAW_MS, perPixelMs));
    this.stats.draws += 1;
    this.stats.points = this.series.length;
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
