package ingest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/broker/brokertest"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/route"
)

// routesServer is ingest with routes (a route file's APIs and the rules
// for targets), on an embedded NATS server.
func routesServer(t *testing.T, routes config.Routes) *Server {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	nc := config.NATS{Embedded: true, Listen: "127.0.0.1:0", StoreDir: t.TempDir(), MaxAge: time.Minute,
		MaxPerUser: 10, IdempotencyWindow: 30 * time.Second, Name: "test"}
	b, err := broker.Open(nc, log)
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Run(t, b, true)
	s, err := New(&config.Ingest{NATS: nc, MessageUserField: "user", MaxMessageSize: 64 << 10, BatchMaxSize: 1 << 20,
		BatchMaxCount: 100, PublishTimeout: 5 * time.Second, PresenceTimeout: time.Second, Routes: routes}, log, b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Go(t, s.Run)
	return s
}

func call(t *testing.T, s *Server, method, path, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.app.Test(req, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		var e struct{ Error string }
		if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
			t.Fatalf("%s %s: %d %q is not a JSON error", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, e.Error
	}
	return resp.StatusCode, string(b)
}

func apiDef(id, proxy string) string {
	return `{"id":"` + id + `","auth_type":"jwt","version_data":{"default":{"endpoints":[{"id":"e","path":"/` + id + `","method":"GET","not_secured":true}]}},"proxy":` + proxy + `}`
}

// TestAPIsRefuseFileRoutes: the route file's ids are read-only (409 on
// POST, PUT and DELETE, nothing stored) unless the override is set.
func TestAPIsRefuseFileRoutes(t *testing.T) {
	file := []*route.API{{ID: "filed"}}
	s := routesServer(t, config.Routes{APIs: file})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/apis", apiDef("filed", `{"target_url":"users.internal"}`)},
		{"PUT", "/v1/apis/filed", `{"name":"open"}`},
		{"DELETE", "/v1/apis/filed", ""},
	} {
		code, msg := call(t, s, c.method, c.path, c.body)
		if code != 409 || !strings.Contains(msg, `API "filed" is defined by the route file (PROXY_CONFIG_FILE) and is read-only at runtime`) {
			t.Errorf("%s %s: %d %s, want 409", c.method, c.path, code, msg)
		}
	}
	if code, _ := call(t, s, "GET", "/v1/apis/filed", ""); code != 404 {
		t.Fatalf("a refused POST stored the route: %d", code)
	}
	if code, body := call(t, s, "POST", "/v1/apis", apiDef("other", `{"target_url":"users.internal"}`)); code != 201 {
		t.Fatalf("POST of another id: %d %s", code, body)
	}

	over := routesServer(t, config.Routes{APIs: file, AllowFileOverride: true})
	if code, body := call(t, over, "POST", "/v1/apis", apiDef("filed", `{"target_url":"users.internal"}`)); code != 201 {
		t.Fatalf("POST with the override: %d %s", code, body)
	}
	if code, body := call(t, over, "DELETE", "/v1/apis/filed", ""); code != 204 {
		t.Fatalf("DELETE with the override: %d %s", code, body)
	}
}

// TestAPIsRefuseTargets: POST and PUT refuse a target the guard refuses
// with a 400 naming the field, and change nothing.
func TestAPIsRefuseTargets(t *testing.T) {
	s := routesServer(t, config.Routes{Guard: route.Guard{Ports: []int{4010}, UseEnv: []string{"USERS_URL"}}})
	for proxy, want := range map[string]string{
		`{"target_url":"http://127.0.0.1","port":8080}`:  `API "a": proxy.target_url: "127.0.0.1": loopback address, refused`,
		`{"target_url":"http://users.internal:4010"}`:    `API "a": proxy.target_url: "users.internal": port 4010 is one of the stack's own`,
		`{"target_url":"users.internal","port":4010}`:    `API "a": proxy.port: "users.internal": port 4010`,
		`{"use_env":true,"target_url":"JWT_SECRET_KEY"}`: `API "a": proxy.target_url: use_env names "JWT_SECRET_KEY", which is not in PROXY_USE_ENV_ALLOWLIST (USERS_URL)`,
	} {
		if code, msg := call(t, s, "POST", "/v1/apis", apiDef("a", proxy)); code != 400 || !strings.Contains(msg, want) {
			t.Errorf("POST %s: %d %s, want 400 %s", proxy, code, msg, want)
		}
	}
	if code, body := call(t, s, "POST", "/v1/apis", apiDef("a", `{"use_env":true,"target_url":"USERS_URL"}`)); code != 201 {
		t.Fatalf("POST with an allowed use_env: %d %s", code, body)
	}
	if code, msg := call(t, s, "PUT", "/v1/apis/a", `{"proxy":{"target_url":"http://[::1]:8080"}}`); code != 400 || !strings.Contains(msg, "proxy.target_url") {
		t.Fatalf("PUT to loopback: %d %s", code, msg)
	}
	if _, body := call(t, s, "GET", "/v1/apis/a", ""); !strings.Contains(body, `"target_url":"USERS_URL"`) {
		t.Fatalf("a refused PUT changed the route: %s", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := s.apis.KV(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("stored keys %v %v, want only a's", keys, err)
	}
}
