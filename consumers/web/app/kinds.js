// Which views a node kind lights up.

export const RADAR_KINDS = ["superdarn", "canada"];
export const CO2_KINDS = ["co2"];
export const DATAFLOW_KINDS = ["dataflow"];

export const VIEWS = [
  { id: "radars", label: "Radars", kinds: RADAR_KINDS },
  { id: "co2", label: "CO2 units", kinds: CO2_KINDS },
  { id: "dataflow", label: "Data flow", kinds: DATAFLOW_KINDS },
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
