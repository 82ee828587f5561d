package edge

import (
	"bytes"
	"errors"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/rig"
	"github.com/rig-go/rig/internal/wire"
)

// handleLongPoll serves GET /socket/longpoll: one answer per request, with
// every event after last_event_id that history holds, or, if there is none,
// the next live one, or none after LONGPOLL_TIMEOUT. The answer's
// last_event_id is an exact position; the next poll, on any edge, sends it
// back, so successive polls get every message once, in order. Nothing is
// kept between polls.
//
// With vsn= in the query it is phoenix.js's LongPoll transport instead
// (see phoenix_longpoll.go).
func (s *Server) handleLongPoll(c *fiber.Ctx) error {
	if c.Context().QueryArgs().Has("vsn") {
		v, err := socketProtocol(c)
		if err != nil {
			return s.pollRefused(c, err)
		}
		if err := s.checkOrigin(c); err != nil {
			return s.pollRefused(c, err)
		}
		return s.handlePhoenixLongPoll(c, v)
	}
	if err := s.checkOrigin(c); err != nil {
		return err
	}
	s.setCORS(c)
	a, err := s.admit(c)
	if err != nil {
		return err
	}
	if err := s.hold(a); err != nil {
		return err
	}
	cn, err := s.register(a, "longpoll")
	if err != nil {
		return unavailable(err)
	}
	defer s.unregister(cn, client.DisconnectClientGone)
	rp, err := s.readHistory(a.users, a.resume)
	if err != nil {
		// The poll comes again with the same cursor: nothing is skipped.
		// The error stays in the log; clients learn nothing of NATS.
		s.log.Warn("long-poll cannot read history: 503", "user", a.session.User, "last_event_id", a.resume, "err", err)
		return api.Unavailable("history unavailable; poll again with the same last_event_id", 1)
	}
	first, upTo := s.replayed(cn, a.users, a.resume, rp)
	cn.Release(a.users, upTo, first...)
	box := newMailbox()
	cn.Attach(box)

	wait := time.NewTimer(s.cfg.LongPollTimeout)
	defer wait.Stop()
	select {
	case <-box.ready:
	case <-wait.C:
	case <-cn.Done():
	}
	events := box.take()
	err = s.answerLongPoll(c, events, rp.Last)
	if err == nil {
		s.confirmPoll(cn.Client, events)
	}
	return err
}

// answerLongPoll writes {"events":[...],"last_event_id":"..."}. The cursor
// is the position of the last message answered, or where history stood
// when the poll began if it answers none.
func (s *Server) answerLongPoll(c *fiber.Ctx, events []*rig.Event, last string) error {
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i, ev := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(wire.Encoded(ev))
		if ev.Kind == rig.KindMessage && ev.Seq > 0 {
			last = rig.SeqID(ev.Seq)
		}
	}
	b.WriteString(`],"last_event_id":`)
	b.Write(wire.String(last))
	b.WriteByte('}')
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(fiber.StatusOK).Send(b.Bytes())
}

var tokenExpired = &rig.Event{Kind: rig.KindTokenExpired, Data: []byte(`{"reason":"token expired"}`)}

// mailbox is the long-poll transport: it collects what the client's writer
// hands it until the request answers.
type mailbox struct {
	mu     sync.Mutex
	events []*rig.Event
	taken  bool
	ready  chan struct{} // closed at the first event worth answering with
	once   sync.Once
}

func newMailbox() *mailbox { return &mailbox{ready: make(chan struct{})} }

// Write implements client.Transport. Heartbeats and the connected event
// mean nothing to a poll.
func (m *mailbox) Write(evs []*rig.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.taken {
		return errAnswered
	}
	for _, ev := range evs {
		if ev.Kind == rig.KindHeartbeat || ev.Kind == rig.KindConnected {
			continue
		}
		m.events = append(m.events, ev)
		m.once.Do(func() { close(m.ready) })
	}
	return nil
}

// take returns the events collected; later writes fail, so the client
// closes instead of queueing what this answer will not carry.
func (m *mailbox) take() []*rig.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.taken = true
	return m.events
}

func (m *mailbox) Close(client.Disconnect) error { return nil }

var errAnswered = errors.New("long-poll already answered")
