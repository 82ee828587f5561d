package client

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/rig"
)

// pipeTransport records what the writer sends; block makes Write wait,
// as a client that stopped reading makes a socket write wait.
type pipeTransport struct {
	mu      sync.Mutex
	batches [][]string
	block   chan struct{}
	closed  chan struct{}
	once    sync.Once
	fail    error
}

func newPipe() *pipeTransport { return &pipeTransport{closed: make(chan struct{})} }

func (p *pipeTransport) Write(evs []*rig.Event) error {
	if p.block != nil {
		select {
		case <-p.block:
		case <-p.closed:
			return errors.New("closed")
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for _, ev := range evs {
		ids = append(ids, ev.Kind.String()+":"+ev.ID)
	}
	p.batches = append(p.batches, ids)
	return p.fail
}

func (p *pipeTransport) Close(Disconnect) error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

func (p *pipeTransport) written() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var all []string
	for _, b := range p.batches {
		all = append(all, b...)
	}
	return all
}

// wrote is a check.For condition: p has written n events.
func wrote(p *pipeTransport, n int) func() error {
	return func() error {
		if w := p.written(); len(w) != n {
			return fmt.Errorf("written %v, want %d events", w, n)
		}
		return nil
	}
}

// drained is a check.For condition: the writer has taken every queued event.
func drained(c *Client) func() error {
	return func() error {
		if n := queued(c); n != 0 {
			return fmt.Errorf("%d events still queued", n)
		}
		return nil
	}
}

// queued returns how many events wait to be written.
func queued(c *Client) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

func msg(id string) *rig.Event { return &rig.Event{Kind: rig.KindMessage, ID: id} }

func TestQueuedBeforeStartThenWrittenInOrder(t *testing.T) {
	c := New(&rig.Session{User: "alice"}, "test", 10)
	for _, id := range []string{"1", "2", "3"} {
		if err := c.Send(msg(id)); err != nil {
			t.Fatal(err)
		}
	}
	p := newPipe()
	c.Attach(p)
	check.For(t, 5*time.Second, time.Millisecond, wrote(p, 3))
	c.Deliver(msg("4"))
	check.For(t, 5*time.Second, time.Millisecond, wrote(p, 4))
	got := p.written()
	for i, want := range []string{"message:1", "message:2", "message:3", "message:4"} {
		if got[i] != want {
			t.Fatalf("written %v", got)
		}
	}
	if len(p.batches[0]) != 3 {
		t.Fatalf("queued events not coalesced into one write: %v", p.batches)
	}
}

func TestFullQueueClosesSlowClient(t *testing.T) {
	c := New(&rig.Session{}, "test", 4)
	p := newPipe()
	p.block = make(chan struct{}) // the client stopped reading
	c.Attach(p)
	c.Deliver(msg("0")) // taken by the writer, which blocks
	check.For(t, 5*time.Second, time.Millisecond, drained(c))
	for i := range 4 {
		c.Deliver(msg(string(rune('a' + i))))
	}
	select {
	case <-c.Done():
		t.Fatal("closed before the queue was full")
	default:
	}
	c.Deliver(msg("overflow"))
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("slow client not closed when its queue overflowed")
	}
	if c.Reason() != DisconnectSlow {
		t.Fatalf("reason %v", c.Reason())
	}
	select {
	case <-p.closed:
	default:
		t.Fatal("transport not closed")
	}
	if err := c.Send(msg("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after close: %v", err)
	}
}

func TestFinishWritesFinalEventThenCloses(t *testing.T) {
	c := New(&rig.Session{}, "test", 2)
	p := newPipe()
	c.Attach(p)
	c.Deliver(msg("1"))
	c.Deliver(msg("2"))
	c.SendFinal(&rig.Event{Kind: rig.KindSessionKilled}, DisconnectSessionKilled)
	c.Deliver(msg("after"))
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not closed after the final event")
	}
	got := p.written()
	if got[len(got)-1] != "session_killed:" {
		t.Fatalf("written %v, want session_killed last", got)
	}
	for _, w := range got {
		if w == "message:after" {
			t.Fatal("event after the final one was written")
		}
	}
	if c.Reason() != DisconnectSessionKilled {
		t.Fatalf("reason %v", c.Reason())
	}
}

