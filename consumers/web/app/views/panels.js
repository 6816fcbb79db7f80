// A view made of one panel per listed node of one view (the CO2 and
// data-flow views): the heading, the panels kept in step with the directory,
// an empty note while no such node is listed, and a per-second tick.
import { h } from "../dom.js";
import { syncNodes } from "../kinds.js";

// make(entry) -> panel (with .el and .destroy()); tick(panel, seconds) each second.
export function nodePanelsView(ctx, { title, lede, view, make, empty, tick }) {
  const nodes = new Map();
  const body = h("div", {});
  const el = h("div", { class: "view" }, h("div", { class: "view-head" }, h("h1", {}, title), h("p", { class: "lede" }, lede)), body);
  let ticks = 0;

  function sync() {
    const listed = ctx.directory.ofView(view);
    syncNodes(nodes, listed, make, (n) => body.append(n.el));
    body.querySelector(".empty")?.remove();
    if (!listed.length) body.append(h("div", { class: "empty" }, empty));
  }

  sync();
  return {
    el,
    directoryChanged: sync,
    tick() {
      ticks += 1;
      for (const n of nodes.values()) tick(n, ticks);
    },
    unmount() {
      for (const n of nodes.values()) n.destroy();
      nodes.clear();
    },
  };
}
