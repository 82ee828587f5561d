package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// natsSubs returns the subjects the edge's NATS connection subscribes to,
// read from the server's monitoring endpoint.
func natsSubs(t testing.TB, monitorURL string) map[string]int {
	t.Helper()
	r := Do(t, "GET", monitorURL+"/connz?subs=1", "", nil)
	var connz struct {
		Connections []struct {
			Name     string   `json:"name"`
			Subjects []string `json:"subscriptions_list"`
		} `json:"connections"`
	}
	r.JSON(t, &connz)
	out := map[string]int{}
	for _, c := range connz.Connections {
		if c.Name != "rig-edge" {
			continue
		}
		for _, s := range c.Subjects {
			if strings.HasPrefix(s, "rig.live.user.") {
				out[s]++
			}
		}
	}
	return out
}

func edgeHealth(t testing.TB, edgeURL string) (conns, users int) {
	t.Helper()
	var h struct{ Connections, Users int }
	Do(t, "GET", edgeURL+"/health", "", nil).JSON(t, &h)
	return h.Connections, h.Users
}

// TestSubscriptionPerUser: one NATS subscription per connected user,
// shared by all its connections and by privileged watchers, gone promptly
// when the last one disconnects (long before the next heartbeat).
func TestSubscriptionPerUser(t *testing.T) {
	mon := FreePort(t)
	n := StartNATS(t, "-m", fmt.Sprint(mon))
	monURL := fmt.Sprintf("http://127.0.0.1:%d", mon)
	env := EdgeEnv(FreePort(t), n.URL)
	env["HEARTBEAT_INTERVAL"] = "1m"
	edge := StartEdge(t, env)

	a1 := MustSSE(t, sseURL(edge.URL, Token(t, "alice")))
	a2 := MustSSE(t, sseURL(edge.URL, Token(t, "alice")))
	sup := MustSSE(t, sseURL(edge.URL, Token(t, "agent", TokenOpts{Roles: []string{"support"}}), "alice", "bob"))
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		s := natsSubs(t, monURL)
		if !(len(s) == 2 && s["rig.live.user.alice"] == 1 && s["rig.live.user.bob"] == 1) {
			return fmt.Errorf("subscriptions %v, want one each for alice and bob", natsSubs(t, monURL))
		}
		return nil
	})

	a1.Close()
	a2.Close()
	check.For(t, 2*time.Second, 10*time.Millisecond, func() error {
		c, _ := edgeHealth(t, edge.URL)
		if c != 1 {
			return fmt.Errorf("closed clients still counted: got %v", c)
		}
		return nil
	})
	if s := natsSubs(t, monURL); s["rig.live.user.alice"] != 1 {
		t.Fatalf("alice unsubscribed while the support client watches: %v", s)
	}
	sup.Close()
	check.For(t, 2*time.Second, 10*time.Millisecond, func() error {
		if subs := natsSubs(t, monURL); len(subs) != 0 {
			return fmt.Errorf("subscriptions left: %v", subs)
		}
		return nil
	})
	if c, u := edgeHealth(t, edge.URL); c != 0 || u != 0 {
		t.Fatalf("health says %d connections, %d users", c, u)
	}
}

// TestSlowClientIsDisconnected: a client that stops reading is cut off when
// its queue fills, while another client of the same user gets everything.
func TestSlowClientIsDisconnected(t *testing.T) {
	st := StartStack(t, map[string]string{"CLIENT_QUEUE_SIZE": "16", "HEARTBEAT_INTERVAL": "1m"}, map[string]string{"MESSAGE_MAX_SIZE": "1MiB"})
	tok := Token(t, "alice")

	// The slow client sends its request and never reads again.
	slow, err := net.Dial("tcp", strings.TrimPrefix(st.Edge.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /socket/sse?token=%s HTTP/1.1\r\nHost: x\r\n\r\n", tok)
	fast := MustSSE(t, sseURL(st.Edge.URL, tok))
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		c, _ := edgeHealth(t, st.Edge.URL)
		if c != 2 {
			return fmt.Errorf("both clients not connected: got %v", c)
		}
		return nil
	})

	payload := strings.Repeat("x", 256<<10)
	const total = 200 // 50 MiB: far more than socket buffers hold
	var wg sync.WaitGroup
	wg.Add(1)
	got := 0
	go func() {
		defer wg.Done()
		for got < total {
			ev, ok := <-fast.Events
			if !ok {
				return
			}
			if ev.Event == "message" {
				got++
			}
		}
	}()
	for i := range total {
		Post(t, st.Ingest.URL, map[string]any{"user": "alice", "i": i, "pad": payload})
	}
	wg.Wait()
	if got != total {
		t.Fatalf("fast client got %d of %d messages", got, total)
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		c, _ := edgeHealth(t, st.Edge.URL)
		if c != 1 {
			return fmt.Errorf("slow client still connected: got %v", c)
		}
		return nil
	})
	if !strings.Contains(st.Edge.Logs(), "slow client") {
		t.Fatal("edge did not log the slow client")
	}
	// The slow client's connection was closed by the edge: reading what is
	// buffered ends in EOF instead of blocking.
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, slow)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("slow client's connection not closed (read %d bytes)", n)
	}
}

// TestHeartbeat: idle streams get heartbeat events at HEARTBEAT_INTERVAL.
func TestHeartbeat(t *testing.T) {
	st := StartStack(t, map[string]string{"HEARTBEAT_INTERVAL": "200ms"}, nil)
	s := MustSSE(t, sseURL(st.Edge.URL, Token(t, "alice")))
	start := time.Now()
	for range 3 {
		if ev := s.NextAny(t, 2*time.Second); ev.Event != "heartbeat" {
			t.Fatalf("got %+v, want heartbeat", ev)
		}
	}
	// Three heartbeats span two intervals (400 ms), less a late first
	// one's delay (timers and scheduling: milliseconds); 300 ms still
	// tells a 200 ms interval from one of 150 ms or less.
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("3 heartbeats in %s: faster than the interval", el)
	}
}

// TestTokenExpiryClosesStream: a stream ends with token_expired when exp passes.
func TestTokenExpiryClosesStream(t *testing.T) {
	st := StartStack(t, nil, nil)
	s := MustSSE(t, sseURL(st.Edge.URL, Token(t, "alice", TokenOpts{TTL: 2 * time.Second})))
	ev := s.Next(t, 5*time.Second)
	if ev.Event != "token_expired" {
		t.Fatalf("got %+v, want token_expired", ev)
	}
	if !s.Ended(2 * time.Second) {
		t.Fatal("stream still open after token_expired")
	}
}

// TestConnectedEvent: the first event names the users subscribed to.
func TestConnectedEvent(t *testing.T) {
	st := StartStack(t, nil, nil)
	s, r := DialSSE(t, sseURL(st.Edge.URL, Token(t, "agent", TokenOpts{Roles: []string{"support"}}), "x", "y", "x"), http.Header{})
	if s == nil {
		t.Fatalf("status %d", r.Status)
	}
	ev := s.Next(t, 5*time.Second)
	var data struct{ Users []string }
	if err := json.Unmarshal([]byte(ev.Data), &data); ev.Event != "connected" || err != nil || strings.Join(data.Users, ",") != "x,y" {
		t.Fatalf("connected event %+v", ev)
	}
}
