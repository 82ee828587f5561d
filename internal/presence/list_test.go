package presence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/check"
)

// manySessions returns n sessions of edge, spread over users.
func manySessions(edge string, n, users int) map[string][]Session {
	out := map[string][]Session{}
	since := time.Now().UTC().Truncate(time.Millisecond)
	for i := range n {
		u := fmt.Sprintf("user-%05d", i%users)
		out[u] = append(out[u], Session{SessionID: fmt.Sprintf("jti-%s-%06d", edge, i), User: u, Users: []string{u},
			Transport: "sse", Edge: edge, ConnectedSince: since, Remote: "10.0.0.1", Expires: since.Add(time.Hour), Conn: uint64(i + 1)})
	}
	return out
}

// listAll pages through every session q matches.
func listAll(t testing.TB, g *Gatherer, q ListQuery) ([]Session, int) {
	t.Helper()
	var all []Session
	pages := 0
	for {
		l, err := g.List(context.Background(), q)
		if err != nil || !l.Complete {
			t.Fatalf("List(%+v) = %+v, %v", q, l.Result, err)
		}
		if len(l.Sessions) > q.Limit {
			t.Fatalf("page of %d sessions, limit %d", len(l.Sessions), q.Limit)
		}
		all = append(all, l.Sessions...)
		if pages++; l.Next == nil {
			return all, l.Total
		}
		if pages > 10_000 {
			t.Fatal("no end of pages")
		}
		c, err := ParseCursor(l.Next.Cursor())
		if err != nil {
			t.Fatal(err)
		}
		q.After = &c
	}
}

// TestListPagesAcrossEdges: paging through a listing of three edges
// yields every matching session once, in order, with the right total.
func TestListPagesAcrossEdges(t *testing.T) {
	ns := runServer(t, 0)
	want := 0
	var every []Session
	for _, id := range []string{"edge-a", "edge-b", "edge-c"} {
		ss := manySessions(id, 250, 40)
		serve(t, ns, id, fakeEdge{sessions: ss})
		for _, l := range ss {
			every = append(every, l...)
			want += len(l)
		}
	}
	g := gatherer(t, ns, 5*time.Second)
	g.since = time.Now().Add(-time.Minute)
	check.For(t, 10*time.Second, 10*time.Millisecond, knows(g, 3))

	all, total := listAll(t, g, ListQuery{Limit: 33})
	if total != want || len(all) != want {
		t.Fatalf("paged %d sessions, total %d, want %d", len(all), total, want)
	}
	if !slices.IsSortedFunc(all, func(a, b Session) int { return a.Key().Compare(b.Key()) }) {
		t.Fatal("listing out of order")
	}
	seen := map[Key]bool{}
	for _, s := range all {
		if seen[s.Key()] {
			t.Fatalf("%+v listed twice", s.Key())
		}
		seen[s.Key()] = true
		if s.Remote != "10.0.0.1" || s.Expires.IsZero() {
			t.Fatalf("session lacks remote or expiry: %+v", s)
		}
	}
	// A search matches user or jti substrings, and counts only matches.
	byUser, total := listAll(t, g, ListQuery{Q: "user-0001", Limit: 7}) // user-00010..19 and user-00001
	n := 0
	for _, s := range every {
		if strings.Contains(s.User, "user-0001") || strings.Contains(s.SessionID, "user-0001") {
			n++
		}
	}
	if len(byUser) != n || total != n || n == 0 {
		t.Fatalf("q=user-0001: %d listed, total %d, want %d", len(byUser), total, n)
	}
	byJTI, total := listAll(t, g, ListQuery{Q: "jti-edge-b-000007", Limit: 100})
	if len(byJTI) != 1 || total != 1 || byJTI[0].Edge != "edge-b" {
		t.Fatalf("q=jti: %+v total %d", byJTI, total)
	}
	one, total := listAll(t, g, ListQuery{User: "user-00003", Limit: 2})
	if len(one) != 3*7 || total != len(one) || one[0].User != "user-00003" { // i%40 == 3 for 7 of each edge's 250
		t.Fatalf("user=user-00003: %d listed, total %d", len(one), total)
	}
	if none, total := listAll(t, g, ListQuery{Q: "nobody", Limit: 100}); len(none) != 0 || total != 0 {
		t.Fatalf("q=nobody: %+v total %d", none, total)
	}
}

// TestPageKeepsTheFirst: Page returns the limit+1 smallest keys whatever
// the order it sees them in, and counts every match.
func TestPageKeepsTheFirst(t *testing.T) {
	var ss []Session
	for i := range 500 {
		ss = append(ss, Session{User: fmt.Sprintf("u%03d", (i*7919)%500), SessionID: "j"})
	}
	each := func(yield func(Session)) {
		for _, s := range ss {
			yield(s)
		}
	}
	page, total := Page(ListQuery{Limit: 10}, each)
	if total != 500 || len(page) != 11 || page[0].User != "u000" || page[10].User != "u010" {
		t.Fatalf("page %v total %d", page, total)
	}
	after := page[9].Key()
	page, total = Page(ListQuery{Limit: 10, After: &after}, each)
	if total != 500 || len(page) != 11 || page[0].User != "u010" {
		t.Fatalf("after u009: page starts %v, total %d", page[0].User, total)
	}
	// Limits out of range are held to 1..MaxListLimit.
	if page, _ := Page(ListQuery{Limit: -5}, each); len(page) != 2 {
		t.Fatalf("limit -5: %d sessions", len(page))
	}
	if page, _ := Page(ListQuery{Limit: 1 << 30}, each); len(page) != 500 {
		t.Fatalf("huge limit: %d sessions", len(page))
	}
}

