package e2e

// Routes that cannot be turned against the edge (issue 14, point 2): the
// three attacks through ingest's /v1/apis, each tried again against the
// real binaries, and the same routes written straight into the routes
// bucket (as a process with NATS access could), which the edges must
// refuse on their own.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/check"
)

// countingUpstream answers 200 "reached" on a free loopback port and
// counts the requests it gets.
type countingUpstream struct {
	Port int
	hits atomic.Int32
}

func startCountingUpstream(t *testing.T) *countingUpstream {
	t.Helper()
	u := &countingUpstream{Port: FreePort(t)}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", u.Port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		w.Write([]byte("reached"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return u
}

// routeDef is one API with one open endpoint at path, to proxy.
func routeDef(id, path, proxy string) []byte {
	return []byte(fmt.Sprintf(`{"id": %q, "version_data": {"default": {"endpoints": [{"id": "e", "path": %q, "method": "POST", "not_secured": true}]}}, "proxy": %s}`, id, path, proxy))
}

// putRouteKV writes a definition into the routes bucket directly, around
// ingest and its checks.
func putRouteKV(t *testing.T, natsURL, id string, def []byte) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var kv jetstream.KeyValue
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		kv, err = js.KeyValue(ctx, broker.APIsBucket) // the edge creates it
		return err
	})
	if _, err := kv.Put(ctx, broker.APIKey(id), def); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until a process's log holds every one of parts on one line.
func waitLog(t *testing.T, s *Server, parts ...string) {
	t.Helper()
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, line := range strings.Split(s.Logs(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return nil
			}
		}
		return fmt.Errorf("no log line with %q", parts)
	})
}

// refused checks a 400 JSON error that names field and says want.
func refused(t *testing.T, r Response, field, want string) {
	t.Helper()
	if r.Status != 400 {
		t.Fatalf("status %d %s, want 400 naming %s", r.Status, r.Body, field)
	}
	if msg := r.ErrorMessage(t); !strings.Contains(msg, field+": ") || !strings.Contains(msg, want) {
		t.Fatalf("error %q does not name %s with %q", msg, field, want)
	}
}

// TestRouteGuardIngestOwnAPI: a route to ingest's own port on
// 127.0.0.1 (which put ingest's unauthenticated API on the edge's public
// port) is refused with a 400 naming the field, as are other loopback,
// link-local and unspecified targets and the edge's own port, and nothing
// is stored; written into the bucket directly, the edge ignores it.
func TestRouteGuardIngestOwnAPI(t *testing.T) {
	st := StartStack(t, nil, nil)
	apis := st.Ingest.URL + "/v1/apis"
	attack := routeDef("attack", "/v1/messages", fmt.Sprintf(`{"target_url": "http://127.0.0.1", "port": %d}`, st.Ingest.Port))
	refused(t, Do(t, "POST", apis, "application/json", attack), "proxy.port", fmt.Sprintf("port %d is one of the stack's own", st.Ingest.Port))

	for _, c := range []struct{ proxy, field, want string }{
		{fmt.Sprintf(`{"target_url": "http://127.0.0.1:%d"}`, st.Ingest.Port), "proxy.target_url", "is one of the stack's own"},
		{fmt.Sprintf(`{"target_url": "http://127.0.0.1:%d"}`, st.Edge.Port), "proxy.target_url", "loopback address"}, // ingest knows the edge's ports as PROXY_STACK_PORTS only
		{`{"target_url": "http://127.0.0.1:8080"}`, "proxy.target_url", "loopback address, refused"},
		{`{"target_url": "http://[::1]:8080"}`, "proxy.target_url", "loopback address"},
		{`{"target_url": "http://[::ffff:127.0.0.1]:8080"}`, "proxy.target_url", "loopback address"},
		{`{"target_url": "http://169.254.169.254"}`, "proxy.target_url", "link-local address"},
		{`{"target_url": "http://[fe80::1%25lo]:80"}`, "proxy.target_url", "link-local address"},
		{`{"target_url": "http://0.0.0.0:8080"}`, "proxy.target_url", "unspecified"},
		{`{"target_url": "http://2130706433:8080"}`, "proxy.target_url", "standard form"},
		{`{"target_url": "http://0x7f.1:8080"}`, "proxy.target_url", "standard form"},
		{`{"target_url": "http://users.example:4001"}`, "proxy.target_url", "port 4001 is one of the stack's own"},
	} {
		refused(t, Do(t, "POST", apis, "application/json", routeDef("attack", "/v1/messages", c.proxy)), c.field, c.want)
	}
	// PUT is held to the same rules: a stored route cannot be moved there.
	ok := routeDef("fine", "/fine", `{"target_url": "http://users.example", "port": 8080}`)
	if r := Do(t, "POST", apis, "application/json", ok); r.Status != 201 {
		t.Fatalf("POST of a route to another host: %d %s", r.Status, r.Body)
	}
	refused(t, Do(t, "PUT", apis+"/fine", "application/json", []byte(`{"proxy": {"target_url": "localhost", "port": 8080}}`)),
		"proxy.target_url", `"localhost" resolves to`)
	if r := Get(t, apis); strings.Contains(string(r.Body), "attack") || strings.Contains(string(r.Body), "localhost") {
		t.Fatalf("a refused route was stored: %s", r.Body)
	}

	// Around ingest: the edge checks what it applies.
	putRouteKV(t, st.NATSURL, "attack", attack)
	waitLog(t, st.Edge, "invalid route in the cluster ignored", "api=attack", "loopback address, refused")
	r := Do(t, "POST", st.Edge.URL+"/v1/messages", "application/json", []byte(`{"user":"alice","text":"via the edge"}`))
	if r.Status != 404 {
		t.Fatalf("POST /v1/messages on the edge's public port: %d %s, want 404 (no route)", r.Status, r.Body)
	}
}

