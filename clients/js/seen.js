// Which message ids were delivered lately: the edge sends each message
// once, but a client that resumes at a seam (a reconnect, another edge,
// another transport) checks anyway, so an application never sees one twice.

/** Seen remembers the last `size` ids, oldest forgotten first. */
export class Seen {
  /** @param {number} size */
  constructor(size) {
    if (!(size >= 1)) throw new RangeError(`dedup window: want at least 1 id, got ${size}`);
    this.size = size;
    this.set = new Set();
    this.ring = new Array(size);
    this.next = 0;
  }

  /**
   * add records id and reports whether it is new.
   * @param {string} id
   */
  add(id) {
    if (this.set.has(id)) return false;
    const old = this.ring[this.next];
    if (old !== undefined) this.set.delete(old);
    this.ring[this.next] = id;
    this.next = (this.next + 1) % this.size;
    this.set.add(id);
    return true;
  }
}
