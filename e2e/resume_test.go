package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSSEResume: a client that reconnects with Last-Event-ID (or
// last_event_id=) gets what it missed, once, in order, then live messages.
func TestSSEResume(t *testing.T) {
	st := StartStackInProcess(t, nil, nil)
	tok := Token(t, "alice")
	s := MustSSE(t, sseURL(st.Edge.URL, tok))
	m1 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 1})
	m2 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 2})
	if a, b := s.NextMessage(t, 5*time.Second), s.NextMessage(t, 5*time.Second); a.ID != m1 || b.ID != m2 {
		t.Fatalf("got %s %s", a.ID, b.ID)
	}
	s.Close()
	m3 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 3})
	m4 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 4})
	Post(t, st.Ingest.URL, map[string]any{"user": "bob", "n": 0})

	after := []string{m3, m4} // everything for alice after m2, growing
	for _, how := range []string{"header", "query"} {
		t.Run(how, func(t *testing.T) {
			u, h := sseURL(st.Edge.URL, tok), http.Header{}
			if how == "header" {
				h.Set("Last-Event-ID", m2)
			} else {
				u += "&last_event_id=" + m2
			}
			r := MustSSE(t, u, h)
			for _, want := range after {
				if ev := r.NextMessage(t, 5*time.Second); ev.ID != want {
					t.Fatalf("replayed %s, want %s", ev.ID, want)
				}
			}
			m := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "live": how})
			after = append(after, m)
			if ev := r.NextMessage(t, 5*time.Second); ev.ID != m {
				t.Fatalf("after the replay got %s, want the live %s", ev.ID, m)
			}
		})
	}
	t.Run("invalid id", func(t *testing.T) {
		_, r := DialSSE(t, sseURL(st.Edge.URL, tok)+"&last_event_id=%00bad", nil)
		if r.Status != 400 {
			t.Fatalf("status %d", r.Status)
		}
	})
}

// TestSSEResumeGap: an id no longer in history gets a gap event naming it,
// then whatever history still holds.
func TestSSEResumeGap(t *testing.T) {
	st := StartStackInProcess(t, map[string]string{"HISTORY_MAX_PER_USER": "3"}, map[string]string{"HISTORY_MAX_PER_USER": "3"})
	tok := Token(t, "alice")
	var ids []string
	for i := range 6 {
		ids = append(ids, Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": i}))
	}
	r := MustSSE(t, sseURL(st.Edge.URL, tok), http.Header{"Last-Event-ID": {ids[0]}})
	if ev := r.Next(t, 5*time.Second); ev.Event != "gap" || ev.Data != ids[0] {
		t.Fatalf("got %+v, want a gap naming %s", ev, ids[0])
	}
	for _, want := range ids[3:] {
		if ev := r.NextMessage(t, 5*time.Second); ev.ID != want {
			t.Fatalf("got %s, want %s", ev.ID, want)
		}
	}
}

// TestSSEResumeUnderLoad: while messages are posted at a steady rate, a
// client disconnects and resumes again and again; it ends with every
// message exactly once, in order — no loss or duplicate at the seam.
func TestSSEResumeUnderLoad(t *testing.T) {
	st := StartStackInProcess(t, nil, nil)
	tok := Token(t, "alice")
	const total = 300
	var (
		mu     sync.Mutex
		posted []string
	)
	// The first connection is open before the first message is posted.
	first := MustSSE(t, sseURL(st.Edge.URL, tok))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": i})
			mu.Lock()
			posted = append(posted, id)
			mu.Unlock()
			time.Sleep(2 * time.Millisecond) // a steady publishing rate, not a wait for a condition
		}
	}()
	var got []string
	last := ""
	stalls := 0
	for round := 0; ; round++ {
		before := len(got)
		h := http.Header{}
		if last != "" {
			h.Set("Last-Event-ID", last)
		}
		s := first
		if round > 0 {
			s = MustSSE(t, sseURL(st.Edge.URL, tok), h)
		}
		// Read a few messages, then drop the connection.
		for range 25 {
			ev, ok := nextOrDone(s, done, len(got), total)
			if !ok {
				break
			}
			if ev.Event == "gap" {
				t.Fatalf("round %d: unexpected gap %+v after %d messages", round, ev, len(got))
			}
			got = append(got, ev.ID)
			last = ev.ID
		}
		s.Close()
		if len(got) >= total {
			break
		}
		if round > 200 || len(got) == before && stalled(&stalls) {
			mu.Lock()
			lost, dup := diff(posted, got)
			mu.Unlock()
			t.Fatalf("stuck at %d of %d after %d reconnects (last id %s): lost %v, duplicated %v", len(got), total, round, last, lost, dup)
		}
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != strings.Join(posted, ",") {
		lost, dup := diff(posted, got)
		t.Fatalf("received %d, posted %d: lost %v, duplicated %v", len(got), len(posted), lost, dup)
	}
	t.Logf("%d messages over reconnects: 0 lost, 0 duplicated, in order", len(got))
}

// stalled counts rounds without progress and reports when there were three.
func stalled(n *int) bool {
	*n++
	return *n >= 3
}

// nextOrDone returns the next message event, or false when all messages
// have arrived.
func nextOrDone(s *SSE, done chan struct{}, have, total int) (SSEEvent, bool) {
	if have >= total {
		return SSEEvent{}, false
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-s.Events:
			if !ok {
				return SSEEvent{}, false
			}
			if ev.Event == "message" {
				return ev, true
			}
			if ev.Event == "gap" {
				return ev, true // the caller reports it
			}
		case <-timeout:
			return SSEEvent{}, false
		}
	}
}

// diff returns ids posted but not received, and ids received more than once.
func diff(posted, got []string) (lost, dup []string) {
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
		if seen[id] == 2 {
			dup = append(dup, id)
		}
	}
	for _, id := range posted {
		if seen[id] == 0 {
			lost = append(lost, id)
		}
	}
	return lost, dup
}