// TestRouteGuardFileRoutes: a secured file route cannot be turned into an
// open one by re-posting its id with not_secured: ingest, given the same
// route file, answers 409 to POST, PUT and DELETE; an ingest that does not
// know the file stores it, and the edge ignores it, as it ignores another
// id's route for the same path. Only with PROXY_ALLOW_FILE_ROUTE_OVERRIDE
// does a runtime route replace it.
func TestRouteGuardFileRoutes(t *testing.T) {
	up := startCountingUpstream(t)
	target := fmt.Sprintf(`{"target_url": "http://127.0.0.1", "port": %d}`, up.Port)
	file := WriteRoutes(t, fmt.Sprintf(`[{"id": "private", "auth_type": "jwt",
	  "version_data": {"default": {"endpoints": [{"id": "e", "path": "/private", "method": "POST"}]}},
	  "proxy": %s}]`, target))
	// Exactly the upstream allowed: an operator's choice, shown here.
	env := map[string]string{"PROXY_CONFIG_FILE": file, "PROXY_ALLOWED_TARGETS": "127.0.0.1:" + strconv.Itoa(up.Port)}
	st := StartStack(t, env, env)
	apis := st.Ingest.URL + "/v1/apis"
	open := routeDef("private", "/private", target)

	secured := func(edge *Server) {
		t.Helper()
		before := up.hits.Load()
		if r := Do(t, "POST", edge.URL+"/private", "application/json", []byte(`{}`)); r.Status != 401 {
			t.Fatalf("the secured file route without a token: %d %s, want 401", r.Status, r.Body)
		}
		if up.hits.Load() != before {
			t.Fatal("the upstream was reached without a token")
		}
	}
	secured(st.Edge)
	bearer := http.Header{"Authorization": {"Bearer " + Token(t, "alice")}}
	if r := Do(t, "POST", st.Edge.URL+"/private", "application/json", []byte(`{}`), bearer); r.Status != 200 {
		t.Fatalf("the file route with a token: %d %s", r.Status, r.Body)
	}

	for _, c := range []struct {
		method, path string
		body         []byte
	}{
		{"POST", "", open},
		{"PUT", "/private", []byte(`{"version_data": {"default": {"endpoints": [{"id": "e", "path": "/private", "method": "POST", "not_secured": true}]}}}`)},
		{"DELETE", "/private", nil},
	} {
		r := Do(t, c.method, apis+c.path, "application/json", c.body)
		if r.Status != 409 || !strings.Contains(r.ErrorMessage(t), `API "private" is defined by the route file (PROXY_CONFIG_FILE) and is read-only`) {
			t.Fatalf("%s of the file route's id: %d %s, want 409", c.method, r.Status, r.Body)
		}
	}
	if r := Get(t, apis+"/private"); r.Status != 404 {
		t.Fatalf("a refused change was stored: %d %s", r.Status, r.Body)
	}

	// An ingest without the route file cannot tell; the edge can.
	lax := IngestEnv(FreePort(t), st.NATSURL)
	lax["PROXY_ALLOWED_TARGETS"] = env["PROXY_ALLOWED_TARGETS"]
	ing2 := StartIngest(t, lax)
	if r := Do(t, "POST", ing2.URL+"/v1/apis", "application/json", open); r.Status != 201 {
		t.Fatalf("POST to an ingest without the route file: %d %s", r.Status, r.Body)
	}
	waitLog(t, st.Edge, "route from the cluster ignored", "api=private")
	secured(st.Edge)
	// Nor can another id take the file route's path (and the tokens sent
	// to it): the file's routes are looked up first.
	if r := Do(t, "POST", ing2.URL+"/v1/apis", "application/json", routeDef("a-shadow", "/private", target)); r.Status != 201 {
		t.Fatalf("POST of a route shadowing the file route: %d %s", r.Status, r.Body)
	}
	waitLog(t, st.Edge, "route changed", "api=a-shadow", "op=put")
	secured(st.Edge)

	// With the override, the runtime route replaces the file's.
	ee := EdgeEnv(FreePort(t), st.NATSURL)
	for k, v := range env {
		ee[k] = v
	}
	ee["PROXY_ALLOW_FILE_ROUTE_OVERRIDE"] = "true"
	edge2 := StartEdge(t, ee)
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		if r := Do(t, "POST", edge2.URL+"/private", "application/json", []byte(`{}`)); r.Status != 200 {
			return fmt.Errorf("override edge without a token: %d, want 200 (the runtime route)", r.Status)
		}
		return nil
	})
	secured(st.Edge)
}