func TestFinishOnStuckClientStillCloses(t *testing.T) {
	c := New(&rig.Session{}, "test", 1)
	p := newPipe()
	p.block = make(chan struct{})
	c.Attach(p)
	c.Deliver(msg("1"))
	check.For(t, 5*time.Second, time.Millisecond, drained(c))
	c.SendFinal(&rig.Event{Kind: rig.KindTokenExpired}, DisconnectTokenExpired)
	// The final event is queued behind a write that never finishes; the
	// owner closes the client (as the edge does on a drain timeout).
	c.Close(DisconnectShutdown)
	<-c.Done()
	if c.Reason() != DisconnectTokenExpired {
		t.Fatalf("first reason not kept: %v", c.Reason())
	}
}

func TestWriteErrorCloses(t *testing.T) {
	c := New(&rig.Session{}, "test", 8)
	p := newPipe()
	p.fail = errors.New("broken pipe")
	c.Attach(p)
	c.Deliver(msg("1"))
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not closed after a failed write")
	}
	if c.Reason() != DisconnectWriteFailed {
		t.Fatalf("reason %v", c.Reason())
	}
}

// TestClosingTransportLeavesTheReason: a transport closing on its own
// (ErrClosing) stops the writer without closing the client, counts and
// receipts nothing, and the reason its reader gives next is the one kept.
func TestClosingTransportLeavesTheReason(t *testing.T) {
	c := New(&rig.Session{}, "test", 8)
	c.Counters = &Counters{}
	receipted := 0
	c.Written = func(*Client, *rig.Event) { receipted++ }
	p := newPipe()
	p.fail = ErrClosing
	c.Attach(p)
	m := msg("1")
	m.Receipt = "r1"
	c.Deliver(m)
	check.For(t, 5*time.Second, time.Millisecond, wrote(p, 1))
	check.For(t, 5*time.Second, time.Millisecond, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.writing {
			return fmt.Errorf("still writing")
		}
		return nil
	})
	if c.Reason() != (Disconnect{}) {
		t.Fatalf("closed for %v by a closing transport", c.Reason())
	}
	if err := c.Send(msg("2")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after ErrClosing: %v, want ErrClosed", err)
	}
	c.Close(Disconnect{1009, "too big"})
	<-c.Done()
	if c.Reason() != (Disconnect{1009, "too big"}) {
		t.Fatalf("reason %v, want the reader's", c.Reason())
	}
	if n := c.Counters.Delivered.Load(); n != 0 || receipted != 0 {
		t.Fatalf("%d delivered and %d receipted, but nothing was written", n, receipted)
	}
}

func TestStartAfterCloseClosesTransport(t *testing.T) {
	c := New(&rig.Session{}, "test", 8)
	c.Close(DisconnectClientGone)
	p := newPipe()
	c.Attach(p)
	select {
	case <-p.closed:
	default:
		t.Fatal("transport of a closed client left open")
	}
}

func BenchmarkDeliver(b *testing.B) {
	c := New(&rig.Session{}, "test", 1<<20)
	c.Attach(newPipe())
	ev := msg("x")
	b.ReportAllocs()
	for b.Loop() {
		c.Deliver(ev)
	}
}

func seqMsg(user string, seq uint64) *rig.Event {
	return &rig.Event{Kind: rig.KindMessage, ID: fmt.Sprint(user, seq), User: user, Seq: seq}
}

func TestHoldResumeSeam(t *testing.T) {
	c := New(&rig.Session{}, "test", 8)
	c.Send(&rig.Event{Kind: rig.KindConnected})
	c.Hold()
	p := newPipe()
	c.Attach(p)
	// Live events during the replay: one older than the cursor (2), one the
	// replay also holds (5).
	c.Deliver(seqMsg("a", 2))
	c.Deliver(seqMsg("a", 5))
	if got := p.written(); len(got) != 0 {
		t.Fatalf("written while holding: %v", got)
	}
	c.Release([]string{"a"}, 3, &rig.Event{Kind: rig.KindGap, ID: "x"}, seqMsg("a", 4), seqMsg("a", 5), seqMsg("a", 6))
	check.For(t, 5*time.Second, time.Millisecond, wrote(p, 5))
	// A late live copy of a replayed message is dropped; new ones are not.
	c.Deliver(seqMsg("a", 6))
	c.Deliver(seqMsg("a", 7))
	c.Deliver(seqMsg("a", 8))
	check.For(t, 5*time.Second, time.Millisecond, wrote(p, 7))
	want := "connected:,gap:x,message:a4,message:a5,message:a6,message:a7,message:a8"
	if got := strings.Join(p.written(), ","); got != want {
		t.Fatalf("written %s\nwant    %s", got, want)
	}
}

