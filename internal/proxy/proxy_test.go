package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/route"
)

const secret = "proxy-test-secret-0123456789"

// revokedSet is a Revocations of a fixed set of sessions.
type revokedSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (r *revokedSet) Revoked(jti string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[jti]
}

func (r *revokedSet) add(jti string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids[jti] = true
}

// gateway serves routes (a route file whose target is upstream) on a real
// listener and returns its base URL.
// Its upstreams are on loopback, so local targets are allowed; see
// guardedGateway for the guard's own tests.
func gateway(t *testing.T, routes string, cfg config.Proxy) (*Gateway, string) {
	t.Helper()
	cfg.Guard.AllowLocal = true
	return guardedGateway(t, routes, cfg, func(string) string { return "" })
}

// guardedGateway is gateway with cfg's guard as it is, and getenv for
// use_env targets.
func guardedGateway(t *testing.T, routes string, cfg config.Proxy, getenv func(string) string) (*Gateway, string) {
	t.Helper()
	if cfg.RecvTimeout == 0 {
		cfg.RecvTimeout = 2 * time.Second
	}
	v, err := auth.New(t.Context(), config.JWT{SecretKey: secret, UserField: "user", RolesField: "roles", RequireJTI: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	g := New(cfg, v, slog.New(slog.DiscardHandler))
	apis, err := route.ParseList([]byte(routes))
	if err != nil {
		t.Fatal(err)
	}
	tb, errs := route.NewTable(apis, getenv)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	g.SetRoutes(tb)
	return g, serve(t, g)
}

// serve serves g on a real listener and returns its base URL.
func serve(t *testing.T, g *Gateway) string {
	t.Helper()
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Use(g.Handle)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln)
	t.Cleanup(func() { _ = app.Shutdown(); g.Close() })
	return "http://" + ln.Addr().String()
}

func routesTo(upstream string) string {
	return `[{"id":"svc","auth_type":"jwt","auth":{"use_header":true,"header_name":"Authorization","use_query":true,"query_name":"token"},
	  "version_data":{"default":{"endpoints":[
	    {"id":"secured","path":"/api/private/{id}","method":"GET"},
	    {"id":"free","path":"/api/free","method":"GET","secured":false},
	    {"id":"stream","path":"/api/stream","method":"GET","secured":false},
	    {"id":"slow","path":"/api/slow","method":"GET","secured":false}
	  ]}},
	  "proxy":{"target_url":"` + upstream + `"}}]`
}

func token(t *testing.T, jti string) string {
	t.Helper()
	tok, err := auth.Mint(secret, auth.Claims{User: "alice", ID: jti, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func get(t *testing.T, url string, header http.Header) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func messageOf(t *testing.T, body string) string {
	t.Helper()
	var m struct{ Message string }
	if err := json.Unmarshal([]byte(body), &m); err != nil || m.Message == "" {
		t.Fatalf("body %q is not {\"message\":...}", body)
	}
	return m.Message
}

// TestAuthRefusesRevokedSession: a valid token whose session is
// blacklisted is refused like an invalid one, once revocations are set.
func TestAuthRefusesRevokedSession(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "private "+r.URL.Path) }))
	defer up.Close()
	g, base := gateway(t, routesTo(up.URL), config.Proxy{})
	url := base + "/api/private/1"
	tok := token(t, "session-1")
	bearer := http.Header{"Authorization": {"Bearer " + tok}}

	if code, body, _ := get(t, url, bearer); code != 200 || body != "private /api/private/1" {
		t.Fatalf("valid token, no revocations set: %d %s", code, body)
	}
	revoked := &revokedSet{ids: map[string]bool{}}
	g.SetRevocations(revoked)
	if code, body, _ := get(t, url, bearer); code != 200 {
		t.Fatalf("valid token, session not revoked: %d %s", code, body)
	}
	revoked.add("session-1")
	code, body, h := get(t, url, bearer)
	if code != 401 || messageOf(t, body) != "Missing or invalid token" || h.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("revoked session: %d %s %v", code, body, h)
	}
	if code, _, _ := get(t, url+"?token="+tok, nil); code != 401 {
		t.Fatalf("revoked session in the query: %d", code)
	}
	if code, _, _ := get(t, url, http.Header{"Authorization": {"Bearer " + token(t, "session-2")}}); code != 200 {
		t.Fatalf("another session: %d", code)
	}
	g.SetRevocations(nil)
	if code, _, _ := get(t, url, bearer); code != 200 {
		t.Fatalf("revocations unset again: %d", code)
	}
}