// TestRouteGuardUseEnv: use_env naming JWT_SECRET_KEY (which made the edge
// log the secret and look it up in DNS) is refused with a 400 naming the
// field; written into the bucket directly, the edge ignores it without
// reading the variable, and a route file with it stops the edge at start,
// in one line that does not show the secret.
func TestRouteGuardUseEnv(t *testing.T) {
	st := StartStack(t, nil, nil)
	apis := st.Ingest.URL + "/v1/apis"
	leak := routeDef("leak", "/leak", `{"use_env": true, "target_url": "JWT_SECRET_KEY"}`)
	refused(t, Do(t, "POST", apis, "application/json", leak), "proxy.target_url", `use_env names "JWT_SECRET_KEY", but no environment variable may be used (PROXY_USE_ENV_ALLOWLIST is empty)`)

	putRouteKV(t, st.NATSURL, "leak", leak)
	waitLog(t, st.Edge, "invalid route in the cluster ignored", "api=leak", "PROXY_USE_ENV_ALLOWLIST")
	if r := Do(t, "POST", st.Edge.URL+"/leak", "application/json", []byte(`{}`)); r.Status != 404 {
		t.Fatalf("the use_env route on the edge: %d %s, want 404", r.Status, r.Body)
	}
	for _, s := range []*Server{st.Edge, st.Ingest} {
		if strings.Contains(s.Logs(), Secret) {
			t.Fatalf("%s logged the secret:\n%s", s.Name, s.Logs())
		}
	}

	// An allowlisted variable still works, and a name outside the list
	// is refused naming the list.
	up := startCountingUpstream(t)
	ee := EdgeEnv(FreePort(t), st.NATSURL)
	ee["PROXY_USE_ENV_ALLOWLIST"] = "USERS_URL"
	ee["PROXY_ALLOW_LOCAL_TARGETS"] = "true"
	ee["USERS_URL"] = "http://127.0.0.1:" + strconv.Itoa(up.Port)
	edge2 := StartEdge(t, ee)
	ie := IngestEnv(FreePort(t), st.NATSURL)
	ie["PROXY_USE_ENV_ALLOWLIST"] = "USERS_URL"
	ing2 := StartIngest(t, ie)
	refused(t, Do(t, "POST", ing2.URL+"/v1/apis", "application/json", leak), "proxy.target_url", "not in PROXY_USE_ENV_ALLOWLIST (USERS_URL)")
	if r := Do(t, "POST", ing2.URL+"/v1/apis", "application/json", routeDef("users", "/users", `{"use_env": true, "target_url": "USERS_URL"}`)); r.Status != 201 {
		t.Fatalf("POST of an allowlisted use_env: %d %s", r.Status, r.Body)
	}
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		if r := Do(t, "POST", edge2.URL+"/users", "application/json", []byte(`{}`)); r.Status != 200 || string(r.Body) != "reached" {
			return fmt.Errorf("allowlisted use_env route: %d %s", r.Status, r.Body)
		}
		return nil
	})

	// In the route file: one line at start, exit code 1, no secret.
	env := EdgeEnv(FreePort(t), "nats://127.0.0.1:1")
	env["PROXY_CONFIG_FILE"] = "[" + string(leak) + "]"
	p := StartProc(t, "edge-bad-file", bin.edge, nil, env)
	if !p.Wait(10 * time.Second) {
		t.Fatal("the edge with a use_env JWT_SECRET_KEY route file did not stop")
	}
	want := `edge: invalid PROXY_CONFIG_FILE=(JSON): API "leak": proxy.target_url: use_env names "JWT_SECRET_KEY", but no environment variable may be used (PROXY_USE_ENV_ALLOWLIST is empty)`
	if got := strings.TrimSpace(p.Logs()); p.ExitCode() != 1 || got != want || strings.Contains(got, Secret) {
		t.Fatalf("exit code %d, output:\n%s\nwant the one line\n%s", p.ExitCode(), got, want)
	}
}

