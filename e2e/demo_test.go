package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rig-go/rig/internal/check"
)

// demoPNG is where TestDemoPage's screenshot goes when DEMO_SCREENSHOT is
// set (DEMO_SCREENSHOT=1 go test ./e2e -run TestDemoPage): the README
// shows it. Without it the screenshot is taken and checked but kept out
// of the repository, so that a test run leaves the tree as it was.
const demoPNG = "../docs/demo.png"

// demoEdge starts an edge with the demo page on, sending to ingestURL.
func demoEdge(t *testing.T, natsURL, ingestURL string, extra map[string]string) *Server {
	t.Helper()
	env := EdgeEnv(FreePort(t), natsURL)
	env["DEMO_ENABLED"] = "true"
	env["DEMO_INGEST_URL"] = ingestURL
	for k, v := range extra {
		env[k] = v
	}
	return StartEdge(t, env)
}

// demoStatus is what the page's status line shows.
type demoStatus struct {
	State      string `json:"state"` // data-state: connecting, connected, closed
	Text       string `json:"text"`
	Transport  string `json:"transport"`
	LastID     string `json:"lastId"`
	Reconnects string `json:"reconnects"`
	Gaps       string `json:"gaps"`
}

const demoStatusJS = `({
  state: document.getElementById("status").dataset.state,
  text: document.getElementById("status").innerText,
  transport: document.getElementById("transport").textContent,
  lastId: document.getElementById("last-id").textContent,
  reconnects: document.getElementById("reconnects").textContent,
  gaps: document.getElementById("gaps").textContent,
})`

// demoEvents are the ids of the messages the page lists, oldest first
// (the page shows the newest first).
const demoEventsJS = `[...document.querySelectorAll("#events li[data-id]")].map((li) => li.dataset.id).reverse()`

// demoSend types a message into the page's form and clicks Send, as a
// person does, and returns the id the page shows as sent.
func demoSend(t *testing.T, ctx context.Context, to, text string) string {
	t.Helper()
	before := evaluate[string](t, ctx, `document.getElementById("send-result").dataset.id || ""`)
	// The form starts with the page's own user in "to"; a person selects
	// it and types over it.
	evaluate[string](t, ctx, `document.getElementById("to").value = ""`)
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := chromedp.Do(actx,
		chromedp.SendKeys(chromedp.ID("to"), to),
		chromedp.SendKeys(chromedp.ID("text"), text),
		chromedp.Click(chromedp.ID("send-button")))
	if err != nil {
		t.Fatalf("send %q to %s from the page: %v", text, to, err)
	}
	var id string
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		id = evaluate[string](t, ctx, `document.getElementById("send-result").dataset.id || ""`)
		if id == "" || id == before {
			return fmt.Errorf("the page did not show the message as sent: %q", evaluate[string](t, ctx, `document.getElementById("send-result").textContent`))
		}
		return nil
	})
	return id
}

