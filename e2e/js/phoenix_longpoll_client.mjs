// Drives the official phoenix JavaScript client over its LongPoll
// transport against a RIG-Go edge (or a proxy in front of edges), and
// prints one JSON line per thing that happens for the Go test that runs it
// (e2e/phoenix_longpoll_test.go) to check:
//
//   EDGE_URL=http://127.0.0.1:4000 TOKEN=<alice's JWT> USER=alice OTHER_USER=bob \
//     MODE=longpoll node phoenix_longpoll_client.mjs
//
// MODE=longpoll forces the LongPoll transport (Node 20 has no global
// WebSocket, so phoenix.js would pick it anyway); MODE=fallback starts on
// a WebSocket (the ws package) with longPollFallbackMs, as a page whose
// proxy breaks WebSockets does. The channel of user:$USER resumes after
// the last message it got (last_event_id in its join params), as the
// README tells a front-end to; OTHER_USER's join is expected to be
// refused. It runs until the test kills it.
import { Socket, LongPoll } from "phoenix";
import WebSocket from "ws";

const { EDGE_URL, TOKEN, USER, OTHER_USER } = process.env;
const mode = process.env.MODE || "longpoll";

function emit(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

const opts = {
  params: { token: TOKEN },
  reconnectAfterMs: () => 200,
  rejoinAfterMs: () => 200,
  logger: (kind, msg, data) => {
    if (kind === "transport") emit({ event: "log", kind, msg: String(msg) });
  },
};
if (mode === "fallback") {
  opts.transport = WebSocket;
  opts.longPollFallbackMs = 500;
} else {
  opts.transport = LongPoll;
}
const socket = new Socket(`${EDGE_URL}/socket`, opts);
socket.onOpen(() => emit({ event: "open", transport: socket.transportName(socket.transport) }));
socket.onError((err) => emit({ event: "socket_error", error: String((err && err.message) || err) }));
socket.onClose((e) => emit({ event: "close", code: e && e.code }));
socket.connect();

let last = null;
const own = socket.channel(`user:${USER}`, () => (last ? { last_event_id: last } : {}));
own.on("message", (payload, id) => {
  last = id;
  emit({ event: "message", topic: own.topic, id, payload });
});
for (const ev of ["session_killed", "token_expired", "gap"]) {
  own.on(ev, (payload) => emit({ event: ev, topic: own.topic, payload }));
}
own.join()
  .receive("ok", (resp) => {
    // A fresh join says where it starts: a rejoin before any message
    // resumes from there.
    if (!last && resp && resp.last_event_id) last = resp.last_event_id;
    emit({ event: "joined", topic: own.topic, response: resp });
  })
  .receive("error", (resp) => emit({ event: "join_error", topic: own.topic, response: resp }))
  .receive("timeout", () => emit({ event: "join_timeout", topic: own.topic }));

if (OTHER_USER) {
  const other = socket.channel(`user:${OTHER_USER}`);
  other.join()
    .receive("ok", (resp) => emit({ event: "joined", topic: other.topic, response: resp }))
    .receive("error", (resp) => {
      emit({ event: "join_error", topic: other.topic, response: resp });
      other.leave(); // phoenix.js would retry a refused join forever
    });
}
