package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rig-go/rig/internal/check"
)

// consoleToken is the API token of the console tests' ingest.
const consoleToken = "console-e2e-token-0123456789"

// consolePNG and consolePhonePNG are where TestConsole's screenshots go
// when CONSOLE_SCREENSHOT is set (CONSOLE_SCREENSHOT=1 go test ./e2e -run
// TestConsole$): the README's operator section shows the first. Without it
// they are taken and checked but kept out of the repository.
const (
	consolePNG      = "../docs/console.png"
	consolePhonePNG = "../docs/console-phone.png"
)

// consoleDo runs chromedp actions with a deadline, failing the test with what.
func consoleDo(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(actx, actions...); err != nil {
		t.Fatalf("%s: %v\npage:\n%s", what, err, evaluate[string](t, ctx, "document.body.innerText"))
	}
}

// consoleWait polls the page until the JavaScript expression cond is true.
func consoleWait(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	check.For(t, 20*time.Second, 25*time.Millisecond, func() error {
		if !evaluate[bool](t, ctx, cond) {
			return fmt.Errorf("the console does not show %s; it shows:\n%s", what, evaluate[string](t, ctx, "document.body.innerText"))
		}
		return nil
	})
}

// consoleShot takes a screenshot of the viewport at w x h and checks it
// is a PNG of that size.
func consoleShot(t *testing.T, ctx context.Context, w, h int64, docsPath string) (string, int) {
	t.Helper()
	consoleDo(t, ctx, fmt.Sprintf("viewport %dx%d", w, h), chromedp.EmulateViewport(w, h))
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	shot, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot at %dx%d: %v", w, h, err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(shot))
	if err != nil || int64(cfg.Width) != w || int64(cfg.Height) != h {
		t.Fatalf("screenshot at %dx%d is not a PNG of that size: %v (%dx%d)", w, h, err, cfg.Width, cfg.Height)
	}
	path := t.TempDir() + "/" + filepath.Base(docsPath)
	if os.Getenv("CONSOLE_SCREENSHOT") != "" {
		path = docsPath
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, len(shot)
}

// TestConsole drives chromium on ingest's /admin against a real stack whose
// ingest wants an API token: a wrong token in the login form is refused with
// the API's message; with the right one the console lists alice's two SSE
// sessions (transport, edge, remote, expiry) found by search, kills one (its
// stream gets session_killed and the row goes), sends alice a message that
// her other stream receives with the id the page shows, confirmed by the
// edge that wrote it (its delivery receipt), after one to carol that her
// stalled Phoenix long-poll session does not confirm (said so after the
// wait, naming it), adds a route to an
// upstream and edits it (each called through the edge), shows a bad route's
// one-line error as the API gives it, removes the route, and shows health.
// Screenshots at 1280x800 and 390x844 (see consolePNG); at 390 wide the
// page itself does not scroll sideways (its tables do).
func TestConsole(t *testing.T) {
	ctx := newBrowser(t)
	up := StartUpstream(t)
	filed := WriteRoutes(t, `[{"id": "filed", "version_data": {"default": {"endpoints": [{"id": "e", "path": "/filed", "method": "GET", "not_secured": true}]}}, "proxy": {"target_url": "users.example", "port": 8080}}]`)
	st := StartStack(t, map[string]string{"EDGE_ID": "edge-console", "PROXY_ALLOW_LOCAL_TARGETS": "true", "PROXY_CONFIG_FILE": filed},
		map[string]string{"API_TOKENS": consoleToken, "PROXY_ALLOW_LOCAL_TARGETS": "true", "PROXY_CONFIG_FILE": filed})

	// The page loads without a token, with its strict headers; the data
	// behind it does not.
	r := Do(t, "GET", st.Ingest.URL+"/admin", "", nil)
	if r.Status != 200 || !bytes.Contains(r.Body, []byte("RIG-Go console")) ||
		!strings.Contains(r.Header.Get("Content-Security-Policy"), "script-src 'self';") || r.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("GET /admin: %d %v %.200s", r.Status, r.Header, r.Body)
	}
	if r := Do(t, "GET", st.Ingest.URL+"/v1/admin/sessions", "", nil); r.Status != 401 {
		t.Fatalf("GET /v1/admin/sessions without a token: %d", r.Status)
	}

	killed := fmt.Sprintf("console-kill-%d", time.Now().UnixNano())
	kept := fmt.Sprintf("console-keep-%d", time.Now().UnixNano())
	victim := MustSSE(t, sseURL(st.Edge.URL, Token(t, "alice", TokenOpts{JTI: killed, TTL: 30 * time.Minute})))
	other := MustSSE(t, sseURL(st.Edge.URL, Token(t, "alice", TokenOpts{JTI: kept, TTL: 30 * time.Minute})))
	MustSSE(t, sseURL(st.Edge.URL, Token(t, "bob", TokenOpts{JTI: "console-bob"})))
	// A user name is data, never markup, in the table.
	hostile := `<img id="pwn" src="x">mallory`
	hostileSSE := MustSSE(t, sseURL(st.Edge.URL, Token(t, hostile, TokenOpts{JTI: "console-hostile"})))

	// The browser lives as long as the context of the first Do, which
	// therefore has no timeout.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(st.Ingest.URL+"/admin")); err != nil {
		t.Fatalf("open the console in chromium: %v", err)
	}
	consoleDo(t, ctx, "log in with a wrong token",
		chromedp.SendKeys(chromedp.ID("token"), "not-the-token"), chromedp.Click(chromedp.ID("login")))
	consoleWait(t, ctx, "the wrong token refused",
		`document.getElementById("auth-status").dataset.state === "error" && document.getElementById("auth-status").textContent.includes("403 the bearer token is not one of API_TOKENS")`)
	if n := evaluate[int](t, ctx, `document.querySelectorAll("#sessions tbody tr").length`); n != 0 {
		t.Fatalf("a wrong token listed %d sessions", n)
	}
	evaluate[string](t, ctx, `document.getElementById("token").value = ""`)
	consoleDo(t, ctx, "log in with a token that is not ASCII",
		chromedp.SendKeys(chromedp.ID("token"), "tök-wrong"), chromedp.Click(chromedp.ID("login")))
	consoleWait(t, ctx, "the token refused before sending it",
		`document.getElementById("auth-status").textContent === "An API token is printable ASCII without spaces: check what you typed."`)
	evaluate[string](t, ctx, `document.getElementById("token").value = ""`)
	consoleDo(t, ctx, "log in", chromedp.SendKeys(chromedp.ID("token"), consoleToken), chromedp.Click(chromedp.ID("login")))
	consoleWait(t, ctx, "logged in", `document.getElementById("app").dataset.state === "in"`)
	if href := evaluate[string](t, ctx, "location.href"); strings.Contains(href, consoleToken) {
		t.Fatalf("the token is in the URL: %s", href)
	}
	if got := evaluate[string](t, ctx, `sessionStorage.getItem("rig-console-token")`); got != consoleToken {
		t.Fatalf("sessionStorage holds %q", got)
	}

	// Online now: a search for alice finds her two sessions, not bob's.
	consoleWait(t, ctx, "four sessions", `document.querySelectorAll("#sessions tbody tr").length === 4`)
	if pwn := evaluate[bool](t, ctx, `document.getElementById("pwn") !== null`); pwn {
		t.Fatal("a user name was rendered as HTML")
	}
	if got := evaluate[string](t, ctx, `document.querySelector('#sessions tr[data-jti="console-hostile"] td').textContent`); got != hostile {
		t.Fatalf("the hostile user shows as %q", got)
	}
	consoleDo(t, ctx, "search for alice", chromedp.SendKeys(chromedp.ID("q"), "alice"), chromedp.Click(chromedp.ID("search")))
	consoleWait(t, ctx, "alice's two sessions only",
		`[...document.querySelectorAll("#sessions tbody tr")].map((r) => r.dataset.user).join() === "alice,alice"`)
	cells := evaluate[[]string](t, ctx, fmt.Sprintf(`[...document.querySelectorAll('#sessions tr[data-jti=%q] td')].map((td) => td.textContent)`, killed))
	if len(cells) != 8 || cells[0] != "alice" || cells[1] != killed || cells[2] != "sse" || cells[3] != "edge-console" || cells[4] != "127.0.0.1" ||
		cells[5] == "-" || !strings.Contains(cells[6], "(in 30m)") && !strings.Contains(cells[6], "(in 29m)") {
		t.Fatalf("alice's row: %q", cells)
	}
	if s := evaluate[string](t, ctx, `document.getElementById("sessions-summary").textContent`); !strings.HasPrefix(s, "1-2 of 2 sessions, from 1 edge") {
		t.Fatalf("summary %q", s)
	}

	// Act: kill one session for an hour.
	start := time.Now()
	consoleDo(t, ctx, "kill alice's session",
		chromedp.SetValue(chromedp.ID("kill-for"), "3600"),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#sessions tr[data-jti=%q] button`, killed))))
	victim.WaitKilled(t, start.Add(5*time.Second))
	consoleWait(t, ctx, "the killed session gone, the other one kept",
		fmt.Sprintf(`[...document.querySelectorAll("#sessions tbody tr")].map((r) => r.dataset.jti).join() === %q`, kept))
	if s := evaluate[string](t, ctx, `document.getElementById("kill-result").textContent`); !strings.Contains(s, killed+" for 3600s") {
		t.Fatalf("kill result %q", s)
	}
	var bl struct{ ValidityInSeconds int }
	Do(t, "GET", st.Ingest.URL+"/v1/session-blacklist/"+killed, "", nil, http.Header{"Authorization": {"Bearer " + consoleToken}}).JSON(t, &bl)
	if bl.ValidityInSeconds < 3590 || bl.ValidityInSeconds > 3600 {
		t.Fatalf("blacklisted for %ds, want the hour chosen", bl.ValidityInSeconds)
	}
	t.Logf("killed from the console: session_killed after %s", time.Since(start).Round(time.Millisecond))

	// Act: a test message to a connection that does not confirm. carol's
	// Phoenix long-poll session, whose client stopped polling, holds the
	// message without delivering it: after the wait the page says so, in
	// red, naming the connection.
	auth := http.Header{"Authorization": {"Bearer " + consoleToken}}
	carol := Token(t, "carol", TokenOpts{JTI: "console-carol-lp", TTL: 30 * time.Minute})
	hs := lpDo(t, st.Edge.URL, "GET", carol, "", "", nil)
	if p := lpDo(t, st.Edge.URL, "POST", carol, hs.Token, "application/json", []byte(`["1","1","user:carol","phx_join",{}]`)); p.Status != 200 {
		t.Fatalf("carol's join: %+v", p)
	}
	pollToken := lpDo(t, st.Edge.URL, "GET", carol, hs.Token, "", nil).Token
	carolListed := func(want int) {
		check.For(t, 15*time.Second, 50*time.Millisecond, func() error {
			var p struct{ Total int }
			if Do(t, "GET", st.Ingest.URL+"/v1/admin/sessions?user=carol", "", nil, auth).JSON(t, &p); p.Total != want {
				return fmt.Errorf("carol has %d sessions listed, want %d", p.Total, want)
			}
			return nil
		})
	}
	carolListed(1)
	consoleDo(t, ctx, "send carol a message", chromedp.SetValue(chromedp.ID("send-user"), "carol"), chromedp.Click(chromedp.ID("send-button")))
	consoleWait(t, ctx, "carol's message not confirmed", `document.getElementById("send-result").dataset.state === "error" && !!document.getElementById("send-result").dataset.id`)
	carolID := evaluate[string](t, ctx, `document.getElementById("send-result").dataset.id`)
	unconfirmed := "Stored as " + carolID + ". 0 of 1 connections confirmed after 5 s; not confirmed: edge-console phoenix-longpoll console-carol-lp"
	if s := evaluate[string](t, ctx, `document.getElementById("send-result").textContent`); s != unconfirmed {
		t.Fatalf("send result %q, want %q", s, unconfirmed)
	}
	if row := evaluate[[]string](t, ctx, `[...document.querySelectorAll("#receipts tr td")].map((td) => td.textContent)`); len(row) != 7 || row[0] != "not confirmed" || row[3] != "console-carol-lp" {
		t.Fatalf("the receipts table: %q", row)
	}
	// carol's session ends: blacklisted, its next poll takes what it held.
	Do(t, "POST", st.Ingest.URL+"/v1/session-blacklist", "application/json", []byte(`{"sessionId":"console-carol-lp","validityInSeconds":60}`), auth)
	held := lpDo(t, st.Edge.URL, "GET", carol, pollToken, "", nil)
	if len(held.Messages) == 0 || !strings.Contains(held.Messages[0], carolID) {
		t.Fatalf("carol's next poll: %+v, want %s", held, carolID)
	}
	check.For(t, 15*time.Second, 50*time.Millisecond, func() error {
		if a := lpDo(t, st.Edge.URL, "GET", carol, held.Token, "", nil); a.Status == 200 && len(a.Messages) > 0 {
			held.Token = a.Token // session_killed, and the session ends
		}
		var p struct{ Total int }
		if Do(t, "GET", st.Ingest.URL+"/v1/admin/sessions?user=carol", "", nil, auth).JSON(t, &p); p.Total != 0 {
			return fmt.Errorf("carol's session still listed")
		}
		return nil
	})

	// Act: a test message reaches alice's other session, and the page
	// shows it confirmed by the edge that wrote it to that connection.
	start = time.Now()
	consoleDo(t, ctx, "send alice a message", chromedp.SetValue(chromedp.ID("send-user"), "alice"), chromedp.Click(chromedp.ID("send-button")))
	consoleWait(t, ctx, "the message stored", `!!document.getElementById("send-result").dataset.id`)
	id := evaluate[string](t, ctx, `document.getElementById("send-result").dataset.id`)
	sent := "Stored as " + id + ". Delivered to 1 of 1 connections: edge-console sse " + kept
	if s := evaluate[string](t, ctx, `document.getElementById("send-result").textContent`); s != sent {
		t.Fatalf("send result %q, want %q", s, sent)
	}
	receipt := evaluate[[]string](t, ctx, `[...document.querySelectorAll("#receipts tr td")].map((td) => td.textContent)`)
	if len(receipt) != 7 || receipt[0] != "confirmed" || receipt[1] != "edge-console" || receipt[2] != "sse" || receipt[3] != kept || receipt[4] != "alice" {
		t.Fatalf("the receipts table: %q", receipt)
	}
	t.Logf("sent from the console: %q in %s", sent, time.Since(start).Round(time.Millisecond))
	if ev := other.NextMessage(t, 5*time.Second); ev.ID != id || !strings.Contains(ev.Data, `"text":"hello from the console"`) || !strings.Contains(ev.Data, `"user":"alice"`) {
		t.Fatalf("alice's other session got %+v, want %s", ev, id)
	}

	// Routes: the file's is marked so; changing it is refused with the
	// API's line.
	consoleWait(t, ctx, "the file's route", `!!document.querySelector('#route-table tr[data-id="filed"]')`)
	fileRow := evaluate[[]string](t, ctx, `[...document.querySelectorAll('#route-table tr[data-id="filed"] td')].map((td) => td.textContent)`)
	if len(fileRow) != 5 || fileRow[1] != "file" || fileRow[2] != "GET /filed" || fileRow[3] != "users.example:8080" {
		t.Fatalf("the file's route shows as %q", fileRow)
	}
	fileDef := `{"id": "filed", "version_data": {"default": {"endpoints": [{"id": "e", "path": "/filed", "method": "GET", "not_secured": true}]}}, "proxy": {"target_url": "users.example", "port": 9090}}`
	fileErr := Do(t, "PUT", st.Ingest.URL+"/v1/apis/filed", "application/json", []byte(fileDef), http.Header{"Authorization": {"Bearer " + consoleToken}})
	if fileErr.Status < 400 || fileErr.Status > 499 {
		t.Fatalf("PUT of the file's route: %d %s", fileErr.Status, fileErr.Body)
	}
	consoleDo(t, ctx, "change the file's route", chromedp.SetValue(chromedp.ID("route-json"), fileDef), chromedp.Click(chromedp.ID("route-save")))
	consoleWait(t, ctx, "the API's refusal", fmt.Sprintf(`document.getElementById("route-result").textContent === %q`,
		fmt.Sprintf("PUT /v1/apis/filed: %d %s", fileErr.Status, fileErr.ErrorMessage(t))))

	// Routes: add one to the upstream, call it through the edge.
	route := func(path string) string {
		return fmt.Sprintf(`{"id": "console-route", "version_data": {"default": {"endpoints": [{"id": "e", "path": %q, "method": "GET", "not_secured": true}]}}, "proxy": {"target_url": "http://127.0.0.1", "port": %d}}`, path, up.Port)
	}
	setRoute := func(def string) {
		t.Helper()
		consoleDo(t, ctx, "type a route", chromedp.SetValue(chromedp.ID("route-json"), def))
	}
	callable := func(path string, want int) {
		t.Helper()
		check.For(t, 15*time.Second, 50*time.Millisecond, func() error {
			if r := Get(t, st.Edge.URL+path); r.Status != want {
				return fmt.Errorf("GET %s through the edge: %d %s, want %d", path, r.Status, r.Body, want)
			}
			return nil
		})
	}
	setRoute(route("/console-echo"))
	consoleDo(t, ctx, "add the route", chromedp.Click(chromedp.ID("route-add")))
	consoleWait(t, ctx, "the route added", `document.getElementById("route-result").textContent === "Added route console-route."`+
		` && document.querySelector('#route-table tr[data-id="console-route"]')?.dataset.source === "runtime"`)
	callable("/console-echo", 200)
	if e := Get(t, st.Edge.URL+"/console-echo").Echo(t); e.Path != "/console-echo" {
		t.Fatalf("the upstream saw %+v", e)
	}
	// Edit: the page fills the editor with the route; the path changes.
	consoleDo(t, ctx, "edit the route", chromedp.Click(chromedp.CSS(`#route-table tr[data-id="console-route"] button`)))
	if def := evaluate[string](t, ctx, `document.getElementById("route-json").value`); !strings.Contains(def, `"/console-echo"`) || strings.Contains(def, "source") {
		t.Fatalf("the editor holds %s", def)
	}
	setRoute(route("/console-edited"))
	consoleDo(t, ctx, "save the route", chromedp.Click(chromedp.ID("route-save")))
	consoleWait(t, ctx, "the route saved", `document.getElementById("route-result").textContent === "Saved route console-route."`)
	callable("/console-edited", 200)
	// A bad definition: the page shows the API's own one-line error.
	bad := `{"id": "bad route", "version_data": {}, "proxy": {"target_url": "http://127.0.0.1", "port": 1}}`
	apiErr := Do(t, "POST", st.Ingest.URL+"/v1/apis", "application/json", []byte(bad), http.Header{"Authorization": {"Bearer " + consoleToken}})
	if apiErr.Status != 400 {
		t.Fatalf("POST of a bad route: %d %s", apiErr.Status, apiErr.Body)
	}
	setRoute(bad)
	consoleDo(t, ctx, "add a bad route", chromedp.Click(chromedp.ID("route-add")))
	want := "POST /v1/apis: 400 " + apiErr.ErrorMessage(t)
	consoleWait(t, ctx, "the API's error", fmt.Sprintf(`document.getElementById("route-result").textContent === %q`, want))
	// Remove takes two clicks.
	removeSel := `#route-table tr[data-id="console-route"] button.danger`
	consoleDo(t, ctx, "remove the route", chromedp.Click(chromedp.CSS(removeSel)))
	if evaluate[string](t, ctx, `document.querySelector('`+removeSel+`').textContent`) != "Really remove?" {
		t.Fatal("one click on Remove did not ask again")
	}
	callable("/console-edited", 200)
	consoleDo(t, ctx, "confirm the removal", chromedp.Click(chromedp.CSS(removeSel)))
	consoleWait(t, ctx, "the route removed", `!document.querySelector('#route-table tr[data-id="console-route"]')`)
	callable("/console-edited", 404)

	// Health.
	consoleWait(t, ctx, "health ok", `document.getElementById("health-status").textContent === "ok"`+
		` && document.getElementById("components").innerText.includes("edge edge-console\tready")`+
		` && document.getElementById("streams").innerText.includes("RIG_HISTORY")`)

	// Screenshots, with a message sent for the picture.
	setRoute(route("/console-echo"))
	consoleDo(t, ctx, "add the route back", chromedp.Click(chromedp.ID("route-add")))
	consoleWait(t, ctx, "the route added", `!!document.querySelector('#route-table tr[data-id="console-route"]')`)
	hostileSSE.Close()
	evaluate[string](t, ctx, `document.getElementById("q").value = ""`)
	consoleDo(t, ctx, "clear the search", chromedp.Click(chromedp.ID("search")))
	consoleWait(t, ctx, "alice's and bob's sessions", `document.querySelectorAll("#sessions tbody tr").length === 2`)
	wide, wideBytes := consoleShot(t, ctx, 1280, 800, consolePNG)
	phone, phoneBytes := consoleShot(t, ctx, 390, 844, consolePhonePNG)
	if over := evaluate[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); over > 0 {
		t.Errorf("at 390 wide the page scrolls sideways by %dpx", over)
	}
	t.Logf("console screenshots: %s (%d bytes), %s (%d bytes)", wide, wideBytes, phone, phoneBytes)
}

