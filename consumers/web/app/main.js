// The dashboard shell: connection, directory, navigation and the current view.

import { meshConfig, parseRoute } from "./config.js";
import { Directory } from "./directory.js";
import { h, clear, setText } from "./dom.js";
import { Frames, percentile } from "./frames.js";
import { VIEWS } from "./kinds.js";
import { Mesh } from "./mesh.js";
import { prefs } from "./prefs.js";
import { co2View } from "./views/co2.js";
import { dataflowView } from "./views/dataflow.js";
import { nodeView } from "./views/node.js";
import { nodesView } from "./views/nodes.js";
import { radarView } from "./views/radar.js";

const STATE_LABEL = {
  connecting: "Connecting",
  connected: "Connected",
  reconnecting: "Reconnecting",
  disconnected: "Disconnected",
};

// What tests and the benchmark read: counts of data received, never pixels.
function makeHooks(mesh, directory, frames) {
  const live = new Map(); // plot id -> LivePlot
  return {
    plots: {},
    live,
    // the newest points a plot holds (after binning), for tests
    tail(id, n = 50) {
      const p = live.get(id);
      if (!p) return null;
      const s = p.series;
      const a = Math.max(s.head, s.t.length - n);
      return { t: s.t.slice(a), v: s.v.slice(a), stride: s.stride, range: p.range, paused: p.paused, first: s.t[s.head] ?? null };
    },
    radar: {},
    co2: { units: [] },
    dataflow: { radars: [], stages: [], cells: 0, failures: 0 },
    errors: [],
    view: null,
    get connection() {
      return { state: mesh.state, opens: mesh.opens, closes: mesh.closes, url: mesh.cfg.url };
    },
    get nodes() {
      return directory.list().map((n) => n.name);
    },
    frames: {
      mark: () => frames.count,
      since: (mark) => frames.intervalsSince(mark),
      stats: () => ({ count: frames.count, draws: frames.draws, drawMs: frames.drawMs, deferred: frames.deferred }),
    },
  };
}

class App {
  constructor(root) {
    this.cfg = meshConfig(window.location);
    this.mesh = new Mesh(this.cfg, window.autobahn);
    this.frames = new Frames();
    this.directory = new Directory(this.mesh);
    this.hooks = makeHooks(this.mesh, this.directory, this.frames);
    window.obsmesh = this.hooks;
    this.ctx = { mesh: this.mesh, directory: this.directory, frames: this.frames, hooks: this.hooks, app: this };
    this.current = null;
    this._build(root);
    this.mesh.addEventListener("state", () => this._showState());
    this.mesh.addEventListener("error", (e) => this._error(e.detail.message, e.detail.error));
    this.directory.addEventListener("change", () => this._showDirectory());
    window.addEventListener("hashchange", () => this.route());
    // a new clock or level of detail: the view is built again with it
    prefs.addEventListener("change", () => {
      this._showPrefs();
      this.route();
    });
    setInterval(() => this._tick(), 1000);
    this._showState();
    this._showPrefs();
    this._showDirectory();
    this.route();
    this.mesh.start();
  }

  _build(root) {
    this.stateEl = h("span", { class: "conn-label" }, "Connecting");
    this.stateDetail = h("span", { class: "conn-detail" });
    this.conn = h("div", { class: "conn", id: "connection", role: "status" }, h("span", { class: "dot" }), this.stateEl, this.stateDetail);
    this.tzButtons = ["utc", "local"].map((tz) => h("button", { type: "button", dataset: { tz }, onclick: () => prefs.setTz(tz) }, tz === "utc" ? "UTC" : "Local"));
    this.detailsBox = h("input", { type: "checkbox", id: "details-toggle", onchange: (e) => prefs.setDetails(e.target.checked) });
    const prefBox = h(
      "div",
      { class: "prefs" },
      h("div", { class: "segmented dark", role: "group", "aria-label": "time zone", id: "tz-toggle" }, this.tzButtons),
      h("label", { class: "details-label", title: "show counters, point counts and frame times" }, this.detailsBox, "Details"),
    );
    this.navLinks = new Map();
    const nav = h("nav", { class: "nav" });
    const home = h("a", { href: "#/", class: "nav-link" }, "Nodes");
    this.navLinks.set("", home);
    nav.append(home);
    for (const v of VIEWS) {
      const a = h("a", { href: `#/${v.id}`, class: "nav-link", dataset: { view: v.id } }, v.label, h("span", { class: "count" }));
      this.navLinks.set(v.id, a);
      nav.append(a);
    }
    this.sideList = h("ul", { class: "side-list", id: "directory" });
    this.sideCount = h("span", { class: "count" });
    this.main = h("main", { class: "main", id: "view" });
    this.perfEl = h("span", {});
    root.append(
      h(
        "header",
        { class: "topbar" },
        h("a", { class: "brand", href: "#/" }, h("span", { class: "brand-mark" }), "obsmesh"),
        nav,
        prefBox,
        this.conn,
      ),
      h(
        "div",
        { class: "layout" },
        h("aside", { class: "side" }, h("div", { class: "side-head" }, "Data nodes", this.sideCount), this.sideList),
        this.main,
      ),
      h(
        "footer",
        { class: "statusbar" },
        h("span", { class: "where" }, `${this.cfg.url} · realm ${this.cfg.realm} · prefix ${this.cfg.prefix} · anonymous consumer`),
        this.perfEl,
      ),
    );
  }

