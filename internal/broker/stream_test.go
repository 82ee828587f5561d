package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/config"
)

func openEmbedded(t *testing.T, cfg config.NATS) *Broker {
	t.Helper()
	b, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runBroker(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStreamTakesOneToken: the history stream stores user.<token> and
// republishes it to rig.live.user.<token>; a JetStream publish to a subject
// with more tokens (a user id not encoded) gets an error and is not stored.
func TestStreamTakesOneToken(t *testing.T) {
	cfg := config.NATS{Embedded: true, Listen: "127.0.0.1:0", StoreDir: t.TempDir(), MaxAge: time.Minute, MaxPerUser: 10,
		IdempotencyWindow: 7 * time.Second, Name: "test"}
	b := openEmbedded(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	live, err := b.NC.SubscribeSync("rig.live.user.alice%40example%2Ecom")
	if err != nil {
		t.Fatal(err)
	}
	ack, err := b.JS.Publish(ctx, "user.alice%40example%2Ecom", []byte(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := live.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("not republished: %v", err)
	}
	if m.Header.Get(HeaderSequence) != "1" || m.Header.Get(HeaderSubject) != "user.alice%40example%2Ecom" || ack.Sequence != 1 {
		t.Fatalf("republished %s %v (ack %+v)", m.Subject, m.Header, ack)
	}
	for _, subj := range []string{"user.a.b", "user.a.b.c", "user"} {
		if _, err := b.JS.Publish(ctx, subj, []byte("x")); !errors.Is(err, jetstream.ErrNoStreamResponse) {
			t.Errorf("publish to %s: %v, want %v", subj, err, jetstream.ErrNoStreamResponse)
		}
	}
	s, err := b.JS.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.CachedInfo().State; st.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", st.Msgs)
	}
	if d := s.CachedInfo().Config.Duplicates; d != 7*time.Second {
		t.Fatalf("duplicate window %s, want IDEMPOTENCY_WINDOW's 7s", d)
	}
}

// TestEnsureStreamMigrates: a history stream made by an older version
// (user.>, republishing user.>) is moved to user.* in place, keeping its
// messages, and still republishes to the edges' subjects.
func TestEnsureStreamMigrates(t *testing.T) {
	cfg := config.NATS{Embedded: true, Listen: "127.0.0.1:0", StoreDir: t.TempDir(), MaxAge: time.Minute, MaxPerUser: 10, Name: "test"}
	ns, err := StartEmbedded(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old := StreamConfig(cfg, 1)
	old.Subjects = []string{"user.>"}
	old.RePublish = &jetstream.RePublish{Source: "user.>", Destination: "rig.live.user.>"}
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"user.alice", "user.a.b"} {
		if _, err := js.Publish(ctx, subj, []byte("before")); err != nil {
			t.Fatal(err)
		}
	}

	cfg.Embedded, cfg.URLs = false, []string{ns.ClientURL()}
	b := openEmbedded(t, cfg)
	s, err := b.JS.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if got := info.Config.Subjects; len(got) != 1 || got[0] != "user.*" {
		t.Fatalf("subjects after migration %q", got)
	}
	if rp := info.Config.RePublish; rp == nil || rp.Source != "user.*" {
		t.Fatalf("republish after migration %+v", rp)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("migration dropped messages: %d left of 2", info.State.Msgs)
	}
	live, err := b.NC.SubscribeSync("rig.live.user.alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Publish(ctx, "user.alice", []byte("after")); err != nil {
		t.Fatal(err)
	}
	if m, err := live.NextMsg(5 * time.Second); err != nil || string(m.Data) != "after" || m.Header.Get(HeaderSequence) != "3" {
		t.Fatalf("after migration, republished %v, %v", m, err)
	}
	if _, err := b.JS.Publish(ctx, "user.a.b", []byte("after")); err == nil {
		t.Fatal("user.a.b still stored after migration")
	}
}

func TestEventIDOf(t *testing.T) {
	for _, c := range []struct {
		h    nats.Header
		want string
	}{
		{nil, ""},
		{nats.Header{}, ""},
		{nats.Header{HeaderMsgID: {"01K0"}}, "01K0"},
		{nats.Header{HeaderMsgID: {"idem:x"}, HeaderEventID: {"01K1"}}, "01K1"},
		// An event-id header that could not be sent, or that poses as a
		// position, is ignored.
		{nats.Header{HeaderMsgID: {"m"}, HeaderEventID: {"seq:5"}}, "m"},
		{nats.Header{HeaderMsgID: {"m"}, HeaderEventID: {"a\nb"}}, "m"},
		{nats.Header{HeaderMsgID: {"m"}, HeaderEventID: {""}}, "m"},
	} {
		if got := EventIDOf(c.h); got != c.want {
			t.Errorf("EventIDOf(%v) = %q, want %q", c.h, got, c.want)
		}
	}
}