// TestDemoPage drives chromium on the demo page as alice: a message sent to
// her from the page's form arrives in its list; the edge (the real binary)
// is stopped with SIGTERM and started again on the same port, and the page
// says it is reconnecting, then connected again (reconnects 1); messages
// posted by a back-end while the edge was away, and one sent from the page
// after, all arrive, once each, in order. A message to bob never shows. The
// screenshot it takes is the README's (see demoPNG).
func TestDemoPage(t *testing.T) {
	ctx := newBrowser(t)
	n := StartNATS(t)
	ingest := StartIngest(t, IngestEnv(FreePort(t), n.URL))
	edge := demoEdge(t, n.URL, ingest.URL, nil)

	tok := Token(t, "alice", TokenOpts{TTL: 10 * time.Minute})
	if err := chromedp.Do(ctx, chromedp.Navigate(edge.URL+"/demo/#token="+tok)); err != nil {
		t.Fatalf("open the demo page in chromium: %v", err)
	}
	status := func() demoStatus { return evaluate[demoStatus](t, ctx, demoStatusJS) }
	waitStatus := func(what string, ok func(demoStatus) bool) demoStatus {
		t.Helper()
		var st demoStatus
		check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
			if st = status(); !ok(st) {
				return fmt.Errorf("the page's status line is not %s: %+v", what, st)
			}
			return nil
		})
		return st
	}
	st := waitStatus("connected", func(s demoStatus) bool { return s.State == "connected" })
	if st.Transport != "sse" || st.Reconnects != "0" || !strings.HasPrefix(st.LastID, "seq:") {
		t.Fatalf("first connection: %+v, want sse, 0 reconnects, last id seq:<n>", st)
	}
	if who := evaluate[string](t, ctx, `document.getElementById("who").textContent`); !strings.Contains(who, "alice") {
		t.Errorf("the page does not say whose messages it shows: %q", who)
	}

	var sent []string
	sent = append(sent, demoSend(t, ctx, "alice", "Hi alice, from the demo page"))
	toBob := demoSend(t, ctx, "bob", "this one is bob's")
	sent = append(sent, demoSend(t, ctx, "alice", "a second one"))
	events := func() []string { return evaluate[[]string](t, ctx, demoEventsJS) }
	waitEvents := func() []string {
		t.Helper()
		var got []string
		check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
			if got = events(); len(got) < len(sent) {
				return fmt.Errorf("the page lists %d of %d messages: %v; the page shows:\n%s", len(got), len(sent), got, evaluate[string](t, ctx, "document.body.innerText"))
			}
			return nil
		})
		return got
	}
	if got := waitEvents(); !slices.Equal(got, sent) {
		t.Fatalf("the page lists %v, want %v", got, sent)
	}
	if text := evaluate[string](t, ctx, `document.getElementById("events").innerText`); !strings.Contains(text, "alice: Hi alice, from the demo page") {
		t.Errorf("the page does not show the message's sender and text: %q", text)
	}

	// The edge restarts; a back-end posts while it is away.
	edge.Signal(syscall.SIGTERM)
	if !edge.Wait(15 * time.Second) {
		t.Fatal("edge did not stop within 15s of SIGTERM")
	}
	waitStatus("reconnecting", func(s demoStatus) bool { return s.State == "connecting" })
	for i := range 3 {
		sent = append(sent, Post(t, ingest.URL, map[string]any{"user": "alice", "from": "a back-end", "text": fmt.Sprintf("posted while the edge was away (%d)", i+1)}))
	}
	edge.Restart()
	edge.WaitReady(t)
	st = waitStatus("connected again", func(s demoStatus) bool { return s.State == "connected" && s.Reconnects == "1" })
	sent = append(sent, demoSend(t, ctx, "alice", "sent after the edge came back"))

	got := waitEvents()
	lost, dup := diff(sent, got)
	if len(lost) > 0 || len(dup) > 0 || !slices.Equal(got, sent) {
		t.Errorf("the page lists %d of %d messages: lost %v, duplicated %v (or out of order)\ngot  %v\nwant %v", len(got), len(sent), lost, dup, got, sent)
	}
	if slices.Contains(got, toBob) {
		t.Errorf("alice's page lists bob's message %s", toBob)
	}
	st = status()
	if st.Gaps != "0" || st.LastID != sent[len(sent)-1] || st.Transport != "sse" {
		t.Errorf("status line at the end: %+v, want 0 gaps, last id %s, via sse", st, sent[len(sent)-1])
	}
	log := evaluate[string](t, ctx, `document.getElementById("log").innerText`)
	if !strings.Contains(log, "connected via sse, resuming after") {
		t.Errorf("the connection log does not show the reconnect: %q", log)
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(shot))
	if err != nil || cfg.Width < 800 || cfg.Height < 500 {
		t.Fatalf("screenshot is not a PNG of the page: %v (%dx%d)", err, cfg.Width, cfg.Height)
	}
	path := t.TempDir() + "/demo.png"
	if os.Getenv("DEMO_SCREENSHOT") != "" {
		path = demoPNG
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("chromium on the demo page: %d messages (%d sent from the page, 3 posted while the edge restarted) once each, in order; status %q; screenshot %dx%d (%d bytes) in %s",
		len(got), len(sent)-3, st.Text, cfg.Width, cfg.Height, len(shot), path)
}

