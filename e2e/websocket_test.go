package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/rig-go/rig/internal/check"
)

// TestWebSocket runs the delivery rules of SSE over plain WebSockets.
func TestWebSocket(t *testing.T) {
	st := StartStack(t, nil, nil)

	t.Run("posted message reaches the user's socket", func(t *testing.T) {
		w := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "alice"))))
		if ev := w.Next(t, 5*time.Second); ev.Event != "connected" || !sameJSON(ev.Data, []byte(`{"users":["alice"]}`)) {
			t.Fatalf("first frame %+v, want connected for alice", ev)
		}
		id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "Hi"})
		ev := w.Next(t, 5*time.Second)
		if ev.Event != "message" || ev.ID != id || !sameJSON(ev.Data, []byte(`{"user":"alice","text":"Hi"}`)) {
			t.Fatalf("got %+v, want message %s", ev, id)
		}
	})

	t.Run("two sockets of a user both get it, another user gets nothing", func(t *testing.T) {
		a1 := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "carol"))))
		a2 := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "carol"))))
		b := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "dave"))))
		for _, w := range []*WS{a1, a2, b} {
			w.Next(t, 5*time.Second) // connected
		}
		id := Post(t, st.Ingest.URL, map[string]any{"user": "carol", "n": 1})
		for i, w := range []*WS{a1, a2} {
			if ev := w.Next(t, 5*time.Second); ev.ID != id {
				t.Fatalf("socket %d got %+v, want %s", i+1, ev, id)
			}
		}
		// dave's next message is dave's own: carol's never reached him.
		own := Post(t, st.Ingest.URL, map[string]any{"user": "dave", "n": 2})
		if ev := b.Next(t, 5*time.Second); ev.ID != own {
			t.Fatalf("dave got %+v, want only his own message %s", ev, own)
		}
	})

	t.Run("privileged token watches other users", func(t *testing.T) {
		tok := Token(t, "agent", TokenOpts{Roles: []string{"support"}})
		w := MustWS(t, wsURL(st.Edge.URL, plainQuery(tok, "erin", "frank")))
		if ev := w.Next(t, 5*time.Second); !sameJSON(ev.Data, []byte(`{"users":["erin","frank"]}`)) {
			t.Fatalf("connected %+v", ev)
		}
		e := Post(t, st.Ingest.URL, map[string]any{"user": "erin"})
		f := Post(t, st.Ingest.URL, map[string]any{"user": "frank"})
		got := map[string]bool{}
		for range 2 {
			got[w.Next(t, 5*time.Second).ID] = true
		}
		if !got[e] || !got[f] {
			t.Fatalf("watcher got %v, want %s and %s", got, e, f)
		}
	})

	t.Run("refusals at the upgrade", func(t *testing.T) {
		cases := []struct {
			name   string
			q      url.Values
			header http.Header
			status int
		}{
			{"no token", plainQuery(""), nil, 400},
			{"invalid user", plainQuery(Token(t, "alice"), ""), nil, 400},
			{"unknown vsn", phxQuery(Token(t, "alice"), "3.0.0"), nil, 400},
			{"wrong key", plainQuery(wrongKeyToken(t, "alice")), nil, 401},
			{"expired", plainQuery(Token(t, "alice", TokenOpts{TTL: -time.Minute})), nil, 401},
			{"alg none", plainQuery(noneToken("alice")), nil, 401},
			{"phoenix with wrong key", phxQuery(wrongKeyToken(t, "alice"), "2.0.0"), nil, 401},
			{"someone else's messages", plainQuery(Token(t, "alice"), "bob"), nil, 403},
		}
		for _, c := range cases {
			w, r := DialWS(t, wsURL(st.Edge.URL, c.q), WSOpts{Header: c.header})
			if w != nil {
				t.Errorf("%s: upgraded, want %d", c.name, c.status)
				continue
			}
			if r.Status != c.status || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				t.Errorf("%s: %d %s %s, want %d JSON", c.name, r.Status, r.Header.Get("Content-Type"), r.Body, c.status)
				continue
			}
			if msg := r.ErrorMessage(t); msg == "" {
				t.Errorf("%s: empty error", c.name)
			}
		}
		// A plain GET is not an upgrade.
		r := Do(t, "GET", st.Edge.URL+"/socket/websocket?token="+Token(t, "alice"), "", nil)
		if r.Status != 426 || r.ErrorMessage(t) == "" {
			t.Errorf("plain GET: %d %s, want 426", r.Status, r.Body)
		}
	})

	t.Run("abrupt reset leaves other sockets alone", func(t *testing.T) {
		victim := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "gina"))))
		other := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "gina"))))
		victim.Next(t, 5*time.Second)
		other.Next(t, 5*time.Second)
		before, _ := edgeHealth(t, st.Edge.URL)
		victim.Reset()
		check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
			n, _ := edgeHealth(t, st.Edge.URL)
			if n != before-1 {
				return fmt.Errorf("the reset socket is still counted: got %v", n)
			}
			return nil
		})
		id := Post(t, st.Ingest.URL, map[string]any{"user": "gina"})
		if ev := other.Next(t, 5*time.Second); ev.ID != id {
			t.Fatalf("other socket got %+v", ev)
		}
		if !strings.Contains(st.Edge.Logs(), "connection closed") {
			t.Fatal("the reset was not logged")
		}
	})
}

