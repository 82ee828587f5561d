// Pure logic, no server: the SSE parser, the backoff, the dedup window,
// and connect's checks of its options.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SSEParser, Backoff, Seen, connect, RigError } from "../index.js";

function parseAll(chunks) {
  const out = [];
  const p = new SSEParser((e) => out.push(e));
  for (const c of chunks) p.push(c);
  return out;
}

// What the edge writes: the connected block with retry: and id:, a message,
// a payload split over data: lines, a heartbeat, a gap without id.
const stream =
  "retry: 2316\nid: seq:0\nevent: connected\ndata: {\"users\":[\"alice\"]}\n\n" +
  "id: 01K1\nevent: message\ndata: {\"n\":1}\n\n" +
  "id: 01K2\nevent: message\ndata: line one\ndata: line two\n\n" +
  ": a comment\nevent: heartbeat\ndata: \n\n" +
  "event: gap\ndata: 01K0\n\n";

const want = [
  { event: "connected", id: "seq:0", data: "{\"users\":[\"alice\"]}", retry: 2316 },
  { event: "message", id: "01K1", data: "{\"n\":1}", retry: undefined },
  { event: "message", id: "01K2", data: "line one\nline two", retry: undefined },
  { event: "heartbeat", id: undefined, data: "", retry: undefined },
  { event: "gap", id: undefined, data: "01K0", retry: undefined },
];

test("SSE parser: the edge's stream in one chunk", () => {
  assert.deepEqual(parseAll([stream]), want);
});

test("SSE parser: the same stream cut at every byte gives the same events", () => {
  for (let i = 0; i <= stream.length; i++) {
    assert.deepEqual(parseAll([stream.slice(0, i), stream.slice(i)]), want, `cut at ${i}`);
  }
  assert.deepEqual(parseAll([...stream]), want, "one character per chunk");
});

test("SSE parser: CRLF and CR line ends, also split between chunks", () => {
  const crlf = stream.replaceAll("\n", "\r\n");
  const cr = stream.replaceAll("\n", "\r");
  for (const s of [crlf, cr]) {
    for (let i = 0; i <= s.length; i += 7) {
      assert.deepEqual(parseAll([s.slice(0, i), s.slice(i)]), want);
    }
  }
  // \r at a chunk's end and \n at the next one's start: one line break.
  assert.deepEqual(parseAll(["id: a\r", "\nevent: message\r", "\ndata: x\r", "\n\r", "\n"]),
    [{ event: "message", id: "a", data: "x", retry: undefined }]);
});

test("SSE parser: BOM, a block without data, an unterminated block, fields without a space", () => {
  assert.deepEqual(parseAll(["\ufeffdata:x\n\nevent: nothing\n\ndata: incomplete"]),
    [{ event: "message", id: undefined, data: "x", retry: undefined }]);
  // An id with NUL is ignored; a bad retry too.
  assert.deepEqual(parseAll(["id: a\0b\nretry: 1x\ndata: y\n\n"]),
    [{ event: "message", id: undefined, data: "y", retry: undefined }]);
});

test("backoff: grows exponentially, stays within [cap/2, cap] and max, resets", () => {
  for (const r of [0, 0.5, 0.999999]) {
    const b = new Backoff({ min: 100, max: 3000, random: () => r });
    const got = Array.from({ length: 10 }, () => b.next());
    const caps = [100, 200, 400, 800, 1600, 3000, 3000, 3000, 3000, 3000];
    got.forEach((d, i) => {
      assert.ok(d >= caps[i] / 2 && d <= caps[i], `delay ${i} = ${d}, want within [${caps[i] / 2}, ${caps[i]}]`);
    });
    b.reset();
    assert.ok(b.next() <= 100);
  }
  // Jitter: two clients with different randomness do not come back together.
  const a = new Backoff({ random: () => 0.1 }), c = new Backoff({ random: () => 0.9 });
  a.next(); c.next();
  assert.notEqual(a.next(), c.next());
  // Thousands of failures: still bounded, never NaN or Infinity.
  const long = new Backoff({ min: 500, max: 30000 });
  for (let i = 0; i < 5000; i++) {
    const d = long.next();
    assert.ok(Number.isFinite(d) && d >= 250 && d <= 30000, `attempt ${i}: ${d}`);
  }
  assert.throws(() => new Backoff({ min: 0 }), RangeError);
  assert.throws(() => new Backoff({ min: 10, max: 5 }), RangeError);
});

test("dedup: an id is new once; the oldest is forgotten past the window", () => {
  const s = new Seen(3);
  assert.equal(s.add("a"), true);
  assert.equal(s.add("a"), false);
  assert.equal(s.add("b"), true);
  assert.equal(s.add("c"), true);
  assert.equal(s.add("d"), true); // forgets a
  assert.equal(s.add("b"), false);
  assert.equal(s.add("a"), true);
  assert.throws(() => new Seen(0), RangeError);
});

