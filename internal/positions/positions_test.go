package positions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rig-go/rig/internal/history"
	"github.com/rig-go/rig/internal/rig"
)

// fakeHistory is the history stream in memory: every message stored gets
// the next position. fails makes that many Refill calls fail first;
// broken makes every read fail, unreadable every Refill of that user.
type fakeHistory struct {
	mu         sync.Mutex
	events     []*rig.Event
	fails      int
	broken     bool
	unreadable string
	refills    [][]string // the users of each Refill call, and...
	afters     []uint64   // ...the position it read after
}

var errDown = errors.New("history is down")

// store appends a message for user and returns it.
func (h *fakeHistory) store(user string) *rig.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	seq := uint64(len(h.events) + 1)
	var prev uint64
	for _, ev := range h.events {
		if ev.User == user {
			prev = ev.Seq
		}
	}
	ev := &rig.Event{Kind: rig.KindMessage, ID: fmt.Sprintf("%s%d", user, seq), User: user, Seq: seq, Prev: prev}
	h.events = append(h.events, ev)
	return ev
}

func (h *fakeHistory) after(users []string, after uint64) *history.Replay {
	rp := &history.Replay{Last: rig.SeqID(uint64(len(h.events))), Floor: after}
	for _, ev := range h.events {
		if ev.Seq > after && slices.Contains(users, ev.User) {
			rp.Events = append(rp.Events, ev)
		}
	}
	return rp
}

func (h *fakeHistory) LastSeq(_ context.Context, user string) (uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.broken {
		return 0, errDown
	}
	var last uint64
	for _, ev := range h.events {
		if ev.User == user {
			last = ev.Seq
		}
	}
	return last, nil
}

func (h *fakeHistory) Since(_ context.Context, users []string, cursor string) (*history.Replay, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.broken {
		return nil, errDown
	}
	after, _ := rig.ParseSeqID(cursor)
	if cursor == "" {
		after = uint64(len(h.events))
	}
	return h.after(users, after), nil
}

func (h *fakeHistory) Refill(_ context.Context, users []string, after uint64) (*history.Replay, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refills = append(h.refills, slices.Clone(users))
	h.afters = append(h.afters, after)
	if h.broken || slices.Contains(users, h.unreadable) {
		return nil, errDown
	}
	if h.fails > 0 {
		h.fails--
		return nil, errDown
	}
	return h.after(users, after), nil
}

func (h *fakeHistory) refillCalls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.refills)
}

// sink records what a table publishes and whom it reconnects.
type sink struct {
	mu         sync.Mutex
	got        map[string][]string
	reconnects []string
}

func (s *sink) Publish(user string, ev *rig.Event) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == nil {
		s.got = map[string][]string{}
	}
	s.got[user] = append(s.got[user], ev.ID)
	return 1
}

func (s *sink) Reconnect(users []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reconnects = append(s.reconnects, users...)
}

func (s *sink) ids(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.got[user], ",")
}

func newCounters() Counters {
	c := func(name string) prometheus.Counter { return prometheus.NewCounter(prometheus.CounterOpts{Name: name}) }
	return Counters{Duplicates: c("d"), Fills: c("f"), Filled: c("fd"), ReadFailures: c("r")}
}

