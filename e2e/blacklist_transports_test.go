package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// TestBlacklistOnEveryTransport: a blacklisted session is killed and then
// refused on WebSocket, Phoenix and long-polling as on SSE; the token
// expiry closes sockets too.
func TestBlacklistOnEveryTransport(t *testing.T) {
	st := StartStack(t, map[string]string{"LONGPOLL_TIMEOUT": "20s"}, nil)
	tok := Token(t, "alice", TokenOpts{JTI: "every-transport"})

	plain := MustWS(t, wsURL(st.Edge.URL, plainQuery(tok)))
	if ev := plain.Next(t, 5*time.Second); ev.Event != "connected" {
		t.Fatalf("first frame %+v", ev)
	}
	phx := dialPhx(t, st.Edge.URL, tok, "2.0.0")
	phx.join(t, "1", "user:alice", map[string]any{})
	poll := make(chan LongPoll, 1)
	go func() { poll <- Poll(t, pollURL(st.Edge.URL, tok, "")) }()
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		c, _ := edgeHealth(t, st.Edge.URL)
		if c != 3 {
			return fmt.Errorf("not all connected: got %v", c)
		}
		return nil
	})

	Blacklist(t, st.Ingest.URL, "every-transport", 60)

	if ev := plain.Next(t, 5*time.Second); ev.Event != "session_killed" {
		t.Fatalf("plain socket got %+v", ev)
	}
	if code, ok := plain.Closed(5 * time.Second); !ok || code != 1000 {
		t.Fatalf("plain socket close %d %v", code, ok)
	}
	if m := phx.next(t); m.Event != "session_killed" || m.Topic != "user:alice" {
		t.Fatalf("phoenix got %+v", m)
	}
	if _, ok := phx.Closed(5 * time.Second); !ok {
		t.Fatal("phoenix socket not closed")
	}
	select {
	case lp := <-poll:
		if len(lp.Events) != 1 || lp.Events[0].Event != "session_killed" {
			t.Fatalf("long-poll answered %+v", lp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending long-poll not answered when the session was killed")
	}

	// New connections with the session are refused everywhere.
	if _, r := DialWS(t, wsURL(st.Edge.URL, plainQuery(tok))); r.Status != 401 {
		t.Fatalf("plain socket: %d", r.Status)
	}
	if _, r := DialWS(t, wsURL(st.Edge.URL, phxQuery(tok, "2.0.0"))); r.Status != 401 {
		t.Fatalf("phoenix socket: %d", r.Status)
	}
	if r := Do(t, "GET", pollURL(st.Edge.URL, tok, ""), "", nil); r.Status != 401 {
		t.Fatalf("long-poll: %d", r.Status)
	}
}

// TestTokenExpiryOnSockets: sockets end with token_expired when exp passes.
func TestTokenExpiryOnSockets(t *testing.T) {
	st := StartStack(t, nil, nil)
	tok := Token(t, "alice", TokenOpts{TTL: 2 * time.Second})
	plain := MustWS(t, wsURL(st.Edge.URL, plainQuery(tok)))
	phx := dialPhx(t, st.Edge.URL, tok, "1.0.0")
	phx.join(t, "1", "user:alice", map[string]any{})
	plain.Next(t, 5*time.Second) // connected
	if ev := plain.Next(t, 5*time.Second); ev.Event != "token_expired" {
		t.Fatalf("plain socket got %+v", ev)
	}
	if m := phx.next(t); m.Event != "token_expired" {
		t.Fatalf("phoenix got %+v", m)
	}
	for _, w := range []*WS{plain, phx.WS} {
		if _, ok := w.Closed(5 * time.Second); !ok {
			t.Fatal("socket still open after token_expired")
		}
	}
}
