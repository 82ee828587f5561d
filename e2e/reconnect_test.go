package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// TestNATSReconnectReplay: an edge loses its NATS connection while messages
// are published and stored; when it gets it back, its connected clients get
// every one of them, in order, without reconnecting themselves — for a
// user that had received messages before the cut and for one that had not.
func TestNATSReconnectReplay(t *testing.T) {
	n := StartNATS(t)
	cut := newNetCut(t, n.Addr())
	edge := StartEdge(t, EdgeEnv(FreePort(t), "nats://"+cut.Addr()))
	ingest := StartIngest(t, IngestEnv(FreePort(t), n.URL)) // not through the cut

	alice := MustSSE(t, sseURL(edge.URL, Token(t, "alice")))
	bob := MustSSE(t, sseURL(edge.URL, Token(t, "bob"))) // gets nothing before the cut
	before := Post(t, ingest.URL, map[string]any{"user": "alice", "n": 0})
	if ev := alice.NextMessage(t, 5*time.Second); ev.ID != before {
		t.Fatalf("before the cut: %+v", ev)
	}

	cut.Cut()
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := Do(t, "GET", edge.OpsURL+"/health/ready", "", nil).Status; got != 503 {
			return fmt.Errorf("edge did not notice it lost NATS: got %v", got)
		}
		return nil
	})
	var forAlice, forBob []string
	for i := range 5 {
		forAlice = append(forAlice, Post(t, ingest.URL, map[string]any{"user": "alice", "n": i + 1}))
		forBob = append(forBob, Post(t, ingest.URL, map[string]any{"user": "bob", "n": i + 1}))
	}
	cut.Restore()
	edge.WaitReady(t)

	for name, c := range map[string]struct {
		s    *SSE
		want []string
	}{"alice": {alice, forAlice}, "bob": {bob, forBob}} {
		for _, want := range c.want {
			if ev := c.s.NextMessage(t, 10*time.Second); ev.ID != want {
				t.Fatalf("%s got %s, want %s", name, ev.ID, want)
			}
		}
	}
	// And live delivery goes on.
	after := Post(t, ingest.URL, map[string]any{"user": "alice", "n": 99})
	if ev := alice.NextMessage(t, 5*time.Second); ev.ID != after {
		t.Fatalf("after: %+v", ev)
	}
	t.Logf("published while the edge was cut off: alice %d, bob %d; all delivered after the reconnect, in order", len(forAlice), len(forBob))
}
