// Radars: per radar, a fan of the latest beams' velocities by beam and gate,
// echo counts per scan over time, and whether the radar is connected or stale.
// Lights up for nodes of a radar kind (superdarn, canada); radars are found
// from the node's status sources and from its radar topics as they publish.

import uPlot from "../../node_modules/uplot/dist/uPlot.esm.js";
import { h, clear, setText } from "../dom.js";
import { fmtAge, fmtNum } from "../format.js";
import { coastAround, loadLand } from "../geo.js";
import { syncNodes } from "../kinds.js";
import { axisStyle } from "../liveplot.js";
import { RadarState, echoFields, radarTopic, validCode } from "../radar-model.js";
import { drawFan } from "../fan.js";
import { tzDate, utcAxis } from "../timeaxis.js";
import { valueAxis } from "../yaxis.js";

// Echo counts: the last two hours at most; the axis spans the scans there are
// (at least ten minutes), so minutes of data fill it.
const ECHO_WINDOW_S = 2 * 3600;
const ECHO_MIN_SPAN_S = 600;

// The time axis of the echo counts: from the first scan shown to now.
export function echoSpan(times, now) {
  const first = times.find((t) => t >= now - ECHO_WINDOW_S);
  const start = first === undefined ? now - ECHO_MIN_SPAN_S : Math.min(first, now - ECHO_MIN_SPAN_S);
  return [Math.max(start - 0.03 * (now - start), now - ECHO_WINDOW_S), now];
}
const STATUS_EVERY_S = 10;
const SERIES = [
  { key: "total", label: "total", color: "#0f172a" },
  { key: "ionospheric", label: "ionospheric", color: "#2563eb" },
  { key: "ground", label: "ground scatter", color: "#94a3b8" },
];

class RadarCard {
  constructor(ctx, state) {
    this.ctx = ctx;
    this.state = state;
    this.title = h("span", { class: "radar-name" }, state.code.toUpperCase());
    this.pill = h("span", { class: "pill pill-idle" }, "waiting");
    this.facts = h("div", { class: "radar-facts" });
    this.errorEl = h("div", { class: "radar-error" });
    this.canvas = h("canvas", { class: "fan", width: 250, height: 200 });
    this.coast = null; // projected coastlines around the site, once the land outlines load
    this.echoBox = h("div", { class: "echo-plot" });
    this.fanNote = h("p", { class: "fan-note", hidden: true }, "Position unknown (not in the radar table): drawn relative to the boresight, without a map.");
    this.el = h(
      "section",
      { class: "card radar-card", dataset: { radar: `${state.node}/${state.code}` } },
      h("div", { class: "radar-head" }, h("div", {}, this.title, h("span", { class: "radar-code" }, `${state.code} · node ${state.node}`)), this.pill),
      h(
        "div",
        { class: "radar-body" },
        h("div", {}, this.canvas, this.fanNote, h("div", { class: "legend" }, "−600", h("span", { class: "colorbar" }), "+600 m/s", h("span", {}, h("i", { style: { background: "#64748b", height: "8px" } }), "ground"))),
        h(
          "div",
          {},
          this.facts,
          this.errorEl,
          h("h3", { style: { margin: "12px 0 2px" } }, "Echoes per scan"),
          this.echoBox,
          h("div", { class: "legend" }, SERIES.map((s) => h("span", {}, h("i", { style: { background: s.color } }), s.label))),
        ),
      ),
    );
    this.plot = new uPlot(
      {
        width: 240,
        height: 150,
        tzDate,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { auto: true, range: (u, min, max) => [0, Math.max(10, max * 1.1)] } },
        series: [{}, ...SERIES.map((s) => ({ label: s.label, stroke: s.color, width: s.key === "total" ? 1.5 : 1.2, points: { show: false } }))],
        axes: [utcAxis(axisStyle), valueAxis(axisStyle)],
      },
      [[], [], [], []],
      this.echoBox,
    );
    this.resizer = new ResizeObserver(() => {
      const width = Math.floor(this.echoBox.clientWidth);
      if (width > 50 && width !== this.plot.width) {
        this.plot.setSize({ width, height: 150 });
        ctx.frames.mark(this);
      }
    });
    this.resizer.observe(this.echoBox);
  }

  draw() {
    const s = this.state;
    const now = Date.now() / 1000;
    const state = s.state(now);
    setText(this.pill, state);
    this.pill.className = `pill pill-${{ connected: "ok", stale: "warn", disconnected: "bad", waiting: "idle" }[state]}`;
    this.el.dataset.state = state;
    setText(this.title, s.name ? `${s.name}` : s.code.toUpperCase());
    clear(this.facts);
    const facts = [
      ["last beam", s.lastBeam === null ? "—" : `${fmtAge(now - s.lastBeam)} ago`],
      ["beams", s.counts.beams.toLocaleString("en-US")],
      ["frequency", s.tfreq === null ? "—" : `${fmtNum(s.tfreq / 1000, 4)} MHz`],
      ["scans", s.counts.scans.toLocaleString("en-US")],
      ["noise", s.noise === null ? "—" : fmtNum(s.noise, 3)],
      ["gates", `${s.grid().ngates} × ${s.grid().rsep} km`],
      ["state since", s.source && typeof s.source.updated === "number" ? `${fmtAge(now - s.source.updated)} ago` : "—"],
    ];
    for (const [k, v] of facts) this.facts.append(h("span", {}, k), h("span", {}, v));
    setText(this.errorEl, s.source && s.source.error ? String(s.source.error) : "");
    if (s.site && !this.coast && !this.coastLoading) this._loadCoast(s.site);
    const fan = drawFan(this.canvas, s, this.coast);
    this.fanNote.hidden = fan.mapped;
    const t = [];
    const cols = SERIES.map(() => []);
    for (const scan of s.scans) {
      if (scan.time < now - ECHO_WINDOW_S) continue;
      t.push(scan.time);
      SERIES.forEach((ser, i) => cols[i].push(scan[ser.key]));
    }
    const [left, right] = echoSpan(t, now);
    this.plot.batch(() => {
      this.plot.setData([t, ...cols], false);
      this.plot.setScale("x", { min: left, max: right });
    });
    this.ctx.hooks.radar[`${s.node}/${s.code}`] = { ...s.summary(now), mapped: fan.mapped, coast: fan.coast, echoSpan: right - left, echoPoints: t.length };
  }

  _loadCoast(site) {
    this.coastLoading = true;
    loadLand()
      .then((rings) => {
        this.coast = coastAround(rings, site.lat, site.lon);
        this.ctx.frames.mark(this);
      })
      .catch((err) => {
        this.coastLoading = false; // drawn without coastlines; tried again on a later draw
        this.ctx.hooks.errors.push({ message: "land outlines", error: String(err) });
      });
  }

  destroy() {
    this.resizer.disconnect();
    this.ctx.frames.forget(this);
    this.plot.destroy();
  }
}

