// Home: every listed node as a card with its kind, description and health.

import { h, clear, setText } from "../dom.js";
import { fmtAge } from "../format.js";
import { sourceState } from "./status.js";

const REFRESH_S = 10;

export function nodesView(ctx) {
  const { mesh, directory } = ctx;
  const grid = h("div", { class: "node-grid", id: "node-cards" });
  const summary = h("p", { class: "lede" });
  const el = h("div", { class: "view" }, h("div", { class: "view-head" }, h("h1", {}, "Data nodes"), summary), grid);
  const statuses = new Map();
  let ticks = 0;

  function render() {
    const nodes = directory.list();
    setText(summary, directory.loaded ? `${nodes.length} node${nodes.length === 1 ? "" : "s"} listed by the hub; the list follows nodes joining and leaving.` : "Waiting for the hub’s directory…");
    clear(grid);
    const now = Date.now() / 1000;
    for (const n of nodes) {
      const st = statuses.get(n.name);
      const sources = st && st.sources && typeof st.sources === "object" ? Object.values(st.sources) : [];
      const bad = sources.filter((s) => ["stale", "down"].includes(sourceState(s, now))).length;
      const last = st && st.last_sample && typeof st.last_sample === "object" ? Math.max(...Object.values(st.last_sample).filter((x) => typeof x === "number")) : null;
      const health = !st ? "unknown" : bad ? "warn" : "ok";
      grid.append(
        h(
          "a",
          { class: `card node-card health-${health}`, href: `#/node/${encodeURIComponent(n.name)}`, dataset: { node: n.name } },
          h("div", { class: "node-card-head" }, h("span", { class: "node-title" }, n.name), n.kind ? h("span", { class: `kind kind-${n.kind}` }, n.kind) : null),
          h("p", { class: "node-desc" }, n.description || "—"),
          h(
            "div",
            { class: "node-meta" },
            h("span", {}, st ? `${sources.length} source${sources.length === 1 ? "" : "s"}${bad ? `, ${bad} not ok` : ""}` : "status …"),
            h("span", {}, Number.isFinite(last) ? `last sample ${fmtAge(now - last)} ago` : ""),
          ),
        ),
      );
    }
  }

  async function refresh() {
    if (!mesh.connected) return;
    await Promise.all(
      directory.list().map(async (n) => {
        try {
          statuses.set(n.name, await mesh.call(mesh.nodeUri(n.name, "get_status"), [], {}, 5000));
        } catch {
          statuses.delete(n.name);
        }
      }),
    );
    render();
  }

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
    },
    unmount() {},
  };
}
