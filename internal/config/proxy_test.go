package config

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func parseEdge(t *testing.T, env map[string]string) (*Edge, error) {
	t.Helper()
	env["JWT_SECRET_KEY"] = "a-secret-of-some-length"
	return ParseEdge(nil, func(k string) string { return env[k] }, io.Discard)
}

func TestProxySettings(t *testing.T) {
	c, err := parseEdge(t, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Proxy
	if p.RecvTimeout != 5*time.Second || p.RateLimit.Enabled || !p.RateLimit.PerIP || p.RateLimit.AvgRatePerSec != 10000 ||
		p.RateLimit.BurstSize != 5000 || p.RateLimit.SweepInterval != 5*time.Second || len(p.APIs) != 0 {
		t.Fatalf("defaults: %+v", p)
	}
	for v, want := range map[string]time.Duration{"5000": 5 * time.Second, "250": 250 * time.Millisecond, "2s": 2 * time.Second, " 1m ": time.Minute} {
		c, err := parseEdge(t, map[string]string{"PROXY_RECV_TIMEOUT": v, "RATE_LIMIT_SWEEP_INTERVAL_MS": "0"})
		if err != nil || c.Proxy.RecvTimeout != want || c.Proxy.RateLimit.SweepInterval != 0 {
			t.Fatalf("PROXY_RECV_TIMEOUT=%q: %v %v", v, c, err)
		}
	}
	for _, v := range []string{"0", "abc", "-5", "5x"} {
		_, err := parseEdge(t, map[string]string{"PROXY_RECV_TIMEOUT": v})
		want := `invalid PROXY_RECV_TIMEOUT="` + v + `": expected milliseconds (5000) or a duration (5s) of at least 1ms`
		if err == nil || err.Error() != want {
			t.Fatalf("PROXY_RECV_TIMEOUT=%q: %v, want %s", v, err, want)
		}
	}
}

func TestProxyConfigFile(t *testing.T) {
	route := `[{"id":"svc","version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET"}]}},"proxy":{"use_env":true,"target_url":"SVC_HOST","port":81}}]`
	path := filepath.Join(t.TempDir(), "routes.json")
	if err := os.WriteFile(path, []byte(route), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{path, "  " + route} {
		c, err := parseEdge(t, map[string]string{"PROXY_CONFIG_FILE": v, "SVC_HOST": "svc.internal", "PROXY_USE_ENV_ALLOWLIST": "SVC_HOST"})
		if err != nil || len(c.Proxy.APIs) != 1 || c.Proxy.APIs[0].ID != "svc" {
			t.Fatalf("PROXY_CONFIG_FILE=%q: %v", v, err)
		}
		if b, err := c.Proxy.APIs[0].Proxy.Base(c.Proxy.Getenv); err != nil || b != "http://svc.internal:81" {
			t.Fatalf("use_env through Getenv: %q %v", b, err)
		}
	}
	_, err := parseEdge(t, map[string]string{"PROXY_CONFIG_FILE": path, "PROXY_USE_ENV_ALLOWLIST": "SVC_HOST"})
	want := `invalid PROXY_CONFIG_FILE="` + path + `": API "svc": proxy.target_url: environment variable SVC_HOST (use_env) is not set`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	_, err = parseEdge(t, map[string]string{"PROXY_CONFIG_FILE": `[{"id":"x"}]`})
	if err == nil || !strings.HasPrefix(err.Error(), `invalid PROXY_CONFIG_FILE=(JSON): API "x": version_data: missing`) {
		t.Fatalf("inline JSON: %v", err)
	}
}

// TestRouteRules: the route settings of both binaries, a route file that
// breaks them stopping either at start with one line naming the API and
// the field (and never a variable's value), and the use_env variables
// read once, only those allowed.
func TestRouteRules(t *testing.T) {
	c, err := parseEdge(t, map[string]string{"INBOUND_PORT": "4100"})
	if err != nil {
		t.Fatal(err)
	}
	g := c.Proxy.Guard
	if g.AllowLocal || c.Proxy.AllowFileOverride || len(g.UseEnv) != 0 || len(g.Allowed) != 0 || g.Resolve == nil ||
		!slices.Equal(g.Ports, []int{4000, 4001, 4010, 4222, 6222, 8222, 4100, 4001}) {
		t.Fatalf("defaults: %+v, override %v", g, c.Proxy.AllowFileOverride)
	}
	c, err = parseEdge(t, map[string]string{"PROXY_ALLOWED_TARGETS": "LocalHost:8080, [::1]:9", "PROXY_STACK_PORTS": "5000",
		"PROXY_ALLOW_LOCAL_TARGETS": "true", "PROXY_ALLOW_FILE_ROUTE_OVERRIDE": "true", "PROXY_USE_ENV_ALLOWLIST": "A_URL,B_URL",
		"A_URL": "http://a", "JWT_SECRET_KEY": "x"})
	if err != nil {
		t.Fatal(err)
	}
	g = c.Proxy.Guard
	if !g.AllowLocal || !c.Proxy.AllowFileOverride || !slices.Equal(g.Allowed, []string{"localhost:8080", "[::1]:9"}) ||
		!slices.Equal(g.Ports, []int{5000, 4000, 4001}) || !slices.Equal(g.UseEnv, []string{"A_URL", "B_URL"}) {
		t.Fatalf("set: %+v", g)
	}
	if c.Proxy.Getenv("A_URL") != "http://a" || c.Proxy.Getenv("B_URL") != "" || c.Proxy.Getenv("JWT_SECRET_KEY") != "" {
		t.Fatal("Getenv reads more than the allowlist's variables")
	}

	for env, want := range map[string]string{
		"PROXY_ALLOWED_TARGETS=localhost":       `invalid PROXY_ALLOWED_TARGETS="localhost": expected a comma-separated list of host:port`,
		"PROXY_ALLOWED_TARGETS=:80":             `invalid PROXY_ALLOWED_TARGETS=":80"`,
		"PROXY_STACK_PORTS=4000,x":              `invalid PROXY_STACK_PORTS="4000,x": expected a comma-separated list of port numbers from 1 to 65535; "x" is not one`,
		"PROXY_USE_ENV_ALLOWLIST=A-B":           `invalid PROXY_USE_ENV_ALLOWLIST="A-B": expected a comma-separated list of environment variable names`,
		"PROXY_ALLOW_LOCAL_TARGETS=maybe":       `invalid PROXY_ALLOW_LOCAL_TARGETS="maybe": expected true or false`,
		"PROXY_ALLOW_FILE_ROUTE_OVERRIDE=maybe": `invalid PROXY_ALLOW_FILE_ROUTE_OVERRIDE="maybe"`,
	} {
		k, v, _ := strings.Cut(env, "=")
		for _, parse := range []func(map[string]string) error{
			func(e map[string]string) error { _, err := parseEdge(t, e); return err },
			func(e map[string]string) error {
				_, err := ParseIngest(nil, func(k string) string { return e[k] }, io.Discard)
				return err
			},
		} {
			if err := parse(map[string]string{k: v}); err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%s: %v, want %s", env, err, want)
			}
		}
	}

	file := func(proxy string) string {
		return `[{"id":"svc","version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET"}]}},"proxy":` + proxy + `}]`
	}
	for _, c := range []struct {
		proxy string
		env   map[string]string
		want  string // "" accepted
	}{
		{`{"target_url":"http://127.0.0.1:8080"}`, nil, `API "svc": proxy.target_url: "127.0.0.1": loopback address, refused`},
		{`{"target_url":"http://127.0.0.1:8080"}`, map[string]string{"PROXY_ALLOW_LOCAL_TARGETS": "true"}, ""},
		{`{"target_url":"http://127.0.0.1:8080"}`, map[string]string{"PROXY_ALLOWED_TARGETS": "127.0.0.1:8080"}, ""},
		{`{"target_url":"localhost","port":8080}`, nil, `API "svc": proxy.target_url: "localhost" resolves to`},
		{`{"target_url":"http://ingest.internal","port":4010}`, nil, `API "svc": proxy.port: "ingest.internal": port 4010 is one of the stack's own`},
		{`{"target_url":"http://users.internal:4100"}`, map[string]string{"INBOUND_PORT": "4100", "API_PORT": "4100"}, "port 4100 is one of the stack's own"},
		{`{"use_env":true,"target_url":"JWT_SECRET_KEY"}`, nil, `API "svc": proxy.target_url: use_env names "JWT_SECRET_KEY", but no environment variable may be used (PROXY_USE_ENV_ALLOWLIST is empty)`},
		{`{"use_env":true,"target_url":"JWT_SECRET_KEY"}`, map[string]string{"PROXY_USE_ENV_ALLOWLIST": "USERS_URL"}, "which is not in PROXY_USE_ENV_ALLOWLIST (USERS_URL)"},
	} {
		env := map[string]string{"PROXY_CONFIG_FILE": file(c.proxy)}
		for k, v := range c.env {
			env[k] = v
		}
		_, eerr := parseEdge(t, env)
		env["JWT_SECRET_KEY"] = ""
		_, ierr := ParseIngest(nil, func(k string) string { return env[k] }, io.Discard)
		for name, err := range map[string]error{"edge": eerr, "ingest": ierr} {
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("%s, %s %v: %v, want %q", name, c.proxy, c.env, err, c.want)
			}
		}
	}
	// The edge resolves an allowed variable, and says what is wrong with
	// its value without showing it.
	_, err = parseEdge(t, map[string]string{"PROXY_CONFIG_FILE": file(`{"use_env":true,"target_url":"SVC_URL"}`), "PROXY_USE_ENV_ALLOWLIST": "SVC_URL", "SVC_URL": "http://127.0.0.1:9999"})
	if err == nil || !strings.Contains(err.Error(), "the value of SVC_URL (use_env): loopback address") || strings.Contains(err.Error(), "9999") {
		t.Fatalf("use_env to loopback: %v", err)
	}
	_, err = parseEdge(t, map[string]string{"PROXY_CONFIG_FILE": file(`{"use_env":true,"target_url":"SVC_URL"}`), "PROXY_USE_ENV_ALLOWLIST": "SVC_URL", "SVC_URL": "not a url secret-xyz"})
	if err == nil || !strings.Contains(err.Error(), "SVC_URL (use_env) does not hold a URL") || strings.Contains(err.Error(), "secret-xyz") {
		t.Fatalf("use_env not a URL: %v", err)
	}
}

// TestFileRoute: FileRoute knows the file's ids.
func TestFileRoute(t *testing.T) {
	c, err := ParseIngest(nil, func(k string) string {
		return map[string]string{"PROXY_CONFIG_FILE": `[{"id":"svc","version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET"}]}},"proxy":{"target_url":"users.internal"}}]`}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Routes.FileRoute("svc") || c.Routes.FileRoute("other") || c.Routes.Getenv != nil {
		t.Fatalf("FileRoute: %v %v; ingest Getenv set: %v", c.Routes.FileRoute("svc"), c.Routes.FileRoute("other"), c.Routes.Getenv != nil)
	}
}
