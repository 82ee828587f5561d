package edge

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/rig"
)

// receiptOf returns the receipt subject a live message asks for, "" when
// it asks for none or names a subject that is not a receipt subject: a
// back-end publishing straight to NATS must not make edges publish where
// it likes (see rig.ValidReceiptSubject).
func receiptOf(h nats.Header) string {
	r := h.Get(broker.HeaderReceipt)
	if r == "" || !rig.ValidReceiptSubject(r) {
		return ""
	}
	return r
}

// written is every connection's client.Written: once the transport wrote
// a message that asks for a receipt, the edge publishes the connection's
// receipt. Core NATS, fire and forget: a receipt nobody waits for any
// more is dropped by the server.
func (s *Server) written(cl *client.Client, ev *rig.Event) {
	r := rig.Receipt{Edge: s.cfg.EdgeID, JTI: cl.Session.ID, User: cl.Session.User, Transport: cl.Transport,
		Conn: cl.Conn, ID: ev.ID, At: time.Now().UTC()}
	data, _ := json.Marshal(r)
	if err := s.broker.NC.Publish(ev.Receipt, data); err != nil {
		s.log.Debug("delivery receipt not sent", "subject", ev.Receipt, "event", ev.ID, "err", err)
	}
}

// confirmPoll sends the receipts of the events a long-poll answer carries,
// once the answer is handed to the HTTP server: the mailbox's Write only
// collects them.
func (s *Server) confirmPoll(cl *client.Client, events []*rig.Event) {
	for _, ev := range events {
		if ev.Receipt != "" {
			s.written(cl, ev)
		}
	}
}
