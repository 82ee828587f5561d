package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

var floodSources = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}

// A flood of idle connections past MAX_CONNECTIONS, from several
// addresses: the edge holds the cap and closes the rest at once, an open
// stream keeps getting its messages, a new connection is refused while the
// cap is full and succeeds once the flood ends, and the edge's open files
// stay far under its limit.
func TestHostileConnectionFlood(t *testing.T) {
	const max, flood = 300, 900
	// Idle connections are closed after HEADER_TIMEOUT: long here, so the
	// flood holds the cap for the whole test.
	st := StartStack(t, map[string]string{"MAX_CONNECTIONS": "300", "HEADER_TIMEOUT": "60s", "LOG_LEVEL": "info"}, nil)
	addr := fmt.Sprintf("127.0.0.1:%d", st.Edge.Port)
	pid := st.Edge.Pid()
	limit := fdLimit(t, pid)
	stream := MustSSE(t, st.Edge.URL+"/socket/sse?token="+Token(t, "flood-alice"))
	fds := WatchFDs(pid)

	f := StartFlood(t, addr, floodSources, flood)
	// A connection the edge resets at once may fail its dial already.
	refused := f.Failed + f.Closed(time.Second)
	t.Logf("flood: %d connections, %d refused by the edge at once (%d of them before the dial returned: %v), %d held",
		flood, refused, f.Failed, f.Err, flood-refused)
	// The stream holds one place; the flood takes the others.
	if want := flood - (max - 1); refused != want {
		t.Errorf("the edge refused %d of the flood's %d connections, want %d (all past MAX_CONNECTIONS=%d)", refused, flood, want, max)
	}
	m := Scrape(t, st.Edge.OpsURL+"/metrics")
	t.Logf("during the flood: rig_edge_tcp_connections %v, rig_edge_max_connections %v, refused for capacity %v",
		m["rig_edge_tcp_connections"], m["rig_edge_max_connections"], m[`rig_edge_connections_refused_total{reason="capacity"}`])
	if m["rig_edge_tcp_connections"] != max || m["rig_edge_max_connections"] != max {
		t.Errorf("rig_edge_tcp_connections %v, rig_edge_max_connections %v, want %d and %d", m["rig_edge_tcp_connections"], m["rig_edge_max_connections"], max, max)
	}
	if got := m[`rig_edge_connections_refused_total{reason="capacity"}`]; int(got) != refused {
		t.Errorf("refused for capacity: %v, want %d", got, refused)
	}

	// The open stream lives through the flood.
	for i := range 5 {
		id := Post(t, st.Ingest.URL, map[string]any{"user": "flood-alice", "n": i})
		if ev := stream.NextMessage(t, 5*time.Second); ev.ID != id {
			t.Fatalf("during the flood the stream got %+v, want message %s", ev, id)
		}
	}
	// A new connection past the cap is closed at once, even a good one.
	if s, r, err := DialSSEWith(t, ClientFrom("127.0.0.1"), st.Edge.URL+"/socket/sse?token="+Token(t, "flood-bob"), nil); err == nil {
		if s != nil {
			s.Close()
		}
		t.Errorf("a new SSE connection past MAX_CONNECTIONS got %d, want the connection closed", r.Status)
	}

	// The flood ends: its places come back, and a new client connects.
	f.Close()
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := metric(t, st.Edge, "rig_edge_tcp_connections"); got != 1 {
			return fmt.Errorf("the edge still counts %v connections after the flood ended, want 1 (the stream)", got)
		}
		return nil
	})
	late := MustSSE(t, st.Edge.URL+"/socket/sse?token="+Token(t, "flood-bob"))
	id := Post(t, st.Ingest.URL, map[string]any{"user": "flood-bob", "text": "after the flood"})
	if ev := late.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("after the flood the new stream got %+v, want %s", ev, id)
	}
	most := fds.Most()
	t.Logf("edge open files: at most %d during the flood, limit %d", most, limit)
	if most >= limit || most > max+200 {
		t.Errorf("the edge had %d files open, limit %d, MAX_CONNECTIONS %d", most, limit, max)
	}
	if !st.Edge.Running() {
		t.Fatal("the edge exited")
	}
}

