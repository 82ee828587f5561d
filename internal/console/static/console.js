// The operator's console. Every figure comes from ingest's /v1 API with the
// token typed into the login form; the token is kept in sessionStorage (this
// tab only) and sent in the Authorization header, never in a URL. Every
// value from the API is written with textContent, never as HTML: a user
// name or a route id is data, not markup.

import { Charts } from "./charts.js";

const TOKEN_KEY = "rig-console-token";
const PAGE = 50;
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let cursors = [""]; // cursors[i] is the cursor of page i; the last is the page shown
let nextCursor = "";
let timers = [];

class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// api calls ingest and returns the answer's JSON, or throws an APIError
// with the status and the API's own one-line message.
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
  } catch (e) {
    throw new APIError(0, "cannot reach ingest: " + e.message);
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const msg = (data && data.error) || text || resp.statusText;
    const err = new APIError(resp.status, `${resp.status} ${msg}`);
    if (resp.status === 401 || resp.status === 403) refused(err);
    throw err;
  }
  return data;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.append(c);
    else td.textContent = c === undefined || c === null || c === "" ? "-" : String(c);
    tr.append(td);
  }
  return tr;
}

function when(t) {
  if (!t || t.startsWith("0001-")) return "-";
  const d = new Date(t);
  return isNaN(d) ? t : d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

function inFrom(t) {
  if (!t || t.startsWith("0001-")) return "";
  const s = Math.round((new Date(t) - Date.now()) / 1000);
  if (s <= 0) return " (expired)";
  if (s < 120) return ` (in ${s}s)`;
  if (s < 7200) return ` (in ${Math.round(s / 60)}m)`;
  return ` (in ${Math.round(s / 3600)}h)`;
}

function say(id, text, state) {
  const e = $(id);
  e.textContent = text;
  e.dataset.state = state || "";
}

// refused is any 401/403: the token is forgotten and the form says why.
function refused(err) {
  stop();
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").dataset.state = document.body.dataset.auth = "out";
  $("logout").hidden = true;
  const why = err.status === 401 ? "this ingest wants a token" : "this token is not one of ingest's API_TOKENS";
  say("auth-status", `Refused (${why}): ${err.message}`, "error");
}

function stop() {
  timers.forEach(clearInterval);
  timers = [];
  charts.stop();
}

async function login(t) {
  token = t;
  say("auth-status", "Checking the token…", "");
  try {
    await api("GET", "/v1/admin/health");
  } catch (e) {
    if (e.status !== 401 && e.status !== 403) say("auth-status", `Cannot log in: ${e.message}`, "error");
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  $("logout").hidden = false;
  $("app").dataset.state = document.body.dataset.auth = "in";
  say("auth-status", "Logged in. The token is kept in this tab until you log out or close it.", "ok");
  cursors = [""];
  await Promise.allSettled([loadSessions(), loadRoutes(), loadHealth()]);
  stop();
  timers.push(setInterval(() => loadSessions().catch(() => {}), 2000));
  timers.push(setInterval(() => loadHealth().catch(() => {}), 5000));
  charts.start();
}

function logout() {
  stop();
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").dataset.state = document.body.dataset.auth = "out";
  $("logout").hidden = true;
  say("auth-status", "Logged out.", "");
}

// ---- Online now

let loadingSessions = null;

async function loadSessions() {
  if (loadingSessions) return loadingSessions; // one listing at a time
  loadingSessions = (async () => {
    const p = new URLSearchParams({ limit: String(PAGE) });
    const q = $("q").value;
    if (q) p.set("q", q);
    const cur = cursors[cursors.length - 1];
    if (cur) p.set("cursor", cur);
    let page;
    try {
      page = await api("GET", "/v1/admin/sessions?" + p);
    } catch (e) {
      say("sessions-summary", `Cannot list sessions: ${e.message}`, "error");
      throw e;
    }
    renderSessions(page);
  })();
  try {
    return await loadingSessions;
  } finally {
    loadingSessions = null;
  }
}

function renderSessions(page) {
  const body = $("sessions").tBodies[0];
  const rows = [];
  for (const s of page.sessions || []) {
    const kill = el("button", "Kill", "danger");
    kill.type = "button";
    kill.dataset.jti = s.jti;
    kill.addEventListener("click", () => killSession(s, kill));
    const tr = row([s.user, s.jti, s.transport, s.edge, s.remote, when(s.connectedSince), when(s.expires) + inFrom(s.expires), kill]);
    tr.dataset.jti = s.jti;
    tr.dataset.user = s.user;
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const first = (cursors.length - 1) * PAGE;
  const n = (page.sessions || []).length;
  let text = n ? `${first + 1}-${first + n} of ${page.total} sessions, from ${page.edges} edge(s)` : `no session${$("q").value ? " matches" : " is open"} (${page.edges} edge(s))`;
  if (!page.complete) text += ". Incomplete: an edge did not answer in time.";
  say("sessions-summary", text, page.complete ? "" : "error");
  nextCursor = page.next || "";
  $("next").disabled = !nextCursor;
  $("prev").disabled = cursors.length <= 1;
}

async function killSession(s, button) {
  let validity = $("kill-for").value;
  if (validity === "token") {
    const left = s.expires && !s.expires.startsWith("0001-") ? Math.ceil((new Date(s.expires) - Date.now()) / 1000) : 0;
    if (left <= 0) {
      say("kill-result", `Session ${s.jti} has no token expiry: choose how long to kill it for.`, "error");
      return;
    }
    validity = left;
  }
  button.disabled = true;
  try {
    await api("POST", "/v1/session-blacklist", JSON.stringify({ sessionId: s.jti, validityInSeconds: Number(validity) }));
  } catch (e) {
    button.disabled = false;
    say("kill-result", `Cannot kill ${s.jti}: ${e.message}`, "error");
    return;
  }
  say("kill-result", `Killed ${s.user}'s session ${s.jti} for ${validity}s: its connections are being closed.`, "ok");
  // The listing drops the session once its edges closed it.
  await loadSessions().catch(() => {});
}

// ---- Send

async function send(ev) {
  ev.preventDefault();
  const user = $("send-user").value.trim();
  const field = $("user-field").value.trim() || "user";
  let msg;
  try {
    msg = JSON.parse($("send-body").value);
  } catch (e) {
    say("send-result", `The message is not JSON: ${e.message}`, "error");
    return;
  }
  if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
    say("send-result", "The message must be a JSON object.", "error");
    return;
  }
  msg[field] = user;
  const wait = SEND_WAIT_SECONDS;
  say("send-result", `Sending, and waiting up to ${wait} s for the edges' delivery receipts…`, "");
  delete $("send-result").dataset.id;
  $("receipts").replaceChildren();
  $("receipts-wrap").hidden = true;
  try {
    const r = await api("POST", `/v1/admin/messages?wait=${wait}s`, JSON.stringify(msg));
    $("send-result").dataset.id = r.id;
    showReceipts(r, wait);
  } catch (e) {
    say("send-result", `Not sent: ${e.message}`, "error");
  }
}

// SEND_WAIT_SECONDS is how long a test send waits for receipts; the answer
// comes sooner once every connection of the user confirmed.
const SEND_WAIT_SECONDS = 5;

// showReceipts says how many of the user's connections (as presence listed
// them when the message was sent) their edges confirmed, and lists each
// receipt and each connection that did not confirm.
function showReceipts(r, wait) {
  const note = r.complete ? "" : " (an edge did not answer presence: there may be more)";
  const who = (c) => `${c.edge} ${c.transport} ${c.jti || "-"}`;
  let text, state;
  if (r.online === 0) {
    text = `Stored as ${r.id}. No connection of ${r.user} is online${note}: it waits in history for a resume.`;
    state = r.receipts.length ? "ok" : "";
  } else if (r.confirmed === r.online) {
    text = `Stored as ${r.id}. Delivered to ${r.confirmed} of ${r.online} connections${note}: ${r.receipts.map(who).join(", ")}`;
    state = "ok";
  } else {
    text = `Stored as ${r.id}. ${r.confirmed} of ${r.online} connections confirmed after ${wait} s${note}; not confirmed: ${r.unconfirmed.map(who).join(", ")}`;
    state = "error";
  }
  say("send-result", text, state);
  const rows = [];
  for (const c of r.receipts) {
    rows.push(row([el("span", "confirmed", "badge ok"), c.edge, c.transport, c.jti, c.user, c.conn, when(c.at)]));
  }
  for (const c of r.unconfirmed) {
    rows.push(row([el("span", "not confirmed", "badge bad"), c.edge, c.transport, c.jti, c.user, c.conn, "-"]));
  }
  $("receipts").replaceChildren(...rows);
  $("receipts-wrap").hidden = rows.length === 0;
}

// ---- Routes

const TEMPLATE = {
  id: "my-route",
  version_data: { default: { endpoints: [{ id: "e1", path: "/my-route", method: "GET", not_secured: true }] } },
  proxy: { target_url: "http://backend.example", port: 80 },
};

async function loadRoutes() {
  let list;
  try {
    list = await api("GET", "/v1/apis");
  } catch (e) {
    say("route-result", `Cannot list routes: ${e.message}`, "error");
    throw e;
  }
  const rows = [];
  for (const r of list || []) {
    const eps = [];
    for (const [version, vd] of Object.entries(r.version_data || {})) {
      for (const ep of vd.endpoints || []) eps.push(`${ep.method || "?"} ${ep.path}${version === "default" ? "" : ` (${version})`}`);
    }
    const p = r.proxy || {};
    const target = (p.target_url || "") + (p.port ? `:${p.port}` : "");
    const source = el("span", r.source, "badge " + (r.source === "file" ? "file" : "runtime"));
    const edit = el("button", "Edit");
    edit.type = "button";
    edit.addEventListener("click", () => {
      const def = { ...r };
      delete def.source;
      $("route-json").value = JSON.stringify(def, null, 2);
      say("route-result", `Editing ${r.id}: change the JSON and Save (PUT).`, "");
      $("route-json").focus();
    });
    const remove = el("button", "Remove", "danger");
    remove.type = "button";
    remove.addEventListener("click", () => removeRoute(r.id, remove));
    const actions = el("span", null, "actions");
    actions.append(edit, remove);
    const tr = row([r.id, source, eps.join(", "), target, actions]);
    tr.dataset.id = r.id;
    tr.dataset.source = r.source;
    rows.push(tr);
  }
  $("route-table").tBodies[0].replaceChildren(...rows);
}

function routeJSON() {
  const text = $("route-json").value;
  let def;
  try {
    def = JSON.parse(text);
  } catch (e) {
    say("route-result", `The definition is not JSON: ${e.message}`, "error");
    return null;
  }
  return { text, id: def && typeof def === "object" ? def.id : undefined };
}

async function saveRoute(method) {
  const d = routeJSON();
  if (!d) return;
  if (method === "PUT" && (typeof d.id !== "string" || d.id === "")) {
    say("route-result", 'Save (PUT) needs the definition\'s "id".', "error");
    return;
  }
  const path = method === "PUT" ? "/v1/apis/" + encodeURIComponent(d.id) : "/v1/apis";
  try {
    const r = await api(method, path, d.text);
    say("route-result", `${method === "POST" ? "Added" : "Saved"} route ${(r && r.id) || d.id}.`, "ok");
  } catch (e) {
    say("route-result", `${method} ${path}: ${e.message}`, "error");
    return;
  }
  await loadRoutes().catch(() => {});
}

async function removeRoute(id, button) {
  // Two clicks: a route taken away by a slip breaks its callers.
  if (button.dataset.armed !== "1") {
    button.dataset.armed = "1";
    button.textContent = "Really remove?";
    return;
  }
  try {
    await api("DELETE", "/v1/apis/" + encodeURIComponent(id));
    say("route-result", `Removed route ${id}.`, "ok");
  } catch (e) {
    say("route-result", `DELETE /v1/apis/${id}: ${e.message}`, "error");
    button.dataset.armed = "";
    button.textContent = "Remove";
    return;
  }
  await loadRoutes().catch(() => {});
}

// ---- Health

function state(ok, text) {
  return el("span", text, "badge " + (ok ? "ok" : "bad"));
}

async function loadHealth() {
  let h;
  try {
    h = await api("GET", "/v1/admin/health");
  } catch (e) {
    say("health-status", e.message, "error");
    throw e;
  }
  say("health-status", h.status, h.status === "ok" ? "ok" : "error");
  const comps = [];
  const ing = h.ingest || {};
  comps.push(row(["ingest", state(ing.status === "ok", ing.status), [ing.nats, ing.detail].filter(Boolean).join(", ")]));
  const n = h.nats || {};
  const srv = [n.serverName, n.connected, n.cluster ? `cluster ${n.cluster}` : "", n.rtt ? `rtt ${n.rtt}` : "",
    (n.servers || []).length ? `knows ${n.servers.join(" ")}` : "", (n.discovered || []).length ? `discovered ${n.discovered.join(" ")}` : "", n.error]
    .filter(Boolean).join(", ");
  comps.push(row(["nats", state(n.status === "connected" || n.status === "CONNECTED", n.status), srv]));
  for (const e of h.edges || []) {
    const st = e.status;
    const ready = !!(st && st.ready);
    const detail = st ? `${st.connections} connections${st.detail ? ", " + st.detail : ""}` : "no status yet";
    comps.push(row([`edge ${e.edge}`, state(ready, ready ? "ready" : "not ready"), `${detail}, heard ${when(e.lastSeen)}`]));
  }
  $("components").tBodies[0].replaceChildren(...comps);
  const streams = [];
  for (const s of h.streams || []) {
    const peers = (s.peers || []).map((p) => `${p.name} ${p.offline ? "offline" : p.current ? "current" : "lagging"}${p.lag ? ` lag ${p.lag}` : ""}${p.active ? ` ${p.active}` : ""}`).join("; ");
    streams.push(row([s.name, s.role, state(s.ok, s.ok ? "ok" : s.error || "not ok"), s.replicas, s.leader, peers, s.messages, s.bytes]));
  }
  $("streams").tBodies[0].replaceChildren(...streams);
}

// ---- Wiring

const charts = new Charts($("chart-grid"), api);

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("token").value.trim();
  if (!t) {
    say("auth-status", "Type one of ingest's API_TOKENS first.", "error");
    return;
  }
  // fetch refuses a header value beyond Latin-1 with a TypeError that
  // would read as "cannot reach ingest"; say what is wrong instead.
  if (!/^[\x21-\x7e]+$/.test(t)) {
    say("auth-status", "An API token is printable ASCII without spaces: check what you typed.", "error");
    return;
  }
  login(t);
});
$("logout").addEventListener("click", logout);
$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  cursors = [""];
  loadSessions().catch(() => {});
});
$("next").addEventListener("click", () => {
  if (!nextCursor) return;
  cursors.push(nextCursor);
  loadSessions().catch(() => {});
});
$("prev").addEventListener("click", () => {
  if (cursors.length > 1) cursors.pop();
  loadSessions().catch(() => {});
});
$("send-form").addEventListener("submit", send);
$("route-add").addEventListener("click", () => saveRoute("POST"));
$("route-save").addEventListener("click", () => saveRoute("PUT"));
$("route-template").addEventListener("click", () => {
  $("route-json").value = JSON.stringify(TEMPLATE, null, 2);
});
$("route-json").value = JSON.stringify(TEMPLATE, null, 2);
if (token) login(token);
