// Drives the official phoenix JavaScript client against a RIG-Go edge, the
// way a RIG front-end does, and prints one JSON line per thing that happens
// for the Go test that runs it (e2e/phoenixjs_test.go) to check:
//
//   EDGE_URL=ws://127.0.0.1:4000 TOKEN=<alice's JWT> USER=alice OTHER_USER=bob node phoenix_client.mjs
//
// It joins user:$USER and user:$OTHER_USER, prints every message of the
// first, and exits once it has a message and a heartbeat reply (or fails
// after TIMEOUT_MS).
import { Socket } from "phoenix";
import WebSocket from "ws";

const { EDGE_URL, TOKEN, USER, OTHER_USER } = process.env;
const timeoutMs = Number(process.env.TIMEOUT_MS || 30000);

function emit(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

setTimeout(() => {
  emit({ event: "timeout", after_ms: timeoutMs });
  process.exit(1);
}, timeoutMs).unref();

// Node 20 has no global WebSocket; phoenix.js takes any WebSocket class.
const socket = new Socket(`${EDGE_URL}/socket`, {
  transport: WebSocket,
  params: { token: TOKEN },
  heartbeatIntervalMs: 500,
});
socket.onOpen(() => emit({ event: "open" }));
socket.onError((err) => emit({ event: "socket_error", error: String(err && err.message || err) }));
let gotMessage = false;
let gotHeartbeat = false;
function maybeDone() {
  if (gotMessage && gotHeartbeat) socket.disconnect(() => process.exit(0));
}
socket.onMessage((msg) => {
  if (msg.topic === "phoenix" && msg.event === "phx_reply" && msg.payload.status === "ok" && !gotHeartbeat) {
    gotHeartbeat = true;
    emit({ event: "heartbeat_ok" });
    maybeDone();
  }
});
socket.connect();

const own = socket.channel(`user:${USER}`);
own.on("message", (payload, id) => {
  emit({ event: "message", topic: own.topic, id, payload });
  gotMessage = true;
  maybeDone();
});
own.join()
  .receive("ok", (resp) => emit({ event: "joined", topic: own.topic, response: resp }))
  .receive("error", (resp) => emit({ event: "join_error", topic: own.topic, response: resp }));

const other = socket.channel(`user:${OTHER_USER}`);
other.join()
  .receive("ok", (resp) => emit({ event: "joined", topic: other.topic, response: resp }))
  .receive("error", (resp) => {
    emit({ event: "join_error", topic: other.topic, response: resp });
    other.leave(); // phoenix.js would retry a refused join forever
  });
