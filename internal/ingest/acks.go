package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/metrics"
	"github.com/rig-go/rig/internal/rig"
)

// acks gives each single message's publish a reply subscription of its
// own, taken from a pool, on which the handler itself waits for
// JetStream's acknowledgement. With nats.go's PublishAsync the ack would
// reach the handler through two goroutines (the connection's reader, then
// the async reply subscription's); a synchronous subscription takes it
// from the reader straight to the waiting handler: one wake-up fewer per
// message. Batches keep PublishAsync, whose futures they wait on together.
type acks struct {
	nc *nats.Conn
	mu sync.Mutex
	// free are idle slots, most recently used last. At most maxFreeAcks
	// stay subscribed; a burst of more requests at once opens more, and
	// their end closes them.
	free []*ackSlot
	// inFlight counts the publishes waiting for their ack, for
	// rig_ingest_publish_in_flight with PublishAsync's.
	inFlight atomic.Int64
}

func (a *acks) waiting() int { return int(a.inFlight.Load()) }

const maxFreeAcks = 256

// ackSlot is one reply subscription (prefix.*) and the number of its
// latest publish: an answer to an earlier one (it came after its request
// gave up) has another subject, and is dropped.
type ackSlot struct {
	sub    *nats.Subscription
	prefix string
	n      uint64
}

func (a *acks) get() (*ackSlot, error) {
	a.mu.Lock()
	if n := len(a.free); n > 0 {
		s := a.free[n-1]
		a.free = a.free[:n-1]
		a.mu.Unlock()
		return s, nil
	}
	a.mu.Unlock()
	prefix := a.nc.NewInbox()
	sub, err := a.nc.SubscribeSync(prefix + ".*")
	if err != nil {
		return nil, fmt.Errorf("subscribe for the acknowledgement: %w", err)
	}
	return &ackSlot{sub: sub, prefix: prefix}, nil
}

func (a *acks) put(s *ackSlot) {
	a.mu.Lock()
	if len(a.free) < maxFreeAcks && s.sub.IsValid() {
		a.free = append(a.free, s)
		s = nil
	}
	a.mu.Unlock()
	if s != nil {
		_ = s.sub.Unsubscribe()
	}
}

// publishWait stores body for user with de-duplication id (and event id)
// id, as publishAsync and await do together, waiting on the handler's own
// goroutine until JetStream acknowledges, fails or deadline passes.
func (s *Server) publishWait(user, id string, body []byte, deadline time.Time) (*jetstream.PubAck, error) {
	if !time.Now().Before(deadline) {
		// Nothing is published: an acknowledgement quick enough to be
		// waiting already would otherwise be taken, at random, after the
		// deadline had passed.
		return nil, errTimeout
	}
	slot, err := s.acks.get()
	if err != nil {
		return nil, err
	}
	defer s.acks.put(slot)
	s.acks.inFlight.Add(1)
	defer s.acks.inFlight.Add(-1)
	slot.n++
	reply := slot.prefix + "." + strconv.FormatUint(slot.n, 10)
	msg := &nats.Msg{
		Subject: rig.SubjectPrefix + rig.SubjectToken(user),
		Reply:   reply,
		Data:    body,
		Header: nats.Header{
			broker.HeaderMsgID:             []string{id},
			jetstream.ExpectedStreamHeader: []string{broker.StreamName},
		},
	}
	start := time.Now()
	if err := s.broker.NC.PublishMsg(msg); err != nil {
		return nil, err
	}
	for {
		m, err := slot.sub.NextMsg(time.Until(deadline))
		switch {
		case errors.Is(err, nats.ErrTimeout):
			return nil, errTimeout
		case err != nil:
			return nil, err
		case m.Subject != reply:
			continue // the late answer to a publish that gave up
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return nil, jetstream.ErrNoStreamResponse // no stream takes the subject
		}
		ack, err := parseAck(m.Data)
		if err != nil {
			return nil, err
		}
		metrics.Since(s.metrics.PublishSeconds, start)
		return ack, nil
	}
}

// parseAck reads JetStream's answer to a publish: an ack, or an API error.
// With fastjson, as the handler reads messages: encoding/json's reflection
// was the largest item of publishWait's own CPU profile.
func parseAck(data []byte) (*jetstream.PubAck, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(data)
	if err != nil {
		return nil, fmt.Errorf("JetStream's acknowledgement %q: %w", data, err)
	}
	if e := v.Get("error"); e != nil {
		return nil, &jetstream.APIError{Code: e.GetInt("code"), ErrorCode: jetstream.ErrorCode(e.GetUint("err_code")), Description: string(e.GetStringBytes("description"))}
	}
	ack := &jetstream.PubAck{
		Stream:    string(v.GetStringBytes("stream")),
		Sequence:  v.GetUint64("seq"),
		Duplicate: v.GetBool("duplicate"),
		Domain:    string(v.GetStringBytes("domain")),
	}
	if ack.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return ack, nil
}
