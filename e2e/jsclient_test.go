package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rig-go/rig/internal/check"
)

// jsClientDir is the front-end client, clients/js.
const jsClientDir = "../clients/js"

// nodeForJSClient returns node and the flags that give it a global
// WebSocket (Node 20 has one only behind --experimental-websocket; 22 has
// it by default). Without node the test is skipped, or fails in CI.
func nodeForJSClient(t *testing.T) (string, []string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node not found, but CI needs it for the clients/js tests: %v", err)
		}
		t.Skipf("node not found (%v); install Node 20 to run the clients/js tests", err)
	}
	if exec.Command(node, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)").Run() == nil {
		return node, nil
	}
	return node, []string{"--experimental-websocket"}
}

// sseRefused is a proxy that refuses SSE outright.
const sseRefused = `location = /socket/sse { return 502; }`

// sseBuffered is the proxy that breaks SSE quietly, as many do: it answers
// 200 and holds the events. Here nginx buffers the stream (ignoring the
// edge's X-Accel-Buffering: no) and compresses it, which holds every
// byte until its compression buffer fills.
const sseBuffered = `location = /socket/sse {
            proxy_pass http://rig_edges;
            proxy_buffering on;
            proxy_ignore_headers X-Accel-Buffering;
            gzip on;
            gzip_types text/event-stream;
            gzip_min_length 1;
            proxy_set_header Connection "";
        }`