// TestDemoPageHostile: what a back-end (or another user, through the form)
// sends is shown as text, never run as HTML, in a page whose own CSP would
// refuse inline script anyway; the page's WebSocket and long-polling links
// work under that CSP; and the token in the link's fragment never reaches
// the edge, so no log holds it.
func TestDemoPageHostile(t *testing.T) {
	ctx := newBrowser(t)
	n := StartNATS(t)
	ingest := StartIngest(t, IngestEnv(FreePort(t), n.URL))
	// A long-poll that starts without a cursor answers after the timeout.
	edge := demoEdge(t, n.URL, ingest.URL, map[string]string{"LONGPOLL_TIMEOUT": "1s"})
	tok := Token(t, "alice", TokenOpts{TTL: 10 * time.Minute})
	if err := chromedp.Do(ctx, chromedp.Navigate(edge.URL+"/demo/#token="+tok)); err != nil {
		t.Fatalf("open the demo page in chromium: %v", err)
	}
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		if st := evaluate[demoStatus](t, ctx, demoStatusJS); st.State != "connected" {
			return fmt.Errorf("the page did not connect: %+v", st)
		}
		return nil
	})
	html := `<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>`
	ids := []string{
		Post(t, ingest.URL, map[string]any{"user": "alice", "from": html, "text": html}),
		Post(t, ingest.URL, map[string]any{"user": "alice", "note": html}),
		demoSend(t, ctx, "alice", html),
	}
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := evaluate[[]string](t, ctx, demoEventsJS); !slices.Equal(got, ids) {
			return fmt.Errorf("the page lists %v, want %v", got, ids)
		}
		return nil
	})
	if pwned := evaluate[bool](t, ctx, `window.pwned !== undefined || document.querySelector("#events img, #events script") !== null`); pwned {
		t.Error("a message's HTML became part of the page")
	}
	text := evaluate[string](t, ctx, `document.getElementById("events").innerText`)
	if strings.Count(text, `<img src=x onerror="window.pwned=1">`) < 3 {
		t.Errorf("the messages' text is not shown as sent:\n%s", text)
	}
	// The page's transport links: each transport connects under the
	// page's CSP (WebSocket included) and gets the history it resumes.
	for _, tr := range []string{"websocket", "longpoll"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(edge.URL+"/demo/?transport="+tr+"#token="+tok)); err != nil {
			t.Fatalf("open the demo page on %s: %v", tr, err)
		}
		check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
			if st := evaluate[demoStatus](t, ctx, demoStatusJS); st.State != "connected" || st.Transport != tr {
				return fmt.Errorf("the page on %s: %+v", tr, st)
			}
			return nil
		})
		sent := demoSend(t, ctx, "alice", "over "+tr)
		check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
			if got := evaluate[[]string](t, ctx, demoEventsJS); !slices.Equal(got, []string{sent}) {
				return fmt.Errorf("the page on %s lists %v, want [%s]", tr, got, sent)
			}
			return nil
		})
	}
	if strings.Contains(edge.Logs(), tok) || strings.Contains(ingest.Logs(), tok) {
		t.Error("the token of the page's link reached a log")
	}
}