// TestWebSocketOrigins: ALLOWED_ORIGINS refuses other sites' pages at the
// upgrade and on SSE, and answers CORS for allowed ones.
func TestWebSocketOrigins(t *testing.T) {
	st := StartStack(t, map[string]string{"ALLOWED_ORIGINS": "https://app.example.com, http://localhost:3000"}, nil)
	tok := Token(t, "alice")
	origin := func(o string) http.Header { return http.Header{"Origin": {o}} }

	w, r := DialWS(t, wsURL(st.Edge.URL, plainQuery(tok)), WSOpts{Header: origin("https://evil.example.net")})
	if w != nil || r.Status != 403 || !strings.Contains(r.ErrorMessage(t), "origin") {
		t.Fatalf("disallowed origin: %d %s, want 403", r.Status, r.Body)
	}
	MustWS(t, wsURL(st.Edge.URL, plainQuery(tok)), WSOpts{Header: origin("https://app.example.com")}).Next(t, 5*time.Second)
	MustWS(t, wsURL(st.Edge.URL, phxQuery(tok, "2.0.0")), WSOpts{Header: origin("http://localhost:3000")})
	MustWS(t, wsURL(st.Edge.URL, plainQuery(tok))).Next(t, 5*time.Second) // no Origin: not a browser page

	// SSE: refused for a disallowed origin, CORS echoed for an allowed one.
	if s, r := DialSSE(t, sseURL(st.Edge.URL, tok), origin("https://evil.example.net")); s != nil || r.Status != 403 {
		t.Fatalf("SSE from a disallowed origin: %d %s", r.Status, r.Body)
	}
	s, r := DialSSE(t, sseURL(st.Edge.URL, tok), origin("https://app.example.com"))
	if s == nil || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("SSE from an allowed origin: %d %v", r.Status, r.Header)
	}
	s.Close()
	// A page's refused SSE request can read the JSON error.
	if _, r := DialSSE(t, sseURL(st.Edge.URL, ""), origin("https://app.example.com")); r.Status != 400 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("refusal for an allowed origin: %d %v", r.Status, r.Header)
	}
	// And so can a page's plain GET of the WebSocket path, how a client
	// learns why an upgrade was refused.
	for _, c := range []struct {
		tok  string
		want int
	}{{"", 400}, {wrongKeyToken(t, "alice"), 401}, {tok, 426}} {
		r := Do(t, "GET", st.Edge.URL+"/socket/websocket?"+plainQuery(c.tok).Encode(), "", nil, origin("https://app.example.com"))
		if r.Status != c.want || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Fatalf("WebSocket path without upgrade, token %q, allowed origin: %d %v, want %d with CORS", c.tok, r.Status, r.Header, c.want)
		}
	}

	pre := http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"authorization,last-event-id"}}
	r = Do(t, "OPTIONS", st.Edge.URL+"/socket/sse", "", nil, pre)
	if r.Status != 204 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Last-Event-ID") {
		t.Fatalf("preflight: %d %v", r.Status, r.Header)
	}
	pre.Set("Origin", "https://evil.example.net")
	if r = Do(t, "OPTIONS", st.Edge.URL+"/socket/sse", "", nil, pre); r.Status != 403 || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from a disallowed origin: %d %v", r.Status, r.Header)
	}
}

