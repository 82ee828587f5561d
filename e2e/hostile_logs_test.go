package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// rawRequest writes head (a request head, possibly malformed, and any
// body) to addr and returns the status line of the answer ("" if none).
func rawRequest(t testing.TB, addr, head string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatalf("write to %s: %v", addr, err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// peek sends a GET and returns its status as soon as the head arrives,
// without waiting for a stream or a long-poll to end.
func peek(t testing.TB, u string, header http.Header) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHostileLogRedaction: a hostile run against an edge and ingest, with
// tokens everywhere a client can put one (malformed request heads of
// several kinds, refused and revoked tokens in the query and a header,
// proxy routes, WebSocket upgrades, long-polls, resume ids, ingest's API),
// leaves no token text in either binary's log, in text or JSON format.
// fasthttp quoted a malformed request head, token included, in the error
// the edge logged as "request refused".
func TestHostileLogRedaction(t *testing.T) {
	up := StartUpstream(t)
	routes := WriteRoutes(t, fmt.Sprintf(`[
{"id": "open", "version_data": {"default": {"endpoints": [{"id": "e", "path": "/open/{id}", "method": "GET"}]}},
 "proxy": {"target_url": "http://127.0.0.1", "port": %d}},
{"id": "private", "auth_type": "jwt",
 "auth": {"use_header": true, "header_name": "Authorization", "use_query": true, "query_name": "token"},
 "version_data": {"default": {"endpoints": [{"id": "e", "path": "/private/{id}", "method": "GET"}]}},
 "proxy": {"target_url": "http://127.0.0.1", "port": %d}}]`, up.Port, up.Port))
	st := StartStack(t,
		map[string]string{"LOG_LEVEL": "debug", "LOG_FORMAT": "text", "PROXY_CONFIG_FILE": routes, "PROXY_ALLOW_LOCAL_TARGETS": "true"},
		map[string]string{"LOG_LEVEL": "debug", "LOG_FORMAT": "json"})
	edgeAddr := fmt.Sprintf("127.0.0.1:%d", st.Edge.Port)
	ingestAddr := fmt.Sprintf("127.0.0.1:%d", st.Ingest.Port)

	good := Token(t, "alice")
	revokedJTI := fmt.Sprintf("revoked-%d", time.Now().UnixNano())
	revoked := Token(t, "alice", TokenOpts{JTI: revokedJTI})
	tokens := map[string]string{
		"accepted":  good,
		"revoked":   revoked,
		"wrong key": wrongKeyToken(t, "mallory"),
		"expired":   Token(t, "alice", TokenOpts{TTL: -time.Minute}),
		"forged":    strings.TrimSuffix(good, good[len(good)-10:]) + "AAAAAAAAAA",
	}
	Blacklist(t, st.Ingest.URL, revokedJTI, 60)

	// Malformed heads, each carrying a token in the query and a header.
	malformed := []string{
		"GET /socket/sse?token=%[1]s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %[1]s\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"POST /socket/sse?token=%[1]s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %[1]s\r\nTransfer-Encoding: gzip\r\n\r\n",
		"POST /v1/messages?token=%[1]s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %[1]s\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET /socket/websocket?token=%[1]s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %[1]s\r\nno colon in this line\r\n\r\n",
		"GET /socket/sse?token=%[1]s HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\nAuthorization: Bearer %[1]s\r\n\r\n",
		"GET /socket/sse?token=%[1]s HTTP/9.9\r\nHost: x\r\n\r\n",
		"GET /socket/sse?token=%[1]s HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
		"GET /socket/sse?token=%[1]s HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", 9<<10) + "\r\nAuthorization: Bearer %[1]s\r\n\r\n",
		"GET /private/1?token=%[1]s HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"DELETE /v1/users/alice/sessions/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %[1]s\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	}
	refused := 0
	for name, tok := range tokens {
		for i, head := range malformed {
			req := fmt.Sprintf(head, tok)
			for _, addr := range []string{edgeAddr, ingestAddr} {
				if status := rawRequest(t, addr, req); strings.Contains(status, " 4") {
					refused++
				} else if status != "" {
					t.Logf("%s head %d to %s: %q", name, i, addr, status)
				}
			}
		}
		bearer := http.Header{"Authorization": {"Bearer " + tok}}
		// Every transport, the token in the query and in the header.
		for _, path := range []string{"/socket/sse", "/socket/longpoll", "/socket/websocket"} {
			q := url.Values{"token": {tok}}
			if path == "/socket/longpoll" {
				q.Set("last_event_id", tok) // a client may put a token anywhere
			}
			peek(t, st.Edge.URL+path+"?"+q.Encode(), http.Header{"Last-Event-ID": {tok}})
			peek(t, st.Edge.URL+path+"?users[]=bob", bearer)
		}
		if w, _ := DialWS(t, wsURL(st.Edge.URL, url.Values{"token": {tok}, "vsn": {"2.0.0"}})); w != nil {
			w.Conn.Close()
		}
		if w, _ := DialWS(t, wsURL(st.Edge.URL, plainQuery(tok)), WSOpts{Header: http.Header{"Sec-WebSocket-Protocol": {tok}}}); w != nil {
			w.Conn.Close()
		}
		// The gateway: a secured route with the token in the header and the
		// query, an open route and a path nobody routes, both with a token.
		Do(t, "GET", st.Edge.URL+"/private/1", "", nil, bearer)
		Do(t, "GET", st.Edge.URL+"/private/1?token="+tok, "", nil)
		Do(t, "GET", st.Edge.URL+"/open/"+tok+"?token="+tok, "", nil, bearer)
		Do(t, "GET", st.Edge.URL+"/nowhere/"+tok+"?token="+tok, "", nil, bearer)
		// Ingest's API with a token: RIG 1.x's session kill, and elsewhere.
		Do(t, "DELETE", st.Ingest.URL+"/v1/users/alice/sessions/"+url.PathEscape(tok), "", nil, bearer)
		Do(t, "POST", st.Ingest.URL+"/v1/messages?token="+tok, "text/plain", []byte(tok), bearer)
		Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json", []byte(`{"user":"`+tok+`"}`), bearer)
		Do(t, "GET", st.Ingest.URL+"/v1/session-blacklist/"+tok, "", nil, bearer)
	}
	// A stream with a good token, so the edge logs a session's life too.
	s := MustSSE(t, sseURL(st.Edge.URL, good))
	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "hi"})
	if ev := s.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("got %+v, want %s", ev, id)
	}
	s.Close()
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(st.Edge.Logs(), "connection closed") {
			return fmt.Errorf("no connection closed line")
		}
		return nil
	})
	st.Edge.Stop()
	st.Ingest.Stop()

	logs := map[string]string{"edge": st.Edge.Logs(), "ingest": st.Ingest.Logs()}
	for proc, text := range logs {
		for name, tok := range tokens {
			for i, part := range strings.Split(tok, ".") {
				if strings.Contains(text, part) {
					line := text[strings.LastIndex(text[:strings.Index(text, part)], "\n")+1:]
					line, _, _ = strings.Cut(line, "\n")
					t.Errorf("%s's log holds part %d of the %s token: %.300s", proc, i, name, line)
				}
			}
		}
		if n := strings.Count(text, "eyJ"); n > 0 {
			t.Errorf("%s's log holds %d JWT-like strings (eyJ...)", proc, n)
		}
	}
	if refused == 0 {
		t.Fatal("no malformed head was refused: the run did not exercise the error path")
	}
	if t.Failed() {
		return
	}
	t.Logf("%d malformed heads refused with a 4xx; edge log %d lines, ingest %d; no token text in either",
		refused, strings.Count(logs["edge"], "\n"), strings.Count(logs["ingest"], "\n"))
}
