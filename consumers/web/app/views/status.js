// A node's health (get_status) as a compact panel: sources and their state,
// the last error; counters only with "details" on. While the page is not
// connected, or the status is old, every state reads "unknown" and the panel
// says how old what it shows is: it never claims "ok" it cannot know.

import { h, clear } from "../dom.js";
import { fmtAge, fmtClock, fmtNum, natural } from "../format.js";
import { prefs } from "../prefs.js";

// A status older than this is not shown as current.
export const STATUS_FRESH_S = 30;

export function sourceState(src, now) {
  if (!src || typeof src !== "object") return "unknown";
  if (src.stale === true) return "stale";
  if (src.connected === false) return "down";
  if (src.connected === true) return "ok";
  return typeof src.last_sample === "number" && now - src.last_sample < 600 ? "ok" : "unknown";
}

// opts: {current: is the status fresh and the page connected, asOf: when it was fetched (s)}
export function statusPanel(status, now, opts = {}) {
  const current = opts.current !== false;
  const asOf = typeof opts.asOf === "number" ? opts.asOf : now;
  const box = h("div", { class: `status-grid${prefs.details ? "" : " single"}`, dataset: { current: current ? "yes" : "no" } });
  if (!status || typeof status !== "object") return box;
  const sources = status.sources && typeof status.sources === "object" ? Object.entries(status.sources) : [];
  sources.sort(([a], [b]) => natural(a, b));
  const counters = status.counters && typeof status.counters === "object" ? Object.entries(status.counters) : [];
  const rows = sources.slice(0, 50).map(([key, src]) => {
    const state = current ? sourceState(src, now) : "unknown";
    const last = src && typeof src.last_sample === "number" ? `${fmtAge(now - src.last_sample)} ago` : "—";
    const error = src && src.error && sourceState(src, now) !== "ok" ? String(src.error) : "";
    return h(
      "tr",
      { class: `src-${state}`, dataset: { source: key } },
      h("td", {}, h("span", { class: `pill pill-${state}` }, state)),
      h("td", { class: "mono" }, key),
      h("td", {}, last),
      h("td", { class: "err" }, error),
    );
  });
  const stale = current ? null : h("p", { class: "stale-note" }, `Not current: this is the health reported at ${fmtClock(asOf)} (${fmtAge(now - asOf)} ago); the page is not connected to the mesh or the node does not answer.`);
  const cards = [
    h(
      "div",
      { class: "card" },
      h("h3", {}, "Sources"),
      stale,
      rows.length
        ? h("div", { class: "scroll-x" }, h("table", { class: "table compact" }, h("thead", {}, h("tr", {}, h("th", {}, "state"), h("th", {}, "source"), h("th", {}, "last sample"), h("th", {}, "error"))), h("tbody", {}, rows)))
        : h("p", { class: "muted" }, "This node reports no sources."),
      status.last_error ? h("p", { class: "last-error" }, h("strong", {}, "Last error: "), String(status.last_error)) : null,
    ),
    prefs.details
      ? h(
          "div",
          { class: "card details-only" },
          h("h3", {}, "Counters"),
          counters.length
            ? h("dl", { class: "kv" }, counters.sort(([a], [b]) => natural(a, b)).slice(0, 60).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, fmtNum(v, 6))]))
            : h("p", { class: "muted" }, "No counters yet."),
        )
      : null,
  ];
  box.append(...cards.filter(Boolean));
  return box;
}

export function replace(el, child) {
  clear(el);
  el.append(child);
}