test("connect: refuses missing or wrong options at once", () => {
  assert.throws(() => connect({ token: "t" }), RigError);
  assert.throws(() => connect({ url: "http://x" }), /token or getToken/);
  assert.throws(() => connect({ url: "http://x", token: "t", transports: ["sse", "carrier-pigeon"] }), /unknown transport "carrier-pigeon"/);
  assert.throws(() => connect({ url: "http://x", token: "t", transports: [] }), /transports is empty/);
  assert.throws(() => connect({ url: "ws://x", token: "t" }), /not http: or https:/);
  assert.throws(() => connect({ url: "http://[::1", token: "t" }), /is not a URL/);
  for (const bad of [{ connectTimeout: -1 }, { idleTimeout: NaN }, { transportRetries: 0 }, { pollTimeout: "10" }, { dedupWindow: Infinity }]) {
    assert.throws(() => connect({ url: "http://x", token: "t", ...bad }), new RegExp(`connect: ${Object.keys(bad)[0]} is`));
  }
  const l = connect({ url: "http://127.0.0.1:1", token: "t", transports: ["sse"] });
  assert.throws(() => l.on("message"), TypeError);
  l.close();
  // An option given as undefined takes its default.
  const c = connect({ url: "http://127.0.0.1:1", token: "t", transports: undefined, backoff: { min: undefined } });
  c.close();
  assert.equal(c.state, "closed");
});

test("SSE parser: random events, encoded as the edge does, cut into random chunks, parse back", () => {
  // A small seeded generator, so that a failure can be reproduced.
  let seed = 42;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  const alphabet = ["a", "é", "\u{1F600}", " ", ":", "\r", "\n", "\r\n", "{", "\"", "\0"];
  for (let round = 0; round < 300; round++) {
    const events = [];
    let text = "";
    for (let i = 0; i < 1 + rnd(5); i++) {
      let data = "";
      for (let k = rnd(12); k > 0; k--) data += alphabet[rnd(alphabet.length)];
      const id = rnd(2) ? `01K${round}-${i}` : undefined;
      // The edge splits a payload at \r\n, \r and \n into data: lines.
      const lines = data.split(/\r\n|\r|\n/);
      text += (id ? `id: ${id}\n` : "") + "event: message\n" + lines.map((l) => `data: ${l}\n`).join("") + "\n";
      events.push({ event: "message", id, data: lines.join("\n"), retry: undefined });
    }
    const chunks = [];
    for (let at = 0; at < text.length;) {
      const n = 1 + rnd(20);
      chunks.push(text.slice(at, at + n));
      at += n;
    }
    assert.deepEqual(parseAll(chunks), events, `round ${round}: ${JSON.stringify(text)}`);
  }
});

test("no edge listening: the client cycles through the transports with growing, bounded delays; close() stops it mid-wait", async () => {
  const { createServer } = await import("node:net");
  // A port that was just free: connections to it are refused.
  const srv = createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));

  let requests = 0;
  const counting = (url, init) => { requests++; return fetch(url, init); };
  const c = connect({
    url: `http://127.0.0.1:${port}`, token: "t", fetch: counting, transportRetries: 1,
    backoff: { min: 20, max: 160 },
  });
  const tries = [];
  let closed = null;
  c.on("reconnecting", (r) => tries.push(r));
  c.on("closed", (x) => { closed = x; });
  c.on("connected", () => assert.fail("connected to nothing"));
  const end = Date.now() + 10000;
  while (tries.length < 7 && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  assert.ok(tries.length >= 7, `${tries.length} attempts in 10 s`);
  const order = tries.slice(0, 6).map((t) => t.previous);
  // Without a WebSocket (Node 20 without the flag) that transport is broken
  // at its first try, and skipped after.
  assert.deepEqual(order, typeof globalThis.WebSocket === "function"
    ? ["sse", "websocket", "longpoll", "sse", "websocket", "longpoll"]
    : ["sse", "websocket", "longpoll", "sse", "longpoll", "sse"]);
  tries.forEach((t, i) => {
    const cap = Math.min(160, 20 * 2 ** i);
    assert.ok(t.delay >= cap / 2 && t.delay <= cap, `attempt ${i}: delay ${t.delay}, want within [${cap / 2}, ${cap}]`);
  });
  // The backoff is at its bound now: close while the client waits.
  c.close();
  assert.equal(c.state, "closed");
  assert.deepEqual(closed, { reason: "closed by the application" });
  const n = requests;
  await new Promise((r) => setTimeout(r, 400)); // longer than any delay: nothing may follow
  assert.equal(requests, n, "requests after close()");
});
