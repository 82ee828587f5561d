package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metricsql"

	"github.com/rig-go/rig/internal/check"
)

// adminToken is the API token of the admin tests' ingest.
const adminToken = "admin-e2e-token-0123456789"

// adminRun is one run of the real `ingest admin`.
type adminRun struct {
	Stdout, Stderr string
	Code           int
}

// runAdmin runs `ingest admin args...` against url with token (none when
// empty), as a script would.
func runAdmin(t testing.TB, url, token string, args ...string) adminRun {
	t.Helper()
	cmd := exec.Command(bin.ingest, append([]string{"admin"}, args...)...)
	cmd.Env = []string{"INGEST_URL=" + url}
	if token != "" {
		cmd.Env = append(cmd.Env, "API_TOKEN="+token)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := adminRun{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("ingest admin %v: %v", args, err)
	}
	return r
}

// mustAdmin runs `ingest admin` and fails the test unless it succeeds.
func mustAdmin(t testing.TB, url string, args ...string) string {
	t.Helper()
	r := runAdmin(t, url, adminToken, args...)
	if r.Code != 0 {
		t.Fatalf("ingest admin %v: exit %d\n%s%s", args, r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// adminStack is a stack whose ingest wants adminToken and knows the
// edge's route file.
func adminStack(t *testing.T) *Stack {
	t.Helper()
	routes := WriteRoutes(t, `[{"id": "filed", "version_data": {"default": {"endpoints": [{"id": "e", "path": "/filed", "method": "GET", "not_secured": true}]}}, "proxy": {"target_url": "users.example", "port": 8080}}]`)
	return StartStack(t, map[string]string{"PROXY_CONFIG_FILE": routes, "EDGE_ID": "edge-admin"},
		map[string]string{"API_TOKENS": adminToken, "PROXY_CONFIG_FILE": routes})
}

// TestAdminSessionsKillSend: `ingest admin sessions` finds a live SSE
// session with its transport, edge, remote address and expiry (table and
// JSON, by user and by search); `send` reaches the stream; `kill` without
// --for blacklists it until its token expires, the stream gets
// session_killed, and the session leaves the listing.
func TestAdminSessionsKillSend(t *testing.T) {
	st := adminStack(t)
	url := st.Ingest.URL
	jti := fmt.Sprintf("admin-jti-%d", time.Now().UnixNano())
	stream := MustSSE(t, sseURL(st.Edge.URL, Token(t, "alice", TokenOpts{JTI: jti, TTL: 30 * time.Minute})))
	other := MustSSE(t, sseURL(st.Edge.URL, Token(t, "bob", TokenOpts{JTI: "bob-spared"})))

	var table string
	check.For(t, 15*time.Second, 50*time.Millisecond, func() error {
		table = mustAdmin(t, url, "sessions")
		if !strings.Contains(table, jti) || !strings.Contains(table, "bob-spared") {
			return fmt.Errorf("sessions do not list both yet:\n%s", table)
		}
		return nil
	})
	lines := strings.Split(table, "\n")
	if !strings.HasPrefix(lines[0], "USER") || !strings.Contains(lines[0], "REMOTE") || !strings.Contains(table, "2 of 2 sessions, from 1 edges") {
		t.Fatalf("table:\n%s", table)
	}
	for _, l := range lines {
		if strings.Contains(l, jti) {
			f := strings.Fields(l)
			if len(f) < 7 || f[0] != "alice" || f[2] != "sse" || f[3] != "edge-admin" || f[4] != "127.0.0.1" {
				t.Fatalf("alice's row %q", l)
			}
		}
	}
	var page struct {
		Sessions []struct {
			JTI, User, Transport, Edge, Remote string
			Expires                            time.Time
		}
		Total int
	}
	if err := json.Unmarshal([]byte(mustAdmin(t, url, "sessions", "--user", "alice", "--json")), &page); err != nil {
		t.Fatal(err)
	}
	if page.Total != 1 || len(page.Sessions) != 1 || page.Sessions[0].JTI != jti || page.Sessions[0].Remote != "127.0.0.1" ||
		time.Until(page.Sessions[0].Expires) < 25*time.Minute || time.Until(page.Sessions[0].Expires) > 31*time.Minute {
		t.Fatalf("--user alice --json: %+v", page)
	}
	if out := mustAdmin(t, url, "sessions", "--limit", "1"); !strings.Contains(out, "1 of 2 sessions") || strings.Count(out, "\n") != 3 {
		t.Fatalf("--limit 1:\n%s", out)
	}
	if out := mustAdmin(t, url, "sessions", "--q", "bob-sp"); !strings.Contains(out, "bob-spared") || strings.Contains(out, jti) {
		t.Fatalf("--q bob-sp:\n%s", out)
	}

	out := mustAdmin(t, url, "send", "alice", `{"text": "hello from the console", "n": 1.50}`)
	if !strings.HasPrefix(out, "stored and published to alice: id ") {
		t.Fatalf("send: %q", out)
	}
	ev := stream.NextMessage(t, 5*time.Second)
	if !strings.Contains(ev.Data, `"text":"hello from the console"`) || !strings.Contains(ev.Data, `"n":1.50`) || !strings.Contains(out, ev.ID) {
		t.Fatalf("alice got %+v after %q", ev, out)
	}
	if r := runAdmin(t, url, adminToken, "send", "alice", `{"user": "mallory"}`); r.Code != 1 || !strings.Contains(r.Stderr, `the message's "user" is mallory, not "alice"`) {
		t.Fatalf("send with another user: %+v", r)
	}

	start := time.Now()
	out = mustAdmin(t, url, "kill", jti)
	stream.WaitKilled(t, start.Add(3*time.Second))
	t.Logf("kill: %s; session_killed after %s", strings.TrimSpace(out), time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out, "session "+jti+" blacklisted for 29m") && !strings.Contains(out, "session "+jti+" blacklisted for 30m") {
		t.Fatalf("kill without --for should last until the token expires (30m): %q", out)
	}
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		if out := mustAdmin(t, url, "sessions"); strings.Contains(out, jti) || !strings.Contains(out, "1 of 1 sessions") {
			return fmt.Errorf("killed session still listed:\n%s", out)
		}
		return nil
	})
	// Bob's session was spared: it gets his next message, not session_killed.
	if id := mustAdmin(t, url, "send", "bob", `{"still": "here"}`, "--json"); !strings.Contains(id, `"id"`) {
		t.Fatalf("send --json: %q", id)
	}
	if ev := other.NextMessage(t, 5*time.Second); !strings.Contains(ev.Data, `"still":"here"`) {
		t.Fatalf("bob got %+v", ev)
	}
	var st2 struct {
		SessionID         string
		ValidityInSeconds int
	}
	if err := json.Unmarshal([]byte(mustAdmin(t, url, "kill", "bob-spared", "--for", "90s", "--json")), &st2); err != nil || st2.SessionID != "bob-spared" || st2.ValidityInSeconds != 90 {
		t.Fatalf("kill --for 90s --json: %+v %v", st2, err)
	}
	other.WaitKilled(t, time.Now().Add(3*time.Second))
	if r := runAdmin(t, url, adminToken, "kill", "nobody-here"); r.Code != 1 || !strings.Contains(r.Stderr, `session "nobody-here" has no connection now`) {
		t.Fatalf("kill of an unknown session without --for: %+v", r)
	}
}

// TestAdminRoutesHealth: `routes` lists the file's route and a runtime
// one, marked; `health` reports ingest, NATS, the three streams and the
// edge, ready.
func TestAdminRoutesHealth(t *testing.T) {
	st := adminStack(t)
	url := st.Ingest.URL
	auth := http.Header{"Authorization": {"Bearer " + adminToken}}
	if r := Do(t, "POST", url+"/v1/apis", "application/json", routeDef("runtime-one", "/rt", `{"target_url": "users.example", "port": 8081}`), auth); r.Status != 201 {
		t.Fatalf("POST /v1/apis: %d %s", r.Status, r.Body)
	}
	out := mustAdmin(t, url, "routes")
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	if f := rows["filed"]; len(f) != 5 || f[1] != "file" || f[2] != "GET" || f[3] != "/filed" || f[4] != "users.example:8080" {
		t.Fatalf("file route row %q in\n%s", f, out)
	}
	if f := rows["runtime-one"]; len(f) != 5 || f[1] != "runtime" || f[4] != "users.example:8081" {
		t.Fatalf("runtime route row %q in\n%s", f, out)
	}
	var list []struct{ ID, Source string }
	if err := json.Unmarshal([]byte(mustAdmin(t, url, "routes", "--json")), &list); err != nil || len(list) != 2 || list[0].Source != "file" || list[1].Source != "runtime" {
		t.Fatalf("routes --json: %+v %v", list, err)
	}

	var h struct {
		Status  string
		NATS    struct{ Status string }
		Streams []struct {
			Name string
			OK   bool
		}
		Edges []struct {
			Edge   string
			Status struct{ Ready bool }
		}
	}
	check.For(t, 15*time.Second, 100*time.Millisecond, func() error {
		if err := json.Unmarshal([]byte(mustAdmin(t, url, "health", "--json")), &h); err != nil {
			return err
		}
		if h.Status != "ok" || h.NATS.Status != "CONNECTED" || len(h.Streams) != 3 || len(h.Edges) != 1 || h.Edges[0].Edge != "edge-admin" || !h.Edges[0].Status.Ready {
			return fmt.Errorf("health %+v", h)
		}
		return nil
	})
	out = mustAdmin(t, url, "health")
	for _, want := range []string{"status: ok", "ingest", "edge edge-admin", "ready", "RIG_HISTORY", "KV_RIG_BLACKLIST", "KV_RIG_APIS", "connected"} {
		if !strings.Contains(out, want) {
			t.Fatalf("health lacks %q:\n%s", want, out)
		}
	}
	t.Logf("ingest admin health:\n%s", out)
}

// TestAdminErrors: a missing or wrong token, an ingest that is not there,
// and bad arguments are each one line on stderr and exit code 1.
func TestAdminErrors(t *testing.T) {
	st := adminStack(t)
	url := st.Ingest.URL
	nobody := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
	for _, c := range []struct {
		url, token string
		args       []string
		want       string
	}{
		{url, "", []string{"sessions"}, "GET /v1/admin/sessions?limit=100: 401 this API needs Authorization: Bearer <one of API_TOKENS> (give one of ingest's API_TOKENS with --token or API_TOKEN)"},
		{url, "wrong-token", []string{"health"}, "403 the bearer token is not one of API_TOKENS"},
		{url, "wrong-token", []string{"kill", "x", "--for", "1h"}, "POST /v1/session-blacklist: 403"},
		{nobody, adminToken, []string{"routes"}, "cannot reach ingest at " + nobody + " (--url, INGEST_URL): dial tcp"},
		{url, adminToken, []string{"kill"}, "admin kill: expected 1 argument(s), got 0"},
		{url, adminToken, []string{"kill", "x", "--for", "10ms"}, "admin kill: invalid --for=10ms"},
		{url, adminToken, []string{"send", "alice", "[1]"}, "admin send: the message must be one JSON object"},
		{url, adminToken, []string{"send", "", "{}"}, `POST /v1/admin/messages?wait=5s: 400 field "user": invalid user id: empty`},
		{url, adminToken, []string{"send", "", "{}", "--wait", "0"}, `POST /v1/messages: 400`},
		{url, "wrong-token", []string{"send", "alice", "{}"}, "POST /v1/admin/messages?wait=5s: 403"},
		{url, adminToken, []string{"send", "alice", "{}", "--wait", "1m"}, "admin send: invalid --wait=1m0s"},
		{url, adminToken, []string{"frobnicate"}, `admin: unknown command "frobnicate"`},
		{"ftp://x", adminToken, []string{"health"}, `admin: invalid --url="ftp://x"`},
	} {
		r := runAdmin(t, c.url, c.token, c.args...)
		lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
		last := lines[len(lines)-1]
		if r.Code != 1 || !strings.Contains(last, c.want) || r.Stdout != "" {
			t.Errorf("ingest admin %v: exit %d, stdout %q, stderr %q; want exit 1 and %q", c.args, r.Code, r.Stdout, r.Stderr, c.want)
		}
		if !strings.Contains(c.want, "unknown command") && len(lines) != 1 {
			t.Errorf("ingest admin %v: %d lines on stderr, want one:\n%s", c.args, len(lines), r.Stderr)
		}
	}
}

// TestAdminAPIRefusals: the admin API asks for the token like the rest
// of /v1, and refuses parameters no page answers with a 400 naming them;
// a forged but well-formed cursor only moves where the page starts.
func TestAdminAPIRefusals(t *testing.T) {
	st := adminStack(t)
	auth := http.Header{"Authorization": {"Bearer " + adminToken}}
	for _, path := range []string{"/v1/admin/sessions", "/v1/admin/health"} {
		if r := Do(t, "GET", st.Ingest.URL+path, "", nil); r.Status != 401 || !strings.Contains(r.ErrorMessage(t), "API_TOKENS") {
			t.Errorf("%s without a token: %d %s", path, r.Status, r.Body)
		}
		if r := Do(t, "GET", st.Ingest.URL+path, "", nil, http.Header{"Authorization": {"Bearer " + adminToken + "x"}}); r.Status != 403 {
			t.Errorf("%s with a wrong token: %d %s", path, r.Status, r.Body)
		}
	}
	for q, want := range map[string]string{
		"limit=99999999999999999999":          "limit=",
		"limit=-1":                            "limit=",
		"limit=1e3":                           "limit=",
		"cursor=" + strings.Repeat("A", 3000): "cursor: not a cursor returned by a previous page: not a cursor's JSON",
		"cursor=eyJ1IjoxfQ":                   "cursor: not a cursor", // {"u":1}
		"q=" + strings.Repeat("x", 300):       "q: expected valid UTF-8 of at most 256 bytes, got 300 bytes",
	} {
		r := Do(t, "GET", st.Ingest.URL+"/v1/admin/sessions?"+q, "", nil, auth)
		if r.Status != 400 || !strings.Contains(r.ErrorMessage(t), want) {
			t.Errorf("?%.50s: %d %s, want 400 %q", q, r.Status, r.Body, want)
		}
	}
	// Past the server's request buffer: a bounded refusal before any handler.
	if r := Do(t, "GET", st.Ingest.URL+"/v1/admin/sessions?cursor="+strings.Repeat("A", 5000), "", nil, auth); r.Status != 431 {
		t.Errorf("a 5000-byte cursor: %d %s", r.Status, r.Body)
	}
	MustSSE(t, sseURL(st.Edge.URL, Token(t, "carol", TokenOpts{JTI: "carol-1"})))
	forged, _ := json.Marshal(map[string]any{"u": "carol", "j": "carol-1", "e": "zzz", "c": 1})
	check.For(t, 15*time.Second, 50*time.Millisecond, func() error {
		var all, after struct{ Sessions []struct{ JTI string } }
		Do(t, "GET", st.Ingest.URL+"/v1/admin/sessions", "", nil, auth).JSON(t, &all)
		Do(t, "GET", st.Ingest.URL+"/v1/admin/sessions?cursor="+base64.RawURLEncoding.EncodeToString(forged), "", nil, auth).JSON(t, &after)
		if len(all.Sessions) != 1 || len(after.Sessions) != 0 {
			return fmt.Errorf("all %+v, after a forged cursor past carol %+v", all, after)
		}
		return nil
	})
}

// grafanaVars are what Grafana puts for the dashboard's variables, so
// that its expressions parse as Prometheus sees them.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$edge_job", "rig-edge", "$ingest_job", "rig-ingest")

// promQLFuncs are the functions and aggregations the dashboard may use:
// Prometheus's own, so that the parser's MetricsQL extensions do not slip in.
var promQLFuncs = map[string]bool{"sum": true, "min": true, "max": true, "rate": true, "increase": true, "histogram_quantile": true}

// dashboardExprs returns every panel's expressions, by panel title.
func dashboardExprs(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Type, Title string
		Targets     []struct{ Expr string }
		Panels      json.RawMessage
	}
	var d struct {
		UID, Title string
		Panels     []panel
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: no uid, title or panels", path)
	}
	out := map[string][]string{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], tg.Expr)
		}
	}
	return out
}

