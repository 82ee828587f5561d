package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/route"
)

// syncBuffer is a log sink several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDialRefusesLocalTargets: the gateway's dialer refuses a host name
// that resolves to loopback, and a stack port, whatever the table says
// (the table is built without the guard here, as a route that passed the
// guard when its name resolved elsewhere would be); an allowed target
// and AllowLocal get through.
func TestDialRefusesLocalTargets(t *testing.T) {
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "upstream")
	}))
	defer up.Close()
	_, portText, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
	port, _ := strconv.Atoi(portText)
	byName := "http://localhost:" + portText
	for _, c := range []struct {
		name   string
		target string
		guard  route.Guard
		want   int
	}{
		{"a name resolving to loopback", byName, route.Guard{}, 502},
		{"a loopback address", up.URL, route.Guard{}, 502},
		{"a stack port, local targets allowed", up.URL, route.Guard{AllowLocal: true, Ports: []int{port}}, 502},
		{"local targets allowed", byName, route.Guard{AllowLocal: true}, 200},
		{"the target allowed by name", byName, route.Guard{Allowed: []string{route.HostPort("LocalHost", port)}, Ports: []int{port}}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := hits.Load()
			_, base := guardedGateway(t, routesTo(c.target), config.Proxy{Routes: config.Routes{Guard: c.guard}}, nil)
			code, body, _ := get(t, base+"/api/free", nil)
			if code != c.want {
				t.Fatalf("%s: %d %s, want %d", c.target, code, body, c.want)
			}
			if reached := hits.Load() > before; reached != (c.want == 200) {
				t.Fatalf("%s: upstream reached %v with answer %d", c.target, reached, code)
			}
		})
	}
}

// TestUseEnvValueNotLogged: a use_env target that is refused at dial,
// or fails, is logged by the variable's name, never by its value.
func TestUseEnvValueNotLogged(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "upstream") }))
	defer up.Close()
	_, portText, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
	routes := `[{"id":"svc","version_data":{"default":{"endpoints":[{"id":"free","path":"/api/free","method":"GET"}]}},
	  "proxy":{"use_env":true,"target_url":"UPSTREAM_URL"}}]`
	value := "http://localhost:" + portText
	var logs syncBuffer
	g := New(config.Proxy{Routes: config.Routes{Guard: route.Guard{UseEnv: []string{"UPSTREAM_URL"}}}, RecvTimeout: 2e9},
		auth.NewVerifier(secret, "user", "roles", nil), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	apis, err := route.ParseList([]byte(routes))
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := route.NewTable(apis, func(string) string { return value })
	g.SetRoutes(tb)
	base := serve(t, g)
	if code, body, _ := get(t, base+"/api/free", nil); code != 502 {
		t.Fatalf("use_env to loopback: %d %s, want 502", code, body)
	}
	out := logs.String()
	if !strings.Contains(out, "$UPSTREAM_URL") || !strings.Contains(out, "refused by the route rules") {
		t.Fatalf("the log does not name the variable and the refusal:\n%s", out)
	}
	if strings.Contains(out, "localhost") || strings.Contains(out, portText) {
		t.Fatalf("the log shows the variable's value:\n%s", out)
	}
}
