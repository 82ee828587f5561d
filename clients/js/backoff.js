// Reconnection delays: exponential, bounded, with jitter so that the
// clients of an edge that restarts do not all come back at the same moment.

/**
 * Backoff returns growing delays: the n-th (from 0) is drawn from
 * [cap/2, cap], cap = min(max, min * 2^n) ("equal jitter": never 0, which
 * would let a refused client spin, and never above max). reset() starts
 * over, after a connection that was healthy.
 */
export class Backoff {
  /** @param {{min?: number, max?: number, random?: () => number}} [o] */
  constructor(o = {}) {
    this.min = o.min ?? 500;
    this.max = o.max ?? 30000;
    this.random = o.random ?? Math.random;
    if (!(this.min > 0) || !(this.max >= this.min)) {
      throw new RangeError(`backoff: want 0 < min <= max, got min ${this.min}, max ${this.max}`);
    }
    this.attempt = 0;
  }

  /** @returns {number} the next delay in milliseconds */
  next() {
    // 2^n overflows to Infinity long after min * 2^n passed max.
    const cap = Math.min(this.max, this.min * 2 ** Math.min(this.attempt, 40));
    this.attempt++;
    return Math.round(cap / 2 + this.random() * (cap / 2));
  }

  reset() { this.attempt = 0; }
}
