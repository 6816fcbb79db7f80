// CO2 units: one row per unit with its last ping, signal, last reading; units
// silent past the node's limit are highlighted. Lights up for co2 nodes.

import { h, clear, setText } from "../dom.js";
import { fmtAge, fmtNum, fmtTime, fmtValue } from "../format.js";
import { nodePanelsView } from "./panels.js";
import { Co2Units } from "../co2-model.js";
import { strideFromError } from "../liveplot.js";

const STATUS_EVERY_S = 10;
const HISTORY_S = 6 * 3600;

class Co2Node {
  constructor(ctx, entry) {
    this.ctx = ctx;
    this.name = entry.name;
    this.model = new Co2Units();
    this.tbody = h("tbody", {});
    this.note = h("p", { class: "muted" }, "Loading units…");
    this.summary = h("span", { class: "muted" });
    this.el = h(
      "section",
      { class: "block", dataset: { node: this.name } },
      h("div", { class: "block-head" }, h("h2", {}, this.name, h("span", { class: "muted" }, ` · ${entry.description || "co2"}`)), this.summary),
      h(
        "div",
        { class: "card table-card" },
        h(
          "table",
          { class: "table co2-table" },
          h("thead", {}, h("tr", {}, h("th", {}, "unit"), h("th", {}, "state"), h("th", { class: "num" }, "CO2"), h("th", { class: "num" }, "temperature"), h("th", {}, "last reading"), h("th", {}, "last ping"), h("th", {}, "signal"), h("th", {}, "site"), h("th", {}, "note"))),
          this.tbody,
        ),
        this.note,
      ),
    );
    const { mesh } = ctx;
    this.unsubs = [
      mesh.subscribe(mesh.nodeUri(this.name, "live"), (args) => this._live(args[0]), { retained: true }),
      mesh.subscribe(mesh.nodeUri(this.name, "status"), (args) => {
        const p = args[0];
        if (p && typeof p.source === "string") {
          this.model.fromSource(p.source, p);
          this.ctx.frames.mark(this);
        }
      }),
    ];
    this.onOpen = () => this.refresh(true);
    mesh.addEventListener("open", this.onOpen);
    this.liveRows = 0;
    if (mesh.connected) this.refresh(true);
  }

  _live(p) {
    if (!p || typeof p !== "object") return;
    if (this.model.fromColumns(p.timeline, p.t, p.data)) {
      this.liveRows += Array.isArray(p.t) ? p.t.length : 0;
      this.ctx.frames.mark(this);
    }
  }

  async refresh(full) {
    const { mesh } = this.ctx;
    try {
      this.model.fromStatus(await mesh.call(mesh.nodeUri(this.name, "get_status"), [], {}, 5000));
      setText(this.note, "");
    } catch (err) {
      setText(this.note, `Status unavailable: ${err.message}`);
    }
    if (full) {
      try {
        const [fields] = await mesh.call(mesh.nodeUri(this.name, "get_fields"), [-HISTORY_S, 0]);
        this.model.fromFields(fields);
        await Promise.all([...this.model.units.keys()].filter((id) => fields[`${id}.co2_mean`] || fields[`${id}.rssi_dbm`]).map((id) => this._last(id, fields)));
      } catch {
        // fields are optional here: status and live batches fill the table
      }
    }
    this.render();
  }

  async _last(id, fields) {
    const { mesh } = this.ctx;
    const names = [`${id}.co2_mean`, `${id}.temperature`, `${id}.rssi_dbm`].filter((f) => fields[f]);
    let stride = null;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const reply = await mesh.call(mesh.nodeUri(this.name, "get_data"), [names, -HISTORY_S, 0], stride ? { min_stride: stride } : {});
        for (const [tl, cols] of Object.entries(reply.timeline || {})) this.model.fromColumns(tl, cols.t, reply.data);
        return;
      } catch (err) {
        stride = strideFromError(err.message);
        if (!stride) return;
      }
    }
  }

  draw() {
    this.render();
  }

  render() {
    const now = Date.now() / 1000;
    const rows = this.model.rows(now);
    clear(this.tbody);
    for (const r of rows) {
      const state = r.silent ? (r.heard === null ? "not heard" : "silent") : "ok";
      this.tbody.append(
        h(
          "tr",
          { class: r.silent ? "silent" : "", dataset: { unit: r.id } },
          h("td", {}, h("span", { class: "mono" }, r.id), r.nickname ? h("div", { class: "muted" }, r.nickname) : null),
          h("td", {}, h("span", { class: `pill pill-${r.silent ? "warn" : "ok"}` }, state)),
          h("td", { class: "num" }, r.co2 === null ? "—" : fmtValue(r.co2, { units: "ppm", precision: 1 })),
          h("td", { class: "num" }, r.temperature === null ? "—" : fmtValue(r.temperature, { units: "°C", precision: 1 })),
          h("td", { title: fmtTime(r.readingT) }, r.readingT === null ? "—" : `${fmtAge(now - r.readingT)} ago`),
          h("td", { title: fmtTime(r.heard) }, r.heard === null ? "never" : `${fmtAge(now - r.heard)} ago`),
          h("td", { class: "nowrap" }, h("span", { class: "signal", title: `${r.bars}/4` }, [1, 2, 3, 4].map((i) => h("i", { class: i <= r.bars ? "on" : "", style: { height: `${3 + i * 2.2}px` } }))), r.rssi === null ? "—" : `${fmtNum(r.rssi, 3)} dBm`),
          h("td", {}, r.site || "—"),
          h("td", { class: "err" }, r.error || ""),
        ),
      );
    }
    const silent = rows.filter((r) => r.silent).length;
    setText(this.summary, `${rows.length} unit${rows.length === 1 ? "" : "s"}${silent ? ` · ${silent} silent` : ""} · silent after ${fmtAge(this.model.silence)}`);
    if (!rows.length && !this.note.textContent) setText(this.note, "No unit has been heard from yet.");
    this.ctx.hooks.co2[this.name] = { units: rows.length, silent, liveRows: this.liveRows, rows: rows.map((r) => ({ id: r.id, silent: r.silent, co2: r.co2, rssi: r.rssi, lastPing: r.lastPing })) };
  }

  destroy() {
    this.ctx.mesh.removeEventListener("open", this.onOpen);
    this.ctx.frames.forget(this);
    for (const u of this.unsubs) u();
    delete this.ctx.hooks.co2[this.name];
  }
}

export function co2View(ctx) {
  return nodePanelsView(ctx, {
    title: "CO2 units",
    lede: "Observation units' last ping, modem signal and last reading; units silent past the node's limit are highlighted.",
    view: "co2",
    make: (entry) => new Co2Node(ctx, entry),
    empty: "No CO2 node is listed. This view lights up when a co2 node joins the mesh.",
    tick(n, ticks) {
      if (ticks % STATUS_EVERY_S === 0 && ctx.mesh.connected) n.refresh(false);
      else n.render();
    },
  });
}
