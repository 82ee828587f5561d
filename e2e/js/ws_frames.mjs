// Reads a plain RIG-Go WebSocket with Node's `ws` package, which, like a
// browser, refuses a text frame that is not valid UTF-8 (it closes the
// socket with 1007, and the page would see 1006). Prints one JSON line per
// frame and one for the close, for e2e/hostile_ids_test.go:
//
//   WS_URL='ws://127.0.0.1:4000/socket/websocket?token=...' FRAMES=2 node ws_frames.mjs
//
// It exits after FRAMES frames, at the close, or after TIMEOUT_MS.
import WebSocket from "ws";

const { WS_URL } = process.env;
const frames = Number(process.env.FRAMES || 1);
const timeoutMs = Number(process.env.TIMEOUT_MS || 15000);

function emit(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

setTimeout(() => {
  emit({ event: "timeout", after_ms: timeoutMs });
  process.exit(1);
}, timeoutMs).unref();

let seen = 0;
const ws = new WebSocket(WS_URL);
ws.on("message", (data, isBinary) => {
  emit({ event: "frame", binary: isBinary, text: data.toString("utf8") });
  if (++seen >= frames) {
    ws.close(1000);
    process.exit(0);
  }
});
ws.on("error", (err) => emit({ event: "socket_error", error: String(err && err.message || err) }));
ws.on("close", (code, reason) => {
  emit({ event: "close", code, reason: reason.toString() });
  process.exit(2);
});