func TestNestedHolds(t *testing.T) {
	c := New(&rig.Session{}, "test", 8)
	p := newPipe()
	c.Attach(p)
	c.Hold()
	c.Hold()
	c.Deliver(seqMsg("b", 9))
	c.Release([]string{"a"}, 0, seqMsg("a", 1))
	c.Release([]string{"b"}, 0, seqMsg("b", 2))
	check.For(t, 5*time.Second, time.Millisecond, wrote(p, 3))
	if got := strings.Join(p.written(), ","); got != "message:a1,message:b2,message:b9" {
		t.Fatalf("written %s", got)
	}
}

func TestHeldOverflowClosesSlowClient(t *testing.T) {
	c := New(&rig.Session{}, "test", 2)
	c.Hold()
	for i := range 3 {
		c.Deliver(msg(string(rune('a' + i))))
	}
	select {
	case <-c.Done():
	case <-time.After(time.Second):
		t.Fatal("held events grew past the queue limit")
	}
}

// TestCloseRacesWriter closes clients while their writer is being started;
// the writer must find the queue emptied by Close and just stop.
func TestCloseRacesWriter(t *testing.T) {
	for range 2000 {
		c := New(&rig.Session{}, "test", 8)
		c.Attach(newPipe())
		c.Deliver(msg("1"))
		c.Close(DisconnectClientGone)
	}
}

// DeliverHere writes on the caller's goroutine when the client is idle,
// and only queues when a writer is at work, so the order holds.
func TestDeliverHere(t *testing.T) {
	c := New(&rig.Session{User: "alice"}, "test", 10)
	c.Counters = &Counters{}
	p := newPipe()
	c.Attach(p)
	c.DeliverHere(msg("1"))
	if got := p.written(); len(got) != 1 || got[0] != "message:1" {
		t.Fatalf("idle client: written %v before DeliverHere returned, want [message:1]", got)
	}
	if c.Counters.Delivered.Load() != 1 {
		t.Errorf("delivered counter %d, want 1", c.Counters.Delivered.Load())
	}

	// A writer blocked on the transport: DeliverHere queues behind it.
	p.block = make(chan struct{})
	c.Deliver(msg("2"))
	check.For(t, 5*time.Second, time.Millisecond, drained(c)) // the writer took 2 and waits
	done := make(chan struct{})
	go func() { c.DeliverHere(msg("3")); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("DeliverHere waited for a busy writer")
	}
	close(p.block)
	check.For(t, 5*time.Second, time.Millisecond, wrote(p, 3))
	if got := strings.Join(p.written(), ","); got != "message:1,message:2,message:3" {
		t.Errorf("written %s", got)
	}
}

// A full queue closes the client as slow, through DeliverHere too.
func TestDeliverHereFullQueue(t *testing.T) {
	c := New(&rig.Session{User: "alice"}, "test", 8)
	c.Counters = &Counters{}
	c.Hold() // nothing is written: the queue fills
	for i := range 9 {
		c.DeliverHere(msg(fmt.Sprint(i)))
	}
	if c.Reason() != DisconnectSlow || c.Counters.SlowClosed.Load() != 1 || c.Counters.Dropped.Load() != 1 {
		t.Errorf("reason %v, slow %d, dropped %d", c.Reason(), c.Counters.SlowClosed.Load(), c.Counters.Dropped.Load())
	}
}