func TestParseCursor(t *testing.T) {
	k := Key{User: "alice", JTI: "j/1", Edge: "e", Conn: 7}
	got, err := ParseCursor(k.Cursor())
	if err != nil || got != k {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{"", "!!", "e30", strings.Repeat("A", maxCursorLen+1),
		Key{}.Cursor(), "eyJ1IjoiYSIsIngiOjF9" /* {"u":"a","x":1} */} {
		if _, err := ParseCursor(bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("ParseCursor(%.40q) = %v, want ErrBadCursor", bad, err)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add(Key{User: "alice", JTI: "j", Edge: "e", Conn: 1}.Cursor())
	f.Add("e30")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("error %v is not ErrBadCursor", err)
			}
			return
		}
		// What parses is a key that travels unchanged.
		if again, err := ParseCursor(k.Cursor()); err != nil || again != k {
			t.Fatalf("%+v: round trip gave %+v, %v", k, again, err)
		}
	})
}

// TestEdgesCarryStatus: an edge's announcements say whether it is ready.
func TestEdgesCarryStatus(t *testing.T) {
	ns := runServer(t, 0)
	serve(t, ns, "edge-a", statusEdge{fakeEdge{}, Status{Ready: false, Detail: "draining", Connections: 3}})
	serve(t, ns, "edge-b", fakeEdge{})
	g := gatherer(t, ns, time.Second)
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		es := g.Edges()
		if len(es) != 2 || es[0].ID != "edge-a" || es[0].Status == nil || es[1].Status != nil {
			return fmt.Errorf("edges %+v", es)
		}
		if st := *es[0].Status; st.Ready || st.Detail != "draining" || st.Connections != 3 {
			return fmt.Errorf("edge-a status %+v", st)
		}
		return nil
	})
}

type statusEdge struct {
	fakeEdge
	st Status
}

func (s statusEdge) Status() Status { return s.st }

// BenchmarkList100k lists pages of 100 from 100,000 sessions on four
// edges, each edge a Responder on a real NATS server: the cost of one
// console page, the edges' scan of their registries included.
func BenchmarkList100k(b *testing.B) {
	for _, q := range []string{"", "user-0042"} {
		b.Run("q="+q, func(b *testing.B) {
			benchList(b, q)
		})
	}
}

func benchList(b *testing.B, q string) {
	ns := runServer(b, 0)
	for _, id := range []string{"edge-a", "edge-b", "edge-c", "edge-d"} {
		serve(b, ns, id, fakeEdge{sessions: manySessions(id, 25_000, 20_000)})
	}
	g := gatherer(b, ns, 10*time.Second)
	g.since = time.Now().Add(-time.Minute)
	check.For(b, 10*time.Second, 10*time.Millisecond, knows(g, 4))
	b.ResetTimer()
	for b.Loop() {
		l, err := g.List(context.Background(), ListQuery{Q: q, Limit: 100})
		if err != nil || !l.Complete || l.Total == 0 || (q == "" && l.Total != 100_000) {
			b.Fatalf("List: total %d %+v %v", l.Total, l.Result, err)
		}
	}
}

// TestListWithAnOlderEdge: an edge from before listings answers one with
// its users; the listing leaves it out and says it is incomplete.
func TestListWithAnOlderEdge(t *testing.T) {
	ns := runServer(t, 0)
	serve(t, ns, "new", fakeEdge{sessions: manySessions("new", 3, 3)})
	old := connect(t, ns)
	if _, err := old.Subscribe(QuerySubject, func(m *nats.Msg) {
		_ = old.Publish(m.Reply, encode(Reply{Edge: "old", Part: 1, Parts: 1, Users: []string{"someone"}}))
	}); err != nil {
		t.Fatal(err)
	}
	if err := old.Flush(); err != nil {
		t.Fatal(err)
	}
	g := gatherer(t, ns, 2*time.Second)
	g.since = time.Now().Add(-time.Minute)
	if err := old.Publish(AnnounceSubject, encode(Announcement{Edge: "old", IntervalMS: 10_000})); err != nil {
		t.Fatal(err)
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, knows(g, 2))
	l, err := g.List(context.Background(), ListQuery{Limit: 10})
	if err != nil || l.Complete || len(l.Sessions) != 3 || l.Total != 3 || !slices.Equal(l.Edges, []string{"new"}) {
		t.Fatalf("List = %+v, %v", l, err)
	}
}
