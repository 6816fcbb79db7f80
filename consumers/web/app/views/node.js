// One node: its description, live plots of chosen fields, health, recent
// events and its fields. The URL holds the choice
// (#/node/<name>?fields=a,b&range=900), so a view can be bookmarked and
// shared; without one, the node kind's own choice (`plots` in its hub entry).

import { append, h, clear, setText } from "../dom.js";
import { eventTitle, isProblemEvent } from "../events.js";
import { fmtAge, fmtRange, fmtTime, isTimeField, natural, unitText } from "../format.js";
import { LivePlot } from "../liveplot.js";
import { defaultPlots, plottableField } from "../plots-choice.js";
import { prefs } from "../prefs.js";
import { closeNames } from "../suggest.js";
import { STATUS_FRESH_S, replace, statusPanel } from "./status.js";

export { plottableField };
export const RANGES = [300, 900, 3600, 6 * 3600, 86400];
const STATUS_EVERY_S = 5;
const EVENTS_SHOWN = 12;

export function nodeView(ctx, name, query) {
  const { mesh, directory, frames, hooks } = ctx;
  const requested = (query.get("fields") || "").split(",").filter(Boolean);
  let range = Number(query.get("range")) || 900;
  if (!RANGES.includes(range)) range = 900;
  let paused = false;
  let fields = null; // name -> meta
  let autoDone = requested.length > 0;
  const plots = new Map();
  let ticks = 0;
  let status = null; // the last get_status answer and when it came
  let statusAt = null;
  let events = [];

  const title = h("h1", {}, name);
  const kind = h("span", { class: "kind" });
  const desc = h("p", { class: "lede" });
  const missing = h("div", { class: "missing-node", hidden: true });
  const statusBox = h("div", { class: "status-box" });
  const eventList = h("ul", { class: "feed events" });
  const fieldBody = h("tbody", {});
  const fieldNote = h("p", { class: "muted" }, "Loading fields…");
  const plotGrid = h("div", { class: "plot-grid", id: "plots" });
  const plotNote = h("p", { class: "muted plot-note" });
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
    h("div", { class: "view-head" }, h("div", { class: "title-row" }, title, kind), desc, missing),
    h(
      "section",
      { class: "block" },
      h("div", { class: "block-head wrap" }, h("h2", {}, "Live plots"), h("div", { class: "toolbar" }, rangeSel, pauseBtn)),
      plotGrid,
      plotNote,
    ),
    h("section", { class: "block" }, h("div", { class: "block-head" }, h("h2", {}, "Health")), statusBox),
    h("section", { class: "block events-block", hidden: true }, h("div", { class: "block-head" }, h("h2", {}, "Recent events")), h("div", { class: "card" }, eventList)),
    h(
      "section",
      { class: "block" },
      h("div", { class: "block-head wrap" }, h("h2", {}, "Fields", fieldCount), filterBox),
      h("div", { class: "card table-card scroll" }, h("table", { class: "table", id: "fields" }, h("thead", {}, h("tr", {}, ["", "field", "timeline", "type", "units", "description"].map((c) => h("th", {}, c)))), fieldBody), fieldNote),
    ),
  );
  const eventsBlock = el.querySelector(".events-block");

  let wasListed = !!directory.get(name);

  // The node (re)appeared: what failed while it was away is asked again.
  function directoryChanged() {
    const listed = !!directory.get(name);
    if (listed && !wasListed && mesh.connected) {
      if (!fields) loadFields();
      loadStatus();
      loadEvents();
      for (const p of plots.values()) if (p.stats.error) p.load();
    }
    wasListed = listed;
    showEntry();
    autoPlot();
  }

  function showEntry() {
    const entry = directory.get(name);
    setText(kind, entry ? entry.kind || "node" : "not listed");
    kind.className = `kind ${entry ? `kind-${entry.kind}` : "kind-missing"}`;
    setText(desc, entry ? entry.description || "" : "");
    clear(missing);
    missing.hidden = !!entry || !directory.loaded;
    el.classList.toggle("absent", !entry && directory.loaded && !fields);
    if (entry || !directory.loaded) return;
    const names = directory.list().map((n) => n.name);
    const close = closeNames(name, names);
    append(missing, [
      h("p", {}, h("strong", {}, `No node named “${name}” is on the mesh right now.`), " If it is starting or restarting, this page fills in when it joins."),
      close.length ? h("p", {}, "Did you mean ", close.flatMap((n, i) => [i ? (i === close.length - 1 ? " or " : ", ") : "", h("a", { href: `#/node/${encodeURIComponent(n)}` }, n)]), "?") : null,
      names.length ? h("p", { class: "muted" }, "Nodes on the mesh: ", names.flatMap((n, i) => [i ? ", " : "", h("a", { href: `#/node/${encodeURIComponent(n)}` }, n)])) : h("p", { class: "muted" }, "No node is listed."),
    ]);
  }

  function syncUrl() {
    const q = new URLSearchParams();
    q.set("fields", [...plots.keys()].join(","));
    q.set("range", String(range));
    history.replaceState(null, "", `#/node/${encodeURIComponent(name)}?${q.toString()}`);
  }

  function addPlot(field) {
    if (plots.has(field)) return;
    const meta = fields ? fields[field] : null;
    if (isTimeField(meta)) return; // times are listed, never plotted as values
    const plot = new LivePlot({ mesh, frames, hooks, node: name, field, meta, range, paused, index: plots.size });
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

  // The node kind's default plots, once fields and the hub entry are both known.
  function autoPlot() {
    if (autoDone || !fields || plots.size) return;
    const entry = directory.get(name);
    if (!entry && !directory.loaded) return; // its `plots` may still come
    autoDone = true;
    const auto = defaultPlots(fields, entry && entry.plots);
    for (const f of auto) addPlot(f);
    if (auto.length) syncUrl();
    setText(plotNote, auto.length ? "" : "Choose fields to plot in the table below.");
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
    const all = Object.keys(fields).sort(natural);
    const names = all.filter((f) => !filter || f.toLowerCase().includes(filter) || String(fields[f]?.description || "").toLowerCase().includes(filter));
    setText(fieldCount, ` · ${names.length === all.length ? all.length : `${names.length} of ${all.length}`}`);
    setText(fieldNote, all.length ? (names.length ? "" : "No field matches the filter.") : "This node has no fields yet.");
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
          h("td", {}, unitText(meta.units)),
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
      setText(fieldNote, directory.get(name) ? "The node does not answer right now; its fields show when it does." : "");
      return;
    }
    for (const [field, p] of [...plots]) {
      if (isTimeField(fields[field])) removePlot(field);
      else if (fields[field]) p.setMeta(fields[field]);
    }
    autoPlot();
    renderFields();
  }

  function showStatus() {
    if (!status) {
      replace(statusBox, h("p", { class: "muted" }, directory.get(name) ? "Waiting for the node's health…" : "No health: the node is not on the mesh."));
      return;
    }
    const now = Date.now() / 1000;
    const current = mesh.connected && now - statusAt < STATUS_FRESH_S;
    replace(statusBox, statusPanel(status, now, { current, asOf: statusAt }));
  }

  async function loadStatus() {
    try {
      status = await mesh.call(mesh.nodeUri(name, "get_status"), [], {}, 5000);
      statusAt = Date.now() / 1000;
    } catch {
      // kept: the last answer shows, marked as not current
    }
    showStatus();
  }

  function renderEvents() {
    clear(eventList);
    const shown = events.slice(-EVENTS_SHOWN).reverse();
    eventsBlock.hidden = !shown.length;
    const now = Date.now() / 1000;
    for (const ev of shown) {
      const tags = Array.isArray(ev.tags) ? ev.tags : [];
      const bad = isProblemEvent(ev) || tags.includes("conflict");
      eventList.append(
        h(
          "li",
          { class: bad ? "bad-event" : "" },
          h("time", { title: `${fmtAge(now - ev.time)} ago` }, fmtTime(ev.time)),
          h("div", {}, h("span", { class: bad ? "bad" : "" }, eventTitle(ev.title)), ev.text ? h("div", { class: "muted" }, String(ev.text).split("\n")[0].slice(0, 300)) : null),
        ),
      );
    }
  }

  function addEvent(ev) {
    if (!ev || typeof ev !== "object" || typeof ev.time !== "number" || typeof ev.title !== "string") return;
    if (events.some((e) => e.time === ev.time && e.title === ev.title)) return;
    events.push(ev);
    events.sort((a, b) => a.time - b.time);
    if (events.length > 200) events = events.slice(-200);
    renderEvents();
  }

  async function loadEvents() {
    try {
      const list = await mesh.call(mesh.nodeUri(name, "get_events"), [-86400, 0], {}, 5000);
      for (const ev of Array.isArray(list) ? list : []) addEvent(ev);
    } catch {
      // a node without events (or not answering): the list stays as it is
    }
  }

  const unlistenEvents = mesh.subscribe(mesh.nodeUri(name, "event"), (args) => addEvent(args[0]));
  const onOpen = () => {
    loadFields();
    loadStatus();
    loadEvents();
  };
  const onClose = () => showStatus(); // health is not known while disconnected
  const onPrefs = () => {
    showStatus();
    renderEvents();
    for (const p of plots.values()) frames.mark(p);
  };
  mesh.addEventListener("open", onOpen);
  mesh.addEventListener("close", onClose);
  prefs.addEventListener("change", onPrefs);
  showEntry();
  showStatus();
  for (const f of requested) addPlot(f);
  if (mesh.connected) onOpen();

  return {
    el,
    directoryChanged,
    tick() {
      // slide the time axis of plots whose data comes slowly
      if (!paused) for (const p of plots.values()) frames.mark(p);
      if (++ticks % STATUS_EVERY_S === 0) {
        if (mesh.connected) loadStatus();
        else showStatus();
      }
    },
    unmount() {
      mesh.removeEventListener("open", onOpen);
      mesh.removeEventListener("close", onClose);
      prefs.removeEventListener("change", onPrefs);
      unlistenEvents();
      for (const p of plots.values()) p.destroy();
      plots.clear();
    },
  };
}
