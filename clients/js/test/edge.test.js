// The client against real edges: e2e/jsclient_test.go starts NATS, two
// edges, ingest and nginx (one in front of the edges as deploy/nginx has
// it, one that refuses /socket/sse with 502) and runs these with their
// URLs in the environment. Without them (plain `node --test`) they skip.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { connect } from "../index.js";

const env = process.env;
const EDGE = env.RIG_EDGE_URL; // an edge, directly
const EDGE_B = env.RIG_EDGE_B_URL || EDGE; // the other edge
const INGEST = env.RIG_INGEST_URL;
const SECRET = env.RIG_JWT_SECRET;
const BLOCKED = env.RIG_SSE_BLOCKED_URL; // nginx answering /socket/sse with 502
const skip = !(EDGE && INGEST && SECRET) && "needs RIG_EDGE_URL, RIG_INGEST_URL, RIG_JWT_SECRET (go test ./e2e -run TestJSClientNode)";
const fast = { backoff: { min: 50, max: 1000 }, connectTimeout: 5000 };

function b64(x) { return Buffer.from(typeof x === "string" ? x : JSON.stringify(x)).toString("base64url"); }

function mint(user, { ttl = 3600, jti = randomUUID(), secret = SECRET } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: "HS256", typ: "JWT" }) + "." + b64({ user, jti, iat: now, exp: now + ttl });
  return head + "." + createHmac("sha256", secret).update(head).digest("base64url");
}

async function post(user, body = {}) {
  const res = await fetch(INGEST + "/v1/messages", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user, ...body }),
  });
  const text = await res.text();
  assert.equal(res.status, 202, `POST /v1/messages: ${res.status} ${text}`);
  return JSON.parse(text).id;
}