// TestConsoleNoBypass: the console's files need no token, and nothing else
// is reached through its prefix without one: paths that climb out of
// /admin, encoded or not, or spell it in another case, get no data; the
// console takes no POST; an API call from the page's origin still needs
// the token.
func TestConsoleNoBypass(t *testing.T) {
	n := StartNATS(t)
	env := IngestEnv(FreePort(t), n.URL)
	env["API_TOKENS"] = consoleToken
	ing := StartIngest(t, env)
	for _, p := range []string{
		"/admin/../v1/admin/sessions", "/admin/%2e%2e/v1/admin/sessions", "/admin/..%2fv1/admin/sessions",
		"/admin//v1/admin/sessions", "/ADMIN/../v1/admin/health", "/admin/..%5cv1/admin/health", "/admin%2f..%2fv1/admin/health",
		"/admin/../metrics", "/adminx", "/admin/console.js/../../v1/apis",
	} {
		r := Do(t, "GET", ing.URL+p, "", nil)
		if r.Status == 200 || bytes.Contains(r.Body, []byte(`"sessions"`)) || bytes.Contains(r.Body, []byte(`"streams"`)) || bytes.Contains(r.Body, []byte("rig_")) {
			t.Errorf("GET %s without a token: %d %.200s", p, r.Status, r.Body)
		}
		t.Logf("GET %s: %d", p, r.Status)
	}
	if r := Do(t, "POST", ing.URL+"/admin/", "application/json", []byte(`{}`)); r.Status != 405 {
		t.Errorf("POST /admin/: %d %s", r.Status, r.Body)
	}
	if r := Do(t, "GET", ing.URL+"/v1/admin/health", "", nil, http.Header{"Origin": {ing.URL}, "Referer": {ing.URL + "/admin"}}); r.Status != 401 {
		t.Errorf("GET /v1/admin/health from the console's origin without a token: %d", r.Status)
	}
}
