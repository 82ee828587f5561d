package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// gatewayRoutes is a route file in RIG's format: an open API with every
// method, a jwt API (RIG 1's not_secured and RIG 3's secured side by side,
// token in a header or the query), and APIs whose upstream is down or slow.
func gatewayRoutes(up *Upstream, downPort int) string {
	return fmt.Sprintf(`[
{"id": "echo", "name": "echo", "auth_type": "none", "versioned": false,
 "version_data": {"default": {"endpoints": [
   {"id": "get",     "path": "/echo/{id}", "method": "GET"},
   {"id": "head",    "path": "/echo/{id}", "method": "HEAD"},
   {"id": "post",    "path": "/echo/{id}", "method": "POST"},
   {"id": "put",     "path": "/echo/{id}", "method": "PUT"},
   {"id": "patch",   "path": "/echo/{id}", "method": "PATCH"},
   {"id": "delete",  "path": "/echo/{id}", "method": "DELETE"},
   {"id": "options", "path": "/echo/{id}", "method": "OPTIONS"},
   {"id": "item",    "path": "/echo/{id}/items/{item}", "method": "GET"},
   {"id": "two",     "path": "/{a}/{b}", "method": "GET"},
   {"id": "stream",  "path": "/stream", "method": "GET"}
 ]}},
 "proxy": {"use_env": false, "target_url": "http://127.0.0.1", "port": %d}},
{"id": "private", "name": "private", "auth_type": "jwt",
 "auth": {"use_header": true, "header_name": "Authorization", "use_query": true, "query_name": "jwt"},
 "versioned": false,
 "version_data": {"default": {"endpoints": [
   {"id": "detail", "path": "/private/detail/{id}", "method": "GET", "not_secured": false},
   {"id": "secured", "path": "/private/secured", "method": "GET", "secured": true},
   {"id": "free", "path": "/private/free", "method": "GET", "not_secured": true},
   {"id": "free3", "path": "/private/free3", "method": "GET", "secured": false}
 ]}},
 "proxy": {"use_env": true, "target_url": "PRIVATE_HOST", "port": %d}},
{"id": "down",
 "version_data": {"default": {"endpoints": [{"id": "down", "path": "/down", "method": "GET"}]}},
 "proxy": {"target_url": "127.0.0.1", "port": %d}},
{"id": "slow",
 "version_data": {"default": {"endpoints": [{"id": "slow", "path": "/slow", "method": "GET"}]}},
 "proxy": {"target_url": "http://127.0.0.1", "port": %d}}
]`, up.Port, up.Port, downPort, up.Port)
}

