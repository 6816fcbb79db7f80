// Data flow: a board of radar x pipeline stage (last run, files ok and failed,
// stale stages) and a feed of recent failures. Lights up for dataflow nodes.

import { h, clear, setText } from "../dom.js";
import { fmtAge, fmtPercent, fmtTime } from "../format.js";
import { nodePanelsView } from "./panels.js";
import { Board, STAGES, isFailureEvent } from "../dataflow-model.js";
import { eventTitle } from "../events.js";

const REFRESH_S = 10;
const FEED_MAX = 40;

class DataflowNode {
  constructor(ctx, entry) {
    this.ctx = ctx;
    this.name = entry.name;
    this.board = new Board();
    this.events = [];
    this.seen = new Set();
    this.recovered = new Map(); // source key -> time it last recovered
    this.table = h("table", { class: "board", id: `board-${entry.name}` });
    this.feed = h("ul", { class: "feed" });
    this.note = h("p", { class: "muted" });
    this.el = h(
      "section",
      { class: "block", dataset: { node: this.name } },
      h("div", { class: "block-head" }, h("h2", {}, this.name, h("span", { class: "muted" }, ` · ${entry.description || "dataflow"}`)), h("div", { class: "legend" }, ["ok", "failed", "stale", "none"].map((k) => h("span", {}, h("i", { class: `cell-key ${k}` }), { ok: "last run ok", failed: "failures", stale: "stale", none: "no run" }[k])))),
      h("div", { class: "card table-card", style: { padding: "14px" } }, this.table, this.note),
      h("div", { class: "block-head", style: { marginTop: "16px" } }, h("h2", {}, "Recent failures")),
      h("div", { class: "card scroll" }, this.feed),
    );
    for (const r of Array.isArray(entry.radars) ? entry.radars : []) for (const s of STAGES) this.board.cell(r, s);
    const { mesh } = ctx;
    this.unsubs = [
      mesh.subscribe(mesh.nodeUri(this.name, "live"), (args) => {
        const p = args[0];
        if (p && this.board.fromColumns(p.timeline, p.t, p.data)) this.ctx.frames.mark(this);
      }, { retained: true }),
      mesh.subscribe(mesh.nodeUri(this.name, "status"), (args) => {
        const p = args[0];
        if (p && typeof p.source === "string") {
          this.board.fromSource(p.source, p);
          this.ctx.frames.mark(this);
        }
      }),
      mesh.subscribe(mesh.nodeUri(this.name, "event"), (args) => {
        if (this.addEvent(args[0])) this.ctx.frames.mark(this);
      }),
    ];
    this.onOpen = () => this.refresh(true);
    mesh.addEventListener("open", this.onOpen);
    if (mesh.connected) this.refresh(true);
  }

  addEvent(ev) {
    const tags = ev && Array.isArray(ev.tags) ? ev.tags.filter((t) => typeof t === "string") : [];
    if (tags.includes("recovered") && typeof ev.time === "number" && tags[1]) {
      // a source that recovered: its earlier stale or down events are marked so
      if (!(this.recovered.get(tags[1]) >= ev.time)) this.recovered.set(tags[1], ev.time);
      return true;
    }
    if (!isFailureEvent(ev)) return false;
    const key = `${ev.time} ${ev.title}`;
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    const title = eventTitle(ev.title);
    const source = tags[0] === "status" ? tags[1] : null;
    this.events.push({ time: ev.time, title, source, text: typeof ev.text === "string" ? ev.text.slice(0, 2000) : "" });
    this.events.sort((a, b) => b.time - a.time);
    this.events.length = Math.min(this.events.length, FEED_MAX);
    return true;
  }

  async refresh(full) {
    const { mesh } = this.ctx;
    const node = (s) => mesh.nodeUri(this.name, s);
    try {
      const status = await mesh.call(node("get_status"), [], {}, 5000);
      this.board.fromSources(status && status.sources);
      setText(this.note, "");
    } catch (err) {
      setText(this.note, `Status unavailable: ${err.message}`);
    }
    try {
      this.board.fromProducts(await mesh.call(node("stage_products"), [], {}, 5000));
    } catch {
      // an older node without the RPC: status and live batches fill the board
    }
    if (full) {
      try {
        const events = await mesh.call(node("get_events"), [-86400, 0], {}, 5000);
        for (const ev of Array.isArray(events) ? events : []) this.addEvent(ev);
      } catch {
        // no events: the feed fills from the live topic
      }
    }
    this.render();
  }

