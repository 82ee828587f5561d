// @rig-go/client: one connection to a RIG-Go edge that survives what a
// front-end meets: edge restarts (resume from the last id, on any edge),
// proxies that break SSE (fall back to WebSocket, then long-polling),
// expiring tokens (ask getToken for a fresh one) and refusals (stop, rather
// than retry forever what will never be accepted).

import { SSEParser } from "./sse.js";
import { Backoff } from "./backoff.js";
import { Seen } from "./seen.js";

export { SSEParser, Backoff, Seen };

const TRANSPORTS = ["sse", "websocket", "longpoll"];

// The most text one SSE event may hold before the stream is taken for
// something else: far above the edge's MESSAGE_MAX_SIZE (64 KiB by
// default), low enough that a stream without line ends cannot exhaust memory.
const MAX_EVENT_TEXT = 16 << 20;

const DEFAULTS = {
  transports: TRANSPORTS,
  // Until the connected event: a proxy that buffers SSE answers 200 and
  // then holds every byte, so only this timeout tells it from a slow edge.
  connectTimeout: 10000,
  // SSE: no byte for this long means a dead stream (the edge sends a
  // heartbeat every HEARTBEAT_INTERVAL, 10s by default).
  idleTimeout: 35000,
  // One long-poll request: the edge answers within LONGPOLL_TIMEOUT (25s).
  pollTimeout: 40000,
  backoff: { min: 500, max: 30000 },
  // A connection that lasted this long resets the backoff.
  healthyAfter: 5000,
  // Failed attempts in a row (no connected event) before the next
  // transport is tried: an edge restarting behind the load balancer looks
  // the same as a proxy that drops SSE until it lasts. A transport shown
  // to be broken (SSE held by a buffering proxy, a 200 that is no stream,
  // an upgrade the edge would have taken) is left at once.
  transportRetries: 3,
  dedupWindow: 1000,
  // After an edge asks its clients to reconnect (it is shutting down):
  // another edge is ready, so come back soon, spread over this long.
  reconnectSpread: 500,
};

/**
 * connect opens a client and starts connecting at once.
 * @param {import("./index.d.ts").ConnectOptions} options
 * @returns {Client}
 */
export function connect(options) {
  return new Client(options);
}

/** An error the client stopped on (a refusal), or a wrong option. */
export class RigError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, transport?: string}} [o]
   */
  constructor(message, o = {}) {
    super(message);
    this.name = "RigError";
    this.status = o.status;
    this.transport = o.transport;
  }
}

export class Client {
  #o;
  #listeners = new Map();
  #transports;
  #ti = 0;
  #failures = 0;
  // Transports shown not to work here (see "broken" outcomes): skipped
  // from then on, unless every one is.
  #broken = new Set();
  #backoff;
  #seen;
  #token;
  #cursor;
  #closed = false;
  #attempt = null; // the live attempt's abort function
  #wake = null; // ends the current sleep early (close)
  #unauthorized = 0; // 401s in a row, each after a fresh token
  #state = "connecting";
  #transport = undefined;
  #base;