// TestGateway: the edge forwards by its route file: every method, headers
// (with X-Forwarded-*), query, body and path parameters pass through; the
// gateway's refusals are RIG's {"message": ...}; and the edge's own
// endpoints stay its own.
func TestGateway(t *testing.T) {
	up := StartUpstream(t)
	downPort := FreePort(t) // nothing listens there
	st := StartStack(t, map[string]string{
		"PROXY_CONFIG_FILE":         WriteRoutes(t, gatewayRoutes(up, downPort)),
		"PROXY_RECV_TIMEOUT":        "500",
		"PROXY_ALLOW_LOCAL_TARGETS": "true", // the upstream is on loopback
		"PROXY_USE_ENV_ALLOWLIST":   "PRIVATE_HOST",
		"PRIVATE_HOST":              "http://127.0.0.1",
	}, nil)
	edge := st.Edge.URL

	t.Run("every method with its body", func(t *testing.T) {
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
			var body []byte
			if m != "GET" && m != "OPTIONS" {
				body = []byte(`{"method":"` + m + `"}`)
			}
			e := Do(t, m, edge+"/echo/42", "application/json", body).Echo(t)
			if e.Method != m || e.Path != "/echo/42" || e.Body != string(body) {
				t.Fatalf("%s: upstream saw %s %s %q", m, e.Method, e.Path, e.Body)
			}
		}
		r := Do(t, "HEAD", edge+"/echo/42", "", nil)
		if r.Status != 200 || r.Header.Get("X-Upstream") != "echo" || len(r.Body) != 0 {
			t.Fatalf("HEAD: %d %v %q", r.Status, r.Header, r.Body)
		}
		big := bytes.Repeat([]byte("x"), 1<<20)
		if e := Do(t, "POST", edge+"/echo/big", "application/octet-stream", big).Echo(t); e.Body != string(big) {
			t.Fatalf("1 MiB body: upstream got %d bytes", len(e.Body))
		}
	})

	t.Run("headers with X-Forwarded, not hop-by-hop", func(t *testing.T) {
		r := Get(t, edge+"/echo/h", http.Header{
			"X-Custom":         {"a", "b"},
			"Cookie":           {"session=abc"},
			"Authorization":    {"Bearer not-checked-here"},
			"Accept":           {"application/json"},
			"Connection":       {"X-Client-Hop"},
			"X-Client-Hop":     {"1"},
			"Keep-Alive":       {"timeout=5"},
			"Proxy-Connection": {"keep-alive"},
		})
		e := r.Echo(t)
		h := http.Header(e.Header)
		checks := map[string]string{
			"X-Custom": "a", "Cookie": "session=abc", "Authorization": "Bearer not-checked-here",
			"Accept": "application/json", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
			"X-Forwarded-Host": "127.0.0.1:" + strconv.Itoa(st.Edge.Port), "Host": "127.0.0.1:" + strconv.Itoa(up.Port),
		}
		for k, want := range checks {
			if got := h.Get(k); got != want {
				t.Errorf("upstream header %s = %q, want %q (all: %v)", k, got, want, h)
			}
		}
		if got := h.Values("X-Custom"); len(got) != 2 || got[1] != "b" {
			t.Errorf("repeated header X-Custom arrived as %v", got)
		}
		if !strings.Contains(h.Get("Forwarded"), "for=127.0.0.1") {
			t.Errorf("Forwarded = %q", h.Get("Forwarded"))
		}
		for _, hop := range []string{"X-Client-Hop", "Keep-Alive", "Proxy-Connection"} {
			if v := h.Get(hop); v != "" {
				t.Errorf("hop-by-hop header %s = %q reached the upstream", hop, v)
			}
		}
		for _, hop := range []string{"X-Upstream-Hop", "Keep-Alive"} {
			if v := r.Header.Get(hop); v != "" {
				t.Errorf("hop-by-hop header %s = %q of the upstream reached the client", hop, v)
			}
		}
		if r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("upstream's Content-Type lost: %v", r.Header)
		}
		// A load balancer in front of the edge: its client's address is
		// kept, the edge's peer appended, its proto and host kept.
		e = Get(t, edge+"/echo/h", http.Header{"X-Forwarded-For": {"203.0.113.7"},
			"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"app.example.com"}}).Echo(t)
		h = http.Header(e.Header)
		if h.Get("X-Forwarded-For") != "203.0.113.7, 127.0.0.1" || h.Get("X-Forwarded-Proto") != "https" || h.Get("X-Forwarded-Host") != "app.example.com" {
			t.Errorf("behind a load balancer: %v", h)
		}
	})

	t.Run("query", func(t *testing.T) {
		e := Get(t, edge+"/echo/q?a=1&b=x%20y&a=2&empty=&flag").Echo(t)
		if e.RawQuery != "a=1&b=x%20y&a=2&empty=&flag" {
			t.Fatalf("upstream query %q", e.RawQuery)
		}
	})

	t.Run("path parameters with dots and UUIDs", func(t *testing.T) {
		for _, p := range []string{
			"/echo/550e8400-e29b-41d4-a716-446655440000",
			"/echo/v1.2.3",
			"/echo/report.2024.json",
			"/echo/550e8400-e29b-41d4-a716-446655440000/items/a.b.c",
			"/echo/alice%40example.com",
		} {
			e := Get(t, edge+p).Echo(t)
			if want := strings.ReplaceAll(p, "%40", "@"); e.Path != p && e.Path != want {
				t.Errorf("GET %s: upstream saw %s", p, e.Path)
			}
		}
	})

	t.Run("no route 404, wrong method 405", func(t *testing.T) {
		r := Get(t, edge+"/nowhere")
		if r.Status != 404 || r.GatewayMessage(t) != "Route is not available" {
			t.Fatalf("no route: %d %s", r.Status, r.Body)
		}
		r = Do(t, "POST", edge+"/private/free", "application/json", []byte(`{}`))
		if r.Status != 405 || r.Header.Get("Allow") != "GET" {
			t.Fatalf("POST on a GET route: %d %v %s", r.Status, r.Header, r.Body)
		}
		r.GatewayMessage(t)
		r = Do(t, "GET", edge+"/echo/1/items", "", nil)
		if r.Status != 404 {
			t.Fatalf("a {name} never spans segments: %d %s", r.Status, r.Body)
		}
	})

	t.Run("auth", func(t *testing.T) {
		tok := Token(t, "alice")
		for name, url := range map[string]string{
			"RIG 1 not_secured false": edge + "/private/detail/7",
			"RIG 3 secured true":      edge + "/private/secured",
		} {
			for _, h := range []http.Header{nil, {"Authorization": {"Bearer " + wrongKeyToken(t, "alice")}},
				{"Authorization": {"Bearer " + Token(t, "alice", TokenOpts{TTL: -time.Minute})}}} {
				r := Get(t, url, h)
				if r.Status != 401 || r.GatewayMessage(t) != "Missing or invalid token" {
					t.Fatalf("%s without a valid token: %d %s", name, r.Status, r.Body)
				}
			}
			for how, h := range map[string]http.Header{
				"Bearer header": {"Authorization": {"Bearer " + tok}},
				"bare header":   {"Authorization": {tok}},
			} {
				if e := Get(t, url, h).Echo(t); e.Method != "GET" {
					t.Fatalf("%s with a %s: %+v", name, how, e)
				}
			}
			if e := Get(t, url+"?jwt="+tok).Echo(t); !strings.Contains(e.RawQuery, "jwt=") {
				t.Fatalf("%s with the token in the query: %+v", name, e)
			}
		}
		for _, p := range []string{"/private/free", "/private/free3"} {
			Get(t, edge+p).Echo(t)
		}
	})

	t.Run("upstream down 502, slow 504", func(t *testing.T) {
		r := Get(t, edge+"/down")
		if r.Status != 502 || r.GatewayMessage(t) != "Bad gateway." {
			t.Fatalf("down: %d %s", r.Status, r.Body)
		}
		start := time.Now()
		r = Get(t, edge+"/slow")
		took := time.Since(start)
		if r.Status != 504 || r.GatewayMessage(t) != "Gateway timeout." {
			t.Fatalf("slow: %d %s", r.Status, r.Body)
		}
		if took < 500*time.Millisecond || took > 5*time.Second {
			t.Fatalf("504 after %s, want about PROXY_RECV_TIMEOUT=500ms", took)
		}
		t.Logf("504 after %s (PROXY_RECV_TIMEOUT=500ms)", took.Round(time.Millisecond))
	})

	t.Run("the edge's own endpoints come first", func(t *testing.T) {
		// "/{a}/{b}" would match both; neither is forwarded.
		r := Get(t, edge+"/health/ready")
		if r.Status != 200 || r.Header.Get("X-Upstream") != "" {
			t.Fatalf("/health/ready: %d %s", r.Status, r.Body)
		}
		r = Get(t, edge+"/socket/unknown")
		if r.Status != 404 || r.ErrorMessage(t) == "" {
			t.Fatalf("/socket/unknown: %d %s", r.Status, r.Body)
		}
		Get(t, edge+"/other/two").Echo(t)
		s := MustSSE(t, edge+"/socket/sse?token="+Token(t, "alice"))
		s.Close()
	})
}

