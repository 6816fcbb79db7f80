// Geography for the radar fans: an azimuthal equidistant projection centred
// on a radar (distances and bearings from the radar are true, so a fan of
// beams and range gates is drawn exactly), and the world's coastlines from
// the `world-atlas` npm package (Natural Earth land, 1:50 million), decoded
// with `topojson-client`. The projection is pure; `loadLand` fetches once.

import { feature } from "../node_modules/topojson-client/src/index.js";

export const EARTH_KM = 6371.0;
const RAD = Math.PI / 180;
const LAND_URL = new URL("../node_modules/world-atlas/land-50m.json", import.meta.url);
// Parallels are drawn this far from a radar; land within NEAR_KM of it is drawn.
const MAX_ANGLE = 50 * RAD;
const FILL_ANGLE = 150 * RAD;
const NEAR_KM = 6000;

// km east and north of the centre (lat0, lon0 in degrees) on the projection,
// or null beyond `maxAngle` (radians of arc).
export function project(lat0, lon0, lat, lon, maxAngle = Math.PI * 0.99) {
  const p0 = lat0 * RAD;
  const p = lat * RAD;
  const dl = (lon - lon0) * RAD;
  const cosc = Math.sin(p0) * Math.sin(p) + Math.cos(p0) * Math.cos(p) * Math.cos(dl);
  const c = Math.acos(Math.max(-1, Math.min(1, cosc)));
  if (c > maxAngle) return null;
  const az = Math.atan2(Math.sin(dl) * Math.cos(p), Math.cos(p0) * Math.sin(p) - Math.sin(p0) * Math.cos(p) * Math.cos(dl));
  const r = c * EARTH_KM;
  return [r * Math.sin(az), r * Math.cos(az)];
}

// The point `km` away from the centre along `bearing` (degrees east of north), projected.
export function polar(km, bearingDeg) {
  const a = bearingDeg * RAD;
  return [km * Math.sin(a), km * Math.cos(a)];
}

let landPromise = null;

// The land polygons as arrays of rings of [lon, lat] (fetched once per page).
export function loadLand() {
  if (!landPromise) {
    landPromise = fetch(LAND_URL)
      .then((r) => {
        if (!r.ok) throw new Error(`land outlines: HTTP ${r.status}`);
        return r.json();
      })
      .then((topology) => {
        const geo = feature(topology, topology.objects.land);
        const rings = [];
        for (const f of geo.features || [geo]) {
          const g = f.geometry || f;
          const polys = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
          for (const poly of polys) for (const ring of poly) rings.push(ring);
        }
        return rings;
      });
    landPromise.catch(() => {
      landPromise = null; // try again next time
    });
  }
  return landPromise;
}

// Land around a site, projected (km): {pts, closed}. A ring that projects
// whole (every point within FILL_ANGLE of the site) is one closed piece to
// fill; a ring reaching past it (near the far side of the Earth, where the
// projection tears) is split into open runs that are only stroked. Rings
// wholly beyond MAX_ANGLE are left out: no fan reaches them.
export function coastAround(rings, lat0, lon0) {
  const pieces = [];
  for (const ring of rings) {
    const pts = ring.map(([lon, lat]) => project(lat0, lon0, lat, lon, FILL_ANGLE));
    if (!pts.some((xy) => xy && Math.hypot(xy[0], xy[1]) < NEAR_KM)) continue;
    if (pts.every(Boolean)) {
      pieces.push({ pts, closed: true });
      continue;
    }
    let run = [];
    for (const xy of pts) {
      if (xy) run.push(xy);
      else if (run.length) {
        if (run.length > 1) pieces.push({ pts: run, closed: false });
        run = [];
      }
    }
    if (run.length > 1) pieces.push({ pts: run, closed: false });
  }
  return pieces;
}

// A parallel (circle of latitude) around a site, projected, as pieces.
export function parallelAround(lat, lat0, lon0) {
  const pieces = [];
  let run = [];
  for (let lon = lon0 - 180; lon <= lon0 + 180; lon += 2) {
    const xy = project(lat0, lon0, lat, lon, MAX_ANGLE);
    if (xy) run.push(xy);
    else if (run.length) {
      if (run.length > 1) pieces.push(run);
      run = [];
    }
  }
  if (run.length > 1) pieces.push(run);
  return pieces;
}