// TestRouteGuardDNSRebinding: a host name that resolves to loopback
// ("localhost") is refused in JSON unless local targets are allowed; a
// route that got in anyway (from an ingest that allows them, or a name
// that resolved elsewhere when it was posted) is refused when the edge
// connects: 502, and the upstream never reached. An edge that allows the
// target by name reaches it.
func TestRouteGuardDNSRebinding(t *testing.T) {
	up := startCountingUpstream(t)
	st := StartStack(t, nil, nil)
	byName := routeDef("rebound", "/rebound", fmt.Sprintf(`{"target_url": "http://localhost", "port": %d}`, up.Port))
	refused(t, Do(t, "POST", st.Ingest.URL+"/v1/apis", "application/json", byName), "proxy.target_url", `"localhost" resolves to`)

	ie := IngestEnv(FreePort(t), st.NATSURL)
	ie["PROXY_ALLOW_LOCAL_TARGETS"] = "true"
	lax := StartIngest(t, ie)
	if r := Do(t, "POST", lax.URL+"/v1/apis", "application/json", byName); r.Status != 201 {
		t.Fatalf("POST to an ingest that allows local targets: %d %s", r.Status, r.Body)
	}
	ee := EdgeEnv(FreePort(t), st.NATSURL)
	ee["PROXY_ALLOWED_TARGETS"] = "localhost:" + strconv.Itoa(up.Port)
	allowing := StartEdge(t, ee)
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		if r := Do(t, "POST", allowing.URL+"/rebound", "application/json", []byte(`{}`)); r.Status != 200 || string(r.Body) != "reached" {
			return fmt.Errorf("edge allowing localhost:%d: %d %s", up.Port, r.Status, r.Body)
		}
		return nil
	})
	before := up.hits.Load()
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		if r := Do(t, "POST", st.Edge.URL+"/rebound", "application/json", []byte(`{}`)); r.Status != 502 {
			return fmt.Errorf("default edge: %d %s, want 502 (refused at dial)", r.Status, r.Body)
		}
		return nil
	})
	waitLog(t, st.Edge, "upstream request failed", "api=rebound", "target refused", "resolves to 127.0.0.1")
	if n := up.hits.Load() - before; n != 0 {
		t.Fatalf("the default edge reached the upstream %d times", n)
	}
}
