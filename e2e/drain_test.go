package e2e

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// TestGracefulShutdown: on SIGTERM an edge closes its public port at once
// (reconnecting clients go elsewhere), tells its SSE clients to reconnect
// (retry:, then a clean end of the stream), and exits promptly.
func TestGracefulShutdown(t *testing.T) {
	n := StartNATS(t)
	env := EdgeEnv(FreePort(t), n.URL)
	env["DRAIN_TIMEOUT"] = "5s"
	edge := StartEdge(t, env)
	s := MustSSE(t, sseURL(edge.URL, Token(t, "alice")))

	start := time.Now()
	edge.Signal(syscall.SIGTERM)
	ev := s.Next(t, 5*time.Second)
	if ev.Event != "reconnect" || ev.Retry <= 0 {
		t.Fatalf("got %+v, want a reconnect event with retry", ev)
	}
	if !s.Ended(5 * time.Second) {
		t.Fatal("stream not ended after the reconnect event")
	}
	if dialOK(strings.TrimPrefix(edge.URL, "http://")) && edge.Running() {
		t.Fatal("public port still accepting while draining")
	}
	if !edge.Wait(5 * time.Second) {
		t.Fatal("edge did not exit within the drain timeout")
	}
	if code := edge.ExitCode(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	t.Logf("drained and exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// TestDrainTimeoutClosesStuckClients: a client that stopped reading cannot
// hold a draining edge past DRAIN_TIMEOUT.
func TestDrainTimeoutClosesStuckClients(t *testing.T) {
	n := StartNATS(t)
	env := EdgeEnv(FreePort(t), n.URL)
	env["DRAIN_TIMEOUT"] = "2s"
	env["CLIENT_QUEUE_SIZE"] = "100000"
	env["CLIENT_WRITE_TIMEOUT"] = "1m"
	edge := StartEdge(t, env)
	ie := IngestEnv(FreePort(t), n.URL)
	ie["MESSAGE_MAX_SIZE"] = "1MiB"
	ingest := StartIngest(t, ie)

	// A client that sends its request and never reads again.
	stuck, err := net.Dial("tcp", strings.TrimPrefix(edge.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	fmt.Fprintf(stuck, "GET /socket/sse?token=%s HTTP/1.1\r\nHost: x\r\n\r\n", Token(t, "alice"))
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		c, _ := edgeHealth(t, edge.URL)
		if c != 1 {
			return fmt.Errorf("stuck client not connected: got %v", c)
		}
		return nil
	})
	pad := strings.Repeat("x", 512<<10)
	for i := range 40 { // 20 MiB: more than socket buffers hold
		Post(t, ingest.URL, map[string]any{"user": "alice", "i": i, "pad": pad})
	}
	start := time.Now()
	edge.Signal(syscall.SIGTERM)
	if !edge.Wait(10 * time.Second) {
		t.Fatal("edge still running 10s after SIGTERM with DRAIN_TIMEOUT=2s")
	}
	took := time.Since(start)
	if took > 7*time.Second {
		t.Fatalf("exit took %s", took)
	}
	if !strings.Contains(edge.Logs(), "drain timeout") {
		t.Fatalf("exited after %s without hitting the drain timeout", took)
	}
	t.Logf("edge with a stuck client exited %s after SIGTERM (DRAIN_TIMEOUT=2s)", took.Round(time.Millisecond))
}
