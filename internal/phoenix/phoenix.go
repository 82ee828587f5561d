// Package phoenix reads and writes the frames of the Phoenix channels
// protocol, which RIG's front-ends speak over /socket/websocket with the
// official phoenix JavaScript client: serializer version 1.0.0 (JSON objects
// {"topic","event","payload","ref","join_ref"}) and 2.0.0 (JSON arrays
// [join_ref, ref, topic, event, payload]).
package phoenix

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rig-go/rig/internal/rig"
	"github.com/rig-go/rig/internal/wire"
)

// Version is a serializer version of the protocol.
type Version uint8

// The serializer versions phoenix.js and Phoenix speak.
const (
	V1 Version = 1 // "1.0.0": JSON objects
	V2 Version = 2 // "2.0.0": JSON arrays; phoenix.js's default
)

// ParseVersion reads the vsn= query parameter of a socket.
func ParseVersion(vsn string) (Version, error) {
	switch vsn {
	case "1.0.0":
		return V1, nil
	case "2.0.0":
		return V2, nil
	}
	return 0, fmt.Errorf("unsupported vsn %q: expected 1.0.0 or 2.0.0", vsn)
}

// Format is the event encoding cache slot of the version.
func (v Version) Format() rig.Format {
	if v == V1 {
		return rig.FormatPhoenix1
	}
	return rig.FormatPhoenix2
}

// The protocol's reserved topic and events.
const (
	TopicPhoenix   = "phoenix" // the socket itself: heartbeats
	EventJoin      = "phx_join"
	EventLeave     = "phx_leave"
	EventReply     = "phx_reply"
	EventClose     = "phx_close"
	EventError     = "phx_error"
	EventHeartbeat = "heartbeat"
)

// Ref is a ref or join_ref as it appeared in a frame: the JSON text of a
// string or a number, kept as sent so replies echo it exactly. The empty
// Ref is null.
type Ref string

// Frame is one message in either direction.
type Frame struct {
	JoinRef Ref
	Ref     Ref
	Topic   string
	Event   string
	// Payload is a JSON value, written as it is.
	Payload json.RawMessage
}

// ErrInvalidFrame is wrapped by every error about a frame that cannot be read.
var ErrInvalidFrame = errors.New("invalid phoenix frame")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidFrame}, args...)...)
}

// Decode reads one text frame sent by a client in version v.
func Decode(v Version, data []byte) (Frame, error) {
	if v == V1 {
		return decodeV1(data)
	}
	return decodeV2(data)
}

func decodeV2(data []byte) (Frame, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil {
		return Frame{}, invalid("expected a JSON array [join_ref, ref, topic, event, payload]: %v", err)
	}
	if len(parts) != 5 {
		return Frame{}, invalid("array has %d elements, expected 5: [join_ref, ref, topic, event, payload]", len(parts))
	}
	var f Frame
	var err error
	if f.JoinRef, err = ref("join_ref", parts[0]); err != nil {
		return Frame{}, err
	}
	if f.Ref, err = ref("ref", parts[1]); err != nil {
		return Frame{}, err
	}
	if f.Topic, err = str("topic", parts[2]); err != nil {
		return Frame{}, err
	}
	if f.Event, err = str("event", parts[3]); err != nil {
		return Frame{}, err
	}
	f.Payload = parts[4]
	return f, nil
}

type frameV1 struct {
	Topic   json.RawMessage `json:"topic"`
	Event   json.RawMessage `json:"event"`
	Payload json.RawMessage `json:"payload"`
	Ref     json.RawMessage `json:"ref"`
	JoinRef json.RawMessage `json:"join_ref"`
}

func decodeV1(data []byte) (Frame, error) {
	var m frameV1
	if err := json.Unmarshal(data, &m); err != nil || bytes.TrimSpace(data)[0] != '{' {
		return Frame{}, invalid("expected a JSON object {\"topic\",\"event\",\"payload\",\"ref\"}")
	}
	var f Frame
	var err error
	if f.Topic, err = str("topic", m.Topic); err != nil {
		return Frame{}, err
	}
	if f.Event, err = str("event", m.Event); err != nil {
		return Frame{}, err
	}
	if f.Ref, err = ref("ref", m.Ref); err != nil {
		return Frame{}, err
	}
	if f.JoinRef, err = ref("join_ref", m.JoinRef); err != nil {
		return Frame{}, err
	}
	f.Payload = m.Payload
	if len(f.Payload) == 0 {
		f.Payload = json.RawMessage("null")
	}
	return f, nil
}

