package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIdempotencyKey: a back-end that retries a message with the same
// Idempotency-Key gets the first answer's id back (a new event id, not the
// key), and the message is stored and delivered once.
func TestIdempotencyKey(t *testing.T) {
	st := StartStackInProcess(t, nil, nil)
	s := MustSSE(t, sseURL(st.Edge.URL, Token(t, "alice")))
	body := []byte(`{"user":"alice","text":"once"}`)
	key := http.Header{"Idempotency-Key": {"order-42-shipped"}}
	first := ""
	for range 3 {
		r := Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json", body, key)
		var a struct{ ID string }
		r.JSON(t, &a)
		if r.Status != 202 || a.ID == "" || a.ID == "order-42-shipped" || first != "" && a.ID != first {
			t.Fatalf("retry: %d %s (first id %q)", r.Status, r.Body, first)
		}
		first = a.ID
	}
	after := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "next"})
	if ev := s.NextMessage(t, 5*time.Second); ev.ID != first {
		t.Fatalf("got %+v, want %s", ev, first)
	}
	if ev := s.NextMessage(t, 5*time.Second); ev.ID != after {
		t.Fatalf("the retries were delivered again: got %+v, want %s", ev, after)
	}
	for _, bad := range []string{"seq:5", strings.Repeat("x", 300)} {
		r := Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json", body, http.Header{"Idempotency-Key": {bad}})
		if r.Status != 400 {
			t.Fatalf("key %q: %d", bad[:min(len(bad), 10)], r.Status)
		}
		r.ErrorMessage(t)
	}
}
