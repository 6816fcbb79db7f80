// One animation-frame loop for the whole page. Plots mark themselves dirty
// when data arrives; each frame redraws dirty plots until a time budget is
// spent, and the rest wait for the next frame in order, so many fast plots
// never make one long frame. An item may say when it is worth drawing again
// (`readyAt`, ms on the frame clock) and whether it is on screen (`visible`):
// it stays dirty until then. The loop also records frame intervals: the
// page's responsiveness, read by the benchmark and shown in the footer.

const BUDGET_MS = 10;
const KEEP = 4096;

export class Frames {
  constructor() {
    this.dirty = new Set();
    this.intervals = new Float64Array(KEEP);
    this.count = 0;
    this.last = null;
    this.draws = 0;
    this.drawMs = 0; // main-thread time spent drawing, in total
    this.deferred = 0;
    this._tick = (ts) => this.frame(ts);
    requestAnimationFrame(this._tick);
  }

  mark(item) {
    this.dirty.add(item);
  }

  forget(item) {
    this.dirty.delete(item);
  }

  frame(ts) {
    if (this.last !== null) {
      this.intervals[this.count % KEEP] = ts - this.last;
      this.count += 1;
    }
    this.last = ts;
    const start = performance.now();
    for (const item of this.dirty) {
      if (item.visible === false || (item.readyAt && item.readyAt > ts)) continue;
      if (performance.now() - start > BUDGET_MS) {
        this.deferred += 1;
        break;
      }
      this.dirty.delete(item);
      const t0 = performance.now();
      try {
        item.draw();
        this.draws += 1;
      } catch (err) {
        console.warn("draw failed", err);
      }
      this.drawMs += performance.now() - t0;
    }
    requestAnimationFrame(this._tick);
  }

  // Frame intervals (ms) recorded since `since` (a value of `count`), at most KEEP.
  intervalsSince(since) {
    const n = Math.min(this.count - since, KEEP);
    const out = [];
    for (let i = this.count - n; i < this.count; i++) out.push(this.intervals[i % KEEP]);
    return out;
  }
}

export function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}