// ref accepts a string, a number or null (or nothing).
func ref(name string, raw json.RawMessage) (Ref, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch c := raw[0]; {
	case c == '"', c == '-', '0' <= c && c <= '9':
		return Ref(raw), nil
	}
	return "", invalid("%s must be a string, a number or null, not %.40s", name, raw)
}

func str(name string, raw json.RawMessage) (string, error) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", invalid("%s must be a string, not %.40s", name, raw)
	}
	return s, nil
}

// Encode writes f as a text frame in version v.
func Encode(v Version, f Frame) []byte {
	var b bytes.Buffer
	b.Grow(len(f.Payload) + len(f.Topic) + len(f.Event) + len(f.Ref) + len(f.JoinRef) + 64)
	payload := f.Payload
	if len(payload) == 0 {
		payload = json.RawMessage("{}")
	}
	if v == V1 {
		b.WriteString(`{"topic":`)
		b.Write(wire.String(f.Topic))
		b.WriteString(`,"event":`)
		b.Write(wire.String(f.Event))
		b.WriteString(`,"payload":`)
		b.Write(payload)
		b.WriteString(`,"ref":`)
		writeRef(&b, f.Ref)
		b.WriteString(`,"join_ref":`)
		writeRef(&b, f.JoinRef)
		b.WriteByte('}')
		return b.Bytes()
	}
	b.WriteByte('[')
	writeRef(&b, f.JoinRef)
	b.WriteByte(',')
	writeRef(&b, f.Ref)
	b.WriteByte(',')
	b.Write(wire.String(f.Topic))
	b.WriteByte(',')
	b.Write(wire.String(f.Event))
	b.WriteByte(',')
	b.Write(payload)
	b.WriteByte(']')
	return b.Bytes()
}

func writeRef(b *bytes.Buffer, r Ref) {
	if r == "" {
		b.WriteString("null")
		return
	}
	b.WriteString(string(r))
}

// Reply answers the client's frame req: a phx_reply on its topic with its
// refs, status "ok" or "error" and a response (nil is {}).
func Reply(v Version, req Frame, status string, response json.RawMessage) []byte {
	if len(response) == 0 {
		response = json.RawMessage("{}")
	}
	payload := make([]byte, 0, len(status)+len(response)+32)
	payload = append(payload, `{"status":`...)
	payload = append(payload, wire.String(status)...)
	payload = append(payload, `,"response":`...)
	payload = append(payload, response...)
	payload = append(payload, '}')
	return Encode(v, Frame{JoinRef: req.JoinRef, Ref: req.Ref, Topic: req.Topic, Event: EventReply, Payload: payload})
}

// ErrorReply answers req with status "error" and {"reason": reason}.
func ErrorReply(v Version, req Frame, reason string) []byte {
	return Reply(v, req, "error", json.RawMessage(`{"reason":`+string(wire.String(reason))+`}`))
}

// Topic is the channel topic that carries user's messages.
func Topic(user string) string { return "user:" + user }

// User returns the user of a user:<id> topic.
func User(topic string) (string, bool) {
	if len(topic) < 5 || topic[:5] != "user:" {
		return "", false
	}
	return topic[5:], true
}

// Push returns an event as the server push on its user's topic. A message
// carries its event id as the push's ref, so a client can read it as the
// second argument of channel.on("message", (payload, id) => ...); join_ref
// is null, which phoenix.js accepts for any join of the topic, so one
// encoding serves every socket. Other kinds are named as on every
// transport, with their data as payload.
func Push(v Version, ev *rig.Event) []byte {
	f := Frame{Topic: Topic(ev.User), Event: ev.Kind.String(), Payload: wire.Value(ev.Data)}
	switch ev.Kind {
	case rig.KindMessage:
		f.Ref = Ref(wire.String(ev.ID))
	case rig.KindGap:
		f.Payload = wire.String(ev.ID)
	}
	return Encode(v, f)
}

// Encoded returns Push(v, ev), computed once per event and version.
func Encoded(v Version, ev *rig.Event) []byte {
	if v == V1 {
		return ev.Encoded(rig.FormatPhoenix1, pushV1)
	}
	return ev.Encoded(rig.FormatPhoenix2, pushV2)
}

func pushV1(ev *rig.Event) []byte { return Push(V1, ev) }
func pushV2(ev *rig.Event) []byte { return Push(V2, ev) }