  /** @param {import("./index.d.ts").ConnectOptions} options */
  constructor(options) {
    if (!options || typeof options.url !== "string" || options.url === "") {
      throw new RigError("connect: url is required (the edge's base URL, e.g. https://push.example.com)");
    }
    if (options.token === undefined && typeof options.getToken !== "function") {
      throw new RigError("connect: give token or getToken");
    }
    // An option given as undefined is an option not given.
    const given = (x) => Object.fromEntries(Object.entries(x ?? {}).filter(([, v]) => v !== undefined));
    const o = { ...DEFAULTS, ...given(options), backoff: { ...DEFAULTS.backoff, ...given(options.backoff) } };
    for (const t of o.transports) {
      if (!TRANSPORTS.includes(t)) {
        throw new RigError(`connect: unknown transport ${JSON.stringify(t)}; want one of ${TRANSPORTS.join(", ")}`);
      }
    }
    if (o.transports.length === 0) throw new RigError("connect: transports is empty");
    // A timer of NaN or a negative count would fire at once, every time.
    for (const [k, least] of [["connectTimeout", 1], ["idleTimeout", 1], ["pollTimeout", 1], ["healthyAfter", 0], ["transportRetries", 1], ["reconnectSpread", 0], ["dedupWindow", 1]]) {
      if (typeof o[k] !== "number" || !(o[k] >= least) || !Number.isFinite(o[k])) {
        throw new RigError(`connect: ${k} is ${JSON.stringify(o[k])}, want a number of at least ${least}`);
      }
    }
    let base;
    try {
      base = new URL(o.url, globalThis.location?.href);
    } catch {
      throw new RigError(`connect: url ${JSON.stringify(o.url)} is not a URL`);
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new RigError(`connect: url ${JSON.stringify(o.url)} is not http: or https: (the client derives ws: and wss: itself)`);
    }
    this.#base = base;
    this.#o = o;
    this.#transports = [...o.transports];
    this.#backoff = new Backoff({ ...o.backoff, random: o.random });
    this.#seen = new Seen(o.dedupWindow);
    this.#token = o.token;
    this.#cursor = o.lastEventId || undefined;
    queueMicrotask(() => this.#run());
  }

  /** The id the next connection resumes after (last_event_id=). */
  get lastEventId() { return this.#cursor; }
  /** The transport in use, or last tried. */
  get transport() { return this.#transport; }
  /** "connecting", "connected", "closed". */
  get state() { return this.#state; }

  /**
   * on adds a listener and returns a function that removes it.
   * @param {string} event
   * @param {(arg: any) => void} fn
   */
  on(event, fn) {
    if (typeof fn !== "function") throw new TypeError(`on(${JSON.stringify(event)}): the listener is ${typeof fn}, not a function`);
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  /** off removes a listener added with on. */
  off(event, fn) {
    this.#listeners.get(event)?.delete(fn);
  }

  /** close ends the connection for good; no listener is called after "closed". */
  close() {
    this.#stop({ reason: "closed by the application" });
  }

  #emit(event, arg) {
    for (const fn of [...(this.#listeners.get(event) ?? [])]) {
      try {
        fn(arg);
      } catch (err) {
        // One listener's bug must not end the connection or starve the
        // others; report it as the platform reports an uncaught error.
        if (typeof globalThis.reportError === "function") globalThis.reportError(err);
        else setTimeout(() => { throw err; });
      }
    }
  }

  #stop(info) {
    if (this.#closed) return;
    this.#closed = true;
    this.#state = "closed";
    this.#attempt?.();
    this.#wake?.();
    this.#emit("closed", info);
  }

  #fail(err) {
    if (this.#closed) return;
    this.#emit("error", err);
    this.#stop({ reason: err.message, error: err });
  }

  async #run() {
    while (!this.#closed) {
      const transport = this.#transports[this.#ti];
      this.#transport = transport;
      let out;
      try {
        if (this.#token === undefined) this.#token = await this.#o.getToken();
        if (this.#closed) return;
        if (typeof this.#token !== "string" || this.#token === "") {
          throw new RigError(`getToken returned ${typeof this.#token === "string" ? "an empty string" : typeof this.#token}, want a JWT`);
        }
        out = await this.#connectOnce(transport);
      } catch (err) {
        if (err instanceof RigError) {
          this.#fail(err);
          return;
        }
        // getToken threw (its server may be away): try again later.
        this.#token = undefined;
        out = { kind: "failed", reason: `getToken: ${err?.message ?? err}`, notTransport: true };
      }
      if (this.#closed) return;
      this.#state = "connecting";
      const delay = this.#next(transport, out);
      if (delay === null) return;
      this.#emit("reconnecting", { transport: this.#transports[this.#ti], delay, reason: out.reason, previous: transport });
      await this.#sleep(delay);
    }
  }

  // next applies an attempt's outcome and returns the delay before the
  // next one, or null when the client stopped.
  #next(transport, out) {
    if (out.connectedAt !== undefined && Date.now() - out.connectedAt >= this.#o.healthyAfter) {
      this.#backoff.reset();
    }
    switch (out.kind) {
      case "stop":
        this.#fail(out.error);
        return null;
      case "closed":
        this.#stop({ reason: out.reason });
        return null;
      case "refresh":
        // token_expired or a 401: a fresh token, at once the first time.
        this.#token = undefined;
        return 0;
      case "reconnect":
        this.#prefer();
        return Math.round((this.#o.random ?? Math.random)() * this.#o.reconnectSpread);
      case "busy":
        return Math.max(out.retryAfter ?? 0, this.#backoff.next());
      case "dropped":
        this.#failures = 0;
        this.#prefer();
        return this.#backoff.next();
      default: {
        // failed: ended before the connected event.
        if (!out.notTransport) {
          this.#failures++;
          if (out.broken) this.#broken.add(transport);
          if (out.broken || this.#failures >= this.#o.transportRetries) {
            this.#failures = 0;
            this.#ti = this.#after(this.#ti);
          }
        }
        return this.#backoff.next();
      }
    }
  }

  // after returns the index of the transport to try after index i.
  #after(i) {
    const n = this.#transports.length;
    for (let k = 1; k <= n; k++) {
      const j = (i + k) % n;
      if (!this.#broken.has(this.#transports[j])) return j;
    }
    return (i + 1) % n;
  }

  // prefer goes back to the first transport not shown broken, after a
  // connection that worked: failures that were not the transport's own
  // (an edge restart, a load balancer with no edge for a moment) must not
  // leave a client on long-polling for good.
  #prefer() {
    const i = this.#transports.findIndex((t) => !this.#broken.has(t));
    if (i >= 0) this.#ti = i;
  }

  #sleep(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() { clearTimeout(t); resolve(); }
      this.#wake = done;
    }).finally(() => { this.#wake = null; });
  }

  #url(path, http) {
    const u = new URL(this.#base.href);
    u.pathname = u.pathname.replace(/\/$/, "") + path;
    if (!http) u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    const q = u.searchParams;
    q.set("token", this.#token);
    for (const user of this.#o.users ?? []) q.append("users[]", user);
    if (this.#cursor) q.set("last_event_id", this.#cursor);
    return u.href;
  }

  // connectOnce runs one connection (for long-polling: one series of
  // polls) until it ends, and resolves with how it ended.
  #connectOnce(transport) {
    return new Promise((resolve) => {
      let finished = false;
      const conn = {
        transport,
        connectedAt: undefined,
        cleanups: [],
        end: (out) => {
          if (finished) return;
          finished = true;
          for (const f of conn.cleanups) f();
          this.#attempt = null;
          resolve({ ...out, connectedAt: conn.connectedAt });
        },
      };
      this.#attempt = () => conn.end({ kind: "closed", reason: "closed by the application" });
      const run = { sse: this.#sse, websocket: this.#websocket, longpoll: this.#longpoll }[transport];
      run.call(this, conn).catch((err) => conn.end({ kind: "failed", reason: `${transport}: ${err?.message ?? err}` }));
    });
  }

  // event handles one event of any transport: {event, id, data}.
  #event(conn, ev) {
    if (this.#closed) return;
    switch (ev.event) {
      case "connected": {
        this.#connected(conn);
        if (ev.id) this.#cursor = ev.id;
        this.#emit("connected", { transport: conn.transport, users: ev.data?.users, lastEventId: this.#cursor });
        return;
      }
      case "message": {
        if (typeof ev.id !== "string" || ev.id === "") {
          // The edge gives every message an id; without one it could be
          // neither resumed nor de-duplicated, but it is still delivered.
          this.#emit("message", { id: undefined, data: ev.data });
          return;
        }
        if (!this.#seen.add(ev.id)) {
          this.#emit("duplicate", { id: ev.id });
          return;
        }
        this.#cursor = ev.id;
        this.#emit("message", { id: ev.id, data: ev.data });
        return;
      }
      case "gap":
        this.#emit("gap", { id: typeof ev.data === "string" ? ev.data : String(ev.data ?? "") });
        return;
      case "heartbeat":
        this.#emit("heartbeat", { transport: conn.transport });
        return;
      case "reconnect":
        conn.end({ kind: "reconnect", reason: "the edge asked to reconnect" });
        return;
      case "session_killed":
        this.#emit("session_killed", { data: ev.data });
        conn.end({ kind: "closed", reason: "session_killed: the session was blacklisted" });
        return;
      case "token_expired":
        this.#emit("token_expired", { data: ev.data });
        if (typeof this.#o.getToken === "function") {
          conn.end({ kind: "refresh", first: true, reason: "token_expired" });
        } else {
          conn.end({ kind: "closed", reason: "token_expired and no getToken to renew it" });
        }
        return;
      default:
        // An event this version does not know: a newer edge's; skip it.
        return;
    }
  }

  #connected(conn) {
    if (conn.connectedAt !== undefined) return;
    conn.connectedAt = Date.now();
    this.#failures = 0;
    this.#unauthorized = 0;
    this.#state = "connected";
    conn.onConnected?.();
  }

  // refused turns a non-2xx answer into an outcome: stop on what retrying
  // cannot fix, back off on what it can.
  async #refused(conn, status, headers, body) {
    let message = "";
    try {
      const j = JSON.parse(body);
      if (j && typeof j.error === "string") message = j.error;
    } catch {
      // not RIG-Go's JSON error: a proxy's page
    }
    const what = `${conn.transport}: ${status}${message ? ` ${message}` : ""}`;
    if (status === 401) {
      if (typeof this.#o.getToken === "function" && this.#unauthorized === 0) {
        this.#unauthorized++;
        return { kind: "refresh", first: true, reason: what };
      }
      return { kind: "stop", error: new RigError(what, { status, transport: conn.transport }) };
    }
    if (status === 429 || status === 503) {
      const ra = Number(headers?.get?.("retry-after"));
      return { kind: "busy", retryAfter: Number.isFinite(ra) && ra > 0 ? Math.min(ra, 300) * 1000 : undefined, reason: what };
    }
    if (status >= 400 && status < 500) {
      return { kind: "stop", error: new RigError(what, { status, transport: conn.transport }) };
    }
    // 500, 502, 504: a proxy or an edge in trouble; maybe not this transport's fault.
    return { kind: "failed", reason: what };
  }

  // timer runs fn after ms unless the connection ends first.
  #timer(conn, ms, fn) {
    const t = setTimeout(fn, ms);
    conn.cleanups.push(() => clearTimeout(t));
    return () => clearTimeout(t);
  }

  async #sse(conn) {
    const ctrl = new AbortController();
    conn.cleanups.push(() => ctrl.abort());
    const fetchFn = this.#o.fetch ?? globalThis.fetch;
    const cancelConnect = this.#timer(conn, this.#o.connectTimeout, () =>
      conn.end({ kind: "failed", broken: true, reason: `sse: no connected event within ${this.#o.connectTimeout} ms (a proxy that buffers the stream?)` }));
    conn.onConnected = cancelConnect;
    let res;
    try {
      res = await fetchFn(this.#url("/socket/sse", true), {
        headers: { Accept: "text/event-stream" },
        cache: "no-store",
        signal: ctrl.signal,
      });
    } catch (err) {
      conn.end({ kind: "failed", reason: `sse: ${err?.message ?? err}` });
      return;
    }
    if (res.status !== 200) {
      const body = await res.text().catch(() => "");
      conn.end(await this.#refused(conn, res.status, res.headers, body));
      return;
    }
    const type = res.headers.get("content-type") ?? "";
    if (!type.startsWith("text/event-stream")) {
      conn.end({ kind: "failed", broken: true, reason: `sse: 200 with Content-Type ${JSON.stringify(type)}, not text/event-stream (a proxy's page?)` });
      return;
    }
    // One timer for the stream's life, pushed back by every chunk.
    let idle;
    conn.cleanups.push(() => clearTimeout(idle));
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => conn.end(this.#lost(conn, `sse: nothing for ${this.#o.idleTimeout} ms`)), this.#o.idleTimeout);
    };
    arm();
    const parser = new SSEParser((e) => this.#event(conn, {
      event: e.event,
      id: e.id,
      // A gap's data is the id asked for, as text; a payload is JSON when
      // it parses (ingest's always does), else the text itself, as the
      // other transports deliver it.
      data: e.event === "gap" ? e.data : parseData(e.data),
    }));
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        conn.end(this.#lost(conn, `sse: ${err?.message ?? err}`));
        return;
      }
      if (chunk.done) break;
      arm();
      parser.push(decoder.decode(chunk.value, { stream: true }));
      if (parser.pending > MAX_EVENT_TEXT) {
        conn.end({ kind: "failed", broken: true, reason: `sse: an event over ${MAX_EVENT_TEXT} characters (not RIG-Go's stream?)` });
        return;
      }
    }
    conn.end(this.#lost(conn, "sse: the stream ended"));
  }

  // lost is the outcome of a connection that ended without being asked to.
  #lost(conn, reason) {
    return conn.connectedAt === undefined ? { kind: "failed", reason } : { kind: "dropped", reason };
  }

  async #websocket(conn) {
    const WS = this.#o.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") {
      conn.end({ kind: "failed", broken: true, reason: "websocket: no WebSocket here (Node 20: pass options.WebSocket, or run with --experimental-websocket)" });
      return;
    }
    const url = this.#url("/socket/websocket", false);
    const probe = this.#url("/socket/websocket", true);
    let ws;
    try {
      ws = new WS(url);
    } catch (err) {
      conn.end({ kind: "failed", broken: true, reason: `websocket: ${err?.message ?? err}` });
      return;
    }
    let opened = false;
    conn.cleanups.push(() => {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch { /* already closing */ }
    });
    conn.onConnected = this.#timer(conn, this.#o.connectTimeout, () =>
      conn.end({ kind: "failed", broken: opened, reason: `websocket: no connected event within ${this.#o.connectTimeout} ms` }));
    ws.onopen = () => { opened = true; };
    ws.onmessage = (m) => {
      let ev;
      try {
        ev = JSON.parse(typeof m.data === "string" ? m.data : "");
      } catch {
        ev = undefined;
      }
      if (!ev || typeof ev.event !== "string") {
        conn.end({ kind: "failed", broken: true, reason: "websocket: a frame that is not a RIG-Go event" });
        return;
      }
      this.#event(conn, ev);
    };
    let gone = false;
    const onGone = async (e) => {
      if (gone) return;
      gone = true;
      if (e.code === 1012) {
        conn.end({ kind: "reconnect", reason: "websocket: 1012 the edge restarts" });
        return;
      }
      if (opened) {
        conn.end(this.#lost(conn, `websocket: closed ${e.code}${e.reason ? ` ${e.reason}` : ""}`));
        return;
      }
      // A refused upgrade shows as code 1006 and no status. The same
      // request without the upgrade tells why: 426 when the edge would
      // have taken it, else the refusal SSE would get.
      const out = await this.#probe(conn, probe);
      conn.end(out);
    };
    ws.onclose = onGone;
    // Node's WebSocket (undici) reports a refused upgrade as an error
    // without a close event; browsers send both.
    ws.onerror = () => { if (!opened) onGone({ code: 1006, reason: "" }); };
  }

  async #probe(conn, url) {
    const fetchFn = this.#o.fetch ?? globalThis.fetch;
    const ctrl = new AbortController();
    conn.cleanups.push(() => ctrl.abort());
    const t = setTimeout(() => ctrl.abort(), 5000);
    try {
      const res = await fetchFn(url, { cache: "no-store", signal: ctrl.signal });
      const body = await res.text().catch(() => "");
      if (res.status === 426) return { kind: "failed", broken: true, reason: "websocket: the upgrade failed, but the edge takes the request (a proxy without WebSocket?)" };
      return await this.#refused(conn, res.status, res.headers, body);
    } catch (err) {
      return { kind: "failed", reason: `websocket: could not connect (${err?.message ?? err})` };
    } finally {
      clearTimeout(t);
    }
  }

