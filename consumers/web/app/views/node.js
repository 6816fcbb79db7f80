// One node: its description, health, fields, and live plots of chosen fields.
// The URL holds the choice (#/node/<name>?fields=a,b&range=900), so a view can
// be bookmarked and shared.

import { h, clear, setText } from "../dom.js";
import { fmtRange } from "../format.js";
import { LivePlot } from "../liveplot.js";
import { statusPanel, replace } from "./status.js";

export const RANGES = [300, 900, 3600, 6 * 3600, 86400];
const AUTO_PLOTS = 4;
const STATUS_EVERY_S = 5;

export function plottableField(meta) {
  return meta && (meta.type === "number" || meta.type === "bool" || meta.type === undefined);
}

export function nodeView(ctx, name, query) {
  const { mesh, directory, frames, hooks } = ctx;
  const requested = (query.get("fields") || "").split(",").filter(Boolean);
  let range = Number(query.get("range")) || 900;
  if (!RANGES.includes(range)) range = 900;
  let paused = false;
  let fields = null; // name -> meta
  const plots = new Map();
  let ticks = 0;

  const title = h("h1", {}, name);
  const kind = h("span", { class: "kind" });
  const desc = h("p", { class: "lede" });
  const statusBox = h("div", { class: "status-box" });
  const fieldBody = h("tbody", {});
  const fieldNote = h("p", { class: "muted" }, "Loading fields…");
  const plotGrid = h("div", { class: "plot-grid", id: "plots" });
  const fieldCount = h("span", { class: "muted" });
  let filter = "";
  const filterBox = h("input", {
    class: "filter",
    type: "search",
    placeholder: "Filter fields",
    "aria-label": "filter fields",
    oninput: (e) => {
      filter = e.target.value.trim().toLowerCase();
      renderFields();
    },
  });
  const pauseBtn = h("button", { class: "btn", type: "button", id: "pause", onclick: () => setPaused(!paused) }, "Pause");
  const rangeSel = h(
    "div",
    { class: "segmented", role: "group", "aria-label": "time range" },
    RANGES.map((r) => h("button", { type: "button", class: r === range ? "on" : "", dataset: { range: String(r) }, onclick: () => setRange(r) }, fmtRange(r))),
  );
  const el = h(
    "div",
    { class: "view", dataset: { node: name } },
    h("div", { class: "view-head" }, h("div", { class: "title-row" }, title, kind), desc),
    h(
      "section",
      { class: "block" },
      h("div", { class: "block-head" }, h("h2", {}, "Live plots"), h("div", { class: "toolbar" }, rangeSel, pauseBtn)),
      plotGrid,
    ),
    h("section", { class: "block" }, h("div", { class: "block-head" }, h("h2", {}, "Health")), statusBox),
    h(
      "section",
      { class: "block" },
      h("div", { class: "block-head" }, h("h2", {}, "Fields", fieldCount), filterBox),
      h("div", { class: "card table-card scroll" }, h("table", { class: "table", id: "fields" }, h("thead", {}, h("tr", {}, ["", "field", "timeline", "type", "units", "description"].map((c) => h("th", {}, c)))), fieldBody), fieldNote),
    ),
  );

  let wasListed = !!directory.get(name);

  // The node (re)appeared: what failed while it was away is asked again.
  function directoryChanged() {
    const listed = !!directory.get(name);
    if (listed && !wasListed && mesh.connected) {
      if (!fields) loadFields();
      loadStatus();
      for (const p of plots.values()) if (p.stats.error) p.load();
    }
    wasListed = listed;
    showEntry();
  }

  function showEntry() {
    const entry = directory.get(name);
    setText(kind, entry ? entry.kind || "node" : "not listed");
    kind.className = `kind ${entry ? `kind-${entry.kind}` : "kind-missing"}`;
    setText(desc, entry ? entry.description || "" : directory.loaded ? "This node is not listed by the hub right now; its data returns when it does." : "");
  }

  function syncUrl() {
    const q = new URLSearchParams();
    q.set("fields", [...plots.keys()].join(","));
    q.set("range", String(range));
    history.replaceState(null, "", `#/node/${encodeURIComponent(name)}?${q.toString()}`);
  }

  function addPlot(field) {
    if (plots.has(field)) return;
    const plot = new LivePlot({ mesh, frames, hooks, node: name, field, meta: fields ? fields[field] : null, range, paused, index: plots.size });
    plots.set(field, plot);
    plotGrid.append(plot.el);
    renderFields();
  }

  function removePlot(field) {
    const plot = plots.get(field);
    if (!plot) return;
    plot.destroy();
    plots.delete(field);
    renderFields();
  }

  function setRange(r) {
    range = r;
    for (const b of rangeSel.children) b.classList.toggle("on", Number(b.dataset.range) === r);
    for (const p of plots.values()) p.setRange(r);
    syncUrl();
  }

  function setPaused(p) {
    paused = p;
    setText(pauseBtn, p ? "Resume" : "Pause");
    pauseBtn.classList.toggle("on", p);
    for (const plot of plots.values()) plot.setPaused(p);
  }

  function renderFields() {
    clear(fieldBody);
    if (!fields) return;
    const all = Object.keys(fields).sort();
    const names = all.filter((f) => !filter || f.toLowerCase().includes(filter) || String(fields[f]?.description || "").toLowerCase().includes(filter));
    setText(fieldCount, ` · ${names.length === all.length ? all.length : `${names.length} of ${all.length}`}`);
    setText(fieldNote, all.length ? (names.length ? "" : "No field matches the filter.") : "No field has data in the last 24 hours.");
    for (const f of names) {
      const meta = fields[f] || {};
      const can = plottableField(meta);
      const on = plots.has(f);
      fieldBody.append(
        h(
          "tr",
          { dataset: { field: f } },
          h("td", {}, can ? h("button", { type: "button", class: `btn small ${on ? "on" : ""}`, onclick: () => (on ? removePlot(f) : addPlot(f)) }, on ? "Hide" : "Plot") : null),
          h("td", { class: "mono" }, f),
          h("td", { class: "mono muted" }, meta.timeline || ""),
          h("td", {}, meta.type || ""),
          h("td", {}, meta.units || ""),
          h("td", { class: "muted" }, meta.description || ""),
        ),
      );
    }
  }

  async function loadFields() {
    try {
      const reply = await mesh.call(mesh.nodeUri(name, "get_fields"), [-86400, 0]);
      const [f] = Array.isArray(reply) ? reply : [{}];
      fields = f && typeof f === "object" ? f : {};
    } catch (err) {
      setText(fieldNote, `Fields unavailable: ${err.message}`);
      return;
    }
    for (const p of plots.values()) if (fields[p.field]) p.setMeta(fields[p.field]);
    if (!plots.size) {
      const auto = Object.keys(fields).sort().filter((f) => plottableField(fields[f]) && fields[f].type !== "bool").slice(0, AUTO_PLOTS);
      for (const f of auto) addPlot(f);
      if (auto.length) syncUrl();
    }
    renderFields();
  }

  async function loadStatus() {
    try {
      const status = await mesh.call(mesh.nodeUri(name, "get_status"), [], {}, 5000);
      replace(statusBox, statusPanel(status, Date.now() / 1000));
    } catch (err) {
      replace(statusBox, h("p", { class: "muted" }, `Status unavailable: ${err.message}`));
    }
  }

  const onOpen = () => {
    loadFields();
    loadStatus();
  };
  mesh.addEventListener("open", onOpen);
  showEntry();
  for (const f of requested) addPlot(f);
  if (mesh.connected) onOpen();

  return {
    el,
    directoryChanged,
    tick() {
      // slide the time axis of plots whose data comes slowly
      if (!paused) for (const p of plots.values()) frames.mark(p);
      if (++ticks % STATUS_EVERY_S === 0 && mesh.connected) loadStatus();
    },
    unmount() {
      mesh.removeEventListener("open", onOpen);
      for (const p of plots.values()) p.destroy();
      plots.clear();
    },
  };
}

