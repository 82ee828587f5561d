package blacklist

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/broker/brokertest"
	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/config"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// runServer starts an in-process nats-server on port (server.RANDOM_PORT
// for any) storing JetStream data in dir; jetStream false leaves it off.
func runServer(t testing.TB, port int, dir string, jetStream bool) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: jetStream, StoreDir: dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func portOf(ns *server.Server) int { return ns.Addr().(*net.TCPAddr).Port }

func openBroker(t testing.TB, url string) *broker.Broker {
	t.Helper()
	b, err := broker.Open(config.NATS{URLs: []string{url}, MaxAge: time.Minute, MaxPerUser: 10, Name: t.Name()}, discard)
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Run(t, b, false)
	return b
}

// runBucket returns b's bucket, running until the test ends.
func runBucket(t testing.TB, b *broker.Broker) *Bucket {
	k := NewBucket(b, discard)
	brokertest.Go(t, k.Run)
	return k
}

// openBucket connects to a fresh server and waits for the bucket.
func openBucket(t testing.TB) (*Bucket, *broker.Broker) {
	t.Helper()
	ns := runServer(t, server.RANDOM_PORT, t.TempDir(), true)
	b := openBroker(t, ns.ClientURL())
	k := runBucket(t, b)
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if err := k.Ready(); err != nil {
			return fmt.Errorf("bucket not ready: %w", err)
		}
		return nil
	})
	return k, b
}

func lookup(t testing.TB, k *Bucket, jti string) (Entry, bool) {
	t.Helper()
	e, ok, err := k.Lookup(context.Background(), jti)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", jti, err)
	}
	return e, ok
}

func TestBucketConfig(t *testing.T) {
	k, b := openBucket(t)
	kv, _ := k.KV()
	st, err := kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Bucket() != BucketName || st.History() != 1 || st.LimitMarkerTTL() != markerTTL {
		t.Fatalf("bucket %s history %d marker TTL %s", st.Bucket(), st.History(), st.LimitMarkerTTL())
	}
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	if info.Config.Replicas != b.Replicas() || !info.Config.AllowMsgTTL {
		t.Fatalf("replicas %d (want the history stream's %d), per-key TTL %v", info.Config.Replicas, b.Replicas(), info.Config.AllowMsgTTL)
	}
}

// TestAddExpires: an entry is listed until its validity ends, then JetStream
// removes it (per-key TTL) and Lookup no longer finds it.
func TestAddExpires(t *testing.T) {
	k, _ := openBucket(t)
	start := time.Now()
	e, err := k.Add(context.Background(), "s1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e.SessionID != "s1" || e.Expires.Before(start.Add(time.Second-time.Millisecond)) || e.Expires.After(time.Now().Add(time.Second)) {
		t.Fatalf("entry %+v, want s1 expiring about 1s from %s", e, start)
	}
	if got, ok := lookup(t, k, "s1"); !ok || !got.Expires.Equal(e.Expires) {
		t.Fatalf("Lookup = %+v, %v; want %+v", got, ok, e)
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		_, ok := lookup(t, k, "s1")
		if ok {
			return fmt.Errorf("s1 still listed")
		}
		return nil
	})
	// JetStream itself dropped the value: the key's last revision is the TTL marker.
	kv, _ := k.KV()
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		_, err := kv.Get(context.Background(), mustKey(t, "s1"))
		if err == nil {
			return fmt.Errorf("s1 still stored")
		}
		return nil
	})
	if _, ok := lookup(t, k, "never-listed"); ok {
		t.Fatal("unknown session listed")
	}
}

