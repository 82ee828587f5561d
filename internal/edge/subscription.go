package edge

import (
	"context"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/hub"
	"github.com/rig-go/rig/internal/rig"
)

const (
	// lanes is how many goroutines turn NATS messages into events. A user's
	// subscription always feeds the same lane, so its messages stay in order.
	lanes = 8
	// laneDepth bounds each lane. NATS drops a message for a full lane
	// (slow consumer), so it must absorb bursts: dispatch never blocks.
	laneDepth = 16 << 10
)

// subscriber opens one core NATS subscription per connected user and hands
// its messages to the hub. The subscriptions share a few channels
// (ChanSubscribe) instead of each starting a goroutine.
type subscriber struct {
	nc    *nats.Conn
	hub   *hub.Hub
	log   *slog.Logger
	seed  maphash.Seed
	lanes [lanes]chan *nats.Msg
}

func newSubscriber(nc *nats.Conn, log *slog.Logger) *subscriber {
	s := &subscriber{nc: nc, log: log, seed: maphash.MakeSeed()}
	for i := range s.lanes {
		s.lanes[i] = make(chan *nats.Msg, laneDepth)
	}
	return s
}

// Subscribe implements hub.Subscriber.
func (s *subscriber) Subscribe(user string) (hub.Subscription, error) {
	lane := s.lanes[maphash.String(s.seed, user)%lanes]
	return s.nc.ChanSubscribe(rig.SubjectPrefix+rig.SubjectToken(user), lane)
}

func (s *subscriber) start(ctx context.Context, wg *sync.WaitGroup) {
	for _, lane := range s.lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.dispatch(ctx, lane)
		}()
	}
}

func (s *subscriber) dispatch(ctx context.Context, lane chan *nats.Msg) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-lane:
			user, err := rig.UserFromSubject(m.Subject)
			if err != nil {
				s.log.Warn("dropped message on a malformed subject", "subject", m.Subject, "err", err)
				continue
			}
			s.hub.Publish(user, messageEvent(user, m))
		}
	}
}

// messageEvent turns a NATS message into the event every client of user
// shares. Its id is the Nats-Msg-Id header; a message without a usable one
// gets an id made up here, which resume treats as a point in time.
func messageEvent(user string, m *nats.Msg) *rig.Event {
	id := ""
	if m.Header != nil {
		id = m.Header.Get(broker.HeaderMsgID)
	}
	if !validID(id) {
		id = MadeUpIDPrefix + ulid.Make().String()
	}
	return &rig.Event{Kind: rig.KindMessage, ID: id, User: user, Data: m.Data}
}

// MadeUpIDPrefix starts the ids an edge makes up for messages published
// without a Nats-Msg-Id header.
const MadeUpIDPrefix = "live-"

// validID reports whether id can be sent as an event id on every transport:
// not empty, at most 256 bytes, no control characters (SSE ends a field at
// a line break, and browsers ignore ids with NUL).
func validID(id string) bool {
	if id == "" || len(id) > 256 {
		return false
	}
	return !strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