// until polls cond until it holds, failing after ms.
async function until(what, cond, ms = 20000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// record collects what a client emits.
function record(c) {
  const r = { messages: [], ids: [], gaps: [], connected: [], errors: [], dups: [], closed: null, events: [] };
  c.on("message", (m) => { r.messages.push(m); r.ids.push(m.id); });
  c.on("gap", (g) => r.gaps.push(g.id));
  c.on("connected", (x) => r.connected.push(x.transport));
  c.on("error", (e) => r.errors.push(e));
  c.on("duplicate", (d) => r.dups.push(d.id));
  c.on("closed", (x) => { r.closed = x; });
  for (const e of ["session_killed", "token_expired", "reconnecting"]) c.on(e, (x) => r.events.push([e, x]));
  return r;
}

function user(name) { return `${name}-${randomUUID().slice(0, 8)}`; }

for (const transport of ["sse", "websocket", "longpoll"]) {
  test(`${transport}: every message once, in order, with the ids ingest returned`, { skip }, async () => {
    const u = user("t");
    const c = connect({ url: EDGE, token: mint(u), transports: [transport], ...fast });
    const r = record(c);
    try {
      await until("connected", () => r.connected.length === 1);
      assert.equal(c.transport, transport);
      const want = [];
      for (let i = 0; i < 5; i++) want.push(await post(u, { i }));
      await until("5 messages", () => r.ids.length >= 5);
      assert.deepEqual(r.ids, want);
      assert.deepEqual(r.messages.map((m) => m.data.i), [0, 1, 2, 3, 4]);
      assert.equal(r.messages[0].data.user, u);
      assert.deepEqual([r.gaps, r.dups, r.errors], [[], [], []]);
    } finally {
      c.close();
    }
    assert.equal(c.state, "closed");
  });
}

test("resume across transports and edges: a client on each transport in turn, on one edge then the other, from the last one's id", { skip }, async () => {
  const u = user("resume");
  const want = [], got = [];
  let last;
  for (const [transport, edge] of [["sse", EDGE], ["websocket", EDGE_B], ["longpoll", EDGE], ["sse", EDGE_B], ["websocket", EDGE], ["longpoll", EDGE_B]]) {
    // Messages posted while no client is connected (after the first one
    // left), then while this one is.
    let n = 2;
    if (last !== undefined) {
      for (let i = 0; i < 3; i++) want.push(await post(u, { transport, i }));
      n = 5;
    }
    const c = connect({ url: edge, token: mint(u), transports: [transport], lastEventId: last, ...fast });
    const r = record(c);
    await until(`${transport} connected`, () => r.connected.length === 1);
    for (let i = 3; i < 5; i++) want.push(await post(u, { transport, i }));
    await until(`${transport}: ${n} messages`, () => r.ids.length >= n);
    c.close();
    got.push(...r.ids);
    last = c.lastEventId;
    assert.deepEqual([r.gaps, r.dups, r.errors], [[], [], []], transport);
  }
  assert.deepEqual(got, want);
});

test("a proxy that starts refusing SSE: the client moves to WebSocket and resumes where SSE stopped; back to SSE once it works again", { skip }, async () => {
  const u = user("fallback");
  let blocked = false, live = null;
  // The fault sits in the client's network layer, between it and a real edge.
  const faulty = async (url, init = {}) => {
    if (!String(url).includes("/socket/sse")) return fetch(url, init);
    if (blocked) return new Response("<html>502 Bad Gateway</html>", { status: 502, headers: { "Content-Type": "text/html" } });
    const ctrl = new AbortController();
    init.signal?.addEventListener("abort", () => ctrl.abort());
    live = ctrl;
    return fetch(url, { ...init, signal: ctrl.signal });
  };
  const sockets = [];
  const Tracked = class extends WebSocket {
    constructor(url) { super(url); sockets.push(this); }
  };
  const c = connect({ url: EDGE, token: mint(u), fetch: faulty, WebSocket: Tracked, ...fast });
  const r = record(c);
  try {
    await until("connected on sse", () => r.connected.length === 1);
    assert.equal(c.transport, "sse");
    const want = [];
    for (let i = 0; i < 3; i++) want.push(await post(u, { i }));
    await until("3 messages", () => r.ids.length === 3);
    blocked = true;
    live.abort();
    for (let i = 3; i < 6; i++) want.push(await post(u, { i }));
    await until("connected on websocket", () => r.connected.length === 2);
    for (let i = 6; i < 9; i++) want.push(await post(u, { i }));
    await until("9 messages", () => r.ids.length >= 9);
    assert.deepEqual(r.connected, ["sse", "websocket"]);
    // The proxy is fixed; the socket breaks (closed under the client):
    // the client tries SSE first again, and it works.
    blocked = false;
    sockets.at(-1).close(4000, "network change");
    for (let i = 9; i < 11; i++) want.push(await post(u, { i }));
    await until("connected on sse again", () => r.connected.length === 3);
    for (let i = 11; i < 13; i++) want.push(await post(u, { i }));
    await until("13 messages", () => r.ids.length >= 13);
    assert.deepEqual(r.connected, ["sse", "websocket", "sse"]);
    assert.deepEqual(r.ids, want);
    assert.deepEqual([r.gaps, r.dups, r.errors], [[], [], []]);
    const reasons = r.events.filter(([e]) => e === "reconnecting").map(([, x]) => x.reason);
    assert.ok(reasons.some((x) => x.includes("502")), `reconnect reasons ${JSON.stringify(reasons)}`);
  } finally {
    c.close();
  }
});

test("nginx answering /socket/sse with 502: the client ends on WebSocket with every message", { skip: skip || (!BLOCKED && "needs RIG_SSE_BLOCKED_URL") }, async () => {
  const u = user("blocked");
  const c = connect({ url: BLOCKED, token: mint(u), ...fast });
  const r = record(c);
  try {
    await until("connected", () => r.connected.length === 1);
    assert.deepEqual(r.connected, ["websocket"]);
    const want = [];
    for (let i = 0; i < 5; i++) want.push(await post(u, { i }));
    await until("5 messages", () => r.ids.length >= 5);
    assert.deepEqual(r.ids, want);
  } finally {
    c.close();
  }
});

test("an SSE stream silent for idleTimeout counts as dead: reconnected, resumed, nothing lost or twice", { skip }, async () => {
  // The edges send a heartbeat every second (HEARTBEAT_INTERVAL=1s); 300 ms
  // of silence is then bound to happen between two of them.
  const u = user("idle");
  const c = connect({ url: EDGE, token: mint(u), transports: ["sse"], idleTimeout: 300, ...fast });
  const r = record(c);
  try {
    await until("connected", () => r.connected.length === 1);
    const want = [];
    for (let i = 0; i < 3; i++) want.push(await post(u, { i }));
    await until("a reconnect after silence", () => r.events.some(([e, x]) => e === "reconnecting" && /nothing for 300 ms/.test(x.reason)));
    for (let i = 3; i < 6; i++) want.push(await post(u, { i }));
    await until("6 messages", () => r.ids.length >= 6);
    assert.deepEqual(r.ids, want);
    assert.ok(r.connected.length >= 2, `connections ${r.connected}`);
    assert.deepEqual([r.gaps, r.dups, r.errors], [[], [], []]);
  } finally {
    c.close();
  }
});

test("401 without getToken: one error, the client stops, no retry loop", { skip }, async () => {
  for (const transport of ["sse", "websocket", "longpoll"]) {
    let requests = 0;
    const counting = (url, init) => { requests++; return fetch(url, init); };
    const c = connect({ url: EDGE, token: mint("alice", { secret: "not-the-edges-secret-0123456789" }), transports: [transport], fetch: counting, ...fast });
    const r = record(c);
    await until(`${transport}: closed`, () => r.closed !== null);
    assert.equal(r.errors.length, 1, transport);
    assert.equal(r.errors[0].status, 401, transport);
    assert.match(r.errors[0].message, /401/);
    assert.equal(c.state, "closed");
    const n = requests;
    await new Promise((res) => setTimeout(res, 300)); // nothing more may happen: check it did not
    assert.equal(requests, n, `${transport}: requests after the stop`);
    assert.ok(n <= 1, `${transport}: ${n} requests`);
  }
});

test("401 with getToken: a fresh token, then connected; a getToken that keeps failing stops after two tries", { skip }, async () => {
  const u = user("refresh");
  let calls = 0;
  const c = connect({ url: EDGE, token: mint(u, { secret: "wrong-secret-0123456789abcdef" }), getToken: () => { calls++; return mint(u); }, ...fast });
  const r = record(c);
  try {
    await until("connected", () => r.connected.length === 1);
    assert.equal(calls, 1);
    const id = await post(u);
    await until("the message", () => r.ids.length === 1);
    assert.deepEqual(r.ids, [id]);
  } finally {
    c.close();
  }

  let bad = 0;
  const d = connect({ url: EDGE, getToken: async () => { bad++; return mint(u, { secret: "wrong-secret-0123456789abcdef" }); }, ...fast });
  const rd = record(d);
  await until("closed", () => rd.closed !== null);
  assert.equal(bad, 2);
  assert.equal(rd.errors[0].status, 401);
});

test("403 and 400 stop with an error on every transport (WebSocket learns the status from its probe)", { skip }, async () => {
  for (const transport of ["sse", "websocket", "longpoll"]) {
    for (const [users, status] of [[["someone-else"], 403], [[""], 400]]) {
      const c = connect({ url: EDGE, token: mint(user("me")), users, transports: [transport], ...fast });
      const r = record(c);
      await until(`${transport} ${status}: closed`, () => r.closed !== null);
      assert.equal(r.errors.length, 1);
      assert.equal(r.errors[0].status, status, `${transport}: ${r.errors[0].message}`);
      assert.equal(r.connected.length, 0);
    }
  }
});

test("token_expired: getToken's fresh token, resumed without loss or duplicate", { skip }, async () => {
  for (const transport of ["sse", "websocket"]) {
    const u = user("exp");
    let calls = 0;
    const c = connect({ url: EDGE, token: mint(u, { ttl: 4 }), getToken: () => { calls++; return mint(u); }, transports: [transport], ...fast });
    const r = record(c);
    try {
      await until("connected", () => r.connected.length === 1);
      assert.equal(calls, 0, "connected with the first token");
      const want = [await post(u, { n: 1 })];
      await until("token_expired", () => r.events.some(([e]) => e === "token_expired"), 15000);
      want.push(await post(u, { n: 2 }));
      await until("connected again", () => r.connected.length === 2);
      want.push(await post(u, { n: 3 }));
      await until("3 messages", () => r.ids.length >= 3);
      assert.deepEqual(r.ids, want);
      assert.equal(calls, 1);
      assert.deepEqual([r.gaps, r.dups, r.errors], [[], [], []]);
    } finally {
      c.close();
    }
  }
});

test("token_expired without getToken: the event, then the client stops", { skip }, async () => {
  const c = connect({ url: EDGE, token: mint(user("exp"), { ttl: 4 }), transports: ["websocket"], ...fast });
  const r = record(c);
  await until("closed", () => r.closed !== null, 15000);
  assert.deepEqual(r.events.map(([e]) => e), ["token_expired"]);
  assert.match(r.closed.reason, /token_expired/);
});

test("session_killed: the event, then the client stops", { skip }, async () => {
  for (const transport of ["sse", "websocket", "longpoll"]) {
    const jti = randomUUID();
    const c = connect({ url: EDGE, token: mint(user("kill"), { jti }), transports: [transport], ...fast });
    const r = record(c);
    await until("connected", () => r.connected.length === 1);
    const res = await fetch(INGEST + "/v1/session-blacklist", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sessionId: jti, validityInSeconds: 60 }),
    });
    assert.equal(res.status, 201);
    await until(`${transport}: closed`, () => r.closed !== null);
    if (transport === "longpoll" && r.events.length === 0) {
      // Killed between two polls: the next one is refused instead.
      assert.equal(r.errors[0]?.status, 401);
      assert.match(r.errors[0].message, /blacklisted/);
    } else {
      assert.deepEqual(r.events.map(([e]) => e), ["session_killed"], transport);
    }
    assert.equal(c.state, "closed");
  }
});

