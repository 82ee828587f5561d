package edge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/positions"
	"github.com/rig-go/rig/internal/rig"
)

// stallingHub is the edge's hub, except that its first Publish waits
// until release is closed: the lane that publishes through it stops, its
// channel fills, and NATS drops messages for it (a slow consumer).
type stallingHub struct {
	positions.Sink
	once    sync.Once
	release chan struct{}
}

func (h *stallingHub) Publish(user string, ev *rig.Event) int {
	h.once.Do(func() { <-h.release })
	return h.Sink.Publish(user, ev)
}

// TestSlowConsumerRefill: NATS drops live messages for a lane that fell
// behind; the edge refills them from history, so its client still gets
// every message, once, in order.
func TestSlowConsumerRefill(t *testing.T) {
	const total = laneDepth + 4000
	s, b := newTestEdgeWith(t, func(c *config.Edge) { c.NATS.MaxPerUser = 2 * total })
	stall := &stallingHub{Sink: s.subs.sink, release: make(chan struct{})}
	s.subs.sink = stall // before any message: the lanes have not read it yet
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(stall.release) }) }
	rec := newRecorder(2 * total)
	if err := s.hub.Register(rec.Client, "", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	defer s.hub.Unregister(rec.Client)
	defer release() // first: a failing test must not leave the lane blocked in the hub
	if _, err := s.position([]string{"alice"}); err != nil {
		t.Fatal(err)
	}
	b.NC.Flush()
	var want []string
	for i := range total {
		m := nats.NewMsg("user.alice")
		id := fmt.Sprintf("m-%05d", i)
		m.Header.Set(broker.HeaderMsgID, id)
		if _, err := b.JS.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
		if i%1000 == 999 || i == total-1 {
			select {
			case <-b.JS.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("publishing timed out")
			}
		}
	}
	// NATS dropped what did not fit in the blocked lane.
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if testutilCounter(s.metrics.SlowConsumer) == 0 {
			return errors.New("NATS never reported the lane as a slow consumer")
		}
		return nil
	})
	release()
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if n := len(rec.got()); n < total {
			return fmt.Errorf("got %d of %d messages", n, total)
		}
		return nil
	})
	got := rec.got()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d is %s, want %s", i, got[i], want[i])
		}
	}
	if len(got) != total {
		t.Fatalf("got %d messages, want %d", len(got), total)
	}
	if testutilCounter(s.metrics.GapFilled) == 0 {
		t.Fatal("nothing was refilled: the test did not drop any message")
	}
	t.Logf("%d messages, %v refilled from history after %v slow-consumer drops", total,
		testutilCounter(s.metrics.GapFilled), testutilCounter(s.metrics.SlowConsumer))
}

// TestRefillFailureReconnects: when a live message shows one was missed
// and history cannot be read, the user's clients are told to reconnect
// (they resume from their own cursors) and the live message is not
// delivered past the hole.
func TestRefillFailureReconnects(t *testing.T) {
	s, b := newTestEdge(t)
	cl := client.New(&rig.Session{User: "alice", ID: "s1", Expires: time.Now().Add(time.Hour)}, "sse", 64)
	cl.Hold()
	if err := s.hub.Register(cl, "s1", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	defer s.hub.Unregister(cl)
	tr := &captured{}
	cl.Attach(tr)
	cl.Release([]string{"alice"}, 0, connectedEvent([]string{"alice"}))
	if _, err := s.position([]string{"alice"}); err != nil { // the stream starts at 0
		t.Fatal(err)
	}
	// History is gone (the stream deleted): no refill can succeed.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.JS.DeleteStream(ctx, broker.StreamName); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Stream(ctx, broker.StreamName); err != jetstream.ErrStreamNotFound {
		t.Fatalf("stream still there: %v", err)
	}
	// A live message whose predecessor (seq 3) never came. The refill is
	// tried until the lane's context ends (positions.FillTimeout in the edge).
	lane, cancelLane := context.WithTimeout(context.Background(), time.Second)
	defer cancelLane()
	s.subs.positions.Live(lane, &rig.Event{Kind: rig.KindMessage, ID: "m5", User: "alice", Seq: 5, Prev: 3}, s.subs.sink)
	select {
	case <-cl.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client was not closed")
	}
	if k := tr.kinds(); len(k) != 2 || k[0] != rig.KindConnected || k[1] != rig.KindReconnect {
		t.Fatalf("client got %v, want connected then reconnect (and not the live message)", k)
	}
	if cl.Reason() != client.DisconnectHistoryUnavailable {
		t.Fatalf("closed for %v", cl.Reason())
	}
	if testutilCounter(s.metrics.HistoryReadFailures) == 0 {
		t.Fatal("the failure was not counted")
	}
}

func testutilCounter(c prometheus.Counter) float64 { return testutil.ToFloat64(c) }
