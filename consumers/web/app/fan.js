// The fan plot: one radar's field of view, beams fanning out from the radar,
// range gates along each beam, cells coloured by line-of-sight velocity
// (ground scatter grey). With the radar's position known (the radar table,
// through the node), it is drawn on a map, north up, with coastlines and
// parallels, on an azimuthal equidistant projection centred on the radar, so
// bearings and ranges from the radar are true. Without a position: relative
// to the boresight (up).

import { BEAM_SEP_DEG, velocityColor } from "./radar-model.js";
import { parallelAround, polar } from "./geo.js";

const GROUND = "#64748b";
const EMPTY = "rgba(241,245,249,0.75)";
const RING_KM = 1000;
const MAX_HEIGHT = 300;

function sizeCanvas(canvas, w, hgt) {
  const dpr = window.devicePixelRatio || 1;
  if (canvas.style.height !== `${hgt}px`) canvas.style.height = `${hgt}px`;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  if (canvas.height !== Math.round(hgt * dpr)) canvas.height = Math.round(hgt * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  return ctx;
}

// coast: projected coastline pieces around the site (geo.coastAround), or null while loading.
export function drawFan(canvas, radar, coast = null) {
  const site = radar.site;
  if (site && Number.isFinite(site.lat) && Number.isFinite(site.lon) && Number.isFinite(site.boresight)) {
    return drawOnMap(canvas, radar, site, coast);
  }
  drawPlain(canvas, radar);
  return { mapped: false, coast: 0 };
}

function drawOnMap(canvas, radar, site, coast) {
  const { nbeams, ngates, frang, rsep } = radar.grid();
  const rmax = frang + ngates * rsep;
  const bearing = (b) => site.boresight + (b - nbeams / 2) * BEAM_SEP_DEG; // edge of beam b
  // the view: the fan and the radar, with a margin
  let x0 = 0;
  let x1 = 0;
  let y0 = 0;
  let y1 = 0;
  for (let b = 0; b <= nbeams; b++) {
    for (const r of [frang, rmax]) {
      const [x, y] = polar(r, bearing(b));
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
  }
  const margin = 0.12 * Math.max(x1 - x0, y1 - y0);
  x0 -= margin;
  x1 += margin;
  y0 -= margin;
  y1 += margin;
  const w = canvas.clientWidth || 250;
  const k = Math.min(w / (x1 - x0), MAX_HEIGHT / (y1 - y0));
  const hgt = Math.ceil((y1 - y0) * k);
  const ox = (w - (x1 - x0) * k) / 2;
  const ctx = sizeCanvas(canvas, w, hgt);
  const at = ([x, y]) => [ox + (x - x0) * k, (y1 - y) * k];

  // sea, land, parallels
  ctx.fillStyle = "#eef6fb";
  ctx.fillRect(0, 0, w, hgt);
  let drawn = 0;
  if (coast) {
    ctx.lineWidth = 0.8;
    ctx.strokeStyle = "#94a3b8";
    ctx.fillStyle = "#f4f1ea";
    for (const piece of coast) {
      ctx.beginPath();
      piece.pts.forEach((p, i) => (i ? ctx.lineTo(...at(p)) : ctx.moveTo(...at(p))));
      if (piece.closed) {
        ctx.closePath();
        ctx.fill();
      }
      ctx.stroke();
      drawn++;
    }
  }
  ctx.setLineDash([3, 3]);
  ctx.strokeStyle = "rgba(100,116,139,0.35)";
  ctx.fillStyle = "#64748b";
  ctx.font = "10px system-ui, sans-serif";
  ctx.textAlign = "left";
  for (let lat = -80; lat <= 80; lat += 10) {
    for (const run of parallelAround(lat, site.lat, site.lon)) {
      ctx.beginPath();
      run.forEach((p, i) => (i ? ctx.lineTo(...at(p)) : ctx.moveTo(...at(p))));
      ctx.stroke();
      const inside = run.map(at).find(([x, y]) => x > 4 && x < w - 30 && y > 10 && y < hgt - 4);
      if (inside) ctx.fillText(`${Math.abs(lat)}°${lat >= 0 ? "N" : "S"}`, inside[0] + 2, inside[1] - 2);
    }
  }
  ctx.setLineDash([]);

  // field of view, then cells
  const cellPath = (b0, b1, r0, r1) => {
    ctx.beginPath();
    ctx.moveTo(...at(polar(r0, bearing(b0))));
    for (let b = b0; b <= b1; b += 0.25) ctx.lineTo(...at(polar(r1, bearing(Math.min(b, b1)))));
    ctx.lineTo(...at(polar(r1, bearing(b1))));
    for (let b = b1; b >= b0; b -= 0.25) ctx.lineTo(...at(polar(r0, bearing(Math.max(b, b0)))));
    ctx.closePath();
  };
  cellPath(0, nbeams, frang, rmax);
  ctx.fillStyle = EMPTY;
  ctx.fill();
  ctx.strokeStyle = "#94a3b8";
  ctx.lineWidth = 1;
  ctx.stroke();
  for (const beam of radar.beams.values()) {
    for (let i = 0; i < beam.gates.length; i++) {
      const r0 = frang + beam.gates[i] * rsep;
      cellPath(beam.beam, beam.beam + 1, r0, r0 + rsep);
      ctx.fillStyle = beam.ground[i] ? GROUND : velocityColor(beam.vel[i]);
      ctx.fill();
    }
  }

  // the radar, its name, a scale
  const [sx, sy] = at([0, 0]);
  ctx.fillStyle = "#0f172a";
  ctx.beginPath();
  ctx.arc(sx, sy, 3, 0, 2 * Math.PI);
  ctx.fill();
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = sx > w / 2 ? "right" : "left";
  ctx.fillText(site.name || radar.code.toUpperCase(), sx + (sx > w / 2 ? -6 : 6), sy + 4);
  const bar = RING_KM * k;
  ctx.textAlign = "right";
  ctx.strokeStyle = "#334155";
  ctx.beginPath();
  ctx.moveTo(w - 6 - bar, hgt - 8);
  ctx.lineTo(w - 6, hgt - 8);
  ctx.stroke();
  ctx.fillStyle = "#334155";
  ctx.font = "10px system-ui, sans-serif";
  ctx.fillText(`${RING_KM} km`, w - 8, hgt - 11);
  ctx.textAlign = "right";
  ctx.fillText("N ↑", w - 4, 12);
  return { mapped: true, coast: drawn };
}

function drawPlain(canvas, radar) {
  const { nbeams, ngates, frang, rsep } = radar.grid();
  const half = ((nbeams / 2) * BEAM_SEP_DEG * Math.PI) / 180;
  const rmax = frang + ngates * rsep;
  // Fit the width; the canvas is as tall as the fan needs (radar at the bottom centre).
  const padX = 44; // room for the range labels
  const padY = 12;
  const w = canvas.clientWidth || 250;
  const k = Math.min((w - 2 * padX) / (2 * rmax * Math.sin(half)), 400 / (rmax - frang * Math.cos(half)));
  const hgt = Math.ceil(k * (rmax - frang * Math.cos(half)) + 2 * padY);
  const ctx = sizeCanvas(canvas, w, hgt);

  const cx = w / 2;
  const by = padY + rmax * k;
  const at = (r, a) => [cx + r * Math.sin(a) * k, by - r * Math.cos(a) * k];
  const angle = (b) => ((b - nbeams / 2) * BEAM_SEP_DEG * Math.PI) / 180;

  const cell = (b, g, color) => {
    const a0 = angle(b);
    const a1 = angle(b + 1);
    const r0 = frang + g * rsep;
    const r1 = r0 + rsep;
    ctx.beginPath();
    ctx.moveTo(...at(r0, a0));
    ctx.lineTo(...at(r1, a0));
    ctx.lineTo(...at(r1, a1));
    ctx.lineTo(...at(r0, a1));
    ctx.closePath();
    ctx.fillStyle = color;
    ctx.fill();
  };

  // field of view
  ctx.beginPath();
  ctx.moveTo(...at(frang, angle(0)));
  for (let b = 0; b <= nbeams; b++) ctx.lineTo(...at(rmax, angle(b)));
  for (let b = nbeams; b >= 0; b--) ctx.lineTo(...at(frang, angle(b)));
  ctx.closePath();
  ctx.fillStyle = "#f1f5f9";
  ctx.fill();
  ctx.strokeStyle = "#cbd5e1";
  ctx.lineWidth = 1;
  ctx.stroke();

  for (const beam of radar.beams.values()) {
    for (let i = 0; i < beam.gates.length; i++) {
      cell(beam.beam, beam.gates[i], beam.ground[i] ? GROUND : velocityColor(beam.vel[i]));
    }
  }

  // range rings and labels
  ctx.strokeStyle = "rgba(100,116,139,0.35)";
  ctx.fillStyle = "#64748b";
  ctx.font = "10px system-ui, sans-serif";
  ctx.textAlign = "left";
  for (let r = RING_KM; r < rmax; r += RING_KM) {
    if (r <= frang) continue;
    ctx.beginPath();
    for (let b = 0; b <= nbeams; b++) {
      const [x, y] = at(r, angle(b));
      if (b === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    }
    ctx.stroke();
    const [x, y] = at(r, angle(nbeams));
    ctx.fillText(`${r} km`, x + 4, y + 3);
  }
  const [x0, y0] = at(frang, angle(0));
  ctx.textAlign = "right";
  ctx.fillText("beam 0", x0 - 4, y0);
}
