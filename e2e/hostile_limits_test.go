package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/rig-go/rig/internal/check"
)

// checkTooMany fails unless r is a 429 with a JSON error and Retry-After.
func checkTooMany(t testing.TB, what string, r Response, wantInError string) {
	t.Helper()
	if r.Status != 429 {
		t.Errorf("%s: %d %s, want 429", what, r.Status, r.Body)
		return
	}
	if msg := r.ErrorMessage(t); !strings.Contains(msg, wantInError) {
		t.Errorf("%s: error %q does not name %s", what, msg, wantInError)
	}
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("%s: Retry-After %q", what, r.Header.Get("Retry-After"))
	}
}

// MAX_CONNECTIONS_PER_IP with no trusted proxy: one address's connections
// past the limit are closed at once, another address still connects, and
// a place comes back when one of the first address's streams ends.
func TestHostilePerIPLimit(t *testing.T) {
	st := StartStack(t, map[string]string{"TRUSTED_PROXIES": "none", "MAX_CONNECTIONS_PER_IP": "5"}, nil)
	from2 := ClientFrom("127.0.0.2")
	var streams []*SSE
	accepted := 0
	for i := range 8 {
		s, r, err := DialSSEWith(t, from2, sseURL(st.Edge.URL, Token(t, fmt.Sprintf("ip-user-%d", i))), nil)
		if err == nil && s != nil {
			streams = append(streams, s)
			accepted++
		} else if err == nil {
			t.Errorf("stream %d from 127.0.0.2: %d %s, want 200 or a closed connection", i, r.Status, r.Body)
		}
	}
	t.Logf("8 SSE streams from 127.0.0.2 with MAX_CONNECTIONS_PER_IP=5: %d accepted", accepted)
	if accepted != 5 {
		t.Fatalf("%d of 8 streams from one address accepted, want 5", accepted)
	}
	if s, r, err := DialSSEWith(t, ClientFrom("127.0.0.3"), sseURL(st.Edge.URL, Token(t, "ip-other")), nil); err != nil || s == nil {
		t.Fatalf("another address: %v %d %s", err, r.Status, r.Body)
	}
	if got := metric(t, st.Edge, `rig_edge_connections_refused_total{reason="ip"}`); got != 3 {
		t.Errorf("refused for ip: %v, want 3", got)
	}
	streams[0].Close()
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		s, _, err := DialSSEWith(t, from2, sseURL(st.Edge.URL, Token(t, "ip-again")), nil)
		if !(err == nil && s != nil) {
			return fmt.Errorf("no place for 127.0.0.2 after one of its streams ended")
		}
		return nil
	})
}

