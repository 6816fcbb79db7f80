// The views a node can light up. A node says which in its hub entry
// (`view`, from its kind's declaration: obsmesh/kinds.py), so a new kind
// needs no edit here; a node of no view is in the node list and node view.

export const VIEWS = [
  { id: "radars", label: "Radars" },
  { id: "co2", label: "CO2 units" },
  { id: "dataflow", label: "Data flow" },
];

// Keep a view's per-node panels in step with the nodes listed: destroy and
// detach the panels of nodes that left, make and place one for each newcomer.
// `nodes` maps name -> panel; a panel's element is `panel.el`.
export function syncNodes(nodes, listed, make, place) {
  const names = new Set(listed.map((n) => n.name));
  for (const [name, n] of nodes) {
    if (!names.has(name)) {
      n.destroy();
      n.el.remove();
      nodes.delete(name);
    }
  }
  for (const entry of listed) {
    if (nodes.has(entry.name)) continue;
    const n = make(entry);
    nodes.set(entry.name, n);
    place(n);
  }
}
