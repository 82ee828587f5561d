package rig

import (
	"strings"
	"time"
)

// Delivery receipts: a message published with the header
// broker.HeaderReceipt naming a receipt subject is confirmed by every edge
// that writes it to a connection, with one Receipt per connection
// published to that subject. Ingest's admin send (the console's Send,
// `ingest admin send`) asks for them, on a subject it alone listens to.

// ReceiptPrefix starts every receipt subject. Edges publish receipts only
// to subjects under it (see ValidReceiptSubject), so a back-end that sets
// the header cannot make them publish anywhere else: not to a user's
// subject, not to the stream, not to a wildcard.
const ReceiptPrefix = "_RIG_RECEIPT."

// MaxReceiptTokenLen bounds the one token after ReceiptPrefix.
const MaxReceiptTokenLen = 64

// ValidReceiptSubject reports whether s is ReceiptPrefix followed by one
// token of 1 to MaxReceiptTokenLen ASCII letters, digits, '-' or '_': a
// single literal subject, never a wildcard, never two tokens.
func ValidReceiptSubject(s string) bool {
	tok, ok := strings.CutPrefix(s, ReceiptPrefix)
	if !ok || len(tok) == 0 || len(tok) > MaxReceiptTokenLen {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if !plain(tok[i]) {
			return false
		}
	}
	return true
}

// Receipt is what an edge publishes for each connection it wrote a
// message to, once the transport's write returned (the bytes are with the
// kernel, or the client's HTTP answer is handed to the server, for
// long-poll).
type Receipt struct {
	Edge      string    `json:"edge"`      // the edge's EDGE_ID
	JTI       string    `json:"jti"`       // the connection's session
	User      string    `json:"user"`      // the token's user
	Transport string    `json:"transport"` // sse, websocket, phoenix, longpoll, phoenix-longpoll
	Conn      uint64    `json:"conn"`      // the connection's number on its edge (as presence lists it)
	ID        string    `json:"id"`        // the event id written
	At        time.Time `json:"at"`        // when the write returned
}