// MAX_CONNECTIONS_PER_MINUTE: an address that opens more /socket/*
// requests than its minute's allowance gets 429 with Retry-After, on every
// transport; another address does not.
func TestHostilePerMinuteLimit(t *testing.T) {
	st := StartStack(t, map[string]string{"TRUSTED_PROXIES": "none", "MAX_CONNECTIONS_PER_MINUTE": "10"}, nil)
	from2 := ClientFrom("127.0.0.2")
	ok := 0
	var last Response
	for i := range 12 {
		s, r, err := DialSSEWith(t, from2, sseURL(st.Edge.URL, Token(t, fmt.Sprintf("rate-user-%d", i))), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if s != nil {
			ok++
			s.Close()
		} else {
			last = r
		}
	}
	t.Logf("12 SSE connections in a row from one address with MAX_CONNECTIONS_PER_MINUTE=10: %d accepted, then %d", ok, last.Status)
	if ok != 10 {
		t.Errorf("%d of 12 connections accepted, want 10", ok)
	}
	checkTooMany(t, "SSE past the minute's allowance", last, "MAX_CONNECTIONS_PER_MINUTE")
	resp, err := from2.Get(st.Edge.URL + "/socket/longpoll?token=" + Token(t, "rate-poll"))
	if err != nil {
		t.Fatal(err)
	}
	r := Response{Status: resp.StatusCode, Header: resp.Header, Body: readAll(resp)}
	checkTooMany(t, "long-poll past the minute's allowance", r, "MAX_CONNECTIONS_PER_MINUTE")
	if s, r, err := DialSSEWith(t, ClientFrom("127.0.0.3"), sseURL(st.Edge.URL, Token(t, "rate-other")), nil); err != nil || s == nil {
		t.Fatalf("another address: %v %d %s", err, r.Status, r.Body)
	}
	if got := metric(t, st.Edge, `rig_edge_connections_refused_total{reason="ip_rate"}`); got != 3 {
		t.Errorf("refused for ip_rate: %v, want 3", got)
	}
}

// MAX_CONNECTIONS_PER_USER counts a user's open streams on every transport
// and waiting long-polls: past it, each gets 429 before anything starts;
// another user is not affected; a place comes back when a stream ends.
func TestHostilePerUserLimit(t *testing.T) {
	st := StartStack(t, map[string]string{"MAX_CONNECTIONS_PER_USER": "3", "LONGPOLL_TIMEOUT": "2s"}, nil)
	user := "cap-user"
	a := MustSSE(t, sseURL(st.Edge.URL, Token(t, user)))
	MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, user))))
	pollDone := make(chan Response, 1)
	go func() {
		resp, err := http.Get(pollURL(st.Edge.URL, Token(t, user), ""))
		if err != nil {
			pollDone <- Response{}
			return
		}
		pollDone <- Response{Status: resp.StatusCode, Header: resp.Header, Body: readAll(resp)}
	}()
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := metric(t, st.Edge, `rig_edge_connections{transport="longpoll"}`); got != 1 {
			return fmt.Errorf("the long-poll does not wait: got %v", got)
		}
		return nil
	})

	_, r := DialSSE(t, sseURL(st.Edge.URL, Token(t, user)), nil)
	checkTooMany(t, "4th connection of a user (SSE)", r, "MAX_CONNECTIONS_PER_USER")
	_, r = DialWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, user))))
	checkTooMany(t, "4th connection of a user (WebSocket)", r, "MAX_CONNECTIONS_PER_USER")
	_, r = DialWS(t, wsURL(st.Edge.URL, phxQuery(Token(t, user), "2.0.0")))
	checkTooMany(t, "4th connection of a user (Phoenix)", r, "MAX_CONNECTIONS_PER_USER")
	r = Do(t, "GET", pollURL(st.Edge.URL, Token(t, user), ""), "", nil)
	checkTooMany(t, "4th connection of a user (long-poll)", r, "MAX_CONNECTIONS_PER_USER")
	MustSSE(t, sseURL(st.Edge.URL, Token(t, "other-user")))
	if got := metric(t, st.Edge, `rig_edge_connections_refused_total{reason="user"}`); got != 4 {
		t.Errorf("refused for user: %v, want 4", got)
	}
	if p := <-pollDone; p.Status != 200 {
		t.Fatalf("the waiting long-poll: %d %s", p.Status, p.Body)
	}
	// The long-poll answered: its place is free, and one more when a stream ends.
	MustSSE(t, sseURL(st.Edge.URL, Token(t, user)))
	a.Close()
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		s, _, err := DialSSEWith(t, http.DefaultClient, sseURL(st.Edge.URL, Token(t, user)), nil)
		if !(err == nil && s != nil) {
			return fmt.Errorf("no place for the user after one of its streams ended")
		}
		return nil
	})
}

// The 3,000 SSE streams on one token, scaled down: of 100 streams
// on one session (jti), MAX_CONNECTIONS_PER_SESSION (default 20) are
// accepted and the rest get 429; another session of the same user still
// connects.
func TestHostilePerSessionLimit(t *testing.T) {
	st := StartStack(t, nil, nil)
	token := Token(t, "session-user")
	accepted, refused := 0, 0
	var last Response
	for range 100 {
		s, r, err := DialSSEWith(t, http.DefaultClient, sseURL(st.Edge.URL, token), nil)
		switch {
		case err != nil:
			t.Fatal(err)
		case s != nil:
			accepted++
		default:
			refused++
			last = r
		}
	}
	t.Logf("100 SSE streams on one jti with defaults: %d accepted, %d refused (%d)", accepted, refused, last.Status)
	if accepted != 20 {
		t.Errorf("%d of 100 streams on one session accepted, want 20 (MAX_CONNECTIONS_PER_SESSION)", accepted)
	}
	if refused > 0 {
		checkTooMany(t, "stream 21 of a session", last, "MAX_CONNECTIONS_PER_SESSION")
	}
	MustSSE(t, sseURL(st.Edge.URL, Token(t, "session-user")))
	if got := metric(t, st.Edge, `rig_edge_connections_refused_total{reason="session"}`); int(got) != refused {
		t.Errorf("refused for session: %v, want %d", got, refused)
	}
}

