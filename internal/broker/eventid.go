package broker

import (
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/rig"
)

// EventIDOf returns the event id a stored or republished message carries:
// HeaderEventID when it holds a usable id, else HeaderMsgID (what direct
// publishers set), else "". It is the one place that says which header
// names an event, for replay and live delivery alike.
//
// HeaderEventID exists because an ingest message sent with an
// Idempotency-Key has a de-duplication id (HeaderMsgID) made from its user
// and key, which must not be what clients see: two users' ids would then
// collide, and a key could equal another message's id.
func EventIDOf(h nats.Header) string {
	if h == nil {
		return ""
	}
	if id := h.Get(HeaderEventID); rig.ValidEventID(id) && !strings.HasPrefix(id, rig.SeqIDPrefix) {
		return id
	}
	return h.Get(HeaderMsgID)
}
