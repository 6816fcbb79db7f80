// What the radar view knows of one radar, built from the node's per-beam and
// per-scan products (P.consumer.<node>.radar.<code>.beam / .scan). Pure: every
// payload is checked, anything malformed is counted and ignored.

export const BEAM_SEP_DEG = 3.24; // SuperDARN's usual beam separation
export const STALE_AFTER_S = 120; // no beam for this long: the radar is stale
const MAX_SCANS = 5000;
const MAX_GATES = 10000;
const CODE = /^[a-z][a-z0-9]{1,7}$/;

export function validCode(code) {
  return typeof code === "string" && CODE.test(code);
}

// "obsmesh.consumer.sd.radar.sas.beam" -> {code: "sas", what: "beam"}
export function radarTopic(topic, prefix) {
  if (typeof topic !== "string" || !topic.startsWith(prefix)) return null;
  const m = /^([a-z][a-z0-9]{1,7})\.(beam|scan)$/.exec(topic.slice(prefix.length));
  return m ? { code: m[1], what: m[2] } : null;
}

const int = (x, lo, hi) => Number.isInteger(x) && x >= lo && x <= hi;
const num = (x) => typeof x === "number" && Number.isFinite(x);

// A beam product as the fan uses it, or null.
export function cleanBeam(p) {
  if (!p || typeof p !== "object") return null;
  if (!int(p.beam, 0, 255) || !int(p.nrang, 0, MAX_GATES) || !num(p.time)) return null;
  const slist = Array.isArray(p.slist) ? p.slist : [];
  const v = Array.isArray(p.v) ? p.v : [];
  const g = Array.isArray(p.gflg) ? p.gflg : [];
  if (v.length !== slist.length) return null;
  const gates = [];
  const vel = [];
  const ground = [];
  for (let i = 0; i < slist.length; i++) {
    if (!int(slist[i], 0, p.nrang - 1)) return null;
    gates.push(slist[i]);
    vel.push(num(v[i]) ? v[i] : null);
    ground.push(g[i] === 1 || g[i] === true);
  }
  return {
    time: p.time,
    beam: p.beam,
    nrang: p.nrang,
    frang: int(p.frang, 0, 10000) ? p.frang : 180,
    rsep: int(p.rsep, 1, 1000) ? p.rsep : 45,
    channel: int(p.channel, 0, 255) ? p.channel : 0,
    scan: Number.isInteger(p.scan) ? p.scan : 0,
    tfreq: num(p.tfreq) ? p.tfreq : null,
    noise: num(p.noise) ? p.noise : null,
    name: typeof p.name === "string" ? p.name : null,
    site: cleanSite(p),
    gates,
    vel,
    ground,
  };
}

// A radar's position from the radar table ({name, lat, lon, boresight, beams}), or null.
export function cleanSite(p) {
  if (!p || typeof p !== "object") return null;
  const lat = p.lat;
  const lon = p.lon;
  if (!num(lat) || !num(lon) || Math.abs(lat) > 90 || Math.abs(lon) > 360) return null;
  return {
    lat,
    lon,
    boresight: num(p.boresight) && Math.abs(p.boresight) <= 360 ? p.boresight : 0,
    beams: int(p.beams, 1, 64) ? p.beams : null,
    name: typeof p.name === "string" ? p.name.slice(0, 80) : null,
  };
}

export function cleanScan(s) {
  if (!s || typeof s !== "object" || !num(s.time)) return null;
  const count = (x) => (num(x) && x >= 0 ? x : null);
  const total = count(s.total);
  if (total === null) return null;
  return {
    time: s.time,
    beams: count(s.beams),
    total,
    ionospheric: count(s.ionospheric),
    ground: count(s.ground),
    name: typeof s.name === "string" ? s.name : null,
  };
}

export class RadarState {
  constructor(node, code) {
    this.node = node;
    this.code = code;
    this.name = null;
    this.beams = new Map(); // beam number -> latest clean beam
    this.scans = []; // ascending by time
    this.counts = { beams: 0, scans: 0, rejected: 0 };
    this.lastBeam = null; // radar time of the newest beam
    this.lastHeard = null; // page clock when the newest beam arrived
    this.source = null; // the node's get_status source for this radar, if any
    this.site = null; // position from the radar table: {lat, lon, boresight, beams, name}
    this.maxBeam = -1;
    this.nrang = 0;
    this.frang = 180;
    this.rsep = 45;
    this.tfreq = null;
    this.noise = null;
  }

  addBeam(payload, now) {
    const b = cleanBeam(payload);
    if (!b) {
      this.counts.rejected += 1;
      return false;
    }
    const old = this.beams.get(b.beam);
    if (old && old.time > b.time) return false; // an older beam than the one shown
    this.beams.set(b.beam, b);
    this.counts.beams += 1;
    this.maxBeam = Math.max(this.maxBeam, b.beam);
    this.nrang = Math.max(this.nrang, b.nrang);
    this.frang = b.frang;
    this.rsep = b.rsep;
    this.tfreq = b.tfreq;
    this.noise = b.noise;
    if (b.name) this.name = b.name;
    if (b.site && !this.site) this.site = b.site;
    if (this.lastBeam === null || b.time >= this.lastBeam) this.lastBeam = b.time;
    this.lastHeard = now;
    return true;
  }