// metricNames parses a PromQL expression and returns the metric names it
// selects, failing on a function Prometheus lacks.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := metricsql.Parse(grafanaVars.Replace(expr))
	if err != nil {
		t.Errorf("%q does not parse: %v", expr, err)
		return nil
	}
	var names []string
	metricsql.VisitAll(e, func(e metricsql.Expr) {
		switch e := e.(type) {
		case *metricsql.MetricExpr:
			for _, lfs := range e.LabelFilterss {
				if len(lfs) == 0 || lfs[0].Label != "__name__" {
					t.Errorf("%q selects series without a metric name", expr)
					continue
				}
				names = append(names, lfs[0].Value)
			}
		case *metricsql.FuncExpr:
			if !promQLFuncs[e.Name] {
				t.Errorf("%q uses %s, not one of the dashboard's PromQL functions", expr, e.Name)
			}
		case *metricsql.AggrFuncExpr:
			if !promQLFuncs[e.Name] {
				t.Errorf("%q uses %s, not one of the dashboard's PromQL aggregations", expr, e.Name)
			}
		}
	})
	if len(names) == 0 {
		t.Errorf("%q names no metric", expr)
	}
	return names
}

// scrapedNames returns the names of the samples a /metrics answer has.
func scrapedNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	r := Do(t, "GET", url, "", nil)
	if r.Status != 200 {
		t.Fatalf("GET %s: %d", url, r.Status)
	}
	names := map[string]bool{}
	for _, l := range strings.Split(string(r.Body), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			names[l[:i]] = true
		}
	}
	return names
}

