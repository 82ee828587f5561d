package edge

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/broker/brokertest"
	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/rig"
)

func newTestEdge(t *testing.T) (*Server, *broker.Broker) {
	t.Helper()
	return newTestEdgeWith(t, nil)
}

// newTestEdgeWith is newTestEdge with its configuration changed by adjust.
func newTestEdgeWith(t *testing.T, adjust func(*config.Edge)) (*Server, *broker.Broker) {
	t.Helper()
	cfg := &config.Edge{
		NATS:              config.NATS{Embedded: true, Listen: "127.0.0.1:0", StoreDir: t.TempDir(), MaxAge: time.Minute, MaxPerUser: 100, Name: "rig-edge"},
		JWT:               config.JWT{SecretKey: "test-secret", UserField: "user", RolesField: "roles"},
		HeartbeatInterval: time.Minute,
		QueueSize:         64,
		WriteTimeout:      time.Second,
		DrainTimeout:      time.Second,
		EdgeID:            "test-edge",
	}
	if adjust != nil {
		adjust(cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := broker.Open(cfg.NATS, log)
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Run(t, b, true)
	v, err := auth.New(t.Context(), cfg.JWT, log)
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg, log, b, Listeners{}, v)
	brokertest.Go(t, s.Run)
	// Ready: Run has started everything it runs.
	deadline := time.Now().Add(10 * time.Second)
	for !s.gate.isOpen() {
		if time.Now().After(deadline) {
			h, _ := s.health()
			t.Fatalf("edge not ready after 10s: %s", h.Detail)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s, b
}

// recorder is a client whose transport keeps the ids of the messages
// written to it.
type recorder struct {
	*client.Client
	tr *captured
}

func newRecorder(queueSize int) *recorder {
	r := &recorder{Client: client.New(&rig.Session{User: "test", Expires: time.Now().Add(time.Hour)}, "test", queueSize), tr: &captured{}}
	r.Attach(r.tr)
	return r
}

// registerRecorders registers n recorders in s's hub, the i-th for user
// fmt.Sprintf(userFormat, i), each unregistered when the test ends.
func registerRecorders(t *testing.T, s *Server, n int, userFormat string) []*recorder {
	t.Helper()
	recs := make([]*recorder, n)
	for i := range recs {
		recs[i] = newRecorder(64)
		if err := s.hub.Register(recs[i].Client, "", []string{fmt.Sprintf(userFormat, i)}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.hub.Unregister(recs[i].Client) })
	}
	return recs
}

// got returns the ids of the message events written: a slow run lasts
// past the test edge's heartbeat interval, and heartbeats are not what is
// counted here.
func (r *recorder) got() []string {
	r.tr.mu.Lock()
	defer r.tr.mu.Unlock()
	var ids []string
	for _, ev := range r.tr.evs {
		if ev.Kind == rig.KindMessage {
			ids = append(ids, ev.ID)
		}
	}
	return ids
}

// captured is a client.Transport that keeps what it is given.
type captured struct {
	mu  sync.Mutex
	evs []*rig.Event
}

func (c *captured) Write(evs []*rig.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evs = append(c.evs, evs...)
	return nil
}

func (c *captured) Close(client.Disconnect) error { return nil }

func (c *captured) kinds() []rig.Kind {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []rig.Kind
	for _, ev := range c.evs {
		if ev.Kind != rig.KindHeartbeat {
			out = append(out, ev.Kind)
		}
	}
	return out
}

// TestNoGoroutinePerSubscription subscribes a thousand users through the
// real NATS subscriber and checks the goroutine count does not grow with
// them, while messages still arrive in order per user.
func TestNoGoroutinePerSubscription(t *testing.T) {
	s, b := newTestEdge(t)
	before := runtime.NumGoroutine()
	recs := registerRecorders(t, s, 1000, "user-%d@x")
	if n := runtime.NumGoroutine() - before; n > 20 {
		t.Fatalf("%d goroutines for 1000 subscriptions", n)
	}
	nc, err := nats.Connect(b.NC.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b.NC.Flush()
	for i := range recs {
		subj, _ := rig.Subject(fmt.Sprintf("user-%d@x", i))
		for j := range 3 {
			m := nats.NewMsg(subj)
			m.Header.Set(broker.HeaderMsgID, fmt.Sprintf("%d-%d", i, j))
			nc.PublishMsg(m)
		}
	}
	nc.Flush()
	deadline := time.Now().Add(10 * time.Second)
	for i, r := range recs {
		check.For(t, time.Until(deadline), 5*time.Millisecond, func() error {
			if g := r.got(); len(g) < 3 {
				return fmt.Errorf("user %d got %v", i, g)
			}
			return nil
		})
		if g := r.got(); g[0] != fmt.Sprintf("%d-0", i) || g[1] != fmt.Sprintf("%d-1", i) || g[2] != fmt.Sprintf("%d-2", i) {
			t.Fatalf("user %d got %v out of order", i, g)
		}
	}
}

func TestLiveEvent(t *testing.T) {
	m := nats.NewMsg(rig.LiveSubjectPrefix + "user.alice%40x")
	m.Header.Set(broker.HeaderMsgID, "abc")
	m.Header.Set(broker.HeaderSequence, "42")
	m.Header.Set(broker.HeaderLastSequence, "40")
	ev, ok := liveEvent(m)
	if !ok || ev.ID != "abc" || ev.User != "alice@x" || ev.Seq != 42 || ev.Prev != 40 || ev.Kind != rig.KindMessage {
		t.Fatalf("%+v %v", ev, ok)
	}
	for _, bad := range []string{"", "a\nb", "a\x00", string(make([]byte, 300))} {
		m.Header.Set(broker.HeaderMsgID, bad)
		if ev, _ := liveEvent(m); ev.ID != "seq:42" {
			t.Fatalf("header %q gave id %q, want its stream position", bad, ev.ID)
		}
	}
	if ev.Receipt != "" {
		t.Fatalf("a message without Rig-Receipt asks for receipts: %q", ev.Receipt)
	}
	m.Header.Set(broker.HeaderReceipt, "_RIG_RECEIPT.abc")
	if ev, _ := liveEvent(m); ev.Receipt != "_RIG_RECEIPT.abc" {
		t.Fatalf("receipt subject %q", ev.Receipt)
	}
	for _, hostile := range []string{"user.bob", "_RIG_RECEIPT.>", "_RIG_RECEIPT.*", "_RIG_RECEIPT.a.b"} {
		m.Header.Set(broker.HeaderReceipt, hostile)
		if ev, ok := liveEvent(m); !ok || ev.Receipt != "" {
			t.Fatalf("Rig-Receipt %q gave %+v, %v: want the message, with no receipt", hostile, ev, ok)
		}
	}
	if _, ok := liveEvent(&nats.Msg{Subject: rig.LiveSubjectPrefix + "user.alice"}); ok {
		t.Fatal("a message without a stream sequence was accepted")
	}
	m.Subject = rig.LiveSubjectPrefix + "user.a.b"
	if _, ok := liveEvent(m); ok {
		t.Fatal("a malformed subject was accepted")
	}
}
