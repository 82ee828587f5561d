package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

const (
	oldAPIToken = "old-api-token-0123456789"
	newAPIToken = "new-api-token-0123456789"
)

func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// TestIngestAPITokens: with API_TOKENS every /v1/* call needs one of them
// (401 without, 403 with a wrong one, and nothing is changed either way);
// two tokens both work, so a token can be rotated; the probes stay open
// unless API_TOKENS_PROTECT_OPS says otherwise.
func TestIngestAPITokens(t *testing.T) {
	n := StartNATS(t)
	env := IngestEnv(FreePort(t), n.URL)
	env["API_TOKENS"] = oldAPIToken + "," + newAPIToken
	ing := StartIngest(t, env) // waits on /health/ready without a token

	route := []byte(`{"id":"attack","proxy":{"target_url":"http://127.0.0.1","port":4010},"version_data":{"default":{"endpoints":[{"id":"e","path":"/v1/messages","method":"POST","not_secured":true}]}}}`)
	for _, c := range []struct {
		name, method, path, ctype string
		body                      []byte
	}{
		{"list users", "GET", "/v1/users", "", nil},
		{"post message", "POST", "/v1/messages", "application/json", []byte(`{"user":"alice"}`)},
		{"blacklist", "POST", "/v1/session-blacklist", "application/json", []byte(`{"sessionId":"s1","validityInSeconds":60}`)},
		{"create route", "POST", "/v1/apis", "application/json", route},
		{"kill session", "DELETE", "/v1/users/alice/sessions/s1", "", nil},
		{"unknown path", "GET", "/v1/nothing", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Do(t, c.method, ing.URL+c.path, c.ctype, c.body)
			if r.Status != 401 || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("without a token: %d %q %s, want 401 with WWW-Authenticate: Bearer", r.Status, r.Header.Get("WWW-Authenticate"), r.Body)
			}
			r.ErrorMessage(t)
			r = Do(t, c.method, ing.URL+c.path, c.ctype, c.body, bearer("wrong-api-token-0123456789"))
			if r.Status != 403 {
				t.Fatalf("with a wrong token: %d %s, want 403", r.Status, r.Body)
			}
			r.ErrorMessage(t)
		})
	}
	if r := Do(t, "GET", ing.URL+"/v1/apis/attack", "", nil, bearer(newAPIToken)); r.Status != 404 {
		t.Fatalf("the refused POST /v1/apis created the route: %d %s", r.Status, r.Body)
	}
	if r := Do(t, "GET", ing.URL+"/v1/session-blacklist/s1", "", nil, bearer(newAPIToken)); r.Status != 404 {
		t.Fatalf("the refused blacklist call blacklisted s1: %d %s", r.Status, r.Body)
	}
	for _, tok := range []string{oldAPIToken, newAPIToken} {
		if r := Do(t, "POST", ing.URL+"/v1/messages", "application/json", []byte(`{"user":"alice"}`), bearer(tok)); r.Status != 202 {
			t.Fatalf("with token %s: %d %s, want 202", tok[:3], r.Status, r.Body)
		}
	}
	for _, p := range []string{"/health", "/health/ready", "/metrics"} {
		if r := Do(t, "GET", ing.URL+p, "", nil); r.Status != 200 {
			t.Errorf("GET %s without a token: %d, want 200 (API_TOKENS_PROTECT_OPS is off)", p, r.Status)
		}
	}
	if strings.Contains(ing.Logs(), "INSECURE") || strings.Contains(ing.Logs(), oldAPIToken) {
		t.Errorf("ingest on loopback with tokens warned or logged a token:\n%s", ing.Logs())
	}

	// Rotation done: the old token is removed; the probes need a token too.
	env = IngestEnv(FreePort(t), n.URL)
	env["API_TOKENS"] = newAPIToken
	env["API_TOKENS_PROTECT_OPS"] = "true"
	port, _ := strconv.Atoi(env["API_PORT"])
	ing2 := &Server{Port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	ing2.Proc = StartProc(t, "ingest:"+env["API_PORT"], bin.ingest, nil, env)
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if !ing2.Running() {
			t.Fatalf("ingest exited:\n%s", ing2.Logs())
		}
		if got := statusWithin(ing2.URL+"/health", time.Second); got != 401 {
			return fmt.Errorf("GET /health without a token: %d, want 401", got)
		}
		return nil
	})
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if r := Do(t, "GET", ing2.URL+"/health/ready", "", nil, bearer(newAPIToken)); r.Status != 200 {
			return fmt.Errorf("GET /health/ready with the token: %d", r.Status)
		}
		return nil
	})
	if r := Do(t, "GET", ing2.URL+"/metrics", "", nil, bearer(newAPIToken)); r.Status != 200 {
		t.Errorf("GET /metrics with the token: %d", r.Status)
	}
	if r := Do(t, "POST", ing2.URL+"/v1/messages", "application/json", []byte(`{"user":"alice"}`), bearer(oldAPIToken)); r.Status != 403 {
		t.Errorf("the removed token: %d %s, want 403", r.Status, r.Body)
	}
	if r := Do(t, "POST", ing2.URL+"/v1/messages", "application/json", []byte(`{"user":"alice"}`), bearer(newAPIToken)); r.Status != 202 {
		t.Errorf("the new token: %d %s, want 202", r.Status, r.Body)
	}
}

// externalIP is an address of this machine other than loopback, or "".
func externalIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

// TestIngestAPIHost: by default ingest binds to loopback only, and quietly;
// bound to every interface without API_TOKENS it says so, once, loudly;
// with API_TOKENS it does not.
func TestIngestAPIHost(t *testing.T) {
	n := StartNATS(t)
	ext := externalIP()

	def := StartIngest(t, IngestEnv(FreePort(t), n.URL))
	if strings.Contains(def.Logs(), "INSECURE") {
		t.Errorf("ingest on loopback warned:\n%s", def.Logs())
	}
	if ext != "" && dialOK(net.JoinHostPort(ext, strconv.Itoa(def.Port))) {
		t.Errorf("ingest with the default API_HOST answers on %s", ext)
	}

	env := IngestEnv(FreePort(t), n.URL)
	env["API_HOST"] = "0.0.0.0"
	open := StartIngest(t, env)
	if got := strings.Count(open.Logs(), "INSECURE"); got != 1 {
		t.Errorf("ingest on 0.0.0.0 without API_TOKENS warned %d times, want once:\n%s", got, open.Logs())
	}
	if !strings.Contains(open.Logs(), "level=WARN") && !strings.Contains(open.Logs(), `"level":"WARN"`) {
		t.Errorf("the warning is not at level WARN:\n%s", open.Logs())
	}
	if ext != "" && !dialOK(net.JoinHostPort(ext, strconv.Itoa(open.Port))) {
		t.Errorf("ingest with API_HOST=0.0.0.0 does not answer on %s", ext)
	}
	Post(t, open.URL, map[string]any{"user": "alice"}) // no tokens: open, as before

	env = IngestEnv(FreePort(t), n.URL)
	env["API_HOST"] = "0.0.0.0"
	env["API_TOKENS"] = newAPIToken
	secured := StartIngest(t, env)
	if strings.Contains(secured.Logs(), "INSECURE") {
		t.Errorf("ingest on 0.0.0.0 with API_TOKENS warned:\n%s", secured.Logs())
	}
	if ext == "" {
		t.Log("no non-loopback address: the bind checks were skipped")
	}
}