// TestGrafanaDashboardMetrics: every expression of deploy/grafana's
// dashboard parses, and every metric it names (a histogram's _bucket,
// _sum and _count included) is a series that a real edge or ingest
// exports once there has been traffic: connections, messages, a refusal,
// a blacklisting.
func TestGrafanaDashboardMetrics(t *testing.T) {
	exprs := dashboardExprs(t, "../deploy/grafana/rig-go.json")
	st := StartStack(t, map[string]string{"MAX_CONNECTIONS_PER_USER": "1"}, nil)
	s := MustSSE(t, sseURL(st.Edge.URL, Token(t, "grafana", TokenOpts{JTI: "grafana-1"})))
	if status, _ := SSEStatus(t, sseURL(st.Edge.URL, Token(t, "grafana", TokenOpts{JTI: "grafana-2"}))); status != 429 && status != 503 {
		t.Fatalf("second connection of a user limited to 1: %d", status)
	}
	id := Post(t, st.Ingest.URL, map[string]any{"user": "grafana", "n": 1})
	if ev := s.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("got %+v, want %s", ev, id)
	}
	if r := Do(t, "POST", st.Ingest.URL+"/v1/session-blacklist", "application/json", []byte(`{"sessionId":"grafana-1","validityInSeconds":60}`)); r.Status != 201 {
		t.Fatalf("blacklist: %d %s", r.Status, r.Body)
	}
	s.WaitKilled(t, time.Now().Add(5*time.Second))

	// Parsed once: a parse error is reported once, not at every poll.
	used := map[string][]string{} // metric name -> panels
	for title, es := range exprs {
		for _, e := range es {
			for _, n := range metricNames(t, e) {
				used[n] = append(used[n], title)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	check.For(t, 10*time.Second, 100*time.Millisecond, func() error {
		exported := scrapedNames(t, st.Edge.OpsURL+"/metrics")
		for n := range scrapedNames(t, st.Ingest.URL+"/metrics") {
			exported[n] = true
		}
		var missing []string
		for n, titles := range used {
			if !exported[n] {
				missing = append(missing, fmt.Sprintf("%s (panels %q)", n, titles))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("metrics no binary exports: %v", missing)
		}
		return nil
	})
	n := 0
	for _, es := range exprs {
		n += len(es)
	}
	t.Logf("%d panels, %d expressions, %d metrics: every one exported", len(exprs), n, len(used))
}

// TestAdminCluster: on three NATS nodes and two edges, `ingest admin
// sessions` lists the sessions of both edges, `send` is confirmed by both,
// and `health` shows each stream's leader and current replicas; with a node stopped, the replicas
// on it are offline or lagging and the status is degraded.
func TestAdminCluster(t *testing.T) {
	top := StartTopology(t, nil, map[string]string{"API_TOKENS": adminToken})
	url := top.Ingest.URL
	for i, e := range top.Edges {
		MustSSE(t, sseURL(e.URL, Token(t, "dave", TokenOpts{JTI: fmt.Sprintf("dave-%d", i+1)})))
	}
	check.For(t, 15*time.Second, 100*time.Millisecond, func() error {
		out := mustAdmin(t, url, "sessions", "--user", "dave")
		if !strings.Contains(out, "2 of 2 sessions, from 2 edges") || !strings.Contains(out, "edge-1") || !strings.Contains(out, "edge-2") {
			return fmt.Errorf("sessions:\n%s", out)
		}
		return nil
	})
	type health struct {
		Status  string
		NATS    struct{ Servers []string }
		Streams []struct {
			Name, Leader string
			Replicas     int
			Peers        []struct {
				Name             string
				Current, Offline bool
			}
			OK bool
		}
		Edges []struct {
			Edge   string
			Status struct{ Ready bool }
		}
	}
	var h health
	check.For(t, 30*time.Second, 200*time.Millisecond, func() error {
		h = health{}
		if err := json.Unmarshal([]byte(mustAdmin(t, url, "health", "--json")), &h); err != nil {
			return err
		}
		if h.Status != "ok" || len(h.Edges) != 2 || len(h.NATS.Servers) < 3 {
			return fmt.Errorf("health %+v", h)
		}
		for _, s := range h.Streams {
			if !s.OK || s.Replicas != 3 || s.Leader == "" || len(s.Peers) != 2 {
				return fmt.Errorf("stream %+v", s)
			}
		}
		return nil
	})
	// A test send across the cluster: each edge's receipt reaches ingest,
	// whichever node each is connected to.
	if out := mustAdmin(t, url, "send", "dave", `{"cluster": true}`); !strings.Contains(out, "delivered to 2 of 2 connections") ||
		!strings.Contains(out, "edge-1  sse") || !strings.Contains(out, "edge-2  sse") {
		t.Fatalf("send across the cluster:\n%s", out)
	}
	// Stop a node that is not the history stream's leader.
	var victim *ClusterNode
	for _, n := range top.NATS {
		if n.Name != h.Streams[0].Leader {
			victim = n
			break
		}
	}
	victim.Stop()
	check.For(t, 30*time.Second, 200*time.Millisecond, func() error {
		h = health{}
		if err := json.Unmarshal([]byte(mustAdmin(t, url, "health", "--json")), &h); err != nil {
			return err
		}
		if h.Status != "degraded" {
			return fmt.Errorf("status %s with %s stopped", h.Status, victim.Name)
		}
		for _, p := range h.Streams[0].Peers {
			if p.Name == victim.Name && (p.Offline || !p.Current) {
				return nil
			}
		}
		return fmt.Errorf("history stream peers %+v with %s stopped", h.Streams[0].Peers, victim.Name)
	})
	out := mustAdmin(t, url, "health")
	if !strings.Contains(out, "status: degraded") || !strings.Contains(out, victim.Name+" offline") && !strings.Contains(out, victim.Name+" lagging") {
		t.Fatalf("health with %s stopped:\n%s", victim.Name, out)
	}
	t.Logf("ingest admin health with %s stopped:\n%s", victim.Name, out)
}

// TestAdminSecuredNATS: with the NATS users of nats/secured, ingest's own
// credential is enough for the admin API: the streams' info and the
// account's for health, presence for sessions, the receipts of a test
// send (which the edge's credential lets it publish); no permissions
// violation.
func TestAdminSecuredNATS(t *testing.T) {
	sec := GenSecure(t)
	url := startSecuredNATS(t, sec)
	ingest := StartIngest(t, with(IngestEnv(FreePort(t), url), append(maps(sec.ClientEnv("ingest")), "API_TOKENS", adminToken)...))
	edge := StartEdge(t, with(EdgeEnv(FreePort(t), url), append(maps(sec.ClientEnv("edge")), "EDGE_ID", "edge-secured")...))
	erin := MustSSE(t, sseURL(edge.URL, Token(t, "erin", TokenOpts{JTI: "erin-1"})))
	check.For(t, 20*time.Second, 100*time.Millisecond, func() error {
		var h struct {
			Status  string
			NATS    struct{ JetStream *struct{ Streams int } }
			Streams []struct {
				Name  string
				OK    bool
				Error string
			}
		}
		if err := json.Unmarshal([]byte(mustAdmin(t, ingest.URL, "health", "--json")), &h); err != nil {
			return err
		}
		if h.Status != "ok" || h.NATS.JetStream == nil || len(h.Streams) != 3 {
			return fmt.Errorf("health %+v", h)
		}
		if out := mustAdmin(t, ingest.URL, "sessions"); !strings.Contains(out, "erin-1") || !strings.Contains(out, "edge-secured") {
			return fmt.Errorf("sessions:\n%s", out)
		}
		return nil
	})
	// A test send's receipt: the edge may publish it, ingest receive it.
	if out := mustAdmin(t, ingest.URL, "send", "erin", `{"secured": true}`); !strings.Contains(out, "delivered to 1 of 1 connections") ||
		!strings.Contains(out, "edge-secured  sse") {
		t.Fatalf("send on secured NATS:\n%s", out)
	}
	erin.NextMessage(t, 5*time.Second)
	noViolations(t, edge, ingest)
}
