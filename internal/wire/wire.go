// Package wire encodes events as the JSON objects the WebSocket and
// long-polling transports send: {"event":"message","id":"...","data":<payload>}.
// Each event is encoded once and the bytes are shared by every connection.
package wire

import (
	"bytes"
	"encoding/json"

	"github.com/rig-go/rig/internal/rig"
)

// JSON returns ev as one JSON object: its kind as "event", its id as "id"
// (messages, and any other event that has one), and its data as "data". A
// gap event's data is the id the client asked for, as SSE sends it.
func JSON(ev *rig.Event) []byte {
	var b bytes.Buffer
	b.Grow(len(ev.Data) + len(ev.ID) + 32)
	b.WriteString(`{"event":`)
	b.Write(String(ev.Kind.String()))
	if ev.ID != "" && ev.Kind != rig.KindGap {
		b.WriteString(`,"id":`)
		b.Write(String(ev.ID))
	}
	b.WriteString(`,"data":`)
	if ev.Kind == rig.KindGap {
		b.Write(String(ev.ID))
	} else {
		b.Write(Value(ev.Data))
	}
	b.WriteByte('}')
	return b.Bytes()
}

// Encoded returns ev's JSON encoding, computed once per event.
func Encoded(ev *rig.Event) []byte { return ev.Encoded(rig.FormatJSON, JSON) }

// Value returns data as a JSON value: the bytes themselves when they are
// valid JSON (what ingest stores is always an object), else a JSON string
// holding them, so a direct NATS publisher's text or binary payload still
// yields a valid frame. Invalid UTF-8 in such a string becomes U+FFFD.
func Value(data []byte) []byte {
	if len(data) > 0 && json.Valid(data) {
		return data
	}
	return String(string(data))
}

// String returns s as a JSON string.
func String(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
