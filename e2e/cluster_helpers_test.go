package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// TwoEdges is the multi-edge stack: one nats-server with JetStream, two
// edges and one ingest on it.
type TwoEdges struct {
	NATS   *NATSServer
	A, B   *Server
	Ingest *Server
}

// Edges returns both edges.
func (s *TwoEdges) Edges() []*Server { return []*Server{s.A, s.B} }

// StartTwoEdges starts the stack; the edges are named edge-a and edge-b.
// extraEdge and extraIngest are added to the edges' and the ingest's
// environment.
func StartTwoEdges(t testing.TB, extraEdge, extraIngest map[string]string) *TwoEdges {
	t.Helper()
	n := StartNATS(t)
	st := &TwoEdges{NATS: n}
	for i, id := range []string{"edge-a", "edge-b"} {
		env := EdgeEnv(FreePort(t), n.URL)
		env["EDGE_ID"] = id
		for k, v := range extraEdge {
			env[k] = v
		}
		e := StartEdge(t, env)
		if i == 0 {
			st.A = e
		} else {
			st.B = e
		}
	}
	env := IngestEnv(FreePort(t), n.URL)
	for k, v := range extraIngest {
		env[k] = v
	}
	st.Ingest = StartIngest(t, env)
	return st
}

// StartEdgeUnready starts an edge without waiting for it to be ready.
func StartEdgeUnready(t testing.TB, env map[string]string) *Server {
	t.Helper()
	port, _ := strconv.Atoi(env["INBOUND_PORT"])
	s := &Server{Port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port), OpsURL: "http://127.0.0.1:" + env["METRICS_PORT"]}
	s.Proc = StartProc(t, "edge:"+env["INBOUND_PORT"], bin.edge, nil, env)
	// The public port stays closed until the edge is ready; the operations
	// port says why.
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		if !dialOK(strings.TrimPrefix(s.OpsURL, "http://")) {
			return fmt.Errorf("edge's operations port did not listen")
		}
		return nil
	})
	return s
}

// StartNATSWithoutJetStream starts a nats-server that has no JetStream.
func StartNATSWithoutJetStream(t testing.TB) *NATSServer {
	t.Helper()
	port := FreePort(t)
	n := &NATSServer{Port: port, URL: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	n.Proc = StartProc(t, "nats-server", bin.natsServer, []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}, nil)
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !dialOK(fmt.Sprintf("127.0.0.1:%d", port)) {
			return fmt.Errorf("nats-server did not listen")
		}
		return nil
	})
	return n
}

// BlacklistStatus is the JSON of ingest's blacklist answers.
type BlacklistStatus struct {
	SessionID         string    `json:"sessionId"`
	IsBlacklisted     bool      `json:"isBlacklisted"`
	ValidityInSeconds int64     `json:"validityInSeconds"`
	ExpiresAt         time.Time `json:"expiresAt"`
}

// Blacklist POSTs a session to ingest's blacklist, failing the test unless 201.
func Blacklist(t testing.TB, ingestURL, jti string, validitySeconds int) BlacklistStatus {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"sessionId": jti, "validityInSeconds": validitySeconds})
	r := Do(t, "POST", ingestURL+"/v1/session-blacklist", "application/json", body)
	if r.Status != 201 {
		t.Fatalf("POST /v1/session-blacklist %q: %d %s", jti, r.Status, r.Body)
	}
	if loc, want := r.Header.Get("Location"), "/v1/session-blacklist/"+url.PathEscape(jti); loc != want {
		t.Fatalf("Location %q, want %q", loc, want)
	}
	var st BlacklistStatus
	r.JSON(t, &st)
	return st
}

// BlacklistLookup GETs a session's blacklist status: the HTTP status and body.
func BlacklistLookup(t testing.TB, ingestURL, jti string) (int, BlacklistStatus) {
	t.Helper()
	r := Do(t, "GET", ingestURL+"/v1/session-blacklist/"+url.PathEscape(jti), "", nil)
	var st BlacklistStatus
	r.JSON(t, &st)
	return r.Status, st
}

// KillSession is RIG 1.x's DELETE /v1/users/<user>/sessions/<jti>, with an
// optional Authorization token; it fails the test unless 204.
func KillSession(t testing.TB, ingestURL, user, jti, token string) {
	t.Helper()
	var h http.Header
	if token != "" {
		h = http.Header{"Authorization": {"Bearer " + token}}
	}
	r := Do(t, "DELETE", ingestURL+"/v1/users/"+url.PathEscape(user)+"/sessions/"+url.PathEscape(jti), "", nil, h)
	if r.Status != 204 {
		t.Fatalf("DELETE session %q of %q: %d %s", jti, user, r.Status, r.Body)
	}
}

// SSEStatus opens an SSE stream and returns the answer's status, closing
// the stream if it opened.
func SSEStatus(t testing.TB, url string) (int, Response) {
	t.Helper()
	s, r := DialSSE(t, url, nil)
	if s != nil {
		s.Close()
	}
	return r.Status, r
}

// WaitKilled waits until the stream got session_killed and ended, by deadline.
func (s *SSE) WaitKilled(t testing.TB, deadline time.Time) {
	t.Helper()
	for {
		ev := s.Next(t, time.Until(deadline))
		if ev.Event == "heartbeat" {
			continue
		}
		if ev.Event != "session_killed" {
			t.Fatalf("got %+v, want session_killed", ev)
		}
		break
	}
	if !s.Ended(time.Until(deadline)) {
		t.Fatal("stream still open after session_killed")
	}
}

// RawRequest sends a request whose path Go's HTTP client would refuse to
// send (such as a bad %-escape) and reads the answer.
func RawRequest(t testing.TB, base, method, path string) Response {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", method, path, u.Host); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}