// TestGatewayStreams: a streamed (chunked) answer reaches the client piece
// by piece: the client reads each piece before the upstream writes the next.
func TestGatewayStreams(t *testing.T) {
	up := StartUpstream(t)
	st := StartStack(t, map[string]string{
		"PROXY_CONFIG_FILE":         WriteRoutes(t, gatewayRoutes(up, FreePort(t))),
		"PROXY_ALLOW_LOCAL_TARGETS": "true", // the upstream is on loopback
		"PROXY_USE_ENV_ALLOWLIST":   "PRIVATE_HOST",
		"PRIVATE_HOST":              "127.0.0.1",
	}, nil)
	resp, err := http.Get(st.Edge.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		r := bufio.NewReader(resp.Body)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			lines <- l
		}
	}()
	for i := 1; i <= 3; i++ {
		select {
		case l := <-lines:
			if l != fmt.Sprintf("piece %d\n", i) {
				t.Fatalf("got %q, want piece %d", l, i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("piece %d did not arrive while the upstream waits to write the next", i)
		}
		// The upstream wrote piece i and waits; only now may it go on.
		if w := <-up.StreamWrote; w != i {
			t.Fatalf("upstream wrote piece %d, want %d", w, i)
		}
		if i < 3 {
			up.StreamNext <- struct{}{}
		}
	}
	select {
	case l, ok := <-lines:
		if ok {
			t.Fatalf("after the last piece: %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end after the upstream finished")
	}
}

// TestGatewayRateLimit: RIG's RATE_LIMIT_* settings: a token bucket per
// upstream and client IP; beyond its burst, 429.
func TestGatewayRateLimit(t *testing.T) {
	up := StartUpstream(t)
	st := StartStack(t, map[string]string{
		"PROXY_CONFIG_FILE":            WriteRoutes(t, gatewayRoutes(up, FreePort(t))),
		"PROXY_ALLOW_LOCAL_TARGETS":    "true", // the upstream is on loopback
		"PROXY_USE_ENV_ALLOWLIST":      "PRIVATE_HOST",
		"PRIVATE_HOST":                 "127.0.0.1",
		"RATE_LIMIT_ENABLED":           "true",
		"RATE_LIMIT_PER_IP":            "true",
		"RATE_LIMIT_AVG_RATE_PER_SEC":  "1",
		"RATE_LIMIT_BURST_SIZE":        "3",
		"RATE_LIMIT_SWEEP_INTERVAL_MS": "1000",
	}, nil)
	start := time.Now()
	var codes []int
	for range 6 {
		codes = append(codes, Get(t, st.Edge.URL+"/echo/1").Status)
	}
	took := time.Since(start)
	ok := 0
	for _, c := range codes {
		if c == 200 {
			ok++
		}
	}
	// 3 at once, then 1 a second.
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 200 || ok > 3+int(took.Seconds()) {
		t.Fatalf("statuses %v in %s, want 3 then 429s", codes, took)
	}
	r := Get(t, st.Edge.URL+"/echo/1")
	if r.Status != 429 || r.GatewayMessage(t) != "Too many requests." {
		t.Fatalf("over the limit: %d %s", r.Status, r.Body)
	}
	// Another upstream has its own bucket.
	Get(t, st.Edge.URL+"/private/free").Echo(t)
	// Refused requests are not forwarded, and never reach the edge's own endpoints.
	if s := status(st.Edge.URL + "/health"); s != 200 {
		t.Fatalf("/health under the rate limit: %d", s)
	}
}

// TestGatewayRoutesFromCluster: routes added, changed and removed through
// ingest's /v1/apis reach both edges within a second, without a restart;
// a cluster route replaces a route file's of the same id until deleted
// (PROXY_ALLOW_FILE_ROUTE_OVERRIDE).
func TestGatewayRoutesFromCluster(t *testing.T) {
	up := StartUpstream(t)
	nats := StartNATS(t)
	fileRoutes := fmt.Sprintf(`[{"id": "filed",
	  "version_data": {"default": {"endpoints": [{"id": "e", "path": "/filed/{x}", "method": "GET"}]}},
	  "proxy": {"target_url": "127.0.0.1", "port": %d}}]`, up.Port)
	// The upstream is on loopback; and here a cluster route may replace
	// a file route (TestRouteGuardFileRoutes has the default).
	local := map[string]string{"PROXY_ALLOW_LOCAL_TARGETS": "true", "PROXY_ALLOW_FILE_ROUTE_OVERRIDE": "true"}
	envA, envB, envI := EdgeEnv(FreePort(t), nats.URL), EdgeEnv(FreePort(t), nats.URL), IngestEnv(FreePort(t), nats.URL)
	for k, v := range local {
		envA[k], envB[k], envI[k] = v, v, v
	}
	envA["PROXY_CONFIG_FILE"] = WriteRoutes(t, fileRoutes)
	edges := []*Server{StartEdge(t, envA), StartEdge(t, envB)}
	ingest := StartIngest(t, envI)
	apis := ingest.URL + "/v1/apis"

	def := func(id, path string) []byte {
		return []byte(fmt.Sprintf(`{"id": %q, "name": %q, "auth_type": "none",
		  "version_data": {"default": {"endpoints": [{"id": "e", "path": %q, "method": "GET"}]}},
		  "proxy": {"use_env": false, "target_url": "http://127.0.0.1", "port": %d}}`, id, id, path, up.Port))
	}
	// onBoth waits until every edge answers url with want, and returns how
	// long that took.
	onBoth := func(t *testing.T, within time.Duration, url string, want int) time.Duration {
		t.Helper()
		start := time.Now()
		for _, e := range edges {
			check.For(t, within, 10*time.Millisecond, func() error {
				if got := status(e.URL + url); got != want {
					return fmt.Errorf("%s %s: want %d: got %v", e.Name, url, want, got)
				}
				return nil
			})
		}
		return time.Since(start)
	}

	// Both edges watch the bucket once this first route reaches them.
	if r := Do(t, "POST", apis, "application/json", def("warm-up", "/warm-up")); r.Status != 201 {
		t.Fatalf("POST warm-up: %d %s", r.Status, r.Body)
	}
	onBoth(t, 20*time.Second, "/warm-up", 200)

	// Add.
	if s := status(edges[0].URL + "/live/1"); s != 404 {
		t.Fatalf("before POST: %d", s)
	}
	r := Do(t, "POST", apis, "application/json", def("live", "/live/{id}"))
	if r.Status != 201 || r.Header.Get("Location") != "/v1/apis/live" {
		t.Fatalf("POST: %d %v %s", r.Status, r.Header, r.Body)
	}
	took := onBoth(t, time.Second, "/live/550e8400-e29b-41d4-a716-446655440000", 200)
	t.Logf("added route served by both edges after %s", took.Round(time.Millisecond))
	if e := Get(t, edges[1].URL+"/live/v1.2").Echo(t); e.Path != "/live/v1.2" {
		t.Fatalf("upstream saw %s", e.Path)
	}
	if r := Do(t, "POST", apis, "application/json", def("live", "/other")); r.Status != 409 {
		t.Fatalf("POST of an existing id: %d %s", r.Status, r.Body)
	} else {
		r.ErrorMessage(t)
	}

	// Read.
	r = Get(t, apis+"/live")
	var got struct {
		ID          string `json:"id"`
		VersionData struct {
			Default struct {
				Endpoints []struct{ Path string }
			}
		} `json:"version_data"`
	}
	r.JSON(t, &got)
	if r.Status != 200 || got.ID != "live" || got.VersionData.Default.Endpoints[0].Path != "/live/{id}" {
		t.Fatalf("GET: %d %s", r.Status, r.Body)
	}
	r = Get(t, apis)
	var list []struct{ ID string }
	r.JSON(t, &list)
	if r.Status != 200 || len(list) != 2 || list[0].ID != "live" || list[1].ID != "warm-up" {
		t.Fatalf("GET list: %d %s", r.Status, r.Body)
	}

	// A change that names a member twice is refused whole, not merged
	// with the last one winning.
	r = Do(t, "PUT", apis+"/live", "application/json", []byte(`{"version_data": {"default": {"endpoints": [{"id": "e", "path": "/dup/{id}", "method": "GET"}]}}, "version_data": {}}`))
	if r.Status != 400 || !strings.Contains(r.ErrorMessage(t), "version_data: appears more than once") {
		t.Fatalf("PUT with a repeated member: %d %s", r.Status, r.Body)
	}
	if r := Get(t, apis+"/live"); !strings.Contains(string(r.Body), "/live/{id}") {
		t.Fatalf("a refused PUT changed the API: %s", r.Body)
	}

	// Change.
	r = Do(t, "PUT", apis+"/live", "application/json", []byte(`{"version_data": {"default": {"endpoints": [{"id": "e", "path": "/live2/{id}", "method": "GET"}]}}}`))
	if r.Status != 200 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	took = onBoth(t, time.Second, "/live2/1", 200)
	onBoth(t, time.Second, "/live/1", 404)
	t.Logf("changed route served by both edges after %s", took.Round(time.Millisecond))

	// Delete.
	if r := Do(t, "DELETE", apis+"/live", "", nil); r.Status != 204 {
		t.Fatalf("DELETE: %d %s", r.Status, r.Body)
	}
	took = onBoth(t, time.Second, "/live2/1", 404)
	t.Logf("deleted route gone from both edges after %s", took.Round(time.Millisecond))
	for _, c := range []struct{ method, url string }{{"GET", apis + "/live"}, {"DELETE", apis + "/live"}, {"PUT", apis + "/live"}} {
		r := Do(t, c.method, c.url, "application/json", def("live", "/x"))
		if r.Status != 404 {
			t.Fatalf("%s of a deleted API: %d %s", c.method, r.Status, r.Body)
		}
		r.ErrorMessage(t)
	}
	// It can be added again.
	if r := Do(t, "POST", apis, "application/json", def("live", "/again")); r.Status != 201 {
		t.Fatalf("POST after DELETE: %d %s", r.Status, r.Body)
	}
	onBoth(t, time.Second, "/again", 200)

	// The cluster's "filed" replaces edge A's file route while it exists.
	if s := status(edges[0].URL + "/filed/1"); s != 200 {
		t.Fatalf("edge A's file route: %d", s)
	}
	if s := status(edges[1].URL + "/filed/1"); s != 404 {
		t.Fatalf("edge B has no route file: %d", s)
	}
	if r := Do(t, "POST", apis, "application/json", def("filed", "/filed-live")); r.Status != 201 {
		t.Fatalf("POST filed: %d %s", r.Status, r.Body)
	}
	onBoth(t, time.Second, "/filed-live", 200)
	onBoth(t, time.Second, "/filed/1", 404)
	if r := Do(t, "DELETE", apis+"/filed", "", nil); r.Status != 204 {
		t.Fatalf("DELETE filed: %d", r.Status)
	}
	check.For(t, time.Second, 10*time.Millisecond, func() error {
		if got := status(edges[0].URL + "/filed/1"); got != 200 {
			return fmt.Errorf("edge A serves its file's route again: got %v", got)
		}
		return nil
	})

	// Invalid definitions change nothing.
	for _, c := range []struct {
		body, contentType string
		status            int
		want              string
	}{
		{`{"id": "bad"`, "application/json", 400, "not valid JSON"},
		{`[]`, "application/json", 400, "expected a JSON object"},
		{string(def("bad id", "/x")), "application/json", 400, "id: expected"},
		{strings.Replace(string(def("bad", "/x")), `"GET"`, `"G T"`, 1), "application/json", 400, `API "bad": version_data.default.endpoints[0].method`},
		{strings.Replace(string(def("bad", "/x")), `"/x"`, `"/socket/x"`, 1), "application/json", 400, "belongs to the edge itself"},
		{string(def("bad", "/x")), "text/plain", 415, "Content-Type"},
	} {
		r := Do(t, "POST", apis, c.contentType, []byte(c.body))
		if r.Status != c.status || !strings.Contains(r.ErrorMessage(t), c.want) {
			t.Errorf("POST %s: %d %s, want %d with %q", c.body, r.Status, r.Body, c.status, c.want)
		}
	}
	r = Do(t, "PUT", apis+"/live", "application/json", []byte(`{"proxy": {"target_url": "ftp://x"}}`))
	if r.Status != 400 || !strings.Contains(r.ErrorMessage(t), "proxy.target_url") {
		t.Fatalf("invalid PUT: %d %s", r.Status, r.Body)
	}
	r = Do(t, "PUT", apis+"/live", "application/json", []byte(`{"id": "other"}`))
	if r.Status != 400 {
		t.Fatalf("PUT with another id: %d %s", r.Status, r.Body)
	}
	if s := status(edges[1].URL + "/again"); s != 200 {
		t.Fatalf("a refused PUT changed the route: %d", s)
	}
}

// TestGatewayBadRouteFile: a route file that cannot be used stops the edge
// at start with one line naming the API, the field and the problem.
func TestGatewayBadRouteFile(t *testing.T) {
	badPort := `[{"id": "svc", "version_data": {"default": {"endpoints": [{"id": "e", "path": "/a", "method": "GET"}]}},
	  "proxy": {"target_url": "http://h", "port": 70000}}]`
	badPath := `[{"id": "ok", "version_data": {"default": {"endpoints": []}}, "proxy": {"target_url": "h"}},
	  {"id": "svc", "auth_type": "jwt", "version_data": {"default": {"endpoints": [{"id": "e", "path": "a/{id}", "method": "GET"}]}},
	  "proxy": {"target_url": "h"}}]`
	f1, f2 := WriteRoutes(t, badPort), WriteRoutes(t, badPath)
	cases := []struct{ value, want string }{
		{f1, `edge: invalid PROXY_CONFIG_FILE="` + f1 + `": API "svc": proxy.port: expected a port number from 1 to 65535, got 70000`},
		{f2, `edge: invalid PROXY_CONFIG_FILE="` + f2 + `": API "svc": version_data.default.endpoints[0].path: expected a path starting with "/", got "a/{id}"`},
		{"/nonexistent/routes.json", `edge: invalid PROXY_CONFIG_FILE="/nonexistent/routes.json": open /nonexistent/routes.json: no such file or directory`},
		{`[{"id": "env", "version_data": {"default": {"endpoints": []}}, "proxy": {"use_env": true, "target_url": "NOT_SET_ANYWHERE"}}]`,
			`edge: invalid PROXY_CONFIG_FILE=(JSON): API "env": proxy.target_url: environment variable NOT_SET_ANYWHERE (use_env) is not set`},
	}
	for _, c := range cases {
		env := EdgeEnv(FreePort(t), "nats://127.0.0.1:1")
		env["PROXY_CONFIG_FILE"] = c.value
		env["PROXY_USE_ENV_ALLOWLIST"] = "NOT_SET_ANYWHERE"
		cmd := exec.Command(bin.edge)
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if err == nil || code != 1 {
			t.Errorf("PROXY_CONFIG_FILE=%s: exit code %d (%v), want 1", c.value, code, err)
		}
		if got := stderr.String(); got != c.want+"\n" {
			t.Errorf("stderr:\n%q\nwant the one line\n%q", got, c.want+"\n")
		}
		if stdout.Len() > 0 {
			t.Errorf("stdout: %q", stdout.String())
		}
	}
}

// TestGatewayRefusesBlacklistedSession: a secured route refuses a token
// whose session is blacklisted, like the connection endpoints (RIG forgot).
func TestGatewayRefusesBlacklistedSession(t *testing.T) {
	up := StartUpstream(t)
	st := StartStack(t, map[string]string{
		"PROXY_CONFIG_FILE":         WriteRoutes(t, gatewayRoutes(up, FreePort(t))),
		"PROXY_ALLOW_LOCAL_TARGETS": "true", // the upstream is on loopback
		"PROXY_USE_ENV_ALLOWLIST":   "PRIVATE_HOST",
		"PRIVATE_HOST":              "http://127.0.0.1",
	}, nil)
	tok := Token(t, "alice", TokenOpts{JTI: "gateway-session"})
	other := Token(t, "alice", TokenOpts{JTI: "gateway-other"})
	auth := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	if r := Get(t, st.Edge.URL+"/private/secured", auth(tok)); r.Status != 200 {
		t.Fatalf("before blacklisting: %d %s", r.Status, r.Body)
	}
	Blacklist(t, st.Ingest.URL, "gateway-session", 60)
	check.For(t, 2*time.Second, 10*time.Millisecond, func() error {
		if got := Get(t, st.Edge.URL+"/private/secured", auth(tok)).Status; got != 401 {
			return fmt.Errorf("blacklisted session still forwarded: got %v", got)
		}
		return nil
	})
	r := Get(t, st.Edge.URL+"/private/secured", auth(tok))
	if msg := r.GatewayMessage(t); msg != "Missing or invalid token" {
		t.Fatalf("message %q", msg)
	}
	if r := Get(t, st.Edge.URL+"/private/secured", auth(other)); r.Status != 200 {
		t.Fatalf("another session of the same user: %d", r.Status)
	}
	if r := Get(t, st.Edge.URL+"/private/free"); r.Status != 200 {
		t.Fatalf("unsecured endpoint: %d", r.Status)
	}
}
