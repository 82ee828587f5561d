package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/app"
)

// startInProcess runs program (app.Edge or app.Ingest) in this process with
// env as its whole environment, every port on a loopback ":0" listener,
// and returns it with the addresses it listens on. It is a Proc that a
// test stops (SIGTERM: its context ends) but cannot kill or restart: for
// tests that need neither, it saves building and starting a binary.
func startInProcess(t testing.TB, name string, program func(context.Context, app.Env) error, env map[string]string) (*Proc, app.Addrs) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proc{t: t, Name: name, out: &syncBuffer{}, done: make(chan struct{}), stop: cancel}
	started := make(chan app.Addrs, 1)
	go func() {
		defer close(p.done)
		p.err = program(ctx, app.Env{
			Getenv: func(k string) string { return env[k] },
			Stdout: p.out, Stderr: p.out,
			Listen:  func(string, int) (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") },
			Started: func(a app.Addrs) { started <- a },
		})
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() || testing.Verbose() {
			t.Logf("--- output of %s ---\n%s", p.Name, p.Logs())
		}
	})
	select {
	case a := <-started:
		return p, a
	case <-p.done:
		t.Fatalf("%s did not start: %v\n%s", name, p.err, p.Logs())
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not open its ports within 20s\n%s", name, p.Logs())
	}
	return nil, app.Addrs{}
}

// StartEdgeInProcess is StartEdge for an edge run in-process (see
// startInProcess): its ports are on ":0" whatever INBOUND_PORT and
// METRICS_PORT (unless 0: off) say.
func StartEdgeInProcess(t testing.TB, env map[string]string) *Server {
	t.Helper()
	p, a := startInProcess(t, "edge (in-process)", app.Edge, env)
	s := serverAt(p, a)
	s.WaitReady(t)
	return s
}

// StartIngestInProcess is StartIngest for an ingest run in-process (see
// startInProcess): its port is on ":0" whatever API_PORT says.
func StartIngestInProcess(t testing.TB, env map[string]string) *Server {
	t.Helper()
	p, a := startInProcess(t, "ingest (in-process)", app.Ingest, env)
	s := serverAt(p, a)
	s.WaitReady(t)
	return s
}

func serverAt(p *Proc, a app.Addrs) *Server {
	port := a.Public.(*net.TCPAddr).Port
	s := &Server{Proc: p, Port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if a.Ops != nil {
		s.OpsURL = "http://" + a.Ops.String()
	}
	return s
}

// StartStackInProcess is StartStack run in-process: the edge embeds NATS
// on a loopback ":0" port, which the ingest is then pointed at.
func StartStackInProcess(t testing.TB, edgeEnv, ingestEnv map[string]string) *Stack {
	t.Helper()
	ee := EdgeEnv(0, "")
	delete(ee, "INBOUND_PORT") // the listener is on ":0" whatever it says
	delete(ee, "NATS_URL")
	ee["NATS_EMBEDDED"] = "true"
	ee["NATS_LISTEN"] = "127.0.0.1:0"
	ee["NATS_STORE_DIR"] = t.TempDir()
	for k, v := range edgeEnv {
		ee[k] = v
	}
	p, a := startInProcess(t, "edge (in-process)", app.Edge, ee)
	edge := serverAt(p, a)
	edge.WaitReady(t)
	ie := IngestEnv(0, a.NATS)
	delete(ie, "API_PORT")
	for k, v := range ingestEnv {
		ie[k] = v
	}
	return &Stack{Edge: edge, Ingest: StartIngestInProcess(t, ie), NATSURL: a.NATS}
}

// TestInProcessStack: an in-process stack listens on ports the kernel
// picked, and delivers a message posted to ingest to an SSE client of the
// edge.
func TestInProcessStack(t *testing.T) {
	st := StartStackInProcess(t, nil, nil)
	if st.Edge.OpsURL == "" || statusWithin(st.Edge.OpsURL+"/health/ready", 3*time.Second) != 200 {
		t.Fatalf("operations port %q not ready", st.Edge.OpsURL)
	}
	sse := MustSSE(t, st.Edge.URL+"/socket/sse?token="+Token(t, "alice"))
	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 1})
	if ev := sse.NextMessage(t, 10*time.Second); ev.ID != id {
		t.Fatalf("got event %+v, want id %s", ev, id)
	}
	// Stopping (SIGTERM's context) drains the client and ends each program
	// without an error, the edge's public port closed.
	st.Ingest.Stop()
	st.Edge.Stop()
	for _, s := range []*Server{st.Ingest, st.Edge} {
		if s.Running() || s.err != nil {
			t.Fatalf("%s: running %v after Stop, error %v", s.Name, s.Running(), s.err)
		}
	}
	if !sse.Ended(5 * time.Second) {
		t.Fatal("SSE stream still open after the edge stopped")
	}
	if dialOK(strings.TrimPrefix(st.Edge.URL, "http://")) {
		t.Fatal("public port still open after the edge stopped")
	}
	for _, line := range []string{"edge stopping", "edge stopped"} {
		if !strings.Contains(st.Edge.Logs(), line) {
			t.Fatalf("edge did not log %q", line)
		}
	}
}
