// Home: every listed node as a card with its kind, description and health.
// Health is what the node last reported; while the page is not connected, or
// a node does not answer, its card says "unknown" and since when, never "ok".

import { h, clear, setText } from "../dom.js";
import { fmtAge } from "../format.js";
import { STATUS_FRESH_S, sourceState } from "./status.js";

const REFRESH_S = 10;
// The last health each node reported (name -> {status, at}), kept across
// visits to this view: coming back while disconnected shows what was known.
const statuses = new Map();

export function nodesView(ctx) {
  const { mesh, directory } = ctx;
  const grid = h("div", { class: "node-grid", id: "node-cards" });
  const summary = h("p", { class: "lede" });
  const el = h("div", { class: "view" }, h("div", { class: "view-head" }, h("h1", {}, "Data nodes"), summary), grid);
  let ticks = 0;

  function health(entry, now) {
    if (!entry) return { health: "unknown", text: mesh.connected ? "status …" : "health unknown: not connected" };
    const st = entry.status;
    const sources = st && st.sources && typeof st.sources === "object" ? Object.values(st.sources) : [];
    const current = mesh.connected && now - entry.at < STATUS_FRESH_S + REFRESH_S;
    if (!current) return { health: "unknown", text: `health unknown: last reported ${fmtAge(now - entry.at)} ago`, sources };
    const bad = sources.filter((s) => ["stale", "down"].includes(sourceState(s, now))).length;
    const n = sources.length;
    return { health: bad ? "warn" : "ok", text: `${n} source${n === 1 ? "" : "s"}${bad ? `, ${bad} not ok` : ""}`, sources };
  }

  function render() {
    const nodes = directory.list();
    const now = Date.now() / 1000;
    const lead = directory.loaded ? `${nodes.length} node${nodes.length === 1 ? "" : "s"} listed by the hub; the list follows nodes joining and leaving.` : "Waiting for the hub’s directory…";
    setText(summary, mesh.connected ? lead : `Not connected to the mesh: the nodes and their health below are as last seen. ${lead}`);
    clear(grid);
    for (const n of nodes) {
      const entry = statuses.get(n.name);
      const st = entry && entry.status;
      const { health: look, text } = health(entry, now);
      const last = st && st.last_sample && typeof st.last_sample === "object" ? Math.max(...Object.values(st.last_sample).filter((x) => typeof x === "number")) : null;
      grid.append(
        h(
          "a",
          { class: `card node-card health-${look}`, href: `#/node/${encodeURIComponent(n.name)}`, dataset: { node: n.name, health: look } },
          h("div", { class: "node-card-head" }, h("span", { class: "node-title" }, n.name), n.kind ? h("span", { class: `kind kind-${n.kind}` }, n.kind) : null),
          h("p", { class: "node-desc" }, n.description || "—"),
          h("div", { class: "node-meta" }, h("span", {}, text), h("span", {}, Number.isFinite(last) ? `last sample ${fmtAge(now - last)} ago` : "")),
        ),
      );
    }
  }

  async function refresh() {
    if (!mesh.connected) {
      render();
      return;
    }
    await Promise.all(
      directory.list().map(async (n) => {
        try {
          statuses.set(n.name, { status: await mesh.call(mesh.nodeUri(n.name, "get_status"), [], {}, 5000), at: Date.now() / 1000 });
        } catch {
          // kept: the card turns "unknown" once the last answer is old
        }
      }),
    );
    render();
  }

  const onClose = () => render();
  mesh.addEventListener("close", onClose);
  render();
  refresh();
  return {
    el,
    directoryChanged() {
      render();
      refresh();
    },
    tick() {
      if (++ticks % REFRESH_S === 0) refresh();
      else if (!mesh.connected) render();
    },
    unmount() {
      mesh.removeEventListener("close", onClose);
    },
  };
}