// TestJSClientNode runs clients/js's tests under Node's test runner: the
// pure ones (SSE parser, backoff, dedup), and those against two real edges
// (each transport, resume across transports, fallback when SSE breaks,
// 400/401/403/429, token refresh, session_killed, gap) and through an nginx
// that refuses /socket/sse.
func TestJSClientNode(t *testing.T) {
	node, flags := nodeForJSClient(t)
	nginx := NginxPath(t)
	te := StartTwoEdges(t, map[string]string{
		"LONGPOLL_TIMEOUT":         "2s",
		"HEARTBEAT_INTERVAL":       "1s",
		"MAX_CONNECTIONS_PER_USER": "2",
	}, nil)
	blocked := startNginxWith(t, nginx, sseRefused, te.A, te.B)

	// Each test is bounded, and so is the whole run.
	args := append(flags, "--test", "--test-reporter=spec", "--test-timeout=60000", "test/")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = jsClientDir
	cmd.Env = append(os.Environ(),
		"RIG_EDGE_URL="+te.A.URL,
		"RIG_EDGE_B_URL="+te.B.URL,
		"RIG_INGEST_URL="+te.Ingest.URL,
		"RIG_JWT_SECRET="+Secret,
		"RIG_SSE_BLOCKED_URL="+blocked.URL,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// JSCLIENT_DEBUG=1 shows node's output as it runs, not only at the end.
	if os.Getenv("JSCLIENT_DEBUG") != "" {
		cmd.Stdout = io.MultiWriter(&out, os.Stderr)
		cmd.Stderr = cmd.Stdout
	}
	start := time.Now()
	err := cmd.Run()
	t.Logf("node %s (%s):\n%s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("clients/js tests failed: %v", err)
	}
	// The spec reporter's summary: none may skip with the edges given.
	if !strings.Contains(out.String(), "ℹ skipped 0") {
		t.Fatal("some clients/js tests were skipped although the edges were given")
	}
}

// jsClientPage loads clients/js as a module and opens four clients for
// alice: two through the nginx of deploy/nginx (one with the default
// transports, one on long-polling only), one through an nginx that buffers
// SSE and one through an nginx that refuses it. Each records what it gets.
const jsClientPage = `<!doctype html>
<html><body><script type="module">
import { connect } from "/client/index.js";
const q = new URLSearchParams(location.search);
window.runs = {};
for (const [name, url, transports] of [
  ["normal", q.get("normal"), undefined],
  ["longpoll", q.get("normal"), ["longpoll"]],
  ["buffered", q.get("buffered"), undefined],
  ["refused", q.get("refused"), undefined],
]) {
  const run = window.runs[name] = { ids: [], transports: [], gaps: [], dups: [], errors: [], reasons: [] };
  const c = connect({ url, transports, token: q.get("token"), connectTimeout: 3000, backoff: { min: 100, max: 2000 } });
  c.on("connected", (x) => run.transports.push(x.transport));
  c.on("message", (m) => run.ids.push(m.id));
  c.on("gap", (g) => run.gaps.push(g.id));
  c.on("duplicate", (d) => run.dups.push(d.id));
  c.on("error", (e) => run.errors.push(e.message));
  c.on("reconnecting", (r) => run.reasons.push(r.reason));
  // An application bug: its listener throws on the first message. The
  // client reports it and goes on, for the listeners above too.
  c.on("message", () => { if (!run.threw) { run.threw = true; throw new Error("app bug"); } });
}
</script></body></html>`

// jsRun is what the page recorded for one client.
type jsRun struct {
	IDs        []string `json:"ids"`
	Transports []string `json:"transports"`
	Gaps       []string `json:"gaps"`
	Dups       []string `json:"dups"`
	Errors     []string `json:"errors"`
	Reasons    []string `json:"reasons"`
	Threw      bool     `json:"threw"`
}

// TestJSClientBrowser drives Debian's chromium on a page that uses
// clients/js (served from another origin, as an application's page is)
// through nginx in front of two edges, while the edges restart one after
// the other (SIGTERM, SIGTERM, then SIGKILL) and messages are posted
// throughout: a client through deploy/nginx's configuration, one on
// long-polling only, one through an nginx that buffers SSE (200, then
// nothing) and one through an nginx that answers /socket/sse with 502.
// Each ends with every message once, in order; the last two on WebSocket,
// never having connected over SSE.
func TestJSClientBrowser(t *testing.T) {
	nginx := NginxPath(t)
	te := StartTwoEdges(t, map[string]string{"HEARTBEAT_INTERVAL": "1s", "DRAIN_TIMEOUT": "3s", "LONGPOLL_TIMEOUT": "2s"}, nil)
	normal := StartNginx(t, nginx, te.A, te.B)
	buffered := startNginxWith(t, nginx, sseBuffered, te.A, te.B)
	refused := startNginxWith(t, nginx, sseRefused, te.A, te.B)

	mux := http.NewServeMux()
	mux.Handle("/client/", http.StripPrefix("/client/", http.FileServer(http.Dir(jsClientDir))))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, jsClientPage)
	})
	page := httptest.NewServer(mux)
	defer page.Close()
	ctx := newBrowser(t) // closed before the edges and proxies it uses

	tok := Token(t, "alice", TokenOpts{TTL: 10 * time.Minute})
	u := page.URL + "/?" + url.Values{"normal": {normal.URL}, "buffered": {buffered.URL}, "refused": {refused.URL}, "token": {tok}}.Encode()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("open the page in chromium: %v", err)
	}
	runs := func() map[string]jsRun { return evaluate[map[string]jsRun](t, ctx, `window.runs`) }
	names := []string{"normal", "longpoll", "buffered", "refused"}
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		r := runs()
		for _, name := range names {
			if len(r[name].Transports) == 0 {
				return fmt.Errorf("the page's client %s did not connect: %+v", name, r[name])
			}
		}
		return nil
	})
	first := runs()
	for name, want := range map[string]string{"normal": "sse", "longpoll": "longpoll", "buffered": "websocket", "refused": "websocket"} {
		if r := first[name]; !slices.Equal(r.Transports, []string{want}) {
			t.Fatalf("%s: connected on %v, want [%s] (reasons %q)", name, r.Transports, want, r.Reasons)
		}
	}

	var posted []string
	post := func(k int) {
		for range k {
			posted = append(posted, Post(t, te.Ingest.URL, map[string]any{"user": "alice", "n": len(posted)}))
		}
	}
	post(10)
	for i, e := range []*Server{te.A, te.B, te.A} {
		sig := syscall.SIGTERM
		if i == 2 {
			sig = syscall.SIGKILL // no reconnect frame: the clients see their connections break
		}
		e.Signal(sig)
		if !e.Wait(15 * time.Second) {
			t.Fatalf("%s did not stop after %s", e.Name, sig)
		}
		post(10)
		e.Restart()
		e.WaitReady(t)
		post(10)
	}

	var got map[string]jsRun
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		got = runs()
		for _, name := range names {
			if r := got[name]; len(r.IDs) < len(posted) {
				return fmt.Errorf("%s: %d of %d messages", name, len(r.IDs), len(posted))
			}
		}
		return nil
	})
	for _, name := range names {
		r := got[name]
		lost, dup := diff(posted, r.IDs)
		if len(lost) > 0 || len(dup) > 0 || !slices.Equal(r.IDs, posted) {
			t.Errorf("%s: got %d of %d, lost %v, duplicated %v (or out of order)", name, len(r.IDs), len(posted), lost, dup)
		}
		if !r.Threw {
			t.Errorf("%s: the throwing listener was not called", name)
		}
		if len(r.Gaps) > 0 || len(r.Dups) > 0 || len(r.Errors) > 0 {
			t.Errorf("%s: gaps %v, duplicates dropped %v, errors %v", name, r.Gaps, r.Dups, r.Errors)
		}
		t.Logf("%-8s %d messages once, in order, across 3 edge restarts; connections %v; reconnect reasons %q", name, len(r.IDs), r.Transports, r.Reasons)
	}
	for _, name := range []string{"buffered", "refused"} {
		if tr := got[name].Transports; tr[len(tr)-1] != "websocket" || slices.Contains(tr, "sse") {
			t.Errorf("%s: connections %v, want WebSocket only", name, tr)
		}
	}
	if t.Failed() {
		t.Logf("nginx in front (access log):\n%s", normal.Logs())
	}
	if tr := got["normal"].Transports; len(tr) < 2 {
		t.Errorf("normal: connections %v, want a reconnect (both edges restarted)", tr)
	}
}
