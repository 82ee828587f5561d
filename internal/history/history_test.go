package history

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/rig"
)

func openBroker(t *testing.T, perUser int) *broker.Broker {
	t.Helper()
	cfg := config.NATS{Embedded: true, Listen: "127.0.0.1:0", StoreDir: t.TempDir(), MaxAge: time.Minute, MaxPerUser: perUser, Name: "test"}
	b, err := broker.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// publish stores a message like ingest does and returns its id.
func publish(t *testing.T, b *broker.Broker, user, id string) string {
	t.Helper()
	subj, _ := rig.Subject(user)
	m := nats.NewMsg(subj)
	if id != "" {
		m.Header.Set(broker.HeaderMsgID, id)
	}
	m.Data = []byte(fmt.Sprintf(`{"user":%q,"id":%q}`, user, id))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	return id
}

func ids(evs []*rig.Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.ID)
	}
	return strings.Join(s, ",")
}

func since(t *testing.T, r *Reader, users []string, cursor string) *Replay {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rp, err := r.Since(ctx, users, cursor)
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

func TestSinceEventID(t *testing.T) {
	b := openBroker(t, 100)
	r := NewReader(b.JS)
	var a, bo []string
	for i := range 4 {
		a = append(a, publish(t, b, "alice", ulid.Make().String()))
		bo = append(bo, publish(t, b, "bob@x", ulid.Make().String()))
		_ = i
	}
	rp := since(t, r, []string{"alice"}, a[1])
	if got := ids(rp.Events); got != a[2]+","+a[3] || rp.Gap || rp.Floor != 3 {
		t.Fatalf("after a[1]: %s gap=%v floor=%d", got, rp.Gap, rp.Floor)
	}
	// Two users: merged in publish order.
	rp = since(t, r, []string{"alice", "bob@x"}, a[2])
	if got := ids(rp.Events); got != bo[2]+","+a[3]+","+bo[3] {
		t.Fatalf("merged after a[2]: %s", got)
	}
	if ev := rp.Events[0]; ev.User != "bob@x" || ev.Seq == 0 || !strings.Contains(string(ev.Data), bo[2]) {
		t.Fatalf("event %+v", ev)
	}
	// Up to date: nothing, no gap.
	rp = since(t, r, []string{"alice"}, a[3])
	if len(rp.Events) != 0 || rp.Gap {
		t.Fatalf("after the last id: %s gap=%v", ids(rp.Events), rp.Gap)
	}
	// An id history never held: gap, then what it holds.
	rp = since(t, r, []string{"alice"}, ulid.Make().String())
	if !rp.Gap || ids(rp.Events) != strings.Join(a, ",") {
		t.Fatalf("unknown ULID: %s gap=%v", ids(rp.Events), rp.Gap)
	}
	rp = since(t, r, []string{"alice"}, "not-a-ulid")
	if !rp.Gap || ids(rp.Events) != strings.Join(a, ",") {
		t.Fatalf("unknown id: %s gap=%v", ids(rp.Events), rp.Gap)
	}
	// A publisher's own non-ULID ids are found by search.
	custom := publish(t, b, "alice", "backend-7")
	last := publish(t, b, "alice", ulid.Make().String())
	rp = since(t, r, []string{"alice"}, custom)
	if ids(rp.Events) != last || rp.Gap {
		t.Fatalf("after custom id: %s gap=%v", ids(rp.Events), rp.Gap)
	}
}

func TestSincePositions(t *testing.T) {
	b := openBroker(t, 100)
	r := NewReader(b.JS)
	start := since(t, r, []string{"alice"}, "")
	if start.Last != "seq:0" || len(start.Events) != 0 || start.Floor != 0 {
		t.Fatalf("empty stream position %+v", start)
	}
	publish(t, b, "alice", "")
	publish(t, b, "bob", "")
	publish(t, b, "alice", "")
	rp := since(t, r, []string{"alice"}, start.Last)
	if ids(rp.Events) != "seq:1,seq:3" || rp.Gap || rp.Last != "seq:3" {
		t.Fatalf("from seq:0: %s gap=%v last=%s", ids(rp.Events), rp.Gap, rp.Last)
	}
	rp = since(t, r, []string{"alice"}, "seq:1")
	if ids(rp.Events) != "seq:3" {
		t.Fatalf("from seq:1: %s", ids(rp.Events))
	}
	rp = since(t, r, []string{"alice"}, "seq:3")
	if len(rp.Events) != 0 || rp.Last != "seq:3" || rp.Floor != 3 {
		t.Fatalf("from the end: %+v", rp)
	}
	evs, err := r.After(context.Background(), "alice", 1)
	if err != nil || ids(evs) != "seq:3" {
		t.Fatalf("After(alice, 1) = %s, %v", ids(evs), err)
	}
}

func TestGapWhenTrimmed(t *testing.T) {
	b := openBroker(t, 3)
	r := NewReader(b.JS)
	var a []string
	for range 5 {
		a = append(a, publish(t, b, "alice", ulid.Make().String()))
	}
	rp := since(t, r, []string{"alice"}, a[0]) // a[0] and a[1] were dropped
	if !rp.Gap || ids(rp.Events) != strings.Join(a[2:], ",") {
		t.Fatalf("trimmed id: %s gap=%v", ids(rp.Events), rp.Gap)
	}
	rp = since(t, r, []string{"alice"}, "seq:1")
	if !rp.Gap || ids(rp.Events) != strings.Join(a[2:], ",") {
		t.Fatalf("trimmed position: %s gap=%v", ids(rp.Events), rp.Gap)
	}
	rp = since(t, r, []string{"alice"}, a[2])
	if rp.Gap || ids(rp.Events) != strings.Join(a[3:], ",") {
		t.Fatalf("held id: %s gap=%v", ids(rp.Events), rp.Gap)
	}
}

func TestLastSeq(t *testing.T) {
	b := openBroker(t, 100)
	r := NewReader(b.JS)
	ctx := context.Background()
	if seq, err := r.LastSeq(ctx, "alice"); err != nil || seq != 0 {
		t.Fatalf("empty history: %d, %v", seq, err)
	}
	publish(t, b, "alice", "a1")
	publish(t, b, "bob", "b1")
	publish(t, b, "alice", "a2")
	publish(t, b, "bob", "b2")
	if seq, err := r.LastSeq(ctx, "alice"); err != nil || seq != 3 {
		t.Fatalf("alice: %d, %v; want 3", seq, err)
	}
	if seq, err := r.LastSeq(ctx, "bob"); err != nil || seq != 4 {
		t.Fatalf("bob: %d, %v; want 4", seq, err)
	}
}
