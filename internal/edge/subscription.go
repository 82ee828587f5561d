package edge

import (
	"context"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/history"
	"github.com/rig-go/rig/internal/hub"
	"github.com/rig-go/rig/internal/metrics"
	"github.com/rig-go/rig/internal/rig"
)

const (
	// lanes is how many goroutines turn NATS messages into events. A user's
	// subscription always feeds the same lane, so its messages stay in order.
	lanes = 8
	// laneDepth bounds each lane. NATS drops a message for a full lane
	// (slow consumer), so it must absorb bursts; a drop is refilled from
	// history (see fill).
	laneDepth = 16 << 10
	// resyncBatch is how many users one history read covers after a
	// reconnect.
	resyncBatch = 64
)

// subscriber opens one NATS subscription per connected user and hands its
// messages to the hub. The subscriptions share a few channels
// (ChanSubscribe) instead of each starting a goroutine.
//
// Each message carries its stream sequence and the sequence of the user's
// previous message, so the lane that handles a user drops what it already
// delivered and fills from history what it missed: messages NATS dropped
// for a full lane, or that were published while the edge was away from NATS.
type subscriber struct {
	nc      *nats.Conn
	hub     fanout
	history *history.Reader
	log     *slog.Logger
	metrics *metrics.Edge
	seed    maphash.Seed
	lanes   [lanes]chan *nats.Msg
	resync  [lanes]chan []string // users to check against history; nil: all
}

// fanout is the hub as a lane sees it: where it publishes, and whose
// clients it tells to reconnect. A test stalls a lane through it.
type fanout interface {
	Publish(user string, ev *rig.Event) int
	Clients(user string) []*client.Client
	Users() []string
	LastSeq(user string) uint64
	ResumePoint(user string) (uint64, bool)
}

func newSubscriber(nc *nats.Conn, h *history.Reader, log *slog.Logger, m *metrics.Edge) *subscriber {
	s := &subscriber{nc: nc, history: h, log: log, metrics: m, seed: maphash.MakeSeed()}
	for i := range s.lanes {
		s.lanes[i] = make(chan *nats.Msg, laneDepth)
		s.resync[i] = make(chan []string, 64)
	}
	return s
}

func (s *subscriber) lane(user string) int { return int(maphash.String(s.seed, user) % lanes) }

// Subscribe implements hub.Subscriber.
func (s *subscriber) Subscribe(user string) (hub.Subscription, error) {
	return s.nc.ChanSubscribe(rig.LiveSubject(user), s.lanes[s.lane(user)])
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
				s.deliver(ctx, ev)
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
			s.catchUp(ctx, users)
		}
	}
}

// deliver publishes a live event unless it was delivered already, first
// filling the gap before it if the user's previous message never came. If
// the gap cannot be filled, the event is not published either: the user's
// clients were told to reconnect, and resume from their own cursors.
func (s *subscriber) deliver(ctx context.Context, ev *rig.Event) {
	if ev.Seq != 0 && ev.Seq <= s.hub.LastSeq(ev.User) {
		s.metrics.Duplicates.Inc()
		return
	}
	// The user's previous message is past the last one delivered (or,
	// before any, past where the subscription started): it was missed.
	if point, ok := s.hub.ResumePoint(ev.User); ok && ev.Prev > point {
		if !s.catchUp(ctx, []string{ev.User}) {
			return
		}
		if ev.Seq <= s.hub.LastSeq(ev.User) {
			s.metrics.Duplicates.Inc()
			return
		}
	}
	s.hub.Publish(ev.User, ev)
}

// A refill is tried again, refillBackoff and then up to twice as long
// apart (at most a second), for refillTimeout: long enough to outlast the
// election of a new stream leader after a NATS node is lost (a few seconds;
// reads fail meanwhile), short enough that a lane (and the live messages of
// all its users, which wait for it) is not stuck for long when history
// stays unreadable.
const (
	refillTimeout = 30 * time.Second
	refillBackoff = 100 * time.Millisecond
)

// catchUp publishes what history holds for users after the last message
// each was delivered (or, before any, after where its subscription
// started); users with neither known are skipped. When history cannot be
// read, the clients of the users it could not refill are closed with a
// reconnect event (see refillFailed), and catchUp reports false.
func (s *subscriber) catchUp(ctx context.Context, users []string) bool {
	lasts := make(map[string]uint64, len(users))
	var batch []string
	from := uint64(0)
	ok := true
	flush := func() {
		if len(batch) == 0 {
			return
		}
		defer func() { batch, from = batch[:0], 0 }()
		rp, err := s.refill(ctx, batch, from)
		if err != nil {
			s.metrics.HistoryReadFailures.Inc()
			s.log.Warn("cannot refill from history: telling those users' clients to reconnect", "users", len(batch), "err", err)
			s.reconnectClients(batch)
			ok = false
			return
		}
		n := 0
		for _, ev := range rp.Events {
			if ev.Seq > lasts[ev.User] {
				s.hub.Publish(ev.User, ev)
				lasts[ev.User] = ev.Seq
				n++
			}
		}
		if n > 0 {
			s.metrics.GapFills.Inc()
			s.metrics.GapFilled.Add(float64(n))
			s.log.Info("refilled missed messages from history", "users", len(batch), "messages", n)
		}
	}
	for _, u := range users {
		last, known := s.hub.ResumePoint(u)
		if !known {
			continue
		}
		lasts[u] = last
		if len(batch) == 0 || last < from {
			from = last
		}
		batch = append(batch, u)
		if len(batch) == resyncBatch {
			flush()
		}
	}
	flush()
	return ok
}

// refill reads users' messages after from, trying again while the read
// fails, for refillTimeout.
func (s *subscriber) refill(ctx context.Context, users []string, from uint64) (*history.Replay, error) {
	rctx, cancel := context.WithTimeout(ctx, refillTimeout)
	defer cancel()
	wait := refillBackoff
	for {
		rp, err := s.history.Refill(rctx, users, from)
		if err == nil {
			return rp, nil
		}
		select {
		case <-rctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// refillFailed ends the connections of users whose missed messages could
// not be read: a client that stayed connected would go on without them.
// Each reconnects and resumes from the last id it got (see
// historyUnavailable).
var refillFailed = historyUnavailable

// reconnectClients tells every client of users to reconnect.
func (s *subscriber) reconnectClients(users []string) {
	for _, u := range users {
		for _, c := range s.hub.Clients(u) {
			c.Finish(refillFailed, client.DisconnectHistoryUnavailable)
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
	return history.EventOf(subject, id, m.Data, seq, prev)
}

// replayTimeout bounds one read of history.
const replayTimeout = 10 * time.Second
