package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGatewayForwardsOnlyWhatItVerified (issue 14): what reaches the
// upstream is the edge's word, not the client's. One verified token, the
// edge's identity headers, its own X-Forwarded-* and Forwarded for a peer
// that is not a trusted proxy; invalid header names refused, trailers
// dropped.
func TestGatewayForwardsOnlyWhatItVerified(t *testing.T) {
	up := StartUpstream(t)
	st := StartStack(t, map[string]string{
		"PROXY_CONFIG_FILE":         WriteRoutes(t, gatewayRoutes(up, FreePort(t))),
		"PROXY_ALLOW_LOCAL_TARGETS": "true", // the upstream is on loopback
		"PROXY_USE_ENV_ALLOWLIST":   "PRIVATE_HOST",
		"PRIVATE_HOST":              "http://127.0.0.1",
		"TRUSTED_PROXIES":           "none",
	}, nil)
	edge := st.Edge.URL
	edgeHost := "127.0.0.1:" + strconv.Itoa(st.Edge.Port)

	t.Run("one verified token goes upstream", func(t *testing.T) {
		tok := Token(t, "alice", TokenOpts{Roles: []string{"admin", "ops"}, JTI: "sess-1"})
		forged := wrongKeyToken(t, "mallory")
		e := Get(t, edge+"/private/secured", http.Header{"Authorization": {"Bearer " + forged, "Bearer " + tok}}).Echo(t)
		if got := http.Header(e.Header).Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+tok {
			t.Fatalf("upstream got Authorization %q, want only the verified one", got)
		}
		// A valid query token next to a forged header: the header goes.
		e = Get(t, edge+"/private/secured?a=1&jwt="+forged+","+tok+"&b=2", http.Header{"Authorization": {"Bearer " + forged}}).Echo(t)
		if got := http.Header(e.Header).Values("Authorization"); len(got) != 0 {
			t.Fatalf("unverified Authorization %q reached the upstream", got)
		}
		if e.RawQuery != "a=1&b=2&jwt="+tok {
			t.Fatalf("upstream query %q, want the verified token only", e.RawQuery)
		}
	})

	t.Run("identity headers are the edge's", func(t *testing.T) {
		tok := Token(t, "alice", TokenOpts{Roles: []string{"admin", "ops"}, JTI: "sess-2"})
		forged := http.Header{"X-Rig-User": {"root"}, "X-Rig-Session": {"forged"}, "X-Rig-Roles": {"superuser"}}
		forged.Set("Authorization", "Bearer "+tok)
		h := http.Header(Get(t, edge+"/private/secured", forged).Echo(t).Header)
		for k, want := range map[string]string{"X-Rig-User": "alice", "X-Rig-Session": "sess-2", "X-Rig-Roles": "admin,ops"} {
			if got := h.Values(k); len(got) != 1 || got[0] != want {
				t.Errorf("upstream %s = %q, want %q", k, got, want)
			}
		}
		// Stripped on open routes, of either kind, too.
		for _, p := range []string{"/echo/1", "/private/free"} {
			h := http.Header(Get(t, edge+p, forged).Echo(t).Header)
			for _, k := range []string{"X-Rig-User", "X-Rig-Session", "X-Rig-Roles"} {
				if v := h.Values(k); len(v) != 0 {
					t.Errorf("%s: client's %s = %q reached the upstream", p, k, v)
				}
			}
		}
	})

	t.Run("X-Forwarded and Forwarded of an untrusted peer are replaced", func(t *testing.T) {
		h := http.Header(Get(t, edge+"/echo/f", http.Header{
			"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"bank.example"},
			"X-Forwarded-Port": {"443"}, "Forwarded": {`for=203.0.113.7;proto=https;host="bank.example"`},
		}).Echo(t).Header)
		for k, want := range map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
			"X-Forwarded-Host": edgeHost, "X-Forwarded-Port": "", "Forwarded": `for=127.0.0.1;proto=http;host="` + edgeHost + `"`} {
			if got := strings.Join(h.Values(k), " | "); got != want {
				t.Errorf("upstream %s = %q, want %q", k, got, want)
			}
		}
	})

	t.Run("invalid header names are refused", func(t *testing.T) {
		for _, name := range []string{"X(Bad)", "X\"Q", "X/Y", "X{Z}", "X\x80Y", "X\xc3\x9c", "X\x7fY", "X Y", "X\x01Y", "X@Y", "X[Y]", "X=Y", "X?Y"} {
			status, body := rawExchange(t, st.Edge.Port, "GET /echo/bad HTTP/1.1\r\nHost: "+edgeHost+"\r\n"+name+": 1\r\nConnection: close\r\n\r\n")
			if status != 400 || strings.Contains(body, `"method"`) {
				t.Errorf("header name %q: %d %s", name, status, body)
			}
		}
	})

	t.Run("trailers are dropped", func(t *testing.T) {
		status, body := rawExchange(t, st.Edge.Port, "POST /echo/tr HTTP/1.1\r\nHost: "+edgeHost+
			"\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sig\r\nX-Kept: 1\r\nConnection: close\r\n\r\n"+
			"5\r\nhello\r\n0\r\nX-Sig: forged\r\n\r\n")
		if status != 200 || !strings.Contains(body, `"body":"hello"`) || !strings.Contains(body, `"X-Kept"`) {
			t.Fatalf("chunked POST: %d %s", status, body)
		}
		if strings.Contains(body, "X-Sig") || strings.Contains(body, "forged") {
			t.Fatalf("the trailer reached the upstream: %s", body)
		}
	})
}

// rawExchange writes req as is to the edge (net/http would refuse to send
// it) and returns the answer's status and body.
func rawExchange(t *testing.T, port int, req string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