func TestAuthTokenSources(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	_, base := gateway(t, routesTo(up.URL), config.Proxy{})
	tok := token(t, "s")
	wrong, _ := auth.Mint("another-secret-entirely", auth.Claims{User: "alice", TTL: time.Hour}, time.Now())
	cases := []struct {
		name   string
		query  string
		header http.Header
		want   int
	}{
		{"Bearer header", "", http.Header{"Authorization": {"Bearer " + tok}}, 200},
		{"bare header", "", http.Header{"Authorization": {tok}}, 200},
		{"lower-case scheme", "", http.Header{"Authorization": {"bearer " + tok}}, 200},
		{"query", "?token=" + tok, nil, 200},
		{"one of several in the query", "?token=garbage," + tok, nil, 200},
		{"no token", "", nil, 401},
		{"empty header", "", http.Header{"Authorization": {"Bearer "}}, 401},
		{"wrong key", "", http.Header{"Authorization": {"Bearer " + wrong}}, 401},
		{"garbage", "?token=abc", nil, 401},
	}
	for _, c := range cases {
		code, body, _ := get(t, base+"/api/private/x"+c.query, c.header)
		if code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.want)
		}
		if code == 401 && messageOf(t, body) != "Missing or invalid token" {
			t.Errorf("%s: body %s", c.name, body)
		}
	}
	if code, _, _ := get(t, base+"/api/free", nil); code != 200 {
		t.Fatalf("unsecured endpoint without a token: %d", code)
	}
}

// TestStreamsAndTimeouts: a streamed answer arrives in pieces (the client
// reads each before the upstream writes the next) and lasts as long as its
// pieces keep coming within the timeout, while an upstream that does not
// answer within the timeout is a 504 and one that is not there a 502.
func TestStreamsAndTimeouts(t *testing.T) {
	next := make(chan struct{})
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/stream":
			for i := range 5 {
				io.WriteString(w, "piece "+string(rune('1'+i))+"\n")
				w.(http.Flusher).Flush()
				if i < 4 {
					select {
					case <-next:
					case <-release:
						return
					}
				}
			}
		case "/api/slow":
			<-release
		}
	}))
	defer up.Close()
	defer close(release) // first: unblocks the handlers
	_, base := gateway(t, routesTo(up.URL), config.Proxy{RecvTimeout: 300 * time.Millisecond})

	resp, err := http.Get(base + "/api/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	start := time.Now()
	for i := range 5 {
		line, err := r.ReadString('\n')
		if err != nil || line != "piece "+string(rune('1'+i))+"\n" {
			t.Fatalf("piece %d: %q %v", i+1, line, err)
		}
		if i < 4 {
			// Time passing is the point here: four pauses of half the
			// timeout make the stream outlast the timeout.
			time.Sleep(150 * time.Millisecond)
			next <- struct{}{}
		}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after the last piece: %v, want EOF", err)
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("stream took %s, want it to outlast the 300ms timeout", d)
	}

	start = time.Now()
	code, body, _ := get(t, base+"/api/slow", nil)
	if code != 504 || messageOf(t, body) != "Gateway timeout." {
		t.Fatalf("slow upstream: %d %s", code, body)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("504 after %s, want about the 300ms timeout", d)
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()
	_, base = gateway(t, routesTo(closed), config.Proxy{})
	code, body, _ = get(t, base+"/api/free", nil)
	if code != 502 || messageOf(t, body) != "Bad gateway." {
		t.Fatalf("upstream down: %d %s", code, body)
	}
}

func TestNoRoute(t *testing.T) {
	_, base := gateway(t, routesTo("http://127.0.0.1:1"), config.Proxy{})
	code, body, _ := get(t, base+"/nowhere", nil)
	if code != 404 || messageOf(t, body) != "Route is not available" {
		t.Fatalf("%d %s", code, body)
	}
	req, _ := http.NewRequest("POST", base+"/api/free", strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" || messageOf(t, string(b)) == "" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, b)
	}
}

// The rate limit keeps a bucket per API and client address (the one
// SetClientIP finds), or one per API without RATE_LIMIT_PER_IP.
func TestRateLimitBuckets(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer upstream.Close()
	get := func(base, client string) int {
		req, _ := http.NewRequest("GET", base+"/api/free", nil)
		req.Header.Set("X-Client", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, perIP := range []bool{true, false} {
		g, base := gateway(t, routesTo(upstream.URL), config.Proxy{RateLimit: config.RateLimit{
			Enabled: true, PerIP: perIP, AvgRatePerSec: 1, BurstSize: 2}})
		g.SetClientIP(func(c *fiber.Ctx) string { return c.Get("X-Client") })
		if a, b := get(base, "a"), get(base, "a"); a != 200 || b != 200 {
			t.Fatalf("perIP=%v: the burst of 2 refused: %d %d", perIP, a, b)
		}
		if got := get(base, "a"); got != 429 {
			t.Fatalf("perIP=%v: third request of a burst of 2: %d, want 429", perIP, got)
		}
		want := 200
		if !perIP {
			want = 429
		}
		if got := get(base, "b"); got != want {
			t.Fatalf("perIP=%v: another client: %d, want %d", perIP, got, want)
		}
	}
}