// TestFailDropsHeldEvents: a start that could not be read from history
// ends the hold with only the final event: the live events held meanwhile
// (past the client's cursor) are not written, and nothing after it is.
func TestFailDropsHeldEvents(t *testing.T) {
	c := New(&rig.Session{}, "test", 8)
	p := newPipe()
	c.Hold()
	c.Attach(p)
	c.Deliver(seqMsg("u", 7))
	c.Deliver(&rig.Event{Kind: rig.KindHeartbeat})
	c.Fail(&rig.Event{Kind: rig.KindReconnect, ID: ""}, DisconnectHistoryUnavailable)
	c.Deliver(seqMsg("u", 8))
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not closed after the final event")
	}
	if got := p.written(); len(got) != 1 || got[0] != "reconnect:" {
		t.Fatalf("written %v, want only the reconnect event", got)
	}
	if c.Reason() != DisconnectHistoryUnavailable {
		t.Fatalf("reason %v", c.Reason())
	}
}

// TestHoldUserLetsTheRestThrough: while a Phoenix join of one user reads
// where it starts, only that user's messages wait; heartbeats (pings) and
// other users' messages are written, and the held ones follow the join's
// first events, without the copies it already has.
func TestHoldUserLetsTheRestThrough(t *testing.T) {
	c := New(&rig.Session{}, "test", 8)
	p := newPipe()
	c.Attach(p)
	c.HoldUser("a")
	c.Deliver(seqMsg("a", 4))
	c.Deliver(&rig.Event{Kind: rig.KindHeartbeat})
	c.Deliver(seqMsg("b", 1))
	c.Deliver(seqMsg("a", 5))
	check.For(t, 5*time.Second, time.Millisecond, wrote(p, 2))
	if got := strings.Join(p.written(), ","); got != "heartbeat:,message:b1" {
		t.Fatalf("written while a was held: %s", got)
	}
	c.ReleaseUser("a", 3, seqMsg("a", 4))
	check.For(t, 5*time.Second, time.Millisecond, wrote(p, 4))
	if got := strings.Join(p.written(), ","); got != "heartbeat:,message:b1,message:a4,message:a5" {
		t.Fatalf("written %s", got)
	}
}

// A Release (the end of a connection's first events) leaves held what a
// HoldUser still holds.
func TestReleaseKeepsUserHolds(t *testing.T) {
	c := New(&rig.Session{}, "test", 8)
	p := newPipe()
	c.Hold()
	c.Attach(p)
	c.HoldUser("a")
	c.Deliver(seqMsg("a", 1))
	c.Deliver(seqMsg("b", 2))
	c.Release(nil, 0)
	check.For(t, 5*time.Second, time.Millisecond, wrote(p, 1))
	c.ReleaseUser("a", 0)
	check.For(t, 5*time.Second, time.Millisecond, wrote(p, 2))
	if got := strings.Join(p.written(), ","); got != "message:b2,message:a1" {
		t.Fatalf("written %s", got)
	}
}

// TestWrittenAsksReceipts: Written is called, after the transport's
// Write returned, for each message that asks for a receipt, and only for
// those; not when the write failed.
func TestWrittenAsksReceipts(t *testing.T) {
	p := newPipe()
	c := New(&rig.Session{User: "alice"}, "test", 10)
	var mu sync.Mutex
	var confirmed []string
	c.Written = func(cl *Client, ev *rig.Event) {
		if cl != c {
			t.Errorf("Written for another client")
		}
		// The transport has the event already.
		if w := p.written(); !slices.Contains(w, "message:"+ev.ID) {
			t.Errorf("Written(%s) before the transport wrote it: %v", ev.ID, w)
		}
		mu.Lock()
		confirmed = append(confirmed, ev.ID)
		mu.Unlock()
	}
	c.Attach(p)
	c.Deliver(&rig.Event{Kind: rig.KindMessage, ID: "plain"})
	c.Deliver(&rig.Event{Kind: rig.KindMessage, ID: "asks", Receipt: "_RIG_RECEIPT.x"})
	c.Deliver(&rig.Event{Kind: rig.KindHeartbeat, Receipt: "_RIG_RECEIPT.x"})
	check.For(t, 2*time.Second, time.Millisecond, wrote(p, 3))
	p.mu.Lock()
	p.fail = errors.New("broken pipe")
	p.mu.Unlock()
	c.Deliver(&rig.Event{Kind: rig.KindMessage, ID: "lost", Receipt: "_RIG_RECEIPT.x"})
	check.For(t, 2*time.Second, time.Millisecond, wrote(p, 4))
	<-c.Done()
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(confirmed, ",") != "asks" {
		t.Fatalf("confirmed %v, want only asks", confirmed)
	}
}