test("a resume id history does not hold: a gap event, then the messages", { skip }, async () => {
  for (const transport of ["sse", "websocket", "longpoll"]) {
    const u = user("gap");
    const c = connect({ url: EDGE, token: mint(u), transports: [transport], lastEventId: "01ARZ3NDEKTSV4RRFFQ69G5FAV", ...fast });
    const r = record(c);
    try {
      const id = await post(u);
      await until("the message", () => r.ids.length === 1);
      assert.deepEqual(r.gaps, ["01ARZ3NDEKTSV4RRFFQ69G5FAV"], transport);
      assert.deepEqual(r.ids, [id]);
    } finally {
      c.close();
    }
  }
});

test("429 (MAX_CONNECTIONS_PER_USER=2): the client backs off and connects once a stream is free", { skip }, async () => {
  const u = user("crowd");
  const a = connect({ url: EDGE, token: mint(u), transports: ["sse"], ...fast });
  const b = connect({ url: EDGE, token: mint(u), transports: ["sse"], ...fast });
  const ra = record(a), rb = record(b);
  await until("two connected", () => ra.connected.length + rb.connected.length === 2);
  const c = connect({ url: EDGE, token: mint(u), transports: ["sse"], ...fast });
  const rc = record(c);
  try {
    await until("a 429", () => rc.events.some(([e, x]) => e === "reconnecting" && x.reason.includes("429")));
    const waits = rc.events.filter(([e]) => e === "reconnecting").map(([, x]) => x.delay);
    assert.ok(waits[0] >= 1000, `delay after a 429 with Retry-After: ${waits[0]} ms`);
    assert.equal(rc.connected.length, 0);
    a.close();
    await until("connected after the 429s", () => rc.connected.length === 1, 30000);
    assert.equal(rc.errors.length, 0);
  } finally {
    a.close(); b.close(); c.close();
  }
});