// One radar node: its topics, status and echo-count history.
class RadarNode {
  constructor(ctx, name, grid) {
    this.ctx = ctx;
    this.name = name;
    this.grid = grid;
    this.radars = new Map(); // code -> {state, card, unsubs}
    this.fields = null;
    const { mesh } = ctx;
    this.prefix = mesh.nodeUri(name, "radar.");
    this.unsubs = [
      mesh.subscribe(this.prefix, (args, kwargs, details) => this._discovered(details.topic, args[0]), { match: "prefix" }),
      // connected / stale flips of a source, as the node publishes them
      mesh.subscribe(mesh.nodeUri(name, "status"), (args) => this._source(args[0] && args[0].source, args[0])),
    ];
    this.onOpen = () => {
      for (const r of this.radars.values()) r.history = false; // back after an outage: fill the gap
      this.refresh();
    };
    mesh.addEventListener("open", this.onOpen);
    if (mesh.connected) this.refresh();
  }

  radar(code) {
    let r = this.radars.get(code);
    if (r || !validCode(code)) return r || null;
    const state = new RadarState(this.name, code);
    const card = new RadarCard(this.ctx, state);
    r = { state, card, unsubs: [] };
    this.radars.set(code, r);
    const { mesh } = this.ctx;
    // exact subscriptions: they get the retained latest beam and scan at once
    r.unsubs.push(mesh.subscribe(`${this.prefix}${code}.beam`, (args) => this._beam(r, args[0]), { retained: true }));
    r.unsubs.push(mesh.subscribe(`${this.prefix}${code}.scan`, (args) => this._scan(r, args[0]), { retained: true }));
    this.grid.append(card.el);
    this.grid.dispatchEvent(new CustomEvent("radars"));
    if (this.fields) this._history(r);
    this.ctx.frames.mark(card);
    return r;
  }

  // A status source that names a radar (key "<code>" or "<code>.<channel>").
  _source(key, src) {
    if (typeof key !== "string" || !src || typeof src !== "object") return;
    const code = validCode(src.code) ? src.code : key.split(".")[0];
    if (!validCode(code) || !("connected" in src || "stale" in src)) return;
    const r = this.radar(code);
    if (r) {
      r.state.setSource(src);
      this.ctx.frames.mark(r.card);
    }
  }

