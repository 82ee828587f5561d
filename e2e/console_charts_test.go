package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rig-go/rig/internal/check"
)

// consoleChartsPNG is where TestConsoleCharts's screenshot goes with
// CONSOLE_SCREENSHOT set (see consolePNG); consoleChartsPhonePNG the
// phone-sized one.
const (
	consoleChartsPNG      = "../docs/console-charts.png"
	consoleChartsPhonePNG = "../docs/console-charts-phone.png"
)

// chartPoints is how many values (not null) the chart with id shows, and
// in how many lines.
const chartPoints = `(id) => { const f = document.getElementById(id); return f ? [Number(f.dataset.series || 0), Number(f.dataset.points || 0)] : [0, 0]; }`

// TestConsoleCharts drives chromium on the console of a stack with two
// edges while SSE and WebSocket clients are connected, messages are
// posted and one session is killed: the Charts panel draws its five
// charts with uPlot from the embed (the CSP allows nothing else), each
// with values; the connections chart has a line per edge and transport,
// the kill shows in its chart, and an edge that stops is reported as not
// answering. Screenshots at 1280x800 and 390x844; at 390 wide the page
// does not scroll sideways and the charts fit.
func TestConsoleCharts(t *testing.T) {
	ctx := newBrowser(t)
	st := StartStack(t, map[string]string{"EDGE_ID": "edge-1"},
		map[string]string{"API_TOKENS": consoleToken, "ADMIN_METRICS_INTERVAL": "1s"})
	e2 := EdgeEnv(FreePort(t), st.NATSURL)
	e2["EDGE_ID"] = "edge-2"
	edge2 := StartEdge(t, e2)

	for i := range 3 {
		MustSSE(t, sseURL(st.Edge.URL, Token(t, fmt.Sprintf("user-%d", i))))
	}
	doomed := fmt.Sprintf("charts-kill-%d", time.Now().UnixNano())
	// user-9 gets no messages: WaitKilled reads the stream's next event.
	victim := MustSSE(t, sseURL(st.Edge.URL, Token(t, "user-9", TokenOpts{JTI: doomed})))
	for i := range 2 {
		MustWS(t, wsURL(edge2.URL, plainQuery(Token(t, fmt.Sprintf("user-%d", i)))))
	}
	MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "user-2"))))

	// Messages all along, at a rate that changes so the lines have a shape.
	pctx, stopPosting := context.WithCancel(context.Background())
	posted := make(chan int, 1)
	go func() {
		n := 0
		defer func() { posted <- n }()
		auth := http.Header{"Authorization": {"Bearer " + consoleToken}, "Content-Type": {"application/json"}}
		for i := 0; pctx.Err() == nil; i++ {
			for j := range 1 + (i/10)%4 {
				req, _ := http.NewRequestWithContext(pctx, "POST", st.Ingest.URL+"/v1/messages",
					bytes.NewReader(fmt.Appendf(nil, `{"user": "user-%d", "n": %d}`, j%3, i)))
				req.Header = auth.Clone()
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
					n++
				}
			}
			select {
			case <-pctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { stopPosting(); <-posted })

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(st.Ingest.URL+"/admin")); err != nil {
		t.Fatalf("open the console in chromium: %v", err)
	}
	// The charts are made after logging in: any script or style of uPlot's
	// that the CSP refuses is recorded from here on.
	evaluate[bool](t, ctx, `(window.cspViolations = [], document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(e.violatedDirective + " " + e.blockedURI)), true)`)
	consoleDo(t, ctx, "log in", chromedp.SendKeys(chromedp.ID("token"), consoleToken), chromedp.Click(chromedp.ID("login")))
	consoleWait(t, ctx, "logged in", `document.body.dataset.auth === "in"`)
	consoleWait(t, ctx, "five uPlot charts with values",
		`typeof uPlot === "function" && document.querySelectorAll("#chart-grid .uplot canvas").length === 5 && `+
			`["chart-connections", "chart-messages", "chart-latency", "chart-slow", "chart-killed"].every((id) => (`+chartPoints+`)(id)[1] > 0)`)
	if v := evaluate[[]string](t, ctx, `window.cspViolations`); len(v) > 0 {
		t.Fatalf("the CSP refused: %v", v)
	}
	if s := evaluate[[]int](t, ctx, "("+chartPoints+`)("chart-connections")`); s[0] != 3 {
		t.Fatalf("connections chart has %d lines, want 3 (edge-1 sse, edge-1 websocket, edge-2 websocket)", s[0])
	}
	consoleWait(t, ctx, "both edges answering", `document.querySelectorAll('#chart-edges tr[data-state="answering"]').length === 2`)
	legend := evaluate[string](t, ctx, `document.querySelector("#chart-connections .u-legend").innerText`)
	for _, want := range []string{"edge-1 sse", "edge-1 websocket", "edge-2 websocket"} {
		if !bytes.Contains([]byte(legend), []byte(want)) {
			t.Fatalf("connections legend %q lacks %q", legend, want)
		}
	}

	// A kill: the blacklisted session is closed, and the chart counts it.
	r := Do(t, "POST", st.Ingest.URL+"/v1/session-blacklist", "application/json", fmt.Appendf(nil, `{"sessionId": %q, "validityInSeconds": 60}`, doomed),
		http.Header{"Authorization": {"Bearer " + consoleToken}})
	if r.Status != 201 {
		t.Fatalf("blacklist: %d %s", r.Status, r.Body)
	}
	victim.WaitKilled(t, time.Now().Add(5*time.Second))
	check.For(t, 20*time.Second, 100*time.Millisecond, func() error {
		m := getAdminSeries(t, st.Ingest.URL, consoleToken)
		k, _ := line(m.SessionsKilled, "edge-1", "")
		total := 0.0
		for _, v := range k.Values {
			if v != nil {
				total += *v
			}
		}
		if total != 1 {
			return fmt.Errorf("edge-1's sessions killed add up to %g, want 1", total)
		}
		// The page has drawn at least as many samples as the API had then.
		if got := evaluate[int](t, ctx, `Number(document.getElementById("chart-grid").dataset.samples || 0)`); got < len(m.T)-1 || got < 12 {
			return fmt.Errorf("the page shows %d samples (the API has %d; waiting for 12 for the picture)", got, len(m.T))
		}
		return nil
	})
	consoleWait(t, ctx, "the kill drawn", `(() => { const u = document.querySelector("#chart-killed .u-legend"); return !!u; })()`)

	evaluate[bool](t, ctx, `(document.getElementById("charts").scrollIntoView(), true)`)
	wide, wideBytes := consoleShot(t, ctx, 1280, 800, consoleChartsPNG)
	if w := evaluate[int](t, ctx, `document.querySelector("#chart-messages .uplot").offsetWidth`); w < 300 || w > 450 {
		t.Errorf("at 1280 wide a chart is %dpx wide, want three to a row", w)
	}
	phone, phoneBytes := consoleShot(t, ctx, 390, 844, consoleChartsPhonePNG)
	// The charts follow the window (ResizeObserver): one a row, inside it.
	check.For(t, 5*time.Second, 50*time.Millisecond, func() error {
		over := evaluate[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`)
		w := evaluate[int](t, ctx, `Math.max(...[...document.querySelectorAll("#chart-grid .uplot")].map((e) => e.offsetWidth))`)
		if over > 0 || w > 390-20 || w < 250 {
			return fmt.Errorf("at 390 wide the page scrolls sideways by %dpx; widest chart %dpx", over, w)
		}
		return nil
	})
	t.Logf("charts screenshots: %s (%d bytes), %s (%d bytes)", wide, wideBytes, phone, phoneBytes)

	// An edge that stops is named as not answering (its lines break).
	edge2.Stop()
	consoleWait(t, ctx, "edge-2 not answering", `document.getElementById("charts-status").textContent.includes("Not answering now: edge-2")`+
		` && document.querySelector('#chart-edges tr[data-edge="edge-2"]').dataset.state === "silent"`+
		` && document.querySelector('#chart-edges tr[data-edge="edge-1"]').dataset.state === "answering"`)
	stopPosting()
	t.Logf("%d messages posted", <-posted)
	posted <- 0 // for the cleanup
}
