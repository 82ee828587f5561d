package rig

import "sync/atomic"

// Kind says what an event tells the client.
type Kind uint8

// The event kinds, named on the wire as RIG named them.
const (
	KindMessage       Kind = iota // a message for one of the connection's users
	KindConnected                 // first event of every connection
	KindHeartbeat                 // keeps idle connections and proxies alive
	KindSessionKilled             // the session was blacklisted; the connection closes
	KindTokenExpired              // the token's exp passed; the connection closes
	KindGap                       // resume asked for an id no longer in history
	KindReconnect                 // the edge is draining; reconnect elsewhere
)

var kindNames = [...]string{"message", "connected", "heartbeat", "session_killed", "token_expired", "gap", "reconnect"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Format names one wire encoding of an event; see Event.Encoded.
type Format uint8

// The wire formats the transports use.
const (
	FormatSSE Format = iota
	FormatJSON
	FormatPhoenix1
	FormatPhoenix2
	numFormats
)

// Event is one thing sent to clients. A message event is built once per NATS
// message and shared by every connection that receives it, read-only, so its
// wire encodings are computed once and reused (see Encoded).
type Event struct {
	Kind Kind
	// ID is the event id (the Nats-Msg-Id header for messages).
	ID string
	// User is the user whose subject carried a message.
	User string
	// Data is the payload: for messages the bytes the back-end published,
	// for other kinds a JSON value.
	Data []byte
	// Seq is the message's sequence in the history stream (0 for events
	// that are not messages).
	Seq uint64
	// Prev is the sequence of the user's previous message in history when
	// this one was stored (0 if none): a live message whose Prev is past
	// the last one delivered shows a gap.
	Prev uint64
	// Receipt, set on a live message that asked for delivery receipts, is
	// the (valid, see ValidReceiptSubject) subject each connection's
	// receipt goes to once the message is written to it.
	Receipt string

	enc [numFormats]atomic.Pointer[[]byte]
}

// Encoded returns the event in wire format f, calling encode the first time
// and caching the bytes for every later caller. Callers must not modify the
// returned slice.
func (e *Event) Encoded(f Format, encode func(*Event) []byte) []byte {
	if p := e.enc[f].Load(); p != nil {
		return *p
	}
	b := encode(e)
	e.enc[f].Store(&b)
	return b
}