func mustKey(t testing.TB, jti string) string {
	t.Helper()
	key, err := Key(jti)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// TestAddNeverShortens: a second, shorter blacklisting keeps the first
// expiry; a longer one extends it, and JetStream keeps the entry that long.
func TestAddNeverShortens(t *testing.T) {
	k, _ := openBucket(t)
	ctx := context.Background()
	long, err := k.Add(ctx, "s1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	short, err := k.Add(ctx, "s1", 5*time.Second)
	if err != nil || !short.Expires.Equal(long.Expires) {
		t.Fatalf("shorter Add = %+v, %v; want the earlier %+v", short, err, long)
	}
	if got, _ := lookup(t, k, "s1"); !got.Expires.Equal(long.Expires) {
		t.Fatalf("stored %+v, want %+v", got, long)
	}

	first, err := k.Add(ctx, "s2", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	second, err := k.Add(ctx, "s2", 3*time.Second)
	if err != nil || !second.Expires.After(first.Expires) {
		t.Fatalf("longer Add = %+v, %v; want later than %+v", second, err, first)
	}
	// Past the first expiry, the extended entry is still stored: its TTL
	// was replaced, not kept.
	time.Sleep(time.Until(first.Expires.Add(time.Second)))
	if _, ok := lookup(t, k, "s2"); !ok {
		t.Fatal("extended entry gone at its first expiry")
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		_, ok := lookup(t, k, "s2")
		if ok {
			return fmt.Errorf("extended entry never expired")
		}
		return nil
	})

	// A key whose last revision is a TTL marker is blacklisted again.
	if _, err := k.Add(ctx, "s2", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok := lookup(t, k, "s2"); !ok {
		t.Fatal("re-blacklisted session not listed")
	}
}

// TestConcurrentAdds: writers racing on one key settle on the longest validity.
func TestConcurrentAdds(t *testing.T) {
	k, _ := openBucket(t)
	var wg sync.WaitGroup
	results := make([]Entry, 10)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := k.Add(context.Background(), "contended", time.Duration(i+1)*time.Minute)
			if err != nil {
				t.Error(err)
			}
			results[i] = e
		}()
	}
	wg.Wait()
	got, ok := lookup(t, k, "contended")
	if !ok {
		t.Fatal("not listed")
	}
	// Every writer was told an expiry no later than the stored one, and
	// the longest request is what is stored.
	var latest time.Time
	for i, r := range results {
		if r.Expires.After(got.Expires) {
			t.Fatalf("writer %d was told %s, later than the stored %s", i, r.Expires, got.Expires)
		}
		if r.Expires.After(latest) {
			latest = r.Expires
		}
	}
	if !got.Expires.Equal(latest) || got.Expires.Before(results[9].Expires) {
		t.Fatalf("stored expiry %s, want the longest %s", got.Expires, results[9].Expires)
	}
}

func TestAddRejects(t *testing.T) {
	k, _ := openBucket(t)
	for _, c := range []struct {
		jti      string
		validity time.Duration
	}{
		{"", time.Minute},
		{string(make([]byte, MaxSessionIDLen+1)), time.Minute},
		{"ok", 0},
		{"ok", -time.Second},
		{"ok", MaxValidity + time.Second},
	} {
		if _, err := k.Add(context.Background(), c.jti, c.validity); err == nil {
			t.Errorf("Add(%d bytes, %s) succeeded", len(c.jti), c.validity)
		}
	}
	if _, ok := lookup(t, k, "ok"); ok {
		t.Fatal("a rejected Add listed the session")
	}
}

func TestNoBucketWithoutJetStream(t *testing.T) {
	ns := runServer(t, server.RANDOM_PORT, t.TempDir(), false)
	k := runBucket(t, openBroker(t, ns.ClientURL()))
	if _, err := k.Add(context.Background(), "s", time.Minute); err == nil {
		t.Fatal("Add without a bucket succeeded")
	}
	if err := k.Ready(); err == nil {
		t.Fatal("bucket ready without JetStream")
	}
}

// TestAddAtExpiry: a session blacklisted again just before, at and just
// after its entry's expiry stays listed. Writing over the expiring entry
// lost the new one to the TTL marker JetStream publishes after the expiry
// (a subject rollup): Add acknowledged, the session not listed.
func TestAddAtExpiry(t *testing.T) {
	k, _ := openBucket(t)
	ctx := context.Background()
	for i, offset := range []time.Duration{-300 * time.Millisecond, -50 * time.Millisecond, 0, 30 * time.Millisecond} {
		jti := fmt.Sprintf("expiring-%d", i)
		first, err := k.Add(ctx, jti, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(first.Expires.Add(offset)))
		again, err := k.Add(ctx, jti, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Expires.After(first.Expires) {
			t.Fatalf("%s: Add again = %+v, want later than %+v", jti, again, first)
		}
		// Past the time the first entry's marker lands: still listed.
		until := time.Now().Add(2 * time.Second)
		for time.Now().Before(until) {
			if _, ok := lookup(t, k, jti); !ok {
				t.Fatalf("%s (Add again %s from the first expiry): not listed", jti, offset)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
