// The CO2 units table, built from the co2 node's status (one source per unit:
// connected, stale, last_heard, last_ping, rssi_dbm, nickname, site_code) and
// its live batches (timeline <unit>: <unit>.co2_mean, <unit>.temperature;
// timeline <unit>.ping: <unit>.rssi_dbm). Pure; payloads are checked.

import { natural } from "./format.js";

export const DEFAULT_SILENCE_S = 900;
const UNIT = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const num = (x) => typeof x === "number" && Number.isFinite(x);

function lastFinite(t, col) {
  if (!Array.isArray(t) || !Array.isArray(col)) return null;
  for (let i = Math.min(t.length, col.length) - 1; i >= 0; i--) {
    if (num(col[i]) && num(t[i])) return { t: t[i], v: col[i] };
  }
  return null;
}

export function signalBars(dbm) {
  if (!num(dbm)) return 0;
  if (dbm >= -73) return 4;
  if (dbm >= -83) return 3;
  if (dbm >= -93) return 2;
  return 1;
}

export class Co2Units {
  constructor() {
    this.units = new Map();
    this.silence = DEFAULT_SILENCE_S;
  }

  unit(id) {
    if (typeof id !== "string" || !UNIT.test(id)) return null;
    let u = this.units.get(id);
    if (!u) {
      u = { id, source: null, nickname: null, site: null, lastPing: null, rssi: null, co2: null, temperature: null, readingT: null };
      this.units.set(id, u);
    }
    return u;
  }

  fromStatus(status) {
    if (!status || typeof status !== "object") return;
    const co2 = status.co2 && typeof status.co2 === "object" ? status.co2 : {};
    if (num(co2.silence) && co2.silence > 0) this.silence = co2.silence;
    const sources = status.sources && typeof status.sources === "object" ? status.sources : {};
    for (const [key, src] of Object.entries(sources)) this.fromSource(key, src);
  }

  // One source (from get_status or the .status topic); "endpoint" is the server.
  fromSource(key, src) {
    if (key === "endpoint" || !src || typeof src !== "object") return;
    const u = this.unit(key);
    if (!u) return;
    u.source = { ...(u.source || {}), ...src };
    if (typeof src.nickname === "string") u.nickname = src.nickname;
    if (typeof src.site_code === "string") u.site = src.site_code;
    if (num(src.last_ping) && !(u.lastPing >= src.last_ping)) u.lastPing = src.last_ping;
    if (num(src.rssi_dbm)) u.rssi = src.rssi_dbm;
  }

  // Fields "<unit>.co2_mean" name the units that have readings.
  fromFields(fields) {
    for (const name of Object.keys(fields || {})) {
      const m = /^(.+)\.co2_mean$/.exec(name);
      if (m) this.unit(m[1]);
    }
  }

  // A live batch or a get_data reply's columns for one timeline.
  fromColumns(timeline, t, data) {
    if (typeof timeline !== "string" || !data || typeof data !== "object") return false;
    if (timeline.endsWith(".ping")) {
      const u = this.unit(timeline.slice(0, -5));
      if (!u) return false;
      const rssi = lastFinite(t, data[`${u.id}.rssi_dbm`]);
      const last = Array.isArray(t) && t.length && num(t[t.length - 1]) ? t[t.length - 1] : null;
      if (last !== null && !(u.lastPing >= last)) u.lastPing = last;
      if (rssi && !(u.rssiT > rssi.t)) {
        u.rssi = rssi.v;
        u.rssiT = rssi.t;
      }
      return true;
    }
    const u = this.unit(timeline);
    if (!u) return false;
    const co2 = lastFinite(t, data[`${u.id}.co2_mean`]);
    const temp = lastFinite(t, data[`${u.id}.temperature`]);
    if (co2 && !(u.readingT > co2.t)) {
      u.co2 = co2.v;
      u.readingT = co2.t;
    }
    if (temp && !(u.tempT > temp.t)) {
      u.temperature = temp.v;
      u.tempT = temp.t;
    }
    return !!(co2 || temp);
  }

  lastHeard(u) {
    const s = u.source || {};
    const times = [s.last_heard, s.last_ping, u.lastPing, s.last_sample].filter(num);
    return times.length ? Math.max(...times) : null;
  }

  rows(now) {
    return [...this.units.values()]
      .sort((a, b) => natural(a.id, b.id))
      .map((u) => {
        const heard = this.lastHeard(u);
        const s = u.source || {};
        const silent = s.stale === true || heard === null || now - heard >= this.silence;
        return { ...u, heard, silent, error: typeof s.error === "string" ? s.error : null, bars: signalBars(u.rssi) };
      });
  }
}
