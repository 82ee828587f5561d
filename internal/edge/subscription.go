package edge

import (
	"context"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/history"
	"github.com/rig-go/rig/internal/hub"
	"github.com/rig-go/rig/internal/metrics"
	"github.com/rig-go/rig/internal/positions"
	"github.com/rig-go/rig/internal/rig"
)

const (
	// lanes is how many goroutines turn NATS messages into events. A user's
	// subscription always feeds the same lane, so its messages stay in order.
	lanes = 8
	// laneDepth bounds each lane. NATS drops a message for a full lane
	// (slow consumer), so it must absorb bursts; a drop is filled from
	// history (see package positions).
	laneDepth = 16 << 10
)

// subscriber opens one NATS subscription per connected user and hands its
// messages to the hub. The subscriptions share a few channels
// (ChanSubscribe) instead of each starting a goroutine.
//
// Each message carries its stream sequence and the sequence of the user's
// previous message, so the lane that handles a user drops what it already
// delivered and fills from history what it missed (positions.Table.Live):
// messages NATS dropped for a full lane, or that were published while the
// edge was away from NATS.
type subscriber struct {
	nc        *nats.Conn
	hub       *hub.Hub[*client.Client]
	sink      positions.Sink // the hub, as the lanes deliver to it
	positions *positions.Table
	log       *slog.Logger
	metrics   *metrics.Edge
	seed      maphash.Seed
	lanes     [lanes]chan *nats.Msg
	resync    [lanes]chan []string // users to check against history; nil: all
}

func newSubscriber(nc *nats.Conn, h *history.Reader, log *slog.Logger, m *metrics.Edge) *subscriber {
	s := &subscriber{nc: nc, log: log, metrics: m, seed: maphash.MakeSeed()}
	s.positions = positions.New(h, positions.Counters{
		Duplicates: m.Duplicates, Fills: m.GapFills, Filled: m.GapFilled, ReadFailures: m.HistoryReadFailures,
	}, log)
	for i := range s.lanes {
		s.lanes[i] = make(chan *nats.Msg, laneDepth)
		s.resync[i] = make(chan []string, 64)
	}
	return s
}

func (s *subscriber) lane(user string) int { return int(maphash.String(s.seed, user) % lanes) }

// Subscribe implements hub.Subscriber. The user's stream of positions
// lives as long as the subscription.
func (s *subscriber) Subscribe(user string) (hub.Subscription, error) {
	s.positions.Track(user) // first: a message may reach the lane before ChanSubscribe returns
	sub, err := s.nc.ChanSubscribe(rig.LiveSubject(user), s.lanes[s.lane(user)])
	if err != nil {
		s.positions.Forget(user)
		return nil, err
	}
	return tracked{sub, s.positions, user}, nil
}

// tracked is a live subscription whose end ends its user's stream.
type tracked struct {
	*nats.Subscription
	positions *positions.Table
	user      string
}

func (t tracked) Unsubscribe() error {
	t.positions.Forget(t.user)
	return t.Subscription.Unsubscribe()
}

func (s *subscriber) start(ctx context.Context, wg *sync.WaitGroup) {
	for i := range s.lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.dispatch(ctx, i)
		}()
	}
}

// resyncAll asks every lane to check all its users against history: after
// a reconnect, what was published while away is read back.
func (s *subscriber) resyncAll() {
	for _, ch := range s.resync {
		select {
		case ch <- nil:
		default: // a full resync is already queued
		}
	}
}

// resyncUser asks user's lane to check it against history.
func (s *subscriber) resyncUser(user string) {
	select {
	case s.resync[s.lane(user)] <- []string{user}:
	default:
		s.resyncAll()
	}
}

func (s *subscriber) dispatch(ctx context.Context, lane int) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.lanes[lane]:
			s.metrics.MessagesReceived.Inc()
			if ev, ok := liveEvent(m); ok {
				s.positions.Live(ctx, ev, s.sink)
			} else {
				s.log.Warn("dropped a message on a malformed subject", "subject", m.Subject)
			}
		case users := <-s.resync[lane]:
			if users == nil {
				for _, u := range s.hub.Users() {
					if s.lane(u) == lane {
						users = append(users, u)
					}
				}
			}
			s.positions.CatchUp(ctx, users, s.sink)
		}
	}
}

// refillFailed ends the connections of users whose missed messages could
// not be read: a client that stayed connected would go on without them.
// Each reconnects and resumes from the last id it got (see
// historyUnavailable).
var refillFailed = historyUnavailable

// hubSink is the hub as the lanes deliver to it.
type hubSink struct{ h *hub.Hub[*client.Client] }

func (k hubSink) Publish(user string, ev *rig.Event) int { return k.h.Publish(user, ev) }

// Reconnect tells every client of users to reconnect.
func (k hubSink) Reconnect(users []string) {
	for _, u := range users {
		for _, c := range k.h.Clients(u) {
			c.SendFinal(refillFailed, client.DisconnectHistoryUnavailable)
		}
	}
}

// liveEvent turns a republished message into the event every client of its
// user shares.
func liveEvent(m *nats.Msg) (*rig.Event, bool) {
	subject := strings.TrimPrefix(m.Subject, rig.LiveSubjectPrefix)
	var id string
	var seq, prev uint64
	if m.Header != nil {
		id = broker.EventIDOf(m.Header)
		seq, _ = strconv.ParseUint(m.Header.Get(broker.HeaderSequence), 10, 64)
		prev, _ = strconv.ParseUint(m.Header.Get(broker.HeaderLastSequence), 10, 64)
	}
	if seq == 0 {
		return nil, false // not from the history stream
	}
	ev, ok := history.EventOf(subject, id, m.Data, seq, prev)
	if ok {
		ev.Receipt = receiptOf(m.Header)
	}
	return ev, ok
}