// TestWebSocketPings: the edge pings each heartbeat; a client that never
// answers is closed after two intervals, one that answers stays.
func TestWebSocketPings(t *testing.T) {
	st := StartStack(t, map[string]string{"HEARTBEAT_INTERVAL": "300ms"}, nil)
	good := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "alice"))))
	deaf := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "alice"))), WSOpts{NoPong: true})
	good.Next(t, 5*time.Second)
	deaf.Next(t, 5*time.Second)
	select {
	case <-good.pings:
	case <-time.After(5 * time.Second):
		t.Fatal("no ping within 5s at a 300ms heartbeat")
	}
	start := time.Now()
	if _, ok := deaf.Closed(5 * time.Second); !ok {
		t.Fatal("a client that never answers pings is still connected after 5s")
	}
	t.Logf("deaf client closed %s after the first ping", time.Since(start).Round(time.Millisecond))
	if !good.Open() {
		t.Fatalf("the client that answers pings was closed too: %v", good.Err())
	}
	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice"})
	if ev := good.Next(t, 5*time.Second); ev.ID != id {
		t.Fatalf("got %+v", ev)
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(st.Edge.Logs(), "client missed pongs") {
			return fmt.Errorf("the timeout was not logged")
		}
		return nil
	})
}

// TestWebSocketOversizeMessage: a message over WS_MAX_FRAME_SIZE closes
// that socket with 1009, and only that one.
func TestWebSocketOversizeMessage(t *testing.T) {
	st := StartStack(t, map[string]string{"WS_MAX_FRAME_SIZE": "1KiB"}, nil)
	other := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "alice"))))
	other.Next(t, 5*time.Second)
	for _, q := range []url.Values{plainQuery(Token(t, "alice")), phxQuery(Token(t, "alice"), "2.0.0")} {
		w := MustWS(t, wsURL(st.Edge.URL, q))
		// At the limit: fine (a heartbeat, for the phoenix socket).
		atLimit := `[null,"1","phoenix","heartbeat",{"pad":"` + strings.Repeat("x", 1024-43) + `"}]`
		if len(atLimit) != 1024 {
			t.Fatalf("heartbeat of %d bytes", len(atLimit))
		}
		w.Send(t, atLimit)
		// The edge may close while this is still being written.
		_ = w.Conn.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 64<<10)))
		if code, ok := w.Closed(5 * time.Second); !ok || code != websocket.CloseMessageTooBig {
			t.Fatalf("%s: closed %v with %d, want 1009", q.Get("vsn"), ok, code)
		}
	}
	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice"})
	if ev := other.Next(t, 5*time.Second); ev.ID != id {
		t.Fatalf("other socket got %+v", ev)
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := strings.Count(st.Edge.Logs(), "message larger than WS_MAX_FRAME_SIZE"); got != 2 {
			return fmt.Errorf("want one log line per oversized message: got %v", got)
		}
		return nil
	})
}

// TestWebSocketEndings: final events close with their codes.
func TestWebSocketEndings(t *testing.T) {
	st := StartStack(t, nil, nil)

	w := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "alice", TokenOpts{TTL: 2 * time.Second}))))
	w.Next(t, 5*time.Second)
	if ev := w.Next(t, 10*time.Second); ev.Event != "token_expired" {
		t.Fatalf("got %+v, want token_expired", ev)
	}
	if code, ok := w.Closed(5 * time.Second); !ok || code != websocket.CloseNormalClosure {
		t.Fatalf("after token_expired: closed %v code %d, want 1000", ok, code)
	}

	plain := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "alice"))))
	plain.Next(t, 5*time.Second)
	phx := MustWS(t, wsURL(st.Edge.URL, phxQuery(Token(t, "alice"), "2.0.0")))
	phx.Send(t, `["1","1","user:alice","phx_join",{}]`)
	phx.NextFrame(t, 5*time.Second)
	st.Edge.Signal(syscall.SIGTERM)
	if ev := plain.Next(t, 5*time.Second); ev.Event != "reconnect" {
		t.Fatalf("got %+v, want reconnect", ev)
	}
	for name, s := range map[string]*WS{"plain": plain, "phoenix": phx} {
		if code, ok := s.Closed(5 * time.Second); !ok || code != websocket.CloseServiceRestart {
			t.Fatalf("%s socket on drain: closed %v code %d, want 1012", name, ok, code)
		}
	}
	if !st.Edge.Wait(10 * time.Second) {
		t.Fatal("edge did not stop after its sockets left")
	}
	if code := st.Edge.ExitCode(); code != 0 {
		t.Fatalf("edge exit code %d", code)
	}
}