  _discovered(topic, payload) {
    const where = radarTopic(topic, this.prefix);
    if (!where || this.radars.has(where.code)) return; // known radars listen on their own topics
    const r = this.radar(where.code);
    if (!r) return;
    if (where.what === "beam") this._beam(r, payload);
    else this._scan(r, payload);
  }

  _beam(r, payload) {
    if (r.state.addBeam(payload, Date.now() / 1000)) this.ctx.frames.mark(r.card);
  }

  _scan(r, payload) {
    if (r.state.addScan(payload)) this.ctx.frames.mark(r.card);
  }

  async refresh() {
    const { mesh } = this.ctx;
    try {
      const status = await mesh.call(mesh.nodeUri(this.name, "get_status"), [], {}, 5000);
      const sources = status && typeof status.sources === "object" && status.sources ? status.sources : {};
      for (const [key, src] of Object.entries(sources)) this._source(key, src);
    } catch {
      // status is optional for the view: radars still come from their topics
    }
    // fields again while a radar has no echo history yet: a radar that appeared
    // after the last look declares its fields then
    const missing = [...this.radars.values()].filter((r) => !r.history);
    if (this.fields === null || missing.length) {
      try {
        const [fields] = await mesh.call(mesh.nodeUri(this.name, "get_fields"), [-ECHO_WINDOW_S, 0]);
        this.fields = fields && typeof fields === "object" ? fields : {};
        for (const r of missing) this._history(r);
      } catch {
        // no fields now: live scans only, until the next refresh
      }
    }
  }

  async _history(r) {
    const names = echoFields(this.fields, r.state.code);
    if (!names || r.history) return;
    const { mesh } = this.ctx;
    try {
      const keys = Object.keys(names);
      const reply = await mesh.call(mesh.nodeUri(this.name, "get_data"), [keys.map((k) => names[k]), -ECHO_WINDOW_S, 0]);
      const tl = reply && reply.timeline ? Object.values(reply.timeline)[0] : null;
      if (!tl || !Array.isArray(tl.t)) return;
      const cols = {};
      for (const k of keys) cols[k] = reply.data[names[k]] || [];
      r.state.addHistory(tl.t, cols);
      r.history = true;
      this.ctx.frames.mark(r.card);
    } catch {
      // no history: live scans only
    }
  }

  tick() {
    for (const r of this.radars.values()) this.ctx.frames.mark(r.card);
  }

  destroy() {
    this.ctx.mesh.removeEventListener("open", this.onOpen);
    for (const u of this.unsubs) u();
    for (const r of this.radars.values()) {
      for (const u of r.unsubs) u();
      r.card.destroy();
      delete this.ctx.hooks.radar[`${this.name}/${r.state.code}`];
    }
  }
}

export function radarView(ctx) {
  const { directory } = ctx;
  const nodes = new Map();
  const body = h("div", {});
  const lede = h("p", { class: "lede" });
  const el = h("div", { class: "view" }, h("div", { class: "view-head" }, h("h1", {}, "Radars"), lede), body);
  let ticks = 0;

  function sync() {
    const listed = directory.ofView("radars");
    syncNodes(nodes, listed, (entry) => {
      const grid = h("div", { class: "radar-grid" });
      const empty = h("div", { class: "empty" }, "No radar has published yet.");
      grid.addEventListener("radars", () => empty.remove());
      const section = h("section", { class: "block", dataset: { node: entry.name } }, h("div", { class: "block-head" }, h("h2", {}, `${entry.name}`, h("span", { class: "muted" }, ` · ${entry.description || entry.kind}`))), empty, grid);
      const n = new RadarNode(ctx, entry.name, grid);
      n.el = section;
      return n;
    }, (n) => body.append(n.el));
    setText(lede, listed.length ? "Each fan shows the latest line-of-sight velocity of every beam and range gate, on a map around the radar (north up; red away from the radar, blue towards it, grey ground scatter). Echo counts are per completed scan." : "");
    if (!listed.length && !body.querySelector(".empty.no-node")) {
      clear(body);
      body.append(h("div", { class: "empty no-node" }, "No radar node is listed. This view lights up when a superdarn or canada node joins the mesh."));
    } else if (listed.length) body.querySelector(".empty.no-node")?.remove();
  }

  sync();
  return {
    el,
    directoryChanged: sync,
    tick() {
      ticks += 1;
      for (const n of nodes.values()) {
        n.tick();
        if (ticks % STATUS_EVERY_S === 0 && ctx.mesh.connected) n.refresh();
      }
    },
    unmount() {
      for (const n of nodes.values()) n.destroy();
      nodes.clear();
    },
  };
}
