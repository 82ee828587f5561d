package edge

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/presence"
	"github.com/rig-go/rig/internal/rig"
)

// TestPresenceListing100k: a real edge holding 100,000 connections (1,000
// users, 100 each, in its hub) answers a console page of its sessions
// through NATS quickly, with each session's remote address and expiry, and
// pages through a search.
func TestPresenceListing100k(t *testing.T) {
	if testing.Short() {
		t.Skip("registers 100,000 clients")
	}
	s, b := newTestEdge(t)
	const users, each = 1000, 100
	expires := time.Now().Add(time.Hour)
	for u := range users {
		user := fmt.Sprintf("user-%04d", u)
		for i := range each {
			cl := client.New(&rig.Session{User: user, ID: fmt.Sprintf("%s-tab-%03d", user, i), Expires: expires}, "sse", 4)
			cl.Remote, cl.Conn = "198.51.100.7", connNumbers.Add(1)
			if err := s.hub.Register(cl, cl.Session.ID, []string{user}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.hub.Unregister(cl) })
		}
	}
	// A long timeout: eight listings at once under the race detector scan
	// 800,000 sessions between them.
	g, err := presence.NewGatherer(b.NC, 10*time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	// A new gatherer waits its whole timeout until it has listened for an
	// announce interval (it may not know every edge before); then it
	// answers as soon as the edge has.
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		start := time.Now()
		l, err := g.List(context.Background(), presence.ListQuery{Limit: 1})
		if err != nil || !l.Complete || len(l.Edges) != 1 {
			return fmt.Errorf("List: %+v %v", l.Result, err)
		}
		if el := time.Since(start); el > time.Second {
			return fmt.Errorf("List took %s: gatherer not sure of the edges yet", el)
		}
		return nil
	})
	var worst time.Duration
	var first presence.Listing
	for range 5 {
		start := time.Now()
		l, err := g.List(context.Background(), presence.ListQuery{Limit: 100})
		el := time.Since(start)
		if err != nil || l.Total != users*each || len(l.Sessions) != 100 || l.Next == nil {
			t.Fatalf("List: total %d, %d sessions, next %v, %v", l.Total, len(l.Sessions), l.Next, err)
		}
		worst, first = max(worst, el), l
	}
	if s0 := first.Sessions[0]; s0.User != "user-0000" || s0.SessionID != "user-0000-tab-000" || s0.Remote != "198.51.100.7" ||
		!s0.Expires.Equal(expires.UTC()) || s0.Edge != "test-edge" || s0.Transport != "sse" || !slices.Equal(s0.Users, []string{"user-0000"}) || s0.Ref != nil {
		t.Fatalf("first session %+v", s0)
	}
	// A page of 1000, and a search paged to its end.
	start := time.Now()
	big, err := g.List(context.Background(), presence.ListQuery{Limit: presence.MaxListLimit})
	bigTook := time.Since(start)
	if err != nil || len(big.Sessions) != presence.MaxListLimit {
		t.Fatalf("page of 1000: %d, %v", len(big.Sessions), err)
	}
	q := presence.ListQuery{Q: "user-0042-tab-0", Limit: 4} // tabs 000..099 of one user
	n, pages := 0, 0
	start = time.Now()
	for {
		l, err := g.List(context.Background(), q)
		if err != nil || l.Total != 100 {
			t.Fatalf("search: total %d, %v", l.Total, err)
		}
		n, pages = n+len(l.Sessions), pages+1
		if l.Next == nil {
			break
		}
		q.After = l.Next
	}
	if n != 100 || pages != 25 {
		t.Fatalf("search paged %d sessions in %d pages, want 100 in 25", n, pages)
	}
	searchTook := time.Since(start)
	// Eight consoles at once: each gets its own whole answer.
	start = time.Now()
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			l, err := g.List(context.Background(), presence.ListQuery{Limit: 100, After: first.Next})
			if err == nil && (!l.Complete || l.Total != users*each || len(l.Sessions) != 100 || l.Sessions[0].SessionID != "user-0001-tab-000") {
				err = fmt.Errorf("complete %v, total %d, %d sessions", l.Complete, l.Total, len(l.Sessions))
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("100,000 sessions: page of 100 in at most %s (5 tries), page of 1000 in %s, 25 pages of a search in %s, 8 pages at once in %s",
		worst.Round(time.Millisecond), bigTook.Round(time.Millisecond), searchTook.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	// Responsive: a page in well under a second even on a loaded machine.
	if worst > 2*time.Second {
		t.Fatalf("a page of 100 took %s", worst)
	}
}
