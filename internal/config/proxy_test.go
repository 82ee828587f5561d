package config

import (
	"io"
	"os"
	"path/filepath"
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
		c, err := parseEdge(t, map[string]string{"PROXY_CONFIG_FILE": v, "SVC_HOST": "svc.internal"})
		if err != nil || len(c.Proxy.APIs) != 1 || c.Proxy.APIs[0].ID != "svc" {
			t.Fatalf("PROXY_CONFIG_FILE=%q: %v", v, err)
		}
		if b, err := c.Proxy.APIs[0].Proxy.Base(c.Proxy.Getenv); err != nil || b != "http://svc.internal:81" {
			t.Fatalf("use_env through Getenv: %q %v", b, err)
		}
	}
	_, err := parseEdge(t, map[string]string{"PROXY_CONFIG_FILE": path})
	want := `invalid PROXY_CONFIG_FILE="` + path + `": API "svc": proxy.target_url: environment variable SVC_HOST (use_env) is not set`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	_, err = parseEdge(t, map[string]string{"PROXY_CONFIG_FILE": `[{"id":"x"}]`})
	if err == nil || !strings.HasPrefix(err.Error(), `invalid PROXY_CONFIG_FILE=(JSON): API "x": version_data: missing`) {
		t.Fatalf("inline JSON: %v", err)
	}
}