  addScan(payload) {
    const s = cleanScan(payload);
    if (!s) {
      this.counts.rejected += 1;
      return false;
    }
    if (s.name) this.name = s.name;
    this._insertScan(s);
    this.counts.scans += 1;
    return true;
  }

  // Echo-count history from get_data: {t: [...], total: [...], ionospheric, ground}.
  addHistory(t, cols) {
    for (let i = 0; i < t.length; i++) {
      const s = cleanScan({ time: t[i], total: cols.total?.[i], ionospheric: cols.ionospheric?.[i], ground: cols.ground?.[i] });
      if (s) this._insertScan(s);
    }
  }

  _insertScan(s) {
    const a = this.scans;
    if (!a.length || a[a.length - 1].time < s.time) a.push(s);
    else {
      let lo = 0;
      let hi = a.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (a[mid].time < s.time) lo = mid + 1;
        else hi = mid;
      }
      if (a[lo] && a[lo].time === s.time) a[lo] = s;
      else a.splice(lo, 0, s);
    }
    if (a.length > MAX_SCANS) a.splice(0, a.length - MAX_SCANS);
  }

  // "connected" | "stale" | "disconnected" | "waiting"
  state(now) {
    const src = this.source;
    if (src && src.connected === false) return "disconnected"; // the feed's connection is down
    if (src && src.stale === true) return "stale"; // connected, but silent too long
    if (this.lastHeard === null) return src && src.connected === true ? "connected" : "waiting";
    return now - this.lastHeard > STALE_AFTER_S ? "stale" : "connected";
  }

  // The node's status source for this radar (its `site` holds the position).
  setSource(src) {
    this.source = { ...(this.source || {}), ...src };
    const site = cleanSite(src && src.site);
    if (site) {
      this.site = site;
      if (site.name) this.name = site.name;
    }
  }

  // Geometry of the fan: beams x gates and their ranges in km.
  grid() {
    return {
      nbeams: Math.max(this.site && this.site.beams ? this.site.beams : 16, this.maxBeam + 1),
      ngates: Math.max(this.nrang, 1) || 75,
      frang: this.frang,
      rsep: this.rsep,
    };
  }

  summary(now) {
    return {
      node: this.node,
      code: this.code,
      state: this.state(now),
      beams: this.counts.beams,
      scans: this.counts.scans,
      scanPoints: this.scans.length,
      rejected: this.counts.rejected,
      fanBeams: this.beams.size,
      echoes: [...this.beams.values()].reduce((n, b) => n + b.gates.length, 0),
      site: this.site ? { lat: this.site.lat, lon: this.site.lon, boresight: this.site.boresight } : null,
    };
  }
}

// Echo-count fields of a radar in a node's get_fields answer, if it stores them
// ({total, ionospheric, ground} -> field name); names like "sas.total",
// "sas.echoes_total", "scan.sas.ionospheric" are recognised.
export function echoFields(fields, code) {
  const out = {};
  // Per-scan counts first: a node may also keep per-beam counts under similar names.
  const names = Object.keys(fields || {});
  const ordered = [...names.filter((n) => n.includes("scan")), ...names.filter((n) => !n.includes("scan"))];
  for (const name of ordered) {
    const parts = name.split(/[.:/]/);
    if (!parts.includes(code)) continue;
    const last = parts[parts.length - 1].replace(/^(echoes_|echo_|scan_)/, "");
    if (["total", "ionospheric", "ground"].includes(last) && !out[last]) out[last] = name;
  }
  return out.total ? out : null;
}

// Velocity colour: blue toward the radar (negative), red away; m/s clipped at +-vmax.
const STOPS = [
  [-1, [29, 78, 216]],
  [-0.5, [96, 165, 250]],
  [0, [241, 245, 249]],
  [0.5, [248, 113, 113]],
  [1, [185, 28, 28]],
];

export function velocityColor(v, vmax = 600) {
  if (v === null || !Number.isFinite(v)) return "#cbd5e1";
  const x = Math.max(-1, Math.min(1, v / vmax));
  for (let i = 1; i < STOPS.length; i++) {
    const [x1, c1] = STOPS[i];
    if (x <= x1) {
      const [x0, c0] = STOPS[i - 1];
      const f = (x - x0) / (x1 - x0);
      const c = c0.map((a, k) => Math.round(a + (c1[k] - a) * f));
      return `rgb(${c[0]},${c[1]},${c[2]})`;
    }
  }
  return "rgb(185,28,28)";
}
