package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// TestRollingRestart: two edges, one ingest; a publisher posts 2,000
// messages at a steady rate to several users while the edges are restarted
// one after the other (SIGTERM, drain, start again). SSE, WebSocket and
// long-poll clients, each reconnecting to whichever edge is up, must each
// end with exactly the messages for their users: 0 lost, 0 duplicated, in
// order.
func TestRollingRestart(t *testing.T) {
	te := StartTwoEdges(t, map[string]string{
		"DRAIN_TIMEOUT":      "3s",
		"LONGPOLL_TIMEOUT":   "2s",
		"HEARTBEAT_INTERVAL": "1s",
		"LOG_LEVEL":          "info",
	}, map[string]string{"LOG_LEVEL": "info"})
	edges := []string{te.A.URL, te.B.URL}
	users := []string{"ann", "ben", "cat", "dan"}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var clients []*reconnecting
	var wg sync.WaitGroup
	for i, u := range users {
		tok := Token(t, u, TokenOpts{TTL: 10 * time.Minute})
		rot := []string{edges[i%2], edges[(i+1)%2]}
		for _, kind := range []string{"sse", "websocket", "longpoll"} {
			c := newReconnecting(kind+"/"+u, rot, tok, u)
			clients = append(clients, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch kind {
				case "sse":
					c.runSSE(ctx)
				case "websocket":
					c.runWebSocket(ctx)
				default:
					c.runLongPoll(ctx)
				}
			}()
		}
	}
	defer wg.Wait()
	defer cancel()
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		for _, c := range clients {
			c.mu.Lock()
			n := c.connects
			c.mu.Unlock()
			if n == 0 {
				return fmt.Errorf("not every client connected")
			}
		}
		return nil
	})
	// A long-poll client has connected once its first answer came; give
	// the rest a first position before publishing.
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, c := range clients {
			if c.cursor() == "" && c.name[:3] == "lon" {
				return fmt.Errorf("long-poll clients have no position yet")
			}
		}
		return nil
	})

	const total = 2000
	expected := map[string][]string{}
	var expMu sync.Mutex
	published := make(chan error, 1)
	go func() {
		tick := time.NewTicker(6 * time.Millisecond) // ~165 messages/s for ~12s
		defer tick.Stop()
		for i := range total {
			<-tick.C
			u := users[i%len(users)]
			id, err := tryPost(te.Ingest.URL, map[string]any{"user": u, "i": i})
			if err != nil {
				published <- fmt.Errorf("message %d: %w", i, err)
				return
			}
			expMu.Lock()
			expected[u] = append(expected[u], id)
			expMu.Unlock()
		}
		published <- nil
	}()

	// Restart the edges one after the other while the messages flow, one
	// every 400 messages; the third is a hard kill (SIGKILL), survived
	// through resume alone.
	postedSoFar := func() int {
		expMu.Lock()
		defer expMu.Unlock()
		n := 0
		for _, ids := range expected {
			n += len(ids)
		}
		return n
	}
	restarts := 0
	for i, e := range []*Server{te.A, te.B, te.A, te.B} {
		check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
			if got := postedSoFar(); got < 400*(i+1) {
				return fmt.Errorf("publisher stalled: got %v", got)
			}
			return nil
		})
		sig := syscall.SIGTERM
		if i == 2 {
			sig = syscall.SIGKILL
		}
		start := time.Now()
		e.Signal(sig)
		if !e.Wait(15 * time.Second) {
			t.Fatalf("%s did not exit within 15s of %s", e.Name, sig)
		}
		stopped := time.Since(start)
		e.Restart()
		e.WaitReady(t)
		restarts++
		t.Logf("%s %s after %d messages: exited in %s, ready again after %s", sig, e.Name, postedSoFar(), stopped.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}

	// Every client ends with every message of its user.
	complete := func() bool {
		for _, c := range clients {
			if len(c.received()) < len(expected[c.users[0]]) {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(60 * time.Second); !complete() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()

	allLost, allDup := 0, 0
	for _, c := range clients {
		got, want := c.received(), expected[c.users[0]]
		lost, dup := diff(want, got)
		inOrder := len(lost) == 0 && len(dup) == 0 && slices.Equal(got, want)
		t.Logf("%-20s %4d messages, %d lost, %d duplicated, in order: %v (%s)", c.name, len(got), len(lost), len(dup), inOrder, c.summary())
		allLost += len(lost)
		allDup += len(dup)
		if !inOrder {
			t.Errorf("%s: %d lost %v, %d duplicated %v, or out of order", c.name, len(lost), head(lost), len(dup), head(dup))
		}
	}
	t.Logf("rolling restart: %d messages posted, %d edge restarts, %d clients: %d lost, %d duplicated", total, restarts, len(clients), allLost, allDup)
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}
