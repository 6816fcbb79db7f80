// Which views a node kind lights up.

export const RADAR_KINDS = ["superdarn", "canada"];
export const CO2_KINDS = ["co2"];
export const DATAFLOW_KINDS = ["dataflow"];

export const VIEWS = [
  { id: "radars", label: "Radars", kinds: RADAR_KINDS },
  { id: "co2", label: "CO2 units", kinds: CO2_KINDS },
  { id: "dataflow", label: "Data flow", kinds: DATAFLOW_KINDS },
];