  draw() {
    this.render();
  }

  render() {
    const now = Date.now() / 1000;
    const b = this.board;
    const radars = b.radars();
    const stages = b.stages();
    clear(this.table);
    this.table.append(h("thead", {}, h("tr", {}, h("th", {}, "radar"), stages.map((s) => h("th", {}, s.replaceAll("_", " "))))));
    const body = h("tbody", {});
    let failing = 0;
    let stale = 0;
    for (const r of radars) {
      const row = h("tr", { dataset: { radar: r } }, h("th", { class: "radar" }, r));
      for (const s of stages) {
        const c = b.cells.get(`${r}.${s}`);
        const look = b.look(c);
        if (look === "failed") failing++;
        if (look === "stale") stale++;
        const last = c ? c.lastStart ?? c.lastEnd : null;
        const ago = last !== null ? `${fmtAge(now - last)} ago` : c && c.sinceLastRun !== null ? `${fmtAge(c.sinceLastRun)} ago` : "no run";
        const files = !c || c.lastOk === null ? "" : `${c.lastOk} ok${c.lastFailed ? ` · ${c.lastFailed} failed` : ""}`;
        const windowed = c && c.windowFailed ? `24 h: ${c.windowFailed} failed, ${fmtPercent(c.successRate)} ok` : "";
        row.append(
          h(
            "td",
            { class: `cell ${look}`, dataset: { stage: s, look }, title: [c && c.error, last !== null ? `last run ${fmtTime(last)}` : "", c && c.lastState ? `state ${c.lastState}` : ""].filter(Boolean).join("\n") },
            h("div", { class: "when" }, ago),
            h("div", { class: "files" }, look === "stale" ? "stale" : c && c.lastState === "died" ? "run died" : files),
            windowed ? h("div", { class: "files" }, windowed) : null,
          ),
        );
      }
      body.append(row);
    }
    this.table.append(body);
    if (!radars.length) setText(this.note, this.note.textContent || "No run seen yet.");
    clear(this.feed);
    for (const ev of this.events) {
      const back = ev.source ? this.recovered.get(ev.source) : undefined;
      const resolved = back !== undefined && back >= ev.time;
      this.feed.append(
        h(
          "li",
          { class: resolved ? "resolved" : "", dataset: { resolved: resolved ? "yes" : "no" } },
          h("time", {}, fmtTime(ev.time)),
          h("div", {}, h("span", { class: resolved ? "" : "bad" }, ev.title), resolved ? h("span", { class: "ok-note" }, ` · recovered ${fmtAge(now - back)} ago`) : null, ev.text ? h("div", { class: "muted" }, ev.text.split("\n")[0]) : null),
        ),
      );
    }
    if (!this.events.length) this.feed.append(h("li", { class: "muted" }, h("span", {}, ""), "No failure in the last 24 hours."));
    const resolved = this.events.filter((ev) => ev.source && this.recovered.get(ev.source) >= ev.time).length;
    this.ctx.hooks.dataflow[this.name] = { radars, stages, cells: b.cells.size, failing, stale, failures: this.events.length, resolved, titles: this.events.map((ev) => ev.title) };
  }

  destroy() {
    this.ctx.mesh.removeEventListener("open", this.onOpen);
    this.ctx.frames.forget(this);
    for (const u of this.unsubs) u();
    delete this.ctx.hooks.dataflow[this.name];
  }
}

export function dataflowView(ctx) {
  return nodePanelsView(ctx, {
    title: "Data flow",
    lede: "The radar data pipeline, radar by stage: when each stage last ran, files handled and failed, and stages that have not run within their period.",
    view: "dataflow",
    make: (entry) => new DataflowNode(ctx, entry),
    empty: "No data-flow node is listed. This view lights up when a dataflow node joins the mesh.",
    tick(n, ticks) {
      if (ticks % REFRESH_S === 0 && ctx.mesh.connected) n.refresh(false);
      else if (ticks % 5 === 0) ctx.frames.mark(n);
    },
  });
}
