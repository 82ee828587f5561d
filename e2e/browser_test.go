package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rig-go/rig/internal/check"
)

// browserPage uses the browser's own EventSource (which reconnects by
// itself, sending Last-Event-ID) and its own WebSocket (reconnected by the
// page with last_event_id=, as the README shows), and records every message
// id each receives.
const browserPage = `<!doctype html>
<html><body><script>
const q = new URLSearchParams(location.search);
const edge = q.get("edge"), token = encodeURIComponent(q.get("token"));
window.sse = []; window.ws = []; window.opens = {sse: 0, ws: 0}; window.gaps = 0;

const es = new EventSource(edge + "/socket/sse?token=" + token);
es.onopen = () => window.opens.sse++;
es.addEventListener("message", (e) => window.sse.push(e.lastEventId));
es.addEventListener("gap", () => window.gaps++);

let last = "";
function connect() {
  let u = edge.replace("http", "ws") + "/socket/websocket?token=" + token;
  if (last) u += "&last_event_id=" + encodeURIComponent(last);
  const s = new WebSocket(u);
  s.onopen = () => window.opens.ws++;
  s.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (ev.id) last = ev.id; // the connected event carries the start position
    if (ev.event === "message") window.ws.push(ev.id);
    if (ev.event === "gap") window.gaps++;
  };
  s.onclose = () => setTimeout(connect, 250);
}
connect();
</script></body></html>`

// chromium finds Debian's chromium; .ci/run installs it.
func chromium(t *testing.T) string {
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	t.Skip("chromium not installed (apt-get install chromium; .ci/run does)")
	return ""
}

// newBrowser starts Debian's chromium (or skips the test, see chromium)
// for the test's life, with a window the size of the README's
// screenshot, and returns a context on its first tab. extra adds to its
// options, e.g. a certificate to trust.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	exe := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 760),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	// The browser lives as long as the context of the first Run, which
	// therefore has no timeout; the test's own deadline bounds it.
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	return ctx
}

// TestBrowserResume drives Debian's chromium on a page that uses the
// browser's EventSource and WebSocket against an edge; the edge is
// restarted mid-stream, and the page ends with every message exactly once,
// in order, on both.
func TestBrowserResume(t *testing.T) {
	n := StartNATS(t)
	edge := StartEdge(t, EdgeEnv(FreePort(t), n.URL))
	ingest := StartIngest(t, IngestEnv(FreePort(t), n.URL))

	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, browserPage)
	}))
	defer page.Close()
	// Started last, so closed first: before the edge it is connected to.
	ctx := newBrowser(t)

	tok := Token(t, "alice")
	u := page.URL + "/?" + url.Values{"edge": {edge.URL}, "token": {tok}}.Encode()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("open the page in chromium: %v", err)
	}
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if !evaluate[bool](t, ctx, `window.opens.sse > 0 && window.opens.ws > 0`) {
			return fmt.Errorf("the page did not connect")
		}
		return nil
	})

	var posted []string
	post := func(k int) {
		for range k {
			posted = append(posted, Post(t, ingest.URL, map[string]any{"user": "alice", "n": len(posted)}))
		}
	}
	post(10)
	// Restart the edge mid-stream; messages are posted while it is down.
	edge.Signal(syscall.SIGTERM)
	if !edge.Wait(15 * time.Second) {
		t.Fatal("edge did not stop")
	}
	post(10)
	edge.Restart()
	edge.WaitReady(t)
	post(10)

	var sse, ws []string
	check.For(t, 60*time.Second, 10*time.Millisecond, func() error {
		sse = evaluate[[]string](t, ctx, `window.sse`)
		ws = evaluate[[]string](t, ctx, `window.ws`)
		if !(len(sse) >= len(posted) && len(ws) >= len(posted)) {
			return fmt.Errorf("the page did not get every message")
		}
		return nil
	})
	gaps := evaluate[int](t, ctx, `window.gaps`)
	opens := evaluate[struct{ SSE, WS int }](t, ctx, `({SSE: window.opens.sse, WS: window.opens.ws})`)
	for name, got := range map[string][]string{"EventSource": sse, "WebSocket": ws} {
		lost, dup := diff(posted, got)
		if len(lost) > 0 || len(dup) > 0 || !slices.Equal(got, posted) {
			t.Errorf("%s: got %d of %d, lost %v, duplicated %v (or out of order)", name, len(got), len(posted), lost, dup)
		}
	}
	if gaps != 0 {
		t.Errorf("the page saw %d gap events", gaps)
	}
	t.Logf("chromium: %d messages across an edge restart; EventSource opened %d times, WebSocket %d times; each got every message once, in order", len(posted), opens.SSE, opens.WS)
}

// evaluate runs a JavaScript expression in the page and returns its value.
func evaluate[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ectx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}
