package positions

import (
	"context"
	"slices"
	"time"

	"github.com/rig-go/rig/internal/history"
	"github.com/rig-go/rig/internal/rig"
)

// Sink is where a table delivers live and filled messages: the hub.
type Sink interface {
	// Publish delivers ev to every client of user.
	Publish(user string, ev *rig.Event) int
	// Reconnect tells every client of users to reconnect: their missed
	// messages could not be read, and a client that stayed would go on
	// without them. Each resumes from its own cursor.
	Reconnect(users []string)
}

// A fill is tried again, FillBackoff and then up to twice as long apart
// (at most a second), for FillTimeout: long enough to outlast the election
// of a new stream leader after a NATS node is lost (a few seconds; reads
// fail meanwhile), short enough that a lane (and the live messages of all
// its users, which wait for it) is not stuck for long when history stays
// unreadable.
var (
	FillTimeout = 30 * time.Second
	FillBackoff = 100 * time.Millisecond
)

// fillBatch is how many users one history read covers.
const fillBatch = 64

// Live publishes a live message to sink unless it was delivered already,
// first filling the messages before it if its prev says they were missed.
// If they cannot be filled, the message is not published either: the
// user's clients were told to reconnect.
func (t *Table) Live(ctx context.Context, ev *rig.Event, sink Sink) {
	st := t.stream(ev.User)
	if st == nil {
		return // the subscription closed while the message waited
	}
	if ev.Seq != 0 && ev.Seq <= st.delivered.Load() {
		t.counters.Duplicates.Inc()
		return
	}
	if from, ok := st.from(); ok && ev.Prev > from {
		if !t.fill(ctx, []string{ev.User}, from, map[string]*stream{ev.User: st}, ev.Prev, sink) {
			return
		}
		if ev.Seq <= st.delivered.Load() {
			t.counters.Duplicates.Inc()
			return
		}
	}
	t.publish(st, ev, sink)
}

// publish records ev as delivered, then publishes it. In that order: a
// client that registers after the publish (and so misses ev) reads, in
// Fresh, a delivered that covers ev, and starts after it.
func (t *Table) publish(st *stream, ev *rig.Event, sink Sink) {
	if ev.Seq > st.delivered.Load() {
		st.delivered.Store(ev.Seq)
	}
	sink.Publish(ev.User, ev)
}

// CatchUp publishes what history holds for users after each one's from;
// users whose from is not known are skipped. When history cannot be read,
// sink reconnects the clients of the users it could not fill, and CatchUp
// reports false.
func (t *Table) CatchUp(ctx context.Context, users []string, sink Sink) bool {
	ok := true
	var batch []string
	streams := make(map[string]*stream, len(users))
	from := uint64(0)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if !t.fill(ctx, batch, from, streams, 0, sink) {
			ok = false
		}
		batch, from = batch[:0], 0
	}
	for _, u := range users {
		st := t.stream(u)
		if st == nil {
			continue
		}
		f, known := st.from()
		if !known {
			continue
		}
		streams[u] = st
		if len(batch) == 0 || f < from {
			from = f
		}
		batch = append(batch, u)
		if len(batch) == fillBatch {
			flush()
		}
	}
	flush()
	return ok
}

// fill reads users' messages after from and publishes those past each
// one's delivered. need, if not 0, is a position the read must hold (the
// one user's message before a live one): when history no longer holds it
// (it aged out, or the per-user limit dropped it, while the lane was
// behind), publishing the rest would skip it silently, so nothing is
// published and the clients reconnect, to resume from their cursors with
// a replay that says gap where messages are gone.
func (t *Table) fill(ctx context.Context, users []string, from uint64, streams map[string]*stream, need uint64, sink Sink) bool {
	rp, err := t.read(ctx, users, from)
	if err != nil {
		t.counters.ReadFailures.Inc()
		t.log.Warn("cannot refill from history: telling those users' clients to reconnect", "users", len(users), "err", err)
		sink.Reconnect(users)
		return false
	}
	if need != 0 && !slices.ContainsFunc(rp.Events, func(ev *rig.Event) bool { return ev.Seq == need }) {
		t.log.Warn("missed messages are gone from history: telling the user's clients to reconnect", "users", users, "missing", need)
		sink.Reconnect(users)
		return false
	}
	n := 0
	for _, ev := range rp.Events {
		st := streams[ev.User]
		if st == nil {
			continue
		}
		if f, _ := st.from(); ev.Seq > f {
			t.publish(st, ev, sink)
			n++
		}
	}
	if n > 0 {
		t.counters.Fills.Inc()
		t.counters.Filled.Add(float64(n))
		t.log.Info("refilled missed messages from history", "users", len(users), "messages", n)
	}
	return true
}

// read reads users' messages after from, trying again while the read
// fails, for FillTimeout.
func (t *Table) read(ctx context.Context, users []string, from uint64) (*history.Replay, error) {
	rctx, cancel := context.WithTimeout(ctx, FillTimeout)
	defer cancel()
	wait := FillBackoff
	for {
		rp, err := t.history.Refill(rctx, users, from)
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