// Behind a trusted proxy the client is the address it forwards: limited
// per forwarded address (429), the proxy itself never; an untrusted peer's
// X-Forwarded-For is ignored and its own address is limited (closed at
// accept).
func TestHostileTrustedProxy(t *testing.T) {
	st := StartStack(t, map[string]string{"TRUSTED_PROXIES": "127.0.0.1/32", "MAX_CONNECTIONS_PER_IP": "2"}, nil)
	proxy := ClientFrom("127.0.0.1")
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
	n := 0
	tok := func() string { n++; return Token(t, fmt.Sprintf("proxied-%d", n)) }

	for i := range 2 {
		if s, r, err := DialSSEWith(t, proxy, sseURL(st.Edge.URL, tok()), xff("203.0.113.7")); err != nil || s == nil {
			t.Fatalf("stream %d for 203.0.113.7 through the proxy: %v %d %s", i, err, r.Status, r.Body)
		}
	}
	_, r, err := DialSSEWith(t, proxy, sseURL(st.Edge.URL, tok()), xff("203.0.113.7"))
	if err != nil {
		t.Fatal(err)
	}
	checkTooMany(t, "3rd stream of a forwarded client", r, "203.0.113.7")
	// What the client wrote itself comes first and is ignored.
	if s, r, err := DialSSEWith(t, proxy, sseURL(st.Edge.URL, tok()), xff("203.0.113.7, 203.0.113.8")); err != nil || s == nil {
		t.Fatalf("another forwarded client: %v %d %s", err, r.Status, r.Body)
	}
	// The proxy's own connections (no header) are not limited.
	for i := range 4 {
		if s, r, err := DialSSEWith(t, proxy, sseURL(st.Edge.URL, tok()), nil); err != nil || s == nil {
			t.Fatalf("proxy's own stream %d: %v %d %s", i, err, r.Status, r.Body)
		}
	}
	// An untrusted peer forging the header is limited by its own address.
	forger := ClientFrom("127.0.0.2")
	ok := 0
	for i := range 4 {
		s, _, err := DialSSEWith(t, forger, sseURL(st.Edge.URL, tok()), xff(fmt.Sprintf("198.51.100.%d", i)))
		if err == nil && s != nil {
			ok++
		}
	}
	t.Logf("untrusted peer with forged X-Forwarded-For: %d of 4 streams accepted", ok)
	if ok != 2 {
		t.Errorf("an untrusted peer with forged headers got %d streams, want 2", ok)
	}
	if !strings.Contains(st.Edge.Logs(), "remote=203.0.113.7") {
		t.Errorf("the edge does not log the forwarded client address")
	}
	if got := metric(t, st.Edge, `rig_edge_connections_refused_total{reason="ip"}`); got != 3 {
		t.Errorf("refused for ip: %v, want 3 (1 forwarded, 2 at accept)", got)
	}
}

// Connections that come and go at once, on every transport, many at a
// time on one session, some cut off in the middle of their start: none of
// them keeps a place. Afterwards the edge counts no TCP connection and the
// session gets its full MAX_CONNECTIONS_PER_SESSION again.
func TestHostileConnectionChurn(t *testing.T) {
	st := StartStack(t, map[string]string{"MAX_CONNECTIONS_PER_SESSION": "5", "LONGPOLL_TIMEOUT": "300ms"}, nil)
	token := Token(t, "churn-user")
	var wg sync.WaitGroup
	var opened, refused atomic.Int64
	for i := range 120 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i % 4 {
			case 0, 1: // SSE, half of them cut off after a moment
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%7)*3*time.Millisecond+time.Millisecond)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, "GET", sseURL(st.Edge.URL, token), nil)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					if resp.StatusCode == 200 {
						opened.Add(1)
					} else {
						refused.Add(1)
					}
					resp.Body.Close()
				}
			case 2: // WebSocket, plain or Phoenix, closed at once
				q := plainQuery(token)
				if i%8 == 2 {
					q = phxQuery(token, "2.0.0")
				}
				d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
				c, resp, err := d.Dial(wsURL(st.Edge.URL, q), nil)
				if err == nil {
					opened.Add(1)
					c.Close()
				} else if resp != nil {
					refused.Add(1)
				}
			case 3: // long-poll, waiting out its timeout
				if resp, err := http.Get(pollURL(st.Edge.URL, token, "")); err == nil {
					if resp.StatusCode == 200 {
						opened.Add(1)
					} else {
						refused.Add(1)
					}
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("churn: 120 connections on one session with MAX_CONNECTIONS_PER_SESSION=5: %d opened, %d refused (429), the rest cut off", opened.Load(), refused.Load())
	// The test's own client keeps answered requests' connections for
	// reuse: those are not the edge's to close.
	http.DefaultClient.CloseIdleConnections()
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		m := Scrape(t, st.Edge.OpsURL+"/metrics")
		if !(m["rig_edge_tcp_connections"] == 0 && m[`rig_edge_connections{transport="sse"}`] == 0 &&
			m[`rig_edge_connections{transport="websocket"}`] == 0 && m[`rig_edge_connections{transport="phoenix"}`] == 0 &&
			m[`rig_edge_connections{transport="longpoll"}`] == 0) {
			return fmt.Errorf("connections still counted after the churn: %v tcp, %v sse, %v long-poll", m["rig_edge_tcp_connections"], m[`rig_edge_connections{transport="sse"}`], m[`rig_edge_connections{transport="longpoll"}`])
		}
		return nil
	})
	for i := range 5 {
		if s, r, err := DialSSEWith(t, http.DefaultClient, sseURL(st.Edge.URL, token), nil); err != nil || s == nil {
			t.Fatalf("stream %d of the session after the churn: %v %d %s", i, err, r.Status, r.Body)
		}
	}
	_, r := DialSSE(t, sseURL(st.Edge.URL, token), nil)
	checkTooMany(t, "stream 6 of the session after the churn", r, "MAX_CONNECTIONS_PER_SESSION")
}
