package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// logLines parses a process's output as JSON log lines, failing the test
// on any line that is not a JSON object with time, level and msg.
func logLines(t testing.TB, p *Proc) []map[string]any {
	t.Helper()
	var out []map[string]any
	for i, line := range strings.Split(p.Logs(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s line %d is not JSON: %v\n%s", p.Name, i+1, err, line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("%s line %d has no %q: %s", p.Name, i+1, k, line)
			}
		}
		out = append(out, m)
	}
	return out
}

// count returns how many lines have msg and every field of match.
func count(lines []map[string]any, msg string, match map[string]string) int {
	n := 0
next:
	for _, l := range lines {
		if l["msg"] != msg {
			continue
		}
		for k, v := range match {
			if fmt.Sprint(l[k]) != v {
				continue next
			}
		}
		n++
	}
	return n
}

// TestJSONLogs: with LOG_FORMAT=json every line either binary writes is a
// JSON object; a connection is logged once when it opens and once when it
// closes; and no token, accepted or refused, appears in any log.
func TestJSONLogs(t *testing.T) {
	jsonLogs := map[string]string{"LOG_FORMAT": "json", "LOG_LEVEL": "debug"}
	st := StartStack(t, jsonLogs, jsonLogs) // StartStack copies them onto each binary's defaults

	jti := fmt.Sprintf("logs-%d", time.Now().UnixNano())
	tok := Token(t, "alice", TokenOpts{JTI: jti})
	s := MustSSE(t, sseURL(st.Edge.URL, tok))
	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "logged?"})
	if ev := s.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("got %s, want %s", ev.ID, id)
	}
	s.Close()
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(st.Edge.Logs(), `"msg":"connection closed"`) {
			return fmt.Errorf("no connection closed line")
		}
		return nil
	})

	// Tokens that are refused, in the query and in a header.
	bad := wrongKeyToken(t, "mallory")
	if st, r := SSEStatus(t, sseURL(st.Edge.URL, bad)); st != 401 {
		t.Fatalf("wrong-key token: %d %s", st, r.Body)
	}
	expired := Token(t, "alice", TokenOpts{TTL: -time.Minute})
	if r := Do(t, "GET", st.Edge.URL+"/socket/sse", "", nil, http.Header{"Authorization": {"Bearer " + expired}}); r.Status != 401 {
		t.Fatalf("expired token: %d %s", r.Status, r.Body)
	}
	// A token sent to ingest (RIG 1.x's session kill).
	killTok := Token(t, "alice", TokenOpts{JTI: jti + "-kill"})
	KillSession(t, st.Ingest.URL, "alice", jti+"-kill", killTok)

	// Shutting down is logged too.
	st.Edge.Stop()
	st.Ingest.Stop()

	edge, ingest := logLines(t, st.Edge.Proc), logLines(t, st.Ingest.Proc)
	session := map[string]string{"session": jti}
	if n := count(edge, "connection opened", session); n != 1 {
		t.Errorf("%d \"connection opened\" lines for session %s, want 1", n, jti)
	}
	if n := count(edge, "connection closed", session); n != 1 {
		t.Errorf("%d \"connection closed\" lines for session %s, want 1", n, jti)
	}
	all := st.Edge.Logs() + st.Ingest.Logs()
	for name, tk := range map[string]string{"accepted": tok, "wrong key": bad, "expired": expired, "kill": killTok} {
		for i, part := range strings.Split(tk, ".") {
			if strings.Contains(all, part) {
				t.Errorf("the %s token's part %d appears in the logs", name, i)
			}
		}
	}
	// Every JWT starts with a base64 JSON object: {" is eyJ.
	if strings.Contains(all, "eyJ") {
		t.Errorf("something like a JWT appears in the logs")
	}
	t.Logf("edge: %d JSON lines, ingest: %d; session %s opened once and closed once; no token text", len(edge), len(ingest), jti)
}