  route() {
    const { path, query } = parseRoute(window.location.hash);
    const [head = "", ...rest] = path;
    if (this.current) {
      try {
        this.current.unmount();
      } catch (err) {
        this._error("leaving the view failed", err);
      }
    }
    clear(this.main);
    let view;
    if (head === "node" && rest[0]) view = nodeView(this.ctx, rest[0], query);
    else if (head === "radars") view = radarView(this.ctx, query);
    else if (head === "co2") view = co2View(this.ctx, query);
    else if (head === "dataflow") view = dataflowView(this.ctx, query);
    else view = nodesView(this.ctx);
    this.current = view;
    this.hooks.view = head === "node" ? `node/${rest[0]}` : head || "nodes";
    this.main.append(view.el);
    for (const [id, a] of this.navLinks) a.classList.toggle("active", id === head || (id === "" && head === "node"));
    this._showDirectory();
  }

  _showPrefs() {
    for (const b of this.tzButtons) b.classList.toggle("on", b.dataset.tz === prefs.tz);
    this.detailsBox.checked = prefs.details;
    document.body.classList.toggle("details-on", prefs.details);
  }

  _showState() {
    const m = this.mesh;
    this.conn.dataset.state = m.state;
    setText(this.stateEl, STATE_LABEL[m.state] || m.state);
    this._stateDetail();
  }

  _stateDetail() {
    const m = this.mesh;
    let detail = m.detail;
    if (m.state === "reconnecting" && m.retryAt) {
      const s = Math.max(0, Math.ceil((m.retryAt - Date.now()) / 1000));
      detail = `${m.detail}; retry in ${s} s`;
    }
    setText(this.stateDetail, detail);
  }

  _showDirectory() {
    const nodes = this.directory.list();
    const { path } = parseRoute(window.location.hash);
    const selected = path[0] === "node" ? path[1] : null;
    clear(this.sideList);
    if (!nodes.length) {
      this.sideList.append(h("li", { class: "side-empty" }, this.directory.loaded ? "No node is listed." : "Waiting for the hub…"));
    }
    for (const n of nodes) {
      this.sideList.append(
        h(
          "li",
          { class: n.name === selected ? "selected" : "", dataset: { node: n.name } },
          h("a", { href: `#/node/${encodeURIComponent(n.name)}`, title: n.description }, h("span", { class: "node-name" }, n.name), n.kind ? h("span", { class: `kind kind-${n.kind}` }, n.kind) : null),
        ),
      );
    }
    setText(this.sideCount, String(nodes.length));
    for (const v of VIEWS) {
      const a = this.navLinks.get(v.id);
      const count = this.directory.ofView(v.id).length;
      a.classList.toggle("lit", count > 0);
      a.title = count ? `${count} node${count > 1 ? "s" : ""}` : "no such node is listed";
      setText(a.querySelector(".count"), count ? String(count) : "");
    }
    if (this.current && this.current.directoryChanged) this.current.directoryChanged();
  }

  _tick() {
    this._stateDetail();
    const iv = this.frames.intervalsSince(Math.max(0, this.frames.count - 120));
    const p95 = percentile(iv, 95);
    setText(this.perfEl, p95 === null || !prefs.details ? "" : `frame p95 ${p95.toFixed(1)} ms`);
    if (this.current && this.current.tick) this.current.tick();
  }

  _error(message, err) {
    this.hooks.errors.push({ message, error: String(err) });
    console.warn(message, err);
  }
}

export function boot() {
  const root = document.getElementById("app");
  if (!window.autobahn) {
    root.append(h("p", { class: "fatal" }, "Autobahn|JS is missing: run `make setup` (npm install in consumers/web)."));
    return;
  }
  try {
    new App(root);
  } catch (err) {
    root.append(h("p", { class: "fatal" }, `The dashboard could not start: ${err}`));
    throw err;
  }
}

boot();