  async #longpoll(conn) {
    const fetchFn = this.#o.fetch ?? globalThis.fetch;
    for (;;) {
      const ctrl = new AbortController();
      const cancel = () => ctrl.abort();
      conn.cleanups.push(cancel);
      const timeout = setTimeout(cancel, this.#o.pollTimeout);
      let res, body;
      try {
        res = await fetchFn(this.#url("/socket/longpoll", true), { cache: "no-store", signal: ctrl.signal });
        body = await res.text();
      } catch (err) {
        conn.end(this.#lost(conn, `longpoll: ${err?.message ?? err}`));
        return;
      } finally {
        clearTimeout(timeout);
        conn.cleanups.splice(conn.cleanups.indexOf(cancel), 1);
      }
      if (res.status !== 200) {
        const out = await this.#refused(conn, res.status, res.headers, body);
        conn.end(conn.connectedAt !== undefined && out.kind === "failed" ? { kind: "dropped", reason: out.reason } : out);
        return;
      }
      let answer;
      try {
        answer = JSON.parse(body);
      } catch {
        answer = undefined;
      }
      if (!answer || !Array.isArray(answer.events) || typeof answer.last_event_id !== "string") {
        conn.end({ kind: "failed", broken: true, reason: "longpoll: 200 without {events, last_event_id} (a proxy's page?)" });
        return;
      }
      if (conn.connectedAt === undefined) {
        this.#event(conn, { event: "connected", data: { users: this.#o.users } });
      }
      let ended = false;
      const end = conn.end;
      conn.end = (out) => { ended = true; end(out); };
      // Every event of the answer, also after one that ends the
      // connection: the answer's cursor is past all of them.
      for (const ev of answer.events) {
        if (this.#closed) return;
        if (ev && typeof ev.event === "string") this.#event(conn, ev);
      }
      conn.end = end;
      if (answer.last_event_id) this.#cursor = answer.last_event_id;
      if (ended || this.#closed) return;
    }
  }
}

// parseData returns an SSE data field as the WebSocket transport would
// deliver it: JSON when it is JSON, else the text.
function parseData(s) {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}
