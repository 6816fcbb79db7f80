// The fan plot: one radar's field of view, beams fanning out from the radar,
// range gates along each beam, cells coloured by line-of-sight velocity
// (ground scatter grey). Drawn relative to the boresight (up), not on a map.

import { BEAM_SEP_DEG, velocityColor } from "./radar-model.js";

const GROUND = "#64748b";
const EMPTY = "#f1f5f9";
const RING_KM = 1000;

export function drawFan(canvas, radar) {
  const { nbeams, ngates, frang, rsep } = radar.grid();
  const half = ((nbeams / 2) * BEAM_SEP_DEG * Math.PI) / 180;
  const rmax = frang + ngates * rsep;
  // Fit the width; the canvas is as tall as the fan needs (radar at the bottom centre).
  const padX = 44; // room for the range labels
  const padY = 12;
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 250;
  const k = Math.min((w - 2 * padX) / (2 * rmax * Math.sin(half)), 400 / (rmax - frang * Math.cos(half)));
  const hgt = Math.ceil(k * (rmax - frang * Math.cos(half)) + 2 * padY);
  if (canvas.style.height !== `${hgt}px`) canvas.style.height = `${hgt}px`;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  if (canvas.height !== Math.round(hgt * dpr)) canvas.height = Math.round(hgt * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);

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
  ctx.fillStyle = EMPTY;
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
