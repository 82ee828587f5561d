package history

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/broker/brokertest"
	"github.com/rig-go/rig/internal/config"
)

// openCluster starts three in-process NATS servers with JetStream,
// clustered on loopback, and opens a broker on the first: the history
// stream then has three replicas, and reads take the replicated path.
func openCluster(t testing.TB, perUser int, maxAge time.Duration) *broker.Broker {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var servers []*server.Server
	for i, p := range ports {
		opts := &server.Options{
			ServerName: fmt.Sprintf("hist-%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "hist", Host: "127.0.0.1", Port: p},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		servers = append(servers, ns)
		t.Cleanup(ns.Shutdown)
	}
	for _, ns := range servers {
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("cluster node not ready")
		}
	}
	cfg := config.NATS{URLs: []string{servers[0].ClientURL()}, MaxAge: maxAge, MaxPerUser: perUser, Name: "test"}
	b, err := broker.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Run(t, b, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Replicas() != 3 {
		t.Fatalf("history stream has %d replicas, want 3", b.Replicas())
	}
	return b
}

// TestReplicatedReads: on a replicated stream, reads go through direct
// gets checked against the leader, with the same answers as on one server.
func TestReplicatedReads(t *testing.T) {
	b := openCluster(t, 3, time.Minute)
	r := NewReader(b.JS, 0)
	var a, bo []string
	for i := range 4 {
		a = append(a, publish(t, b, "alice", fmt.Sprintf("a-%d", i)))
		bo = append(bo, publish(t, b, "bob@x", fmt.Sprintf("b-%d", i)))
	}
	// alice's a-0 was trimmed (3 per user); seq:2 is a-0's successor b-0.
	rp := since(t, r, []string{"alice"}, "seq:2")
	if got := ids(rp.Events); got != strings.Join(a[1:], ",") || !rp.Gap || rp.Last != "seq:8" {
		t.Fatalf("alice after seq:2: %s gap=%v last=%s; want 3 and a gap (3 per user)", got, rp.Gap, rp.Last)
	}
	rp = since(t, r, []string{"alice", "bob@x"}, a[2])
	if got := ids(rp.Events); got != bo[2]+","+a[3]+","+bo[3] || rp.Gap || rp.Floor != 5 {
		t.Fatalf("merged after a-2: %s gap=%v floor=%d", got, rp.Gap, rp.Floor)
	}
	rp = since(t, r, []string{"alice"}, "unknown")
	if got := ids(rp.Events); got != strings.Join(a[1:], ",") || !rp.Gap {
		t.Fatalf("unknown id: %s gap=%v", got, rp.Gap)
	}
	rp = since(t, r, []string{"carol"}, "seq:3")
	if len(rp.Events) != 0 || rp.Gap {
		t.Fatalf("a user without messages: %+v", rp)
	}
	if seq, err := r.LastSeq(context.Background(), "bob@x"); err != nil || seq != 8 {
		t.Fatalf("LastSeq(bob) = %d, %v", seq, err)
	}
	rp, err := r.Refill(context.Background(), []string{"bob@x"}, 6)
	if err != nil || ids(rp.Events) != bo[3] {
		t.Fatalf("Refill(bob, 6) = %+v, %v", rp, err)
	}
}
