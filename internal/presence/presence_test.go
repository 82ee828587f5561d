package presence

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/check"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func runServer(t testing.TB, maxPayload int32) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true, MaxPayload: maxPayload})
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

func connect(t testing.TB, ns *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// fakeEdge is a Source with fixed connections.
type fakeEdge struct {
	users    []string
	sessions map[string][]Session
}

func (f fakeEdge) Users() []string                { return f.users }
func (f fakeEdge) Sessions(user string) []Session { return f.sessions[user] }
func (f fakeEdge) Each(yield func(Session)) {
	for _, ss := range f.sessions {
		for _, s := range ss {
			yield(s)
		}
	}
}

func serve(t testing.TB, ns *server.Server, id string, src Source) *Responder {
	t.Helper()
	r, err := NewResponder(connect(t, ns), id, 50*time.Millisecond, src, discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

func gatherer(t testing.TB, ns *server.Server, timeout time.Duration) *Gatherer {
	t.Helper()
	g, err := NewGatherer(connect(t, ns), timeout, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// knows is a check.For condition: g has heard of n edges and has listened
// long enough to trust that it knows them all.
func knows(g *Gatherer, n int) func() error {
	return func() error {
		if want, whole := g.expected(time.Now()); !whole || len(want) != n {
			return fmt.Errorf("gatherer knows %v (whole %v), want %d edges", want, whole, n)
		}
		return nil
	}
}

func TestGatherFromEveryEdge(t *testing.T) {
	ns := runServer(t, 0)
	since := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	serve(t, ns, "edge-a", fakeEdge{
		users:    []string{"alice", "bob"},
		sessions: map[string][]Session{"alice": {{SessionID: "j1", User: "alice", Users: []string{"alice"}, Transport: "sse", Edge: "edge-a", ConnectedSince: since}}},
	})
	serve(t, ns, "edge-b", fakeEdge{
		users:    []string{"alice", "carol"},
		sessions: map[string][]Session{"alice": {{SessionID: "j2", User: "alice", Users: []string{"alice"}, Transport: "sse", Edge: "edge-b", ConnectedSince: since.Add(time.Second)}}},
	})
	g := gatherer(t, ns, 5*time.Second)
	g.since = time.Now().Add(-time.Minute) // as if it had listened long
	check.For(t, 10*time.Second, 10*time.Millisecond, knows(g, 2))

	start := time.Now()
	users, res, err := g.Users(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(users, []string{"alice", "bob", "carol"}) || !res.Complete || !slices.Equal(res.Edges, []string{"edge-a", "edge-b"}) {
		t.Fatalf("Users = %v %+v", users, res)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("took %s although every edge answered: should return early", el)
	}
	sessions, res, err := g.Sessions(context.Background(), "alice")
	if err != nil || !res.Complete || len(sessions) != 2 || sessions[0].SessionID != "j1" || sessions[1].Edge != "edge-b" ||
		!sessions[0].ConnectedSince.Equal(since) {
		t.Fatalf("Sessions = %+v %+v %v", sessions, res, err)
	}
	if s, _, _ := g.Sessions(context.Background(), "nobody"); len(s) != 0 {
		t.Fatalf("sessions of nobody: %+v", s)
	}
}

// TestGatherBoundedWhenAnEdgeIsSilent: an edge that announced itself but
// does not answer costs the timeout, not more; the others' answers count.
func TestGatherBoundedWhenAnEdgeIsSilent(t *testing.T) {
	ns := runServer(t, 0)
	serve(t, ns, "edge-a", fakeEdge{users: []string{"alice"}})
	silent := connect(t, ns)
	g := gatherer(t, ns, 300*time.Millisecond)
	g.since = time.Now().Add(-time.Minute)
	if err := silent.Publish(AnnounceSubject, encode(Announcement{Edge: "stuck", IntervalMS: 10_000})); err != nil {
		t.Fatal(err)
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, knows(g, 2))
	start := time.Now()
	users, res, err := g.Users(context.Background())
	el := time.Since(start)
	if err != nil || !slices.Equal(users, []string{"alice"}) || res.Complete || !slices.Equal(res.Edges, []string{"edge-a"}) {
		t.Fatalf("Users = %v %+v %v", users, res, err)
	}
	if el < 300*time.Millisecond || el > 2*time.Second {
		t.Fatalf("took %s, want about the 300ms timeout", el)
	}
	// Goodbye: an edge that says it is gone is no longer waited for.
	if err := silent.Publish(AnnounceSubject, encode(Announcement{Edge: "stuck", Gone: true})); err != nil {
		t.Fatal(err)
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, knows(g, 1))
	if _, res, _ := g.Users(context.Background()); !res.Complete {
		t.Fatalf("after goodbye: %+v", res)
	}
}

// TestGatherWaitsWhileUnsure: a gatherer that has not listened for a whole
// announce interval does not return early (an edge may not have announced
// itself yet), but answers within its timeout.
func TestGatherWaitsWhileUnsure(t *testing.T) {
	ns := runServer(t, 0)
	serve(t, ns, "edge-a", fakeEdge{users: []string{"alice"}})
	g := gatherer(t, ns, 300*time.Millisecond)
	start := time.Now()
	users, res, err := g.Users(context.Background())
	if err != nil || !slices.Equal(users, []string{"alice"}) || !res.Complete {
		t.Fatalf("Users = %v %+v %v", users, res, err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("returned after %s, before knowing every edge", el)
	}
}

// TestLargeAnswerIsSplit: an answer over the payload limit arrives in
// parts and is put back together.
func TestLargeAnswerIsSplit(t *testing.T) {
	ns := runServer(t, 8<<10)
	var many []string
	for i := range 3000 {
		many = append(many, fmt.Sprintf("user-%05d@example.com", i))
	}
	r := serve(t, ns, "edge-a", fakeEdge{users: many})
	if parts := splitUsers("edge-a", many, r.limit()); len(parts) < 5 {
		t.Fatalf("%d parts for %d users under %d bytes", len(parts), len(many), r.limit())
	}
	g := gatherer(t, ns, 5*time.Second)
	g.since = time.Now().Add(-time.Minute)
	check.For(t, 10*time.Second, 10*time.Millisecond, knows(g, 1))
	users, res, err := g.Users(context.Background())
	if err != nil || !res.Complete || !slices.Equal(users, many) {
		t.Fatalf("got %d users %+v %v, want %d", len(users), res, err, len(many))
	}
}

func TestSplit(t *testing.T) {
	if parts := splitUsers("e", nil, 1000); len(parts) != 1 || parts[0].Parts != 1 || parts[0].Part != 1 {
		t.Fatalf("empty answer: %+v", parts)
	}
	// An item larger than the limit still goes out, alone.
	big := string(make([]byte, 2000))
	parts := splitUsers("e", []string{"a", big, "b"}, 1000)
	total := 0
	for i, p := range parts {
		if p.Part != i+1 || p.Parts != len(parts) {
			t.Fatalf("part %d: %+v", i, p)
		}
		total += len(p.Users)
		if len(encode(p)) > 1000 && len(p.Users) > 1 {
			t.Fatalf("part %d is %d bytes with %d users", i, len(encode(p)), len(p.Users))
		}
	}
	if total != 3 {
		t.Fatalf("%d users in parts, want 3", total)
	}
}

func TestNotConnected(t *testing.T) {
	ns := runServer(t, 0)
	g := gatherer(t, ns, time.Second)
	g.nc.Close()
	if _, _, err := g.Users(context.Background()); err != ErrNotConnected {
		t.Fatalf("err = %v, want ErrNotConnected", err)
	}
}
