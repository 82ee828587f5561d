package blacklist

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/broker/brokertest"
	"github.com/rig-go/rig/internal/check"
)

// recorder collects the jtis a Set reports as listed.
type recorder struct {
	mu   sync.Mutex
	jtis []string
}

func (r *recorder) add(jti string) {
	r.mu.Lock()
	r.jtis = append(r.jtis, jti)
	r.mu.Unlock()
}

func (r *recorder) has(jti string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.jtis, jti)
}

func watchSet(t testing.TB, k *Bucket, _ *broker.Broker, nc *nats.Conn) (*Set, *recorder) {
	t.Helper()
	rec := &recorder{}
	s := NewSet(k, nc, discard, rec.add)
	brokertest.Go(t, s.Run)
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if err := s.Ready(); err != nil {
			return fmt.Errorf("set not loaded: %w", err)
		}
		return nil
	})
	return s, rec
}

// TestSetFollowsBucket: entries present at start and added later are
// listed and reported; an entry whose TTL ends leaves the set by
// JetStream's marker, long before the local sweep would drop it.
func TestSetFollowsBucket(t *testing.T) {
	k, b := openBucket(t)
	ctx := context.Background()
	if _, err := k.Add(ctx, "before", time.Minute); err != nil {
		t.Fatal(err)
	}
	s, rec := watchSet(t, k, b, b.NC)
	if !s.Listed("before") || !rec.has("before") {
		t.Fatalf("entry present at start: listed %v, reported %v", s.Listed("before"), rec.has("before"))
	}
	if s.Listed("") || s.Listed("other") {
		t.Fatal("unlisted session listed")
	}
	if _, err := k.Add(ctx, "live", time.Second); err != nil {
		t.Fatal(err)
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !(s.Listed("live") && rec.has("live")) {
			return fmt.Errorf("live entry not listed")
		}
		return nil
	})
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s.Listed("live") {
			return fmt.Errorf("expired entry still listed")
		}
		return nil
	})
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := s.Len(); got != 1 {
			return fmt.Errorf("TTL marker did not remove the entry: %d entries, want 1", got)
		}
		return nil
	})

	// Deleting a key (an operator's nats kv del) unlists it.
	kv, _ := k.KV()
	if err := kv.Delete(ctx, mustKey(t, "before")); err != nil {
		t.Fatal(err)
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if s.Listed("before") || s.Len() != 0 {
			return fmt.Errorf("deleted entry still listed (%d entries)", s.Len())
		}
		return nil
	})
}

// TestSetExpiresLocally: an entry stops counting at its stored expiry even
// when no marker comes (here: written without a TTL, so JetStream keeps it).
func TestSetExpiresLocally(t *testing.T) {
	k, b := openBucket(t)
	s, rec := watchSet(t, k, b, b.NC)
	kv, _ := k.KV()
	exp := time.Now().Add(time.Second)
	v, _ := json.Marshal(Entry{SessionID: "no-ttl", Expires: exp})
	if _, err := kv.Put(context.Background(), mustKey(t, "no-ttl"), v); err != nil {
		t.Fatal(err)
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !(s.Listed("no-ttl") && rec.has("no-ttl")) {
			return fmt.Errorf("entry not listed")
		}
		return nil
	})
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if s.Listed("no-ttl") {
			return fmt.Errorf("entry listed past its expiry")
		}
		return nil
	})
	if time.Now().Before(exp) {
		t.Fatal("unlisted before its expiry")
	}
	// Garbage under a key does not break the watch.
	if _, err := kv.Put(context.Background(), "not.base64!", []byte("x")); err == nil {
		t.Log("stored a key RIG-Go would never write")
	}
	if _, err := kv.Put(context.Background(), mustKey(t, "garbage"), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Add(context.Background(), "after-garbage", time.Minute); err != nil {
		t.Fatal(err)
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !s.Listed("after-garbage") {
			return fmt.Errorf("watch stopped after a malformed entry")
		}
		return nil
	})
	if s.Listed("garbage") {
		t.Fatal("malformed entry listed")
	}
}

// TestSetResyncsAfterNATSRestart: when NATS goes away the set stops
// claiming to be loaded; when it is back the set reloads, keeps what the
// bucket holds (on disk), and follows new entries again.
func TestSetResyncsAfterNATSRestart(t *testing.T) {
	dir := t.TempDir()
	ns := runServer(t, server.RANDOM_PORT, dir, true)
	port := portOf(ns)
	b := openBroker(t, ns.ClientURL())
	k := runBucket(t, b)
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if err := k.Ready(); err != nil {
			return fmt.Errorf("bucket not ready: %w", err)
		}
		return nil
	})
	if _, err := k.Add(context.Background(), "kept", time.Hour); err != nil {
		t.Fatal(err)
	}
	s, _ := watchSet(t, k, b, b.NC)

	ns.Shutdown()
	ns.WaitForShutdown()
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s.Ready() == nil {
			return fmt.Errorf("set still loaded without NATS")
		}
		return nil
	})
	if err := s.Ready(); !strings.Contains(err.Error(), "blacklist not loaded") {
		t.Fatalf("Ready() = %v", err)
	}
	if !s.Listed("kept") {
		t.Fatal("entries dropped while NATS is away")
	}

	runServer(t, port, dir, true)
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if err := s.Ready(); err != nil {
			return fmt.Errorf("set not reloaded after NATS came back: %w", err)
		}
		return nil
	})
	if !s.Listed("kept") {
		t.Fatal("entry lost across the restart")
	}
	if _, err := k.Add(context.Background(), "new", time.Hour); err != nil {
		t.Fatal(err)
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !s.Listed("new") {
			return fmt.Errorf("set does not follow the bucket after the restart")
		}
		return nil
	})
}

// TestSetNotReadyWithoutBucket: with no JetStream the set never loads.
func TestSetNotReadyWithoutBucket(t *testing.T) {
	ns := runServer(t, server.RANDOM_PORT, t.TempDir(), false)
	b := openBroker(t, ns.ClientURL())
	k := runBucket(t, b)
	s := NewSet(k, b.NC, discard, func(string) {})
	brokertest.Go(t, s.Run)
	// The set tried, and says why it is not loaded.
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		err := s.Ready()
		if !(err != nil && strings.Contains(err.Error(), "blacklist not loaded: blacklist bucket not ready")) {
			return fmt.Errorf("set does not say the bucket is missing")
		}
		return nil
	})
}
