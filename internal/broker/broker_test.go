package broker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/config"
)

func TestEmbeddedSingleNode(t *testing.T) {
	cfg := config.NATS{Embedded: true, Listen: "127.0.0.1:0", StoreDir: t.TempDir(), MaxAge: time.Minute, MaxPerUser: 10, Name: "test"}
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
	if b.Replicas() != 1 {
		t.Fatalf("replicas %d on a single node", b.Replicas())
	}
	s, err := b.JS.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	if len(c.Subjects) != 1 || c.Subjects[0] != "user.*" || c.Duplicates != 30*time.Second || c.MaxAge != time.Minute || c.MaxMsgsPerSubject != 10 || !c.AllowDirect {
		t.Fatalf("stream config %+v", c)
	}
	// Idempotent: a second ensure (another process starting) succeeds.
	if err := b.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	// The embedded server is reachable by other processes on its listen address.
	if b.embedded.ClientURL() == "" || !b.Connected() {
		t.Fatal("embedded server not serving clients")
	}
}

func TestNotReadyWithoutNATS(t *testing.T) {
	cfg := config.NATS{URLs: []string{"nats://127.0.0.1:1"}, MaxAge: time.Minute, MaxPerUser: 10, Name: "test"}
	b, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runBroker(t, b)
	if err := b.Ready(); err == nil {
		t.Fatal("ready without NATS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := b.WaitReady(ctx); err == nil {
		t.Fatal("WaitReady succeeded without NATS")
	}
}

// runBroker runs b until the test ends.
func runBroker(t *testing.T, b *Broker) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
