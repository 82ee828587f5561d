// Package positions keeps an edge's place in the history stream, so that
// every client gets each of its users' messages once and in order: it
// drops live copies of what was delivered, fills from history what the
// live subscription missed, and tells a connection where it starts.
//
// One vocabulary, used everywhere in it:
//
//   - A position is a stream sequence: the history stream numbers every
//     stored message, and seq:<n> is the event id that resumes right after n.
//   - A user's stream, on this edge, lives as long as the user's live
//     subscription (Track to Forget). Its start is the position the
//     subscription started from: every later message reaches the user's
//     clients live. Its delivered is the position of the last message
//     published to them.
//   - Its from is where missed messages are read after: delivered, or,
//     before any was, start. A live message carries prev, the position of
//     its user's previous message; prev past from means messages were
//     missed (NATS dropped them for a slow lane, or they came while the
//     edge was away from NATS), and they are filled from history first.
//   - A client's Marks say, per user, the position it has every message up
//     to after a replay (upTo): live copies of those are dropped.
//
// History is an interface (*history.Reader is the real one), so this unit
// is tested against a fake.
package positions

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rig-go/rig/internal/history"
	"github.com/rig-go/rig/internal/rig"
)

// History is what positions reads.
type History interface {
	// LastSeq returns the position of user's latest message, 0 if none.
	LastSeq(ctx context.Context, user string) (uint64, error)
	// Since reads users' messages after a client's cursor (an event id).
	Since(ctx context.Context, users []string, cursor string) (*history.Replay, error)
	// Refill reads users' messages after position after.
	Refill(ctx context.Context, users []string, after uint64) (*history.Replay, error)
}

// Counters are what positions counts (the edge's metrics).
type Counters struct {
	Duplicates   prometheus.Counter // live messages dropped: delivered already
	Fills        prometheus.Counter // reads that filled missed messages
	Filled       prometheus.Counter // messages they filled
	ReadFailures prometheus.Counter // history reads that failed
}

// ReadTimeout bounds one read of a connection's start from history.
const ReadTimeout = 10 * time.Second

const numShards = 64

type stream struct {
	delivered atomic.Uint64
	start     atomic.Uint64 // 1 + the start position; 0 while unknown
}

// from returns where the stream's missed messages are read after, and
// whether it is known.
func (st *stream) from() (uint64, bool) {
	if d := st.delivered.Load(); d > 0 {
		return d, true
	}
	if s := st.start.Load(); s > 0 {
		return s - 1, true
	}
	return 0, false
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*stream
}

// Table is the streams of one edge's subscribed users. Safe for concurrent
// use; a user's live messages must be given to Live (and CatchUp) from one
// goroutine at a time, in the order they arrive.
type Table struct {
	history  History
	counters Counters
	log      *slog.Logger
	seed     maphash.Seed
	shards   [numShards]shard
}

// New returns an empty table that reads h, counts into c and logs fills
// to log.
func New(h History, c Counters, log *slog.Logger) *Table {
	t := &Table{history: h, counters: c, log: log, seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*stream)
	}
	return t
}

func (t *Table) shard(user string) *shard {
	return &t.shards[maphash.String(t.seed, user)%numShards]
}

// Track starts user's stream: its live subscription just opened. Its
// positions are unknown until Fresh, Since or a delivery says them.
func (t *Table) Track(user string) {
	sh := t.shard(user)
	sh.mu.Lock()
	sh.m[user] = &stream{}
	sh.mu.Unlock()
}

// Forget ends user's stream: its live subscription closed.
func (t *Table) Forget(user string) {
	sh := t.shard(user)
	sh.mu.Lock()
	delete(sh.m, user)
	sh.mu.Unlock()
}

func (t *Table) stream(user string) *stream {
	sh := t.shard(user)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[user]
}

// delivered returns the position of the last message published to user's
// clients, 0 if none (or user is not tracked).
func (t *Table) delivered(user string) uint64 {
	if st := t.stream(user); st != nil {
		return st.delivered.Load()
	}
	return 0
}

// noteStart records, once per stream, the position it started from.
func (t *Table) noteStart(user string, pos uint64) {
	if st := t.stream(user); st != nil {
		st.start.CompareAndSwap(0, pos+1)
	}
}

// Fresh returns the position a fresh connection to users starts at: every
// message of theirs up to it was stored before, every later one reaches
// the connection live. Call it after subscribing.
func (t *Table) Fresh(users []string) (uint64, error) {
	var upTo uint64
	for _, u := range users {
		// The user's live subscription was already here: everything
		// stored before ours was published up to delivered or is on its
		// way, to this connection too.
		if d := t.delivered(u); d > 0 {
			upTo = max(upTo, d)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), ReadTimeout)
		last, err := t.history.LastSeq(ctx, u)
		cancel()
		if err != nil {
			t.counters.ReadFailures.Inc()
			return 0, err
		}
		t.noteStart(u, last)
		upTo = max(upTo, last)
	}
	return upTo, nil
}

// Since reads what history holds for users after a resuming client's
// cursor (an empty cursor reads only where history stands), within
// ReadTimeout, and records where users' streams start: the position read
// up to. Call it after subscribing.
func (t *Table) Since(users []string, cursor string) (*history.Replay, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ReadTimeout)
	defer cancel()
	rp, err := t.history.Since(ctx, users, cursor)
	if err != nil {
		t.counters.ReadFailures.Inc()
		return nil, err
	}
	if pos, ok := rig.ParseSeqID(rp.Last); ok {
		for _, u := range users {
			t.noteStart(u, pos)
		}
	}
	return rp, nil
}