func newTable(h *fakeHistory) *Table {
	return New(h, newCounters(), slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// fast makes fills give up soon, for the tests of failing reads.
func fast(t *testing.T) {
	timeout, backoff := FillTimeout, FillBackoff
	FillTimeout, FillBackoff = 300*time.Millisecond, 10*time.Millisecond
	t.Cleanup(func() { FillTimeout, FillBackoff = timeout, backoff })
}

// subscribe tracks users and starts them as a fresh connection does.
func subscribe(t *testing.T, tb *Table, users ...string) uint64 {
	t.Helper()
	for _, u := range users {
		tb.Track(u)
	}
	upTo, err := tb.Fresh(users)
	if err != nil {
		t.Fatal(err)
	}
	return upTo
}

func TestLiveDropsDuplicates(t *testing.T) {
	h := &fakeHistory{}
	tb, out := newTable(h), &sink{}
	subscribe(t, tb, "a")
	ev := h.store("a")
	tb.Live(context.Background(), ev, out)
	tb.Live(context.Background(), ev, out) // a second copy (a resync's)
	if got := out.ids("a"); got != "a1" {
		t.Fatalf("published %s, want a1 once", got)
	}
	if testutil.ToFloat64(tb.counters.Duplicates) != 1 || tb.delivered("a") != 1 {
		t.Fatalf("duplicates %v, delivered %d", testutil.ToFloat64(tb.counters.Duplicates), tb.delivered("a"))
	}
}

// A live message whose prev was never delivered is preceded by what
// history holds before it, once each.
func TestLiveFillsTheGapFirst(t *testing.T) {
	h := &fakeHistory{}
	tb, out := newTable(h), &sink{}
	subscribe(t, tb, "a")
	h.store("a")
	h.store("b")
	h.store("a")
	last := h.store("a") // the only one that came live
	tb.Live(context.Background(), last, out)
	if got := out.ids("a"); got != "a1,a3,a4" {
		t.Fatalf("published %s, want a1,a3,a4", got)
	}
	if got := out.ids("b"); got != "" {
		t.Fatalf("b's message published to a's stream: %s", got)
	}
	// a4 is filled too, then its live copy dropped.
	if h.afters[0] != 0 || testutil.ToFloat64(tb.counters.Filled) != 3 || testutil.ToFloat64(tb.counters.Duplicates) != 1 {
		t.Fatalf("read after %v, filled %v", h.afters, testutil.ToFloat64(tb.counters.Filled))
	}
}

// Before any message was delivered, a gap is found from where the
// subscription started: a resumed connection's replay end (Since).
func TestSinceSetsTheStart(t *testing.T) {
	h := &fakeHistory{}
	tb, out := newTable(h), &sink{}
	h.store("a")
	h.store("a")
	tb.Track("a")
	if _, err := tb.Since([]string{"a"}, "seq:1"); err != nil {
		t.Fatal(err)
	}
	next := h.store("a") // prev 2: the replay's end, no gap
	tb.Live(context.Background(), next, out)
	if got := out.ids("a"); got != "a3" || h.refillCalls() != 0 {
		t.Fatalf("published %s after %d refills, want a3 and none", got, h.refillCalls())
	}
}

// A fresh connection of a user already subscribed here starts where its
// messages were delivered, without reading history.
func TestStartUsesDelivered(t *testing.T) {
	h := &fakeHistory{}
	tb, out := newTable(h), &sink{}
	subscribe(t, tb, "a")
	tb.Live(context.Background(), h.store("a"), out)
	h.store("a") // stored, not yet delivered here: on its way live
	h.broken = true
	upTo, err := tb.Fresh([]string{"a"})
	if err != nil || upTo != 1 {
		t.Fatalf("Fresh = %d, %v; want 1 without reading history", upTo, err)
	}
}

func TestStartFailure(t *testing.T) {
	h := &fakeHistory{broken: true}
	tb := newTable(h)
	tb.Track("a")
	if _, err := tb.Fresh([]string{"a"}); !errors.Is(err, errDown) {
		t.Fatalf("Fresh: %v", err)
	}
	if _, err := tb.Since([]string{"a"}, "seq:1"); !errors.Is(err, errDown) {
		t.Fatalf("Since: %v", err)
	}
	if testutil.ToFloat64(tb.counters.ReadFailures) != 2 {
		t.Fatalf("read failures %v, want 2", testutil.ToFloat64(tb.counters.ReadFailures))
	}
}

// The slow-consumer path: NATS dropped the last messages of a lane that
// fell behind, so no later live message shows the gap; the resync that
// the slow-consumer report asks for (CatchUp) fills them, and late live
// copies are dropped.
func TestCatchUpFillsADroppedTail(t *testing.T) {
	h := &fakeHistory{}
	tb, out := newTable(h), &sink{}
	subscribe(t, tb, "a")
	var stored []*rig.Event
	for range 5 {
		stored = append(stored, h.store("a"))
	}
	tb.Live(context.Background(), stored[0], out)
	tb.Live(context.Background(), stored[1], out)
	if !tb.CatchUp(context.Background(), []string{"a"}, out) {
		t.Fatal("CatchUp failed")
	}
	tb.Live(context.Background(), stored[3], out) // a copy that was still queued
	if got := out.ids("a"); got != "a1,a2,a3,a4,a5" {
		t.Fatalf("published %s", got)
	}
	if h.afters[0] != 2 {
		t.Fatalf("read after %d, want after the last delivered (2)", h.afters[0])
	}
}

// A resync reads many users in batches, each from the earliest of its
// users' positions, gives each user only what is past its own, and skips
// users whose position is not known yet.
func TestCatchUpBatches(t *testing.T) {
	h := &fakeHistory{}
	tb, out := newTable(h), &sink{}
	var users []string
	for i := range 2*fillBatch + 2 {
		users = append(users, fmt.Sprint("u", i))
	}
	subscribe(t, tb, users...)
	tb.Live(context.Background(), h.store("u0"), out) // u0 delivered up to 1
	h.store("u0")
	h.store("u1")
	tb.Track("unknown") // subscribed, its start not read yet
	h.store("unknown")
	if !tb.CatchUp(context.Background(), append(users, "unknown"), out) {
		t.Fatal("CatchUp failed")
	}
	if n := h.refillCalls(); n != 3 {
		t.Fatalf("%d reads for %d users, want 3", n, len(users))
	}
	for _, batch := range h.refills {
		if slices.Contains(batch, "unknown") {
			t.Fatal("a user whose position is not known was read")
		}
	}
	if h.afters[0] != 0 {
		t.Fatalf("first batch read after %d, want its earliest position, 0", h.afters[0])
	}
	if out.ids("u0") != "u01,u02" || out.ids("u1") != "u13" || out.ids("unknown") != "" {
		t.Fatalf("u0 %s, u1 %s, unknown %s", out.ids("u0"), out.ids("u1"), out.ids("unknown"))
	}
}

// A read that fails is tried again until it succeeds.
func TestFillRetries(t *testing.T) {
	fast(t)
	h := &fakeHistory{fails: 2}
	tb, out := newTable(h), &sink{}
	subscribe(t, tb, "a")
	h.store("a")
	tb.Live(context.Background(), h.store("a"), out)
	if got := out.ids("a"); got != "a1,a2" || h.refillCalls() != 3 {
		t.Fatalf("published %s after %d reads, want a1,a2 after 3", got, h.refillCalls())
	}
	if len(out.reconnects) != 0 {
		t.Fatalf("reconnected %v", out.reconnects)
	}
}

// When history stays unreadable, the user's clients are told to reconnect
// and the live message is not published past the hole; a batch that
// fails does not keep the next one from being filled.
func TestFillFailureReconnects(t *testing.T) {
	fast(t)
	h := &fakeHistory{}
	tb, out := newTable(h), &sink{}
	subscribe(t, tb, "a")
	h.store("a")
	h.broken = true
	tb.Live(context.Background(), h.store("a"), out)
	if got := out.ids("a"); got != "" {
		t.Fatalf("published %s past a hole", got)
	}
	if !slices.Equal(out.reconnects, []string{"a"}) || testutil.ToFloat64(tb.counters.ReadFailures) != 1 {
		t.Fatalf("reconnected %v, read failures %v", out.reconnects, testutil.ToFloat64(tb.counters.ReadFailures))
	}

	// Two batches, the first of which cannot be read.
	h2 := &fakeHistory{unreadable: "u0"}
	tb2, out2 := newTable(h2), &sink{}
	var users []string
	for i := range fillBatch + 1 {
		users = append(users, fmt.Sprint("u", i))
	}
	subscribe(t, tb2, users...)
	last := h2.store(users[fillBatch])
	if tb2.CatchUp(context.Background(), users, out2) {
		t.Fatal("CatchUp reported success")
	}
	if !slices.Equal(out2.reconnects, users[:fillBatch]) {
		t.Fatalf("reconnected %d users, want the first batch's %d", len(out2.reconnects), fillBatch)
	}
	if got := out2.ids(users[fillBatch]); got != last.ID {
		t.Fatalf("the second batch got %q, want %s", got, last.ID)
	}
}

// A stream that was forgotten (its subscription closed) publishes nothing.
func TestForget(t *testing.T) {
	h := &fakeHistory{}
	tb, out := newTable(h), &sink{}
	subscribe(t, tb, "a")
	tb.Forget("a")
	tb.Live(context.Background(), h.store("a"), out)
	if got := out.ids("a"); got != "" || tb.delivered("a") != 0 {
		t.Fatalf("published %s to a forgotten stream", got)
	}
}

func TestMarks(t *testing.T) {
	var m Marks
	msg := func(user string, seq uint64) *rig.Event {
		return &rig.Event{Kind: rig.KindMessage, User: user, Seq: seq}
	}
	if m.Duplicate(msg("a", 1)) {
		t.Fatal("no marks, yet a duplicate")
	}
	m.Have([]string{"a", "b"}, 3, []*rig.Event{msg("a", 5), {Kind: rig.KindGap}})
	for _, c := range []struct {
		ev   *rig.Event
		want bool
	}{
		{msg("a", 2), true},
		{msg("a", 5), true},                          // in the replay
		{&rig.Event{Kind: rig.KindHeartbeat}, false}, // not a message
		{msg("b", 3), true},
		{msg("a", 6), false}, // newer: a's mark goes
		{msg("a", 4), false}, // so this is not checked any more
		{msg("c", 1), false},
		{msg("b", 9), false},
	} {
		if got := m.Duplicate(c.ev); got != c.want {
			t.Fatalf("Duplicate(%s %d) = %v, want %v", c.ev.User, c.ev.Seq, got, c.want)
		}
	}
	if m.upTo != nil {
		t.Fatalf("marks left: %v", m.upTo)
	}
}

// A live message whose prev history no longer holds (aged out while the
// lane was behind) is not published past the hole: the user's clients are
// told to reconnect, and resume from their cursors.
func TestLiveReconnectsWhenTheMissedMessageIsGone(t *testing.T) {
	h := &fakeHistory{}
	tb, out := newTable(h), &sink{}
	subscribe(t, tb, "a")
	h.store("a")
	h.store("a")
	last := h.store("a") // a1 and a2 were missed; only a3 came live
	h.mu.Lock()
	h.events = h.events[2:] // a1 and a2 aged out meanwhile
	h.mu.Unlock()
	tb.Live(context.Background(), last, out)
	if got := out.ids("a"); got != "" {
		t.Fatalf("published %s past messages history no longer holds", got)
	}
	if !slices.Equal(out.reconnects, []string{"a"}) {
		t.Fatalf("reconnected %v, want [a]", out.reconnects)
	}
}