// The flood at full size, with default settings: about 21,000 idle
// connections from four loopback addresses, in two processes (one may hold
// only about 19,000 files). Today's main exits with "accept4: too many open
// files" and takes its embedded NATS with it; the edge must stay up, keep
// its open files under the limit, keep the open stream and ingest's
// publishing alive, and take a new connection once the flood ends.
func TestHostileConnectionFloodFullSize(t *testing.T) {
	if testing.Short() {
		t.Skip("21,000 connections")
	}
	st := StartStack(t, map[string]string{"LOG_LEVEL": "info"}, nil)
	addr := fmt.Sprintf("127.0.0.1:%d", st.Edge.Port)
	pid := st.Edge.Pid()
	limit := fdLimit(t, pid)
	stream := MustSSE(t, st.Edge.URL+"/socket/sse?token="+Token(t, "flood-alice"))
	fds := WatchFDs(pid)

	start := time.Now()
	a := StartFlooder(t, addr, floodSources[:2], 10500)
	b := StartFlooder(t, addr, floodSources[2:], 10500)
	da, fa, ea := a.Wait(t, 90*time.Second)
	db, fb, eb := b.Wait(t, 90*time.Second)
	t.Logf("flood: %d connections dialed, %d failed (%s %s) in %s", da+db, fa+fb, ea, eb, time.Since(start).Round(time.Millisecond))

	running := st.Edge.Running()
	r := Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json", []byte(`{"user":"flood-alice","text":"during the flood"}`))
	var got string
	if r.Status == 202 {
		var ev SSEEvent
		select {
		case ev = <-stream.Events:
			for ev.Event == "heartbeat" {
				ev = <-stream.Events
			}
		case <-time.After(5 * time.Second):
		}
		got = ev.Event
	}
	m := map[string]float64{}
	if resp, err := http.Get(st.Edge.OpsURL + "/metrics"); err == nil {
		resp.Body.Close()
		m = Scrape(t, st.Edge.OpsURL+"/metrics")
	}
	t.Logf("during the flood: edge running %v, POST answered %d, the open stream got %q, tcp connections %v of %v, refused for capacity %v, accept errors %v",
		running, r.Status, got, m["rig_edge_tcp_connections"], m["rig_edge_max_connections"], m[`rig_edge_connections_refused_total{reason="capacity"}`], m["rig_edge_accept_errors_total"])
	if !running {
		t.Fatalf("the edge exited during the flood:\n%s", tail(st.Edge.Logs(), 10))
	}
	if r.Status != 202 || got != "message" {
		t.Errorf("during the flood: POST %d %s, stream event %q; want 202 and the message", r.Status, r.Body, got)
	}

	a.Stop()
	b.Stop()
	most := fds.Most()
	t.Logf("edge open files: at most %d, limit %d", most, limit)
	if most >= limit {
		t.Errorf("the edge reached its open-file limit: %d of %d", most, limit)
	}
	var late *SSE
	check.For(t, 15*time.Second, 10*time.Millisecond, func() error {
		s, _, err := DialSSEWith(t, http.DefaultClient, st.Edge.URL+"/socket/sse?token="+Token(t, "flood-bob"), nil)
		late = s
		if !(err == nil && s != nil) {
			return fmt.Errorf("no new SSE connection after the flood")
		}
		return nil
	})
	id := Post(t, st.Ingest.URL, map[string]any{"user": "flood-bob", "text": "after the flood"})
	if ev := late.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("after the flood the new stream got %+v, want %s", ev, id)
	}
	if !st.Edge.Running() {
		t.Fatal("the edge exited")
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// An edge out of file descriptors (run under prlimit with MAX_CONNECTIONS
// above what it can open) fails to accept with EMFILE: it must pause and
// retry, logging the reason once, not stop serving. The stream it holds
// keeps its messages, and once the flood ends a new client connects.
func TestHostileAcceptBackoff(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) not installed")
	}
	nats := StartNATS(t)
	port := FreePort(t)
	env := EdgeEnv(port, nats.URL)
	env["MAX_CONNECTIONS"] = "5000"
	env["HEADER_TIMEOUT"] = "60s"
	env["LOG_LEVEL"] = "info"
	edge := &Server{Port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port), OpsURL: "http://127.0.0.1:" + env["METRICS_PORT"]}
	edge.Proc = StartProc(t, "edge (prlimit)", prlimit, []string{"--nofile=160:160", bin.edge}, env)
	edge.WaitReady(t)
	ingest := StartIngest(t, IngestEnv(FreePort(t), nats.URL))
	stream := MustSSE(t, edge.URL+"/socket/sse?token="+Token(t, "emfile-alice"))

	// The edge accepts what its files allow; the kernel holds the rest.
	f := StartFlood(t, fmt.Sprintf("127.0.0.1:%d", port), floodSources[:2], 400)
	const warning = "public port cannot accept connections"
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !(strings.Contains(edge.Logs(), warning) || !edge.Running()) {
			return fmt.Errorf("no accept error logged with %d flood connections open", len(f.Conns))
		}
		return nil
	})
	t.Logf("flood: %d connections open, edge open files %d of 160, edge running %v", len(f.Conns), fdCount(edge.Pid()), edge.Running())
	if !edge.Running() {
		t.Fatalf("the edge exited on the accept error:\n%s", tail(edge.Logs(), 10))
	}
	id := Post(t, ingest.URL, map[string]any{"user": "emfile-alice", "text": "out of files"})
	if ev := stream.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("while out of files the stream got %+v, want %s", ev, id)
	}

	f.Close()
	var late *SSE
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		s, _, err := DialSSEWith(t, http.DefaultClient, edge.URL+"/socket/sse?token="+Token(t, "emfile-bob"), nil)
		late = s
		if !(err == nil && s != nil) {
			return fmt.Errorf("no new connection after the flood ended")
		}
		return nil
	})
	id = Post(t, ingest.URL, map[string]any{"user": "emfile-bob", "text": "files again"})
	if ev := late.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("after the flood the new stream got %+v, want %s", ev, id)
	}
	errs := metric(t, edge, "rig_edge_accept_errors_total")
	logged := strings.Count(edge.Logs(), warning)
	t.Logf("accept errors: %v counted, %d logged", errs, logged)
	if errs < 1 || logged != 1 {
		t.Errorf("accept errors: %v counted, %d log lines; want some counted and one line for the one reason", errs, logged)
	}
	if n := strings.Count(edge.Logs(), "public port accepting again"); n != 1 {
		t.Errorf("the edge logged %d times that it accepts again, want once", n)
	}
}

