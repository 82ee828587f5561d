package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/oklog/ulid/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/presence"
	"github.com/rig-go/rig/internal/rig"
)

// POST /v1/admin/messages is the operator's test send (the console's
// Send, `ingest admin send`): a message stored and delivered as
// POST /v1/messages stores and delivers it, that also asks every edge
// that writes it to a connection for a delivery receipt, and answers once
// each of the user's connections confirmed, or the wait is over.

// Bounds of ?wait=, how long a test send waits for receipts.
const (
	defaultSendWait = 5 * time.Second
	maxSendWait     = 30 * time.Second
)

// sent is the answer of a test send.
type sent struct {
	ID   string `json:"id"`
	User string `json:"user"`
	// Online is how many connections of the user presence listed when the
	// message was sent; Confirmed how many of them the edges confirmed.
	Online    int `json:"online"`
	Confirmed int `json:"confirmed"`
	// Complete is false when an edge alive did not answer presence: the
	// user may have more connections than Online says.
	Complete bool `json:"complete"`
	// Receipts are every receipt that came, in order: those of the listed
	// connections and of any other that received the message (one that
	// connected since, or a privileged one subscribed to the user).
	Receipts []rig.Receipt `json:"receipts"`
	// Unconfirmed are the listed connections whose receipt did not come
	// within the wait.
	Unconfirmed []presence.Session `json:"unconfirmed"`
	Waited      string             `json:"waited"`
}

func (s *Server) handleAdminSend(c *fiber.Ctx) error {
	wait := defaultSendWait
	if v := c.Query("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > maxSendWait {
			return api.NewError(fiber.StatusBadRequest, fmt.Sprintf("wait=%.40q: expected a duration from 1ms to %s, such as 5s", v, maxSendWait))
		}
		wait = d
	}
	if !isJSON(c.Get(fiber.HeaderContentType)) {
		return api.NewError(fiber.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	body := c.Body()
	if c.Get(HeaderIdempotencyKey) != "" {
		return api.NewError(fiber.StatusBadRequest, HeaderIdempotencyKey+" applies to POST /v1/messages; a test send is always one new message")
	}
	if isArray(body) {
		return api.NewError(fiber.StatusBadRequest, "a test send is one message (a JSON object), not a batch")
	}
	if len(body) > s.cfg.MaxMessageSize {
		return api.NewError(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("message of %d bytes exceeds the limit of %d", len(body), s.cfg.MaxMessageSize))
	}
	user, err := s.userOf(body)
	if err != nil {
		return err
	}
	if err := s.broker.Ready(); err != nil {
		return api.Unavailable("cannot accept messages: "+err.Error(), 1)
	}
	body = bytes.Clone(body) // kept by the pending publish (see handleMessages)
	online, err := s.presence.List(c.UserContext(), presence.ListQuery{User: user, Limit: presence.MaxListLimit})
	if err != nil {
		return presenceError(err)
	}
	// Subscribed before the message is published, on the connection that
	// publishes it: the server has the interest before any edge sees it.
	inbox := rig.ReceiptPrefix + nuid.Next()
	receipts := make(chan *nats.Msg, min(online.Total+64, 4096))
	sub, err := s.broker.NC.ChanSubscribe(inbox, receipts)
	if err != nil {
		return api.Unavailable("cannot wait for delivery receipts: "+err.Error(), 1)
	}
	defer func() { _ = sub.Unsubscribe() }()

	id := ulid.Make().String()
	msg := &nats.Msg{
		Subject: rig.SubjectPrefix + rig.SubjectToken(user),
		Data:    body,
		Header:  nats.Header{broker.HeaderMsgID: []string{id}, broker.HeaderReceipt: []string{inbox}},
	}
	start := time.Now()
	paf, err := s.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0), jetstream.WithExpectStream(broker.StreamName),
		jetstream.WithStallWait(s.cfg.PublishTimeout))
	if err == nil {
		_, err = s.await(pending{paf, start}, start.Add(s.cfg.PublishTimeout+100*time.Millisecond))
	}
	if err != nil {
		s.metrics.Failed.Inc()
		return api.Unavailable("message not stored: "+err.Error(), 1)
	}
	s.metrics.Stored.Inc()
	return api.JSON(c, fiber.StatusOK, collect(id, user, online, receipts, start, wait))
}

// collect gathers receipts until every listed connection confirmed (when
// the listing is complete) or wait passed since start.
func collect(id, user string, online presence.Listing, receipts <-chan *nats.Msg, start time.Time, wait time.Duration) sent {
	a := sent{ID: id, User: user, Online: online.Total, Complete: online.Complete, Receipts: []rig.Receipt{}}
	type conn struct {
		edge string
		n    uint64
	}
	// A session of the user that subscribed to others' messages only (a
	// privileged token's users[]) does not receive the user's.
	listed := slices.DeleteFunc(slices.Clone(online.Sessions), func(ss presence.Session) bool { return !slices.Contains(ss.Users, user) })
	a.Online -= len(online.Sessions) - len(listed)
	waiting := make(map[conn]presence.Session, len(listed))
	for _, ss := range listed {
		waiting[conn{ss.Edge, ss.Conn}] = ss
	}
	all := online.Complete && online.Total == len(online.Sessions)
	timer := time.NewTimer(time.Until(start.Add(wait)))
	defer timer.Stop()
	for len(waiting) > 0 || !all {
		select {
		case m := <-receipts:
			var r rig.Receipt
			if json.Unmarshal(m.Data, &r) != nil || r.ID != id {
				continue // not an edge's receipt of this message
			}
			a.Receipts = append(a.Receipts, r)
			k := conn{r.Edge, r.Conn}
			if _, ok := waiting[k]; ok {
				delete(waiting, k)
				a.Confirmed++
			}
			continue
		case <-timer.C:
		}
		break
	}
	a.Unconfirmed = make([]presence.Session, 0, len(waiting))
	for _, ss := range listed {
		if _, ok := waiting[conn{ss.Edge, ss.Conn}]; ok {
			a.Unconfirmed = append(a.Unconfirmed, ss)
		}
	}
	a.Waited = time.Since(start).Round(time.Millisecond).String()
	return a
}
