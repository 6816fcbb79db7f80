// The reader's choices, kept in the browser (localStorage): times in UTC or
// local time, and whether developer figures (counters, frame times, point
// counts) are shown. Views re-render when a choice changes.

const KEYS = { tz: "obsmesh.tz", details: "obsmesh.details" };

function read(key, fallback, ok) {
  try {
    const v = window.localStorage.getItem(key);
    return v !== null && ok(v) ? v : fallback;
  } catch {
    return fallback; // storage blocked: choices last for the page only
  }
}

function write(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch {
    // storage blocked: the choice holds until the page is left
  }
}

class Prefs extends EventTarget {
  constructor() {
    super();
    this.tz = read(KEYS.tz, "utc", (v) => v === "utc" || v === "local");
    this.details = read(KEYS.details, "off", (v) => v === "on" || v === "off") === "on";
  }

  setTz(tz) {
    if (tz !== "utc" && tz !== "local") return;
    if (tz === this.tz) return;
    this.tz = tz;
    write(KEYS.tz, tz);
    this.dispatchEvent(new CustomEvent("change", { detail: { key: "tz" } }));
  }

  setDetails(on) {
    if (!!on === this.details) return;
    this.details = !!on;
    write(KEYS.details, on ? "on" : "off");
    this.dispatchEvent(new CustomEvent("change", { detail: { key: "details" } }));
  }
}

export const prefs = new Prefs();