// A connection that sends no complete request head within HEADER_TIMEOUT
// is closed, whether it sends nothing or drips its head a byte at a time;
// a request whose body comes slowly after its head is still served, and a
// stream, once started, is not subject to the timeout.
func TestHostileHeaderTimeout(t *testing.T) {
	st := StartStack(t, map[string]string{"HEADER_TIMEOUT": "1s"}, nil)
	addr := fmt.Sprintf("127.0.0.1:%d", st.Edge.Port)
	stream := MustSSE(t, st.Edge.URL+"/socket/sse?token="+Token(t, "timeout-alice"))

	idle, err := DialFrom("127.0.0.2", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	start := time.Now()
	closed := closedWithin(idle, 5*time.Second)
	t.Logf("idle connection: closed %v after %s", closed, time.Since(start).Round(time.Millisecond))
	if !closed || time.Since(start) > 3*time.Second {
		t.Errorf("an idle connection was not closed within 3s of HEADER_TIMEOUT=1s")
	}

	drip, err := DialFrom("127.0.0.2", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer drip.Close()
	start = time.Now()
	ended := make(chan time.Duration, 1)
	go func() {
		_ = drip.SetReadDeadline(time.Now().Add(8 * time.Second))
		_, _ = io.Copy(io.Discard, drip)
		ended <- time.Since(start)
	}()
	head := "GET /health HTTP/1.1\r\nHost: edge\r\n" + strings.Repeat("X-Drip: 1\r\n", 100) + "\r\n"
	var dripTook time.Duration
drip:
	for i := range len(head) {
		if _, err := drip.Write([]byte{head[i]}); err != nil {
			break
		}
		select {
		case dripTook = <-ended:
			break drip
		case <-time.After(20 * time.Millisecond):
		}
	}
	if dripTook == 0 {
		select {
		case dripTook = <-ended:
		case <-time.After(8 * time.Second):
		}
	}
	t.Logf("slow-drip head: closed after %s", dripTook.Round(time.Millisecond))
	if dripTook == 0 || dripTook > 3*time.Second {
		t.Errorf("a head dripped a byte per 20ms was not cut off within 3s (took %s)", dripTook)
	}

	// The body has its own, longer deadline: a head sent at once and a body
	// over 2s is answered (the gateway's 404: no route), not cut off.
	slow, err := DialFrom("127.0.0.2", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	body := `{"slow":"body"}`
	fmt.Fprintf(slow, "POST /nowhere HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	for i := range len(body) {
		time.Sleep(2 * time.Second / time.Duration(len(body)))
		if _, err := slow.Write([]byte{body[i]}); err != nil {
			t.Fatalf("slow body cut off after %d bytes: %v", i, err)
		}
	}
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatalf("slow body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("a request whose body took 2s: %d, want the gateway's 404", resp.StatusCode)
	}

	// The stream, open for longer than HEADER_TIMEOUT many times over.
	id := Post(t, st.Ingest.URL, map[string]any{"user": "timeout-alice", "text": "still here"})
	if ev := stream.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("the stream got %+v, want %s", ev, id)
	}
}
