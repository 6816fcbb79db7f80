// A node's health (get_status) as a compact panel: sources, counters, last error.

import { h, clear } from "../dom.js";
import { fmtAge, fmtNum } from "../format.js";

export function sourceState(src, now) {
  if (!src || typeof src !== "object") return "unknown";
  if (src.stale === true) return "stale";
  if (src.connected === false) return "down";
  if (src.connected === true) return "ok";
  return typeof src.last_sample === "number" && now - src.last_sample < 600 ? "ok" : "unknown";
}

export function statusPanel(status, now) {
  const box = h("div", { class: "status-grid" });
  if (!status || typeof status !== "object") return box;
  const sources = status.sources && typeof status.sources === "object" ? Object.entries(status.sources) : [];
  const counters = status.counters && typeof status.counters === "object" ? Object.entries(status.counters) : [];
  const rows = sources.slice(0, 50).map(([key, src]) => {
    const state = sourceState(src, now);
    const last = src && typeof src.last_sample === "number" ? `${fmtAge(now - src.last_sample)} ago` : "—";
    return h(
      "tr",
      { class: `src-${state}` },
      h("td", {}, h("span", { class: `pill pill-${state}` }, state)),
      h("td", { class: "mono" }, key),
      h("td", {}, last),
      h("td", { class: "err" }, src && src.error ? String(src.error) : ""),
    );
  });
  box.append(
    h(
      "div",
      { class: "card" },
      h("h3", {}, "Sources"),
      rows.length
        ? h("table", { class: "table compact" }, h("thead", {}, h("tr", {}, h("th", {}, "state"), h("th", {}, "source"), h("th", {}, "last sample"), h("th", {}, "error"))), h("tbody", {}, rows))
        : h("p", { class: "muted" }, "This node reports no sources."),
    ),
    h(
      "div",
      { class: "card" },
      h("h3", {}, "Counters"),
      counters.length
        ? h("dl", { class: "kv" }, counters.sort(([a], [b]) => a.localeCompare(b)).slice(0, 40).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, fmtNum(v, 6))]))
        : h("p", { class: "muted" }, "No counters yet."),
      status.last_error ? h("p", { class: "last-error" }, h("strong", {}, "Last error: "), String(status.last_error)) : null,
    ),
  );
  return box;
}

export function replace(el, child) {
  clear(el);
  el.append(child);
}