// TestDemoPageGap: when the edge's history no longer holds what the page
// missed (here 5 messages while the edge was away, with history kept to 3
// per user), the page says so: a gap line in its list, and gaps 1 on the
// status line, then the 3 messages history still had.
func TestDemoPageGap(t *testing.T) {
	ctx := newBrowser(t)
	n := StartNATS(t)
	ie := IngestEnv(FreePort(t), n.URL)
	ie["HISTORY_MAX_PER_USER"] = "3"
	ingest := StartIngest(t, ie)
	edge := demoEdge(t, n.URL, ingest.URL, map[string]string{"HISTORY_MAX_PER_USER": "3"})
	tok := Token(t, "alice", TokenOpts{TTL: 10 * time.Minute})
	if err := chromedp.Do(ctx, chromedp.Navigate(edge.URL+"/demo/#token="+tok)); err != nil {
		t.Fatalf("open the demo page in chromium: %v", err)
	}
	// A stream starts at the stored messages' end: post once it has.
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		if st := evaluate[demoStatus](t, ctx, demoStatusJS); st.State != "connected" {
			return fmt.Errorf("the page has not connected: %+v", st)
		}
		return nil
	})
	first := Post(t, ingest.URL, map[string]any{"user": "alice", "text": "before"})
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := evaluate[[]string](t, ctx, demoEventsJS); !slices.Equal(got, []string{first}) {
			return fmt.Errorf("the page lists %v, want [%s]", got, first)
		}
		return nil
	})
	edge.Signal(syscall.SIGTERM)
	if !edge.Wait(15 * time.Second) {
		t.Fatal("edge did not stop within 15s of SIGTERM")
	}
	var missed []string
	for i := range 5 {
		missed = append(missed, Post(t, ingest.URL, map[string]any{"user": "alice", "text": fmt.Sprintf("missed %d", i)}))
	}
	edge.Restart()
	edge.WaitReady(t)
	want := append([]string{first}, missed[2:]...)
	var st demoStatus
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		st = evaluate[demoStatus](t, ctx, demoStatusJS)
		if got := evaluate[[]string](t, ctx, demoEventsJS); !slices.Equal(got, want) || st.Gaps != "1" {
			return fmt.Errorf("the page lists %v with %s gaps, want %v and 1 gap", got, st.Gaps, want)
		}
		return nil
	})
	gap := evaluate[string](t, ctx, `document.querySelector("#events li.gap")?.textContent ?? ""`)
	if !strings.Contains(gap, "gap: the edge's history no longer holds everything after "+first) {
		t.Errorf("the page's gap line: %q", gap)
	}
	t.Logf("after missing 5 messages with 3 kept: the page shows %q and the 3 kept; status %q", gap, st.Text)
}

