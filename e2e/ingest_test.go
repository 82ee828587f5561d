package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/check"
)

// TestIngestErrors checks every refusal of POST /v1/messages and that none
// of them publishes anything: a NATS subscriber on user.> sees only the
// sentinel posted after them, and the history stream holds only it.
func TestIngestErrors(t *testing.T) {
	st := StartStack(t, nil, map[string]string{"MESSAGE_MAX_SIZE": "1KiB"})
	nc, err := nats.Connect(st.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	seen := make(chan *nats.Msg, 100)
	if _, err := nc.ChanSubscribe("user.>", seen); err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	big := `{"user":"alice","text":"` + strings.Repeat("x", 2000) + `"}`
	cases := []struct {
		name, contentType, body string
		status                  int
	}{
		{"text/plain", "text/plain", `{"user":"alice"}`, 415},
		{"no content type", "", `{"user":"alice"}`, 415},
		{"form", "application/x-www-form-urlencoded", `user=alice`, 415},
		{"broken JSON", "application/json", `{"user":"alice",`, 400},
		{"empty body", "application/json", ``, 400},
		{"batch with a bad message", "application/json", `[{"user":"alice"},{"text":"no user"}]`, 400},
		{"string", "application/json", `"alice"`, 400},
		{"no user", "application/json", `{"text":"hi"}`, 400},
		{"user not a string", "application/json", `{"user":42}`, 400},
		{"empty user", "application/json", `{"user":""}`, 400},
		{"user too long", "application/json", `{"user":"` + strings.Repeat("u", 257) + `"}`, 400},
		{"user twice", "application/json", `{"user":"alice","user":"bob"}`, 400},
		{"trailing garbage", "application/json", `{"user":"alice"} x`, 400},
		{"too large", "application/json", big, 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Do(t, "POST", st.Ingest.URL+"/v1/messages", c.contentType, []byte(c.body))
			if r.Status != c.status {
				t.Fatalf("status %d %s, want %d", r.Status, r.Body, c.status)
			}
			r.ErrorMessage(t)
		})
	}
	t.Run("charset parameter is fine", func(t *testing.T) {
		r := Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json; charset=utf-8", []byte(`{"user":"sentinel"}`))
		if r.Status != 202 {
			t.Fatalf("status %d %s", r.Status, r.Body)
		}
	})
	select {
	case m := <-seen:
		if m.Subject != "user.sentinel" {
			t.Fatalf("a refused request published %s %q", m.Subject, m.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sentinel not published")
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "RIG_HISTORY")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("history holds %d messages, want only the sentinel", n)
	}
}

// TestIngestUnavailable: with NATS gone, ingest answers 503 with
// Retry-After and is not ready; when NATS is back it accepts again.
func TestIngestUnavailable(t *testing.T) {
	n := StartNATS(t)
	ingest := StartIngest(t, IngestEnv(FreePort(t), n.URL))
	Post(t, ingest.URL, map[string]any{"user": "alice"})

	n.Kill()
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := Do(t, "GET", ingest.URL+"/health/ready", "", nil).Status; got != 503 {
			return fmt.Errorf("ingest still ready without NATS: got %v", got)
		}
		return nil
	})
	r := Do(t, "POST", ingest.URL+"/v1/messages", "application/json", []byte(`{"user":"alice","n":1}`))
	if r.Status != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("without NATS: %d Retry-After=%q %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	r.ErrorMessage(t)
	if h := Do(t, "GET", ingest.URL+"/health", "", nil); h.Status != 200 {
		t.Fatalf("liveness without NATS: %d", h.Status)
	}

	n.Restart()
	ingest.WaitReady(t)
	Post(t, ingest.URL, map[string]any{"user": "alice", "n": 2})
	// The 503'd message was never published: the stream (kept on disk
	// across the restart) holds the two accepted ones only.
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "RIG_HISTORY")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != 2 {
		t.Fatalf("history holds %d messages, want 2", got)
	}
}

// TestEdgeWithoutNATS: an edge cut off from NATS is not ready; it answers
// new connections 503 for a short grace, then closes its public port so
// browsers and load balancers go elsewhere; it reopens when NATS is back.
func TestEdgeWithoutNATS(t *testing.T) {
	n := StartNATS(t)
	edge := StartEdge(t, EdgeEnv(FreePort(t), n.URL))
	n.Kill()
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := Do(t, "GET", edge.OpsURL+"/health/ready", "", nil).Status; got != 503 {
			return fmt.Errorf("edge still ready without NATS: got %v", got)
		}
		return nil
	})
	var h struct {
		Detail         string `json:"detail"`
		PublicPortOpen bool   `json:"public_port_open"`
	}
	Do(t, "GET", edge.OpsURL+"/health", "", nil).JSON(t, &h)
	if h.Detail == "" {
		t.Fatal("health does not say why the edge is not ready")
	}
	if h.PublicPortOpen {
		// Within the grace: new connections are refused with a JSON 503.
		_, r := DialSSE(t, sseURL(edge.URL, Token(t, "alice")), nil)
		if r.Status != 503 {
			t.Fatalf("SSE without NATS: %d %s", r.Status, r.Body)
		}
		r.ErrorMessage(t)
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if dialOK(strings.TrimPrefix(edge.URL, "http://")) {
			return fmt.Errorf("public port still open long after NATS went away")
		}
		return nil
	})
	n.Restart()
	edge.WaitReady(t)
	MustSSE(t, sseURL(edge.URL, Token(t, "alice")))
}
