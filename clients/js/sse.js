// The SSE parser of the client's fetch transport. EventSource cannot be
// used: it hides the status of a refused stream (401, 403 and 429 look the
// same to it), and Node 20 has none. This follows the WHATWG "event stream
// interpretation" rules, fed with text in arbitrary chunks.

/**
 * Parses a text/event-stream body. push() takes decoded text as it arrives
 * and calls emit({event, id, data, retry}) for every complete event, id
 * being the id: field of that event's own block (undefined if it had none).
 */
export class SSEParser {
  /** @param {(ev: {event: string, id: string | undefined, data: string, retry: number | undefined}) => void} emit */
  constructor(emit) {
    this.emit = emit;
    this.buf = "";
    this.started = false;
    // A chunk that ended in \r: a \n at the start of the next one belongs
    // to the same line break.
    this.skipLF = false;
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = "";
    this.id = undefined;
    this.retry = undefined;
  }

  /** @param {string} text */
  push(text) {
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.skipLF && text.startsWith("\n")) text = text.slice(1);
    this.skipLF = false;
    this.buf += text;
    let start = 0;
    for (;;) {
      const cr = this.buf.indexOf("\r", start);
      const lf = this.buf.indexOf("\n", start);
      let end;
      if (cr < 0 && lf < 0) break;
      if (cr < 0 || (lf >= 0 && lf < cr)) end = lf;
      else end = cr;
      this.line(this.buf.slice(start, end));
      start = end + 1;
      if (end === cr) {
        if (start < this.buf.length) {
          if (this.buf[start] === "\n") start++;
        } else {
          this.skipLF = true;
        }
      }
    }
    this.buf = this.buf.slice(start);
  }

  /** How much text is held for the event being read: a bound against a stream that never ends an event. */
  get pending() {
    return this.buf.length + this.data.length;
  }

  /** @param {string} line */
  line(line) {
    if (line === "") {
      if (this.data !== "") {
        this.emit({ event: this.event || "message", id: this.id, data: this.data.slice(0, -1), retry: this.retry });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    let field = line, value = "";
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
    }
    switch (field) {
      case "event": this.event = value; break;
      case "data": this.data += value + "\n"; break;
      case "id": if (!value.includes("\0")) this.id = value; break;
      case "retry": if (/^[0-9]+$/.test(value)) this.retry = Number(value); break;
      default: break; // unknown fields are ignored, as the spec says
    }
  }
}
