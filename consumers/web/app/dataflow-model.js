// The data-flow board: radar x stage cells from the dataflow node's
// `stage_products` RPC (StageProducts dicts), its status sources
// ("<rad>.<stage>": stale, last_run, last_state, last_files_failed) and its
// live batches (timeline "<rad>.<stage>": one sample per run; timeline
// "stages": since_last_run and stale of every pair). Pure; payloads checked.

export const STAGES = [
  "rsync_to_nas",
  "plot_antennas_iq",
  "rsync_to_campus",
  "convert_on_campus",
  "distribute_borealis_data",
  "archive_iq_plots",
];
const RADAR = /^[a-z][a-z0-9]{1,7}$/;
const STAGE = /^[A-Za-z0-9_-]{1,48}$/;
const num = (x) => typeof x === "number" && Number.isFinite(x);
const count = (x) => (num(x) && x >= 0 ? x : null);

export function pairOf(key) {
  if (typeof key !== "string") return null;
  const i = key.indexOf(".");
  if (i < 0) return null;
  const radar = key.slice(0, i);
  const stage = key.slice(i + 1);
  return RADAR.test(radar) && STAGE.test(stage) ? { radar, stage } : null;
}

export class Board {
  constructor() {
    this.cells = new Map(); // "radar.stage" -> cell
  }

  cell(radar, stage) {
    if (!RADAR.test(radar || "") || !STAGE.test(stage || "")) return null;
    const key = `${radar}.${stage}`;
    let c = this.cells.get(key);
    if (!c) {
      c = { radar, stage, lastStart: null, lastEnd: null, lastState: null, lastOk: null, lastFailed: null, windowOk: null, windowFailed: null, successRate: null, runs: null, stale: false, sinceLastRun: null, error: null };
      this.cells.set(key, c);
    }
    return c;
  }

  fromProducts(list) {
    if (!Array.isArray(list)) return 0;
    let n = 0;
    for (const p of list) {
      if (!p || typeof p !== "object") continue;
      const c = this.cell(p.radar, p.stage);
      if (!c) continue;
      if (num(p.last_start)) c.lastStart = p.last_start;
      if (num(p.last_end)) c.lastEnd = p.last_end;
      if (typeof p.last_state === "string") c.lastState = p.last_state;
      c.lastOk = count(p.last_files_ok) ?? c.lastOk;
      c.lastFailed = count(p.last_files_failed) ?? c.lastFailed;
      c.windowOk = count(p.files_ok) ?? c.windowOk;
      c.windowFailed = count(p.files_failed) ?? c.windowFailed;
      c.runs = count(p.runs) ?? c.runs;
      c.successRate = num(p.success_rate) ? p.success_rate : c.successRate;
      if (typeof p.stale === "boolean") c.stale = p.stale;
      if (num(p.since_last_run)) c.sinceLastRun = p.since_last_run;
      n++;
    }
    return n;
  }

  fromSource(key, src) {
    if (!src || typeof src !== "object") return;
    const pair = typeof src.radar === "string" && typeof src.stage === "string" ? { radar: src.radar, stage: src.stage } : pairOf(key);
    if (!pair) return;
    const c = this.cell(pair.radar, pair.stage);
    if (!c) return;
    if (typeof src.stale === "boolean") c.stale = src.stale;
    if (num(src.last_run) && !(c.lastStart > src.last_run)) c.lastStart = src.last_run;
    if (typeof src.last_state === "string") c.lastState = src.last_state;
    if (count(src.last_files_failed) !== null) c.lastFailed = src.last_files_failed;
    c.error = typeof src.error === "string" && src.error ? src.error : null;
  }

  fromSources(sources) {
    if (!sources || typeof sources !== "object") return;
    for (const [key, src] of Object.entries(sources)) this.fromSource(key, src);
  }

  fromColumns(timeline, t, data) {
    if (!Array.isArray(t) || !t.length || !data || typeof data !== "object") return false;
    const i = t.length - 1;
    if (timeline === "stages") {
      let any = false;
      for (const [field, col] of Object.entries(data)) {
        const m = /^(.+)\.(since_last_run|stale)$/.exec(field);
        const pair = m && pairOf(m[1]);
        const c = pair && this.cell(pair.radar, pair.stage);
        if (!c || !Array.isArray(col)) continue;
        const v = col[i];
        if (m[2] === "stale" && v !== null && v !== undefined) c.stale = v === true || v === 1;
        if (m[2] === "since_last_run" && num(v)) c.sinceLastRun = v;
        any = true;
      }
      return any;
    }
    const pair = pairOf(timeline);
    const c = pair && this.cell(pair.radar, pair.stage);
    if (!c || !num(t[i])) return false;
    const at = (f) => (Array.isArray(data[`${timeline}.${f}`]) ? data[`${timeline}.${f}`][i] : undefined);
    const state = at("state");
    if (!(c.lastEnd > t[i])) {
      c.lastEnd = t[i];
      const duration = at("duration");
      if (num(duration)) c.lastStart = t[i] - duration;
      else if (!(c.lastStart > t[i])) c.lastStart = t[i];
      if (typeof state === "string") c.lastState = state;
      if (count(at("files_ok")) !== null) c.lastOk = at("files_ok");
      if (count(at("files_failed")) !== null) c.lastFailed = at("files_failed");
      if (num(at("success_rate"))) c.successRate = at("success_rate");
    }
    return true;
  }

  radars() {
    return [...new Set([...this.cells.values()].map((c) => c.radar))].sort();
  }

  stages() {
    const seen = new Set([...this.cells.values()].map((c) => c.stage));
    return [...STAGES.filter((s) => seen.has(s)), ...[...seen].filter((s) => !STAGES.includes(s)).sort()];
  }

  // How a cell shows: class ok | failed | stale | none.
  look(c) {
    if (!c) return "none";
    if (c.stale) return "stale";
    if (c.lastState === "died" || c.lastFailed > 0) return "failed";
    if (c.lastStart !== null || c.lastEnd !== null) return "ok";
    return "none";
  }
}

// Events worth listing as failures (the node's run events and staleness);
// recoveries ("... recovered", stale=False) are not failures.
export { isProblemEvent as isFailureEvent } from "./events.js";
