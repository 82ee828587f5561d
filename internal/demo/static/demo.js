// The demo page: one clients/js connection for the user of the token in the
// URL's fragment (#token=..., which browsers never send to a server), its
// state on the status line, its events in a list, and a form that sends a
// message through the edge's POST /demo/messages.
import { connect } from "./client/index.js";

const $ = (id) => document.getElementById(id);
const hash = new URLSearchParams(location.hash.slice(1));
const query = new URLSearchParams(location.search);

function time() {
  const t = document.createElement("time");
  t.textContent = new Date().toLocaleTimeString();
  return t;
}

function log(text, error) {
  const li = document.createElement("li");
  li.append(time(), text);
  if (error) li.className = "log-error";
  $("log").prepend(li);
}

// The token's user, for the page's title and the form's default only: the
// edge verifies the token, the page cannot.
function userOf(token) {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(b64));
    return typeof claims.user === "string" ? claims.user : claims.sub;
  } catch {
    return undefined;
  }
}

const token = hash.get("token");
if (!token) {
  $("token-form").hidden = false;
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = new URLSearchParams({ token: $("token").value.trim() }).toString();
    location.reload();
  });
} else {
  start(token);
}

function start(token) {
  const user = userOf(token) ?? "?";
  $("who").textContent = "";
  $("who").append("You are ", Object.assign(document.createElement("b"), { textContent: user }),
    ": this page receives ", user, "'s messages, live.");
  document.title = `RIG-Go demo: ${user}`;

  // ?transport=websocket keeps the client on one transport.
  const only = query.get("transport");
  const nav = $("transports");
  nav.hidden = false;
  for (const a of nav.querySelectorAll("a")) {
    const q = a.dataset.transport ? `?transport=${a.dataset.transport}` : "";
    a.href = `${location.pathname}${q}${location.hash}`;
    if ((a.dataset.transport || null) === only) a.setAttribute("aria-current", "true");
  }

  const client = connect({
    url: location.origin,
    token,
    transports: only ? [only] : undefined,
    backoff: { min: 250, max: 5000 },
  });
  let connections = 0;
  let gaps = 0;
  const status = (state, text) => {
    $("status").dataset.state = state;
    $("state").textContent = text;
    $("via").hidden = state !== "connected";
  };
  const showLast = () => { $("last-id").textContent = client.lastEventId || "none"; };
  status("connecting", "connecting");

  client.on("connected", ({ transport }) => {
    connections++;
    $("reconnects").textContent = String(connections - 1);
    $("transport").textContent = transport;
    status("connected", "connected");
    showLast();
    log(`connected via ${transport}, resuming after ${client.lastEventId || "nothing"}`);
  });
  client.on("message", ({ id, data }) => {
    const li = document.createElement("li");
    li.dataset.id = id;
    li.className = "fresh";
    const code = Object.assign(document.createElement("code"), { textContent: id });
    if (data && typeof data === "object" && typeof data.text === "string") {
      const from = Object.assign(document.createElement("span"), { className: "from", textContent: data.from ?? "a back-end" });
      li.append(time(), from, ": ", data.text, " ", code);
    } else {
      li.append(time(), typeof data === "string" ? data : JSON.stringify(data), " ", code);
    }
    $("events").prepend(li);
    showLast();
  });
  client.on("gap", ({ id }) => {
    gaps++;
    $("gaps").textContent = String(gaps);
    const li = document.createElement("li");
    li.className = "gap";
    li.append(time(), `gap: the edge's history no longer holds everything after ${id}; messages may be missing here`);
    $("events").prepend(li);
    log(`gap after ${id}`, true);
  });
  client.on("reconnecting", ({ transport, delay, reason }) => {
    status("connecting", `reconnecting in ${Math.round(delay)} ms on ${transport}`);
    log(`connection ended (${reason}); next try in ${Math.round(delay)} ms on ${transport}`);
  });
  client.on("token_expired", () => log("the token expired: mint a new one (go tool task token -- --user " + user + ")", true));
  client.on("session_killed", () => log("the session was blacklisted", true));
  client.on("error", (err) => log(`refused (${err.status ?? "no status"}): ${err.message}`, true));
  client.on("closed", ({ reason }) => status("closed", `stopped (${reason})`));

  const form = $("send");
  form.hidden = false;
  $("to").value = user;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const result = $("send-result");
    result.className = "";
    result.textContent = "sending…";
    try {
      const resp = await fetch("messages", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ to: $("to").value, text: $("text").value }),
      });
      const body = await resp.json().catch(() => ({}));
      if (resp.status === 202) {
        result.textContent = `sent: ${body.id}`;
        result.dataset.id = body.id;
        $("text").value = "";
      } else {
        result.className = "error";
        result.textContent = `not sent (${resp.status}): ${body.error ?? resp.statusText}`;
      }
    } catch (err) {
      result.className = "error";
      result.textContent = `not sent: ${err.message} (is the edge running?)`;
    }
  });
}