// TestDemoSendRefusals: POST /demo/messages refuses what it should, with a
// JSON error naming why, and nothing reaches alice's stream; a good one
// does. Against an ingest with API_TOKENS, the edge's DEMO_INGEST_TOKEN
// gets it through, and an edge without it relays ingest's 401; an edge
// whose ingest is down answers 502.
func TestDemoSendRefusals(t *testing.T) {
	n := StartNATS(t)
	apiToken := "demo-ingest-token-0123456789"
	ie := IngestEnv(FreePort(t), n.URL)
	ie["API_TOKENS"] = apiToken
	ingest := StartIngest(t, ie)
	edge := demoEdge(t, n.URL, ingest.URL, map[string]string{"DEMO_INGEST_TOKEN": apiToken})

	s := MustSSE(t, sseURL(edge.URL, Token(t, "alice")))
	alice := Token(t, "alice")
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	post := func(e *Server, ct, body string, h http.Header) Response {
		return Do(t, http.MethodPost, e.URL+"/demo/messages", ct, []byte(body), h)
	}
	const js = "application/json"
	for _, c := range []struct {
		name, ct, body string
		h              http.Header
		want           int
		says           string
	}{
		{"no token", js, `{"to":"alice","text":"x"}`, nil, 401, "Authorization"},
		{"token in the query only", js, `{"to":"alice","text":"x"}`, nil, 401, "Authorization"},
		{"forged token", js, `{"to":"alice","text":"x"}`, bearer(wrongKeyToken(t, "alice")), 401, "signature"},
		{"expired token", js, `{"to":"alice","text":"x"}`, bearer(Token(t, "alice", TokenOpts{TTL: -time.Minute})), 401, "expired"},
		{"text/plain", "text/plain", `{"to":"alice","text":"x"}`, bearer(alice), 415, "application/json"},
		{"form post", "application/x-www-form-urlencoded", `to=alice&text=x`, bearer(alice), 415, "application/json"},
		{"not JSON", js, `to=alice`, bearer(alice), 400, "JSON object"},
		{"array", js, `[{"to":"alice","text":"x"}]`, bearer(alice), 400, "JSON object"},
		{"unknown field", js, `{"to":"alice","text":"x","user":"bob"}`, bearer(alice), 400, `unknown field "user"`},
		{"two objects", js, `{"to":"alice","text":"x"}{"to":"alice","text":"y"}`, bearer(alice), 400, "nothing after it"},
		{"no to", js, `{"text":"x"}`, bearer(alice), 400, "empty"},
		{"to too long", js, `{"to":"` + strings.Repeat("a", 257) + `","text":"x"}`, bearer(alice), 400, "257 bytes"},
		{"to not a string", js, `{"to":["alice"],"text":"x"}`, bearer(alice), 400, "JSON object"},
		{"empty text", js, `{"to":"alice","text":"  "}`, bearer(alice), 400, `"text" is empty`},
		{"text too long", js, `{"to":"alice","text":"` + strings.Repeat("é", 501) + `"}`, bearer(alice), 400, "501 characters"},
		{"body too large", js, `{"to":"alice","text":"` + strings.Repeat("a", 5000) + `"}`, bearer(alice), 413, "at most 4096"},
		{"invalid UTF-8", js, "{\"to\":\"alice\",\"text\":\"\xff\"}", bearer(alice), 400, "UTF-8"},
	} {
		h := c.h
		url := edge.URL + "/demo/messages"
		if c.name == "token in the query only" {
			url += "?token=" + alice
		}
		r := Do(t, http.MethodPost, url, c.ct, []byte(c.body), h)
		if r.Status != c.want || !strings.Contains(r.ErrorMessage(t), c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, r.Status, r.Body, c.want, c.says)
		}
	}
	// None of them reached alice: the next message on her stream is the
	// good one.
	r := post(edge, js, `{"to":"alice","text":"the good one"}`, bearer(alice))
	var ok struct{ ID string }
	r.JSON(t, &ok)
	if r.Status != 202 || ok.ID == "" {
		t.Fatalf("a good message: %d %s, want 202 with an id", r.Status, r.Body)
	}
	ev := s.NextMessage(t, 5*time.Second)
	var data map[string]string
	if err := json.Unmarshal([]byte(ev.Data), &data); err != nil || ev.ID != ok.ID || data["from"] != "alice" || data["text"] != "the good one" || data["user"] != "alice" {
		t.Fatalf("alice's stream got %+v (%v), want %s from alice", ev, err, ok.ID)
	}
	// bob can send to alice too; the message says it is from bob, whatever
	// the body claims (it cannot claim: "from" is an unknown field).
	r = post(edge, js, `{"to":"alice","text":"from bob","from":"carol"}`, bearer(Token(t, "bob")))
	if r.Status != 400 {
		t.Errorf(`a body naming its own "from": %d %s, want 400`, r.Status, r.Body)
	}
	r = post(edge, js, `{"to":"alice","text":"from bob"}`, bearer(Token(t, "bob")))
	ev = s.NextMessage(t, 5*time.Second)
	if r.Status != 202 || !strings.Contains(ev.Data, `"from":"bob"`) {
		t.Errorf("bob to alice: %d %s, alice got %+v", r.Status, r.Body, ev)
	}

	// An edge without ingest's API token relays ingest's 401.
	noToken := demoEdge(t, n.URL, ingest.URL, nil)
	if r := post(noToken, js, `{"to":"alice","text":"x"}`, bearer(alice)); r.Status != 401 {
		t.Errorf("without DEMO_INGEST_TOKEN: %d %s, want ingest's 401", r.Status, r.Body)
	}
	// An edge whose ingest is not there answers 502, naming it.
	gone := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
	down := demoEdge(t, n.URL, gone, nil)
	if r := post(down, js, `{"to":"alice","text":"x"}`, bearer(alice)); r.Status != 502 || !strings.Contains(r.ErrorMessage(t), gone) {
		t.Errorf("ingest down: %d %s, want 502 naming %s", r.Status, r.Body, gone)
	}
	// A blacklisted session may not send either.
	revoked := Token(t, "alice", TokenOpts{JTI: "demo-revoked"})
	if r := Do(t, http.MethodPost, ingest.URL+"/v1/session-blacklist", js, []byte(`{"sessionId":"demo-revoked","validityInSeconds":60}`),
		http.Header{"Authorization": {"Bearer " + apiToken}}); r.Status != 201 {
		t.Fatalf("blacklist: %d %s", r.Status, r.Body)
	}
	// Once the edge knows (its streams refuse the session), so does the demo.
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		if code, _ := SSEStatus(t, sseURL(edge.URL, revoked)); code != 401 {
			return fmt.Errorf("the edge does not refuse the blacklisted session yet: %d", code)
		}
		return nil
	})
	if r := post(edge, js, `{"to":"alice","text":"x"}`, bearer(revoked)); r.Status != 401 || !strings.Contains(r.ErrorMessage(t), "blacklisted") {
		t.Errorf("a blacklisted session's message: %d %s, want 401", r.Status, r.Body)
	}
	// A cross-origin page cannot send: its preflight (Authorization, JSON)
	// gets no CORS answer, so the browser never sends the POST.
	pre := Do(t, http.MethodOptions, edge.URL+"/demo/messages", "", nil, http.Header{
		"Origin": {"https://evil.example"}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization,content-type"}})
	if pre.Header.Get("Access-Control-Allow-Origin") != "" || pre.Header.Get("Access-Control-Allow-Headers") != "" {
		t.Errorf("preflight from another origin: %d %v, want no CORS headers", pre.Status, pre.Header)
	}

	// Nothing of those reached alice: the next message is the last good one.
	r = post(edge, js, `{"to":"alice","text":"the last one"}`, bearer(alice))
	r.JSON(t, &ok)
	if ev := s.NextMessage(t, 5*time.Second); r.Status != 202 || ev.ID != ok.ID {
		t.Errorf("alice's stream got %+v, want the last good message %s (%d)", ev, ok.ID, r.Status)
	}
}

// TestDemoOff: an edge without DEMO_ENABLED has no demo: /demo/, its files
// and POST /demo/messages are the API gateway's like any path (here a
// route sends them upstream; without one they would get the gateway's
// 404), and the edge logs nothing of the demo. With the setting, the same
// paths are the demo's.
func TestDemoOff(t *testing.T) {
	up := StartUpstream(t)
	routes := WriteRoutes(t, `[{"id": "demo-paths", "auth_type": "none",
 "version_data": {"default": {"endpoints": [
   {"id": "g", "path_regex": "/demo(/.*)?", "method": "GET"},
   {"id": "p", "path_regex": "/demo(/.*)?", "method": "POST"}]}},
 "proxy": {"target_url": "http://127.0.0.1", "port": `+strconv.Itoa(up.Port)+`}}]`)
	n := StartNATS(t)
	ingest := StartIngest(t, IngestEnv(FreePort(t), n.URL))
	env := EdgeEnv(FreePort(t), n.URL)
	env["PROXY_CONFIG_FILE"] = routes
	env["PROXY_ALLOW_LOCAL_TARGETS"] = "true"
	env["DEMO_INGEST_URL"] = ingest.URL // set, but not enabled
	off := StartEdge(t, env)
	alice := http.Header{"Authorization": {"Bearer " + Token(t, "alice")}}
	for _, c := range []struct{ method, path, ct, body string }{
		{"GET", "/demo/", "", ""},
		{"GET", "/demo/client/index.js", "", ""},
		{"GET", "/demo/demo.js", "", ""},
		{"POST", "/demo/messages", "application/json", `{"to":"alice","text":"x"}`},
	} {
		r := Do(t, c.method, off.URL+c.path, c.ct, []byte(c.body), alice)
		var e Echo
		if r.Status != 200 || json.Unmarshal(r.Body, &e) != nil || e.Path != c.path || e.Method != c.method {
			t.Errorf("demo off: %s %s got %d %.200s, want the upstream's echo", c.method, c.path, r.Status, r.Body)
		}
	}
	if strings.Contains(off.Logs(), "DEMO_ENABLED") || strings.Contains(off.Logs(), "demo message") {
		t.Errorf("an edge without DEMO_ENABLED logs the demo:\n%s", off.Logs())
	}

	env = EdgeEnv(FreePort(t), n.URL)
	env["PROXY_CONFIG_FILE"] = routes
	env["PROXY_ALLOW_LOCAL_TARGETS"] = "true"
	env["DEMO_INGEST_URL"] = ingest.URL
	env["DEMO_ENABLED"] = "true"
	on := StartEdge(t, env)
	if r := Do(t, "GET", on.URL+"/demo/", "", nil); r.Status != 200 || !bytes.Contains(r.Body, []byte("RIG-Go demo")) || !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("demo on: GET /demo/ got %d %.200s, want the page with its CSP", r.Status, r.Body)
	}
	if r := Do(t, "GET", on.URL+"/demo/client/index.js", "", nil); r.Status != 200 || !strings.Contains(r.Header.Get("Content-Type"), "javascript") || !bytes.Contains(r.Body, []byte("export function connect")) {
		t.Errorf("demo on: GET /demo/client/index.js got %d %s %.100s, want clients/js", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	for _, p := range []string{"/demo/nope.js", "/demo/client/", "/demo/client/test/unit.test.js", "/demo/client/package.json", "/demo/%2e%2e/%2e%2e/go.mod", "/demo/static/index.html"} {
		if r := Do(t, "GET", on.URL+p, "", nil); r.Status != 404 {
			t.Errorf("demo on: GET %s got %d %.200s, want 404", p, r.Status, r.Body)
		}
	}
	if r := Do(t, "GET", on.URL+"/demo", "", nil); r.Status != 200 || !bytes.Contains(r.Body, []byte("RIG-Go demo")) {
		t.Errorf("demo on: GET /demo (redirected to /demo/) got %d", r.Status)
	}
}

// TestTaskRunDemo runs the real `go tool task run` (on free ports, with a
// fresh store) and checks that it prints the demo page's URL with a token
// each for alice and bob, and that the page and its client load there
// and alice's token opens her stream.
func TestTaskRunDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries with the Taskfile's toolchain")
	}
	edgePort, opsPort, apiPort, natsPort := FreePort(t), FreePort(t), FreePort(t), FreePort(t)
	natsAddr := fmt.Sprintf("127.0.0.1:%d", natsPort)
	env := map[string]string{
		"INBOUND_PORT":   strconv.Itoa(edgePort),
		"METRICS_PORT":   strconv.Itoa(opsPort),
		"API_PORT":       strconv.Itoa(apiPort),
		"NATS_URL":       "nats://" + natsAddr,
		"NATS_LISTEN":    natsAddr,
		"NATS_STORE_DIR": t.TempDir(),
	}
	p := startTaskRun(t, env)
	url := regexp.MustCompile(`(?m)^\s+(alice|bob)\s+(http://localhost:(\d+)/demo/)#token=([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)$`)
	var links [][]string
	check.For(t, 4*time.Minute, 50*time.Millisecond, func() error {
		if !p.running() {
			t.Fatalf("go tool task run exited:\n%s", p.out.String())
		}
		if links = url.FindAllStringSubmatch(p.out.String(), -1); len(links) < 2 {
			return fmt.Errorf("go tool task run printed no demo links for alice and bob yet:\n%s", p.out.String())
		}
		return nil
	})
	edge := &Server{Port: edgePort, URL: fmt.Sprintf("http://127.0.0.1:%d", edgePort)}
	check.For(t, 2*time.Minute, 50*time.Millisecond, func() error {
		if !p.running() {
			t.Fatalf("go tool task run exited:\n%s", p.out.String())
		}
		if code := statusWithin(edge.URL+"/health/ready", 3*time.Second); code != 200 {
			return fmt.Errorf("the edge of task run is not ready: %d", code)
		}
		return nil
	})
	tokens := map[string]string{}
	for _, l := range links {
		if l[3] != strconv.Itoa(edgePort) {
			t.Errorf("%s's demo link %s is not on INBOUND_PORT %d", l[1], l[2], edgePort)
		}
		tokens[l[1]] = l[4]
	}
	if r := Do(t, "GET", edge.URL+"/demo/", "", nil); r.Status != 200 || !bytes.Contains(r.Body, []byte(`src="demo.js"`)) {
		t.Fatalf("the stack of task run: GET /demo/ got %d %.200s", r.Status, r.Body)
	}
	// The operator console's address it prints is ingest's.
	console := regexp.MustCompile(`operator console: (http://localhost:(\d+)/admin)\b`).FindStringSubmatch(p.out.String())
	if console == nil || console[2] != strconv.Itoa(apiPort) {
		t.Errorf("go tool task run printed no operator console on API_PORT %d:\n%s", apiPort, p.out.String())
	} else if r := Do(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/admin", apiPort), "", nil); r.Status != 200 || !bytes.Contains(r.Body, []byte("console")) {
		t.Errorf("the console task run printed, %s: %d %.200s", console[1], r.Status, r.Body)
	}
	for _, f := range []string{"demo.js", "demo.css", "client/index.js", "client/sse.js", "client/backoff.js", "client/seen.js"} {
		if r := Do(t, "GET", edge.URL+"/demo/"+f, "", nil); r.Status != 200 || len(r.Body) == 0 {
			t.Errorf("the stack of task run: GET /demo/%s got %d", f, r.Status)
		}
	}
	for _, user := range []string{"alice", "bob"} {
		if tokens[user] == "" {
			t.Fatalf("no token for %s in:\n%s", user, p.out.String())
		}
		s, r := DialSSE(t, sseURL(edge.URL, tokens[user]), nil)
		if s == nil {
			t.Fatalf("%s's printed token: %d %s", user, r.Status, r.Body)
		}
		if ev := s.Next(t, 5*time.Second); ev.Event != "connected" || !strings.Contains(ev.Data, `"`+user+`"`) {
			t.Errorf("%s's printed token: first event %+v", user, ev)
		}
		s.Close()
	}
	// The page's send goes through to the stack's ingest.
	r := Do(t, http.MethodPost, edge.URL+"/demo/messages", "application/json", []byte(`{"to":"bob","text":"hi"}`),
		http.Header{"Authorization": {"Bearer " + tokens["alice"]}})
	if r.Status != 202 {
		t.Errorf("POST /demo/messages on the stack of task run: %d %s", r.Status, r.Body)
	}
	// And the printed link, as printed, in chromium.
	ctx := newBrowser(t)
	for _, l := range links {
		if l[1] == "alice" {
			if err := chromedp.Do(ctx, chromedp.Navigate(l[2]+"#token="+l[4])); err != nil {
				t.Fatalf("open %s in chromium: %v", l[2], err)
			}
		}
	}
	var st demoStatus
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		if st = evaluate[demoStatus](t, ctx, demoStatusJS); st.State != "connected" {
			return fmt.Errorf("the page printed by task run did not connect: %+v", st)
		}
		return nil
	})
	t.Logf("go tool task run printed the demo page for alice and bob on port %d; the page, its client and both tokens work; chromium on alice's link: %q", edgePort, st.Text)
}

// taskRun is a running `go tool task run`, in its own process group: task
// starts ingest and the edge as its children.
type taskRun struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func (p *taskRun) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// startTaskRun starts `go tool task run` in the repository with env on top
// of this process's environment, and stops it as Ctrl-C does (SIGINT to
// its process group) when the test ends.
func startTaskRun(t *testing.T, env map[string]string) *taskRun {
	t.Helper()
	cmd := exec.Command("go", "tool", "task", "run")
	cmd.Dir = ".."
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v) // the last of a name wins
	}
	p := &taskRun{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("go tool task run: %v", err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Errorf("go tool task run did not stop within 20s of Ctrl-C; killing it")
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("--- output of go tool task run ---\n%s", p.out.String())
		}
	})
	return p
}
