package e2e

import (
	"encoding/json"
	"testing"
	"time"
)

// TestWebSocketResume: a plain socket resumes with last_event_id=; a Phoenix
// channel with its join payload's last_event_id.
func TestWebSocketResume(t *testing.T) {
	st := StartStackInProcess(t, nil, nil)
	tok := Token(t, "alice")
	m1 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 1})
	m2 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 2})
	m3 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 3})

	t.Run("plain", func(t *testing.T) {
		q := plainQuery(tok)
		q.Set("last_event_id", m1)
		w := MustWS(t, wsURL(st.Edge.URL, q))
		if ev := w.Next(t, 5*time.Second); ev.Event != "connected" {
			t.Fatalf("first %+v", ev)
		}
		for _, want := range []string{m2, m3} {
			if ev := w.Next(t, 5*time.Second); ev.Event != "message" || ev.ID != want {
				t.Fatalf("got %+v, want %s", ev, want)
			}
		}
		m4 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 4})
		if ev := w.Next(t, 5*time.Second); ev.ID != m4 {
			t.Fatalf("live: got %+v, want %s", ev, m4)
		}
	})

	for _, vsn := range []string{"1.0.0", "2.0.0"} {
		t.Run("phoenix "+vsn, func(t *testing.T) {
			p := dialPhx(t, st.Edge.URL, tok, vsn)
			p.join(t, "1", "user:alice", map[string]any{"last_event_id": m2})
			m := p.next(t)
			var payload map[string]any
			if m.Event != "message" || m.Topic != "user:alice" || m.Ref != m3 || json.Unmarshal(m.Payload, &payload) != nil || payload["n"] != 3.0 {
				t.Fatalf("replayed %+v %s, want %s", m, m.Payload, m3)
			}
			// a gap on a second join with an id history never held
			q := Token(t, "agent", TokenOpts{Roles: []string{"support"}})
			p2 := dialPhx(t, st.Edge.URL, q, vsn)
			p2.join(t, "1", "user:alice", map[string]any{"last_event_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"})
			if g := p2.next(t); g.Event != "gap" || g.Topic != "user:alice" || string(g.Payload) != `"01ARZ3NDEKTSV4RRFFQ69G5FAV"` {
				t.Fatalf("got %+v %s, want a gap", g, g.Payload)
			}
		})
	}
}