// TestWebSocketWithoutNATS: an edge cut off from NATS refuses sockets at
// the upgrade with 503, and accepts them again when NATS returns.
func TestWebSocketWithoutNATS(t *testing.T) {
	n := StartNATS(t)
	edge := StartEdge(t, EdgeEnv(FreePort(t), n.URL))
	n.Kill()
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := Do(t, "GET", edge.URL+"/health/ready", "", nil).Status; got != 503 {
			return fmt.Errorf("edge still ready without NATS: got %v", got)
		}
		return nil
	})
	for _, q := range []url.Values{plainQuery(Token(t, "alice")), phxQuery(Token(t, "alice"), "2.0.0")} {
		w, r := DialWS(t, wsURL(edge.URL, q))
		if w != nil || r.Status != 503 || r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s without NATS: %d %v %s, want 503 with Retry-After", q.Get("vsn"), r.Status, r.Header, r.Body)
		}
		r.ErrorMessage(t)
	}
	n.Restart()
	edge.WaitReady(t)
	MustWS(t, wsURL(edge.URL, plainQuery(Token(t, "alice")))).Next(t, 5*time.Second)
}

// TestWebSocketSlowClient: a socket that stops reading is cut off when its
// queue fills, while another socket of the same user gets everything.
func TestWebSocketSlowClient(t *testing.T) {
	// A queue of 64 (16 MiB of these messages): the slow socket still
	// overflows it well before the 200th message, and the fast one, CPU-starved
	// on a loaded machine, is not cut off for falling a few messages behind.
	st := StartStack(t, map[string]string{"CLIENT_QUEUE_SIZE": "64", "HEARTBEAT_INTERVAL": "1m"}, map[string]string{"MESSAGE_MAX_SIZE": "1MiB"})
	slow := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, "alice"))), WSOpts{NoRead: true})
	fast := MustWS(t, wsURL(st.Edge.URL, phxQuery(Token(t, "alice"), "2.0.0")))
	fast.Send(t, `["1","1","user:alice","phx_join",{}]`)
	fast.NextFrame(t, 5*time.Second)
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		c, _ := edgeHealth(t, st.Edge.URL)
		if c != 2 {
			return fmt.Errorf("both sockets not connected: got %v", c)
		}
		return nil
	})

	payload := strings.Repeat("x", 256<<10)
	const total = 200 // 50 MiB: far more than socket buffers hold
	done := make(chan int)
	go func() {
		got := 0
		for got < total {
			f, ok := <-fast.Frames
			if !ok {
				break
			}
			if strings.Contains(string(f[:min(len(f), 80)]), `"message"`) {
				got++
			}
		}
		done <- got
	}()
	for i := range total {
		Post(t, st.Ingest.URL, map[string]any{"user": "alice", "i": i, "pad": payload})
	}
	if got := <-done; got != total {
		t.Fatalf("fast socket got %d of %d messages", got, total)
	}
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		c, _ := edgeHealth(t, st.Edge.URL)
		if c != 1 {
			return fmt.Errorf("slow socket still connected: got %v", c)
		}
		return nil
	})
	if !strings.Contains(st.Edge.Logs(), "slow client") {
		t.Fatal("edge did not log the slow client")
	}
	// The edge closed the slow socket: reading what is buffered ends
	// instead of blocking.
	nc := slow.Conn.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, nc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("slow socket not closed (read %d bytes)", n)
	}
}
