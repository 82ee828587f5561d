package client

import (
	"sync"
	"testing"

	"github.com/rig-go/rig/internal/rig"
)

type recorder struct {
	mu     sync.Mutex
	got    []*rig.Event
	closed int
}

func (r *recorder) Write(evs []*rig.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, evs...)
	return nil
}

func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed++
	return nil
}

// TestCloseRightAfterStart: a client closed while its first flush is only
// scheduled (a socket refused at its first frame) must not write an empty
// batch or crash.
func TestCloseRightAfterStart(t *testing.T) {
	for range 2000 {
		c := New(&rig.Session{User: "alice"}, []string{"alice"}, "test", 8)
		_ = c.Send(&rig.Event{Kind: rig.KindConnected, Data: []byte(`{}`)})
		r := &recorder{}
		c.Start(r)
		c.Close(ReasonClientGone)
		<-c.Done()
		r.mu.Lock()
		if r.closed != 1 {
			t.Fatalf("transport closed %d times", r.closed)
		}
		r.mu.Unlock()
	}
}

func TestFinalEventEndsTheClient(t *testing.T) {
	c := New(&rig.Session{User: "alice"}, []string{"alice"}, "test", 8)
	r := &recorder{}
	c.Start(r)
	c.Deliver(&rig.Event{Kind: rig.KindMessage, ID: "1"})
	c.Finish(&rig.Event{Kind: rig.KindReconnect}, ReasonDraining)
	<-c.Done()
	if c.Reason() != ReasonDraining {
		t.Fatalf("reason %q", c.Reason())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 2 || r.got[1].Kind != rig.KindReconnect {
		t.Fatalf("wrote %v", r.got)
	}
	if err := c.Send(&rig.Event{Kind: rig.KindMessage}); err != ErrClosed {
		t.Fatalf("Send after the final event: %v", err)
	}
}

func TestSlowClientIsClosed(t *testing.T) {
	c := New(&rig.Session{User: "alice"}, nil, "test", 8)
	// Not started: nothing drains the queue.
	for range 9 {
		c.Deliver(&rig.Event{Kind: rig.KindMessage})
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("a client over its queue size is still open")
	}
	if c.Reason() != ReasonSlow {
		t.Fatalf("reason %q", c.Reason())
	}
}
