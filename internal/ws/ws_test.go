package ws

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/rig-go/rig/internal/rig"
)

func TestCheckHandshake(t *testing.T) {
	req := func(h map[string]string) *fasthttp.RequestCtx {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("GET")
		for k, v := range h {
			ctx.Request.Header.Set(k, v)
		}
		return &ctx
	}
	good := map[string]string{"Connection": "keep-alive, Upgrade", "Upgrade": "websocket",
		"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	if key, err := CheckHandshake(req(good)); err != nil || key != "dGhlIHNhbXBsZSBub25jZQ==" {
		t.Fatalf("valid handshake: %q %v", key, err)
	}
	for _, c := range []struct {
		change map[string]string
		status int
	}{
		{map[string]string{"Upgrade": ""}, 426},
		{map[string]string{"Connection": "close"}, 426},
		{map[string]string{"Sec-WebSocket-Version": "8"}, 400},
		{map[string]string{"Sec-WebSocket-Key": ""}, 400},
		{map[string]string{"Sec-WebSocket-Key": "c2hvcnQ="}, 400},
		{map[string]string{"Sec-WebSocket-Key": "not base64!!"}, 400},
	} {
		h := map[string]string{}
		for k, v := range good {
			h[k] = v
		}
		for k, v := range c.change {
			h[k] = v
		}
		_, err := CheckHandshake(req(h))
		var he *HandshakeError
		if !errors.As(err, &he) || he.Status != c.status {
			t.Errorf("%v: %v, want %d", c.change, err, c.status)
		}
	}
}

// pair upgrades a real loopback connection the way the edge does and
// returns the server's socket and a real client.
func pair(t *testing.T, mode Mode, pongWait time.Duration, maxMessage int) (*Conn, *websocket.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan *Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			t.Error(err)
			srv <- nil
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(nc))
		if err != nil {
			t.Error(err)
			srv <- nil
			return
		}
		c, err := Upgrade(nc, r.Header.Get("Sec-WebSocket-Key"), time.Second)
		if err != nil {
			t.Error(err)
			srv <- nil
			return
		}
		srv <- New(c, mode, time.Second, pongWait, maxMessage)
	}()
	cl, _, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/socket/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := <-srv
	if s == nil {
		t.FailNow()
	}
	t.Cleanup(func() { cl.Close(); s.ws.Close() })
	return s, cl
}

func read(t *testing.T, cl *websocket.Conn) string {
	t.Helper()
	_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, b, err := cl.ReadMessage()
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if mt != websocket.TextMessage {
		t.Fatalf("message type %d", mt)
	}
	return string(b)
}

func closeCode(t *testing.T, cl *websocket.Conn) int {
	t.Helper()
	_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := cl.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if err != nil {
			t.Fatalf("client read ended without a close frame: %v", err)
		}
	}
}

func TestPlainWrite(t *testing.T) {
	s, cl := pair(t, Plain, time.Minute, 1024)
	pinged := make(chan struct{}, 1)
	cl.SetPingHandler(func(string) error { pinged <- struct{}{}; return nil })
	err := s.Write([]*rig.Event{
		{Kind: rig.KindConnected, Data: []byte(`{"users":["alice"]}`)},
		{Kind: rig.KindHeartbeat, Data: []byte(`{}`)},
		{Kind: rig.KindMessage, ID: "01K", User: "alice", Data: []byte(`{"text":"Hi"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, cl); got != `{"event":"connected","data":{"users":["alice"]}}` {
		t.Fatalf("first frame %s", got)
	}
	if got := read(t, cl); got != `{"event":"message","id":"01K","data":{"text":"Hi"}}` {
		t.Fatalf("second frame %s", got)
	}
	select {
	case <-pinged:
	default:
		t.Fatal("a heartbeat did not become a ping")
	}
	if err := s.Write([]*rig.Event{{Kind: rig.KindReconnect, Data: []byte(`{"reason":"edge restarting"}`)}}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, cl); got != `{"event":"reconnect","data":{"reason":"edge restarting"}}` {
		t.Fatalf("reconnect frame %s", got)
	}
	if code := closeCode(t, cl); code != websocket.CloseServiceRestart {
		t.Fatalf("close code %d, want 1012", code)
	}
	// Nothing is written after the close frame.
	if err := s.Write([]*rig.Event{{Kind: rig.KindMessage, ID: "late"}}); err != nil {
		t.Fatalf("write after close frame: %v", err)
	}
}

func TestPhoenixWrite(t *testing.T) {
	s, cl := pair(t, Phoenix2, time.Minute, 1024)
	err := s.Join("alice", func() error { return nil }, func(error) []byte { return []byte(`["1","1","user:alice","phx_reply",{"status":"ok","response":{}}]`) })
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, cl); !strings.Contains(got, "phx_reply") {
		t.Fatalf("join reply %s", got)
	}
	if err := s.Join("bob", func() error { return errors.New("no") }, func(error) []byte { return []byte(`"refused"`) }); err != nil {
		t.Fatal(err)
	}
	read(t, cl)
	err = s.Write([]*rig.Event{
		{Kind: rig.KindConnected, Data: []byte(`{"users":[]}`)},              // no frame in Phoenix
		{Kind: rig.KindMessage, ID: "b1", User: "bob", Data: []byte(`{}`)},   // not joined
		{Kind: rig.KindMessage, ID: "a1", User: "alice", Data: []byte(`{}`)}, // joined
		{Kind: rig.KindSessionKilled, Data: []byte(`{"reason":"session blacklisted"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, cl); got != `[null,"a1","user:alice","message",{}]` {
		t.Fatalf("message push %s", got)
	}
	if got := read(t, cl); got != `[null,null,"user:alice","session_killed",{"reason":"session blacklisted"}]` {
		t.Fatalf("session_killed push %s", got)
	}
	if code := closeCode(t, cl); code != websocket.CloseNormalClosure {
		t.Fatalf("close code %d, want 1000", code)
	}
}

func TestLeaveStopsMessages(t *testing.T) {
	s, cl := pair(t, Phoenix1, time.Minute, 1024)
	_ = s.Join("alice", func() error { return nil }, func(error) []byte { return []byte(`"joined"`) })
	read(t, cl)
	left := false
	_ = s.Leave("alice", func() { left = true }, []byte(`"left"`))
	read(t, cl)
	if !left {
		t.Fatal("Leave did not unsubscribe")
	}
	_ = s.Write([]*rig.Event{{Kind: rig.KindMessage, ID: "a1", User: "alice", Data: []byte(`{}`)}})
	_ = s.Reply([]byte(`"after"`))
	if got := read(t, cl); got != `"after"` {
		t.Fatalf("got %s after leaving, want nothing for the topic", got)
	}
}

func TestReadLimit(t *testing.T) {
	s, cl := pair(t, Phoenix2, time.Minute, 256)
	go func() { _ = cl.WriteMessage(websocket.TextMessage, make([]byte, 4096)) }()
	_, err := s.Read()
	if !errors.Is(err, websocket.ErrReadLimit) {
		t.Fatalf("Read of an oversized message: %v", err)
	}
	go s.Finish(err)
	if code := closeCode(t, cl); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
}

func TestMissedPongs(t *testing.T) {
	s, cl := pair(t, Plain, 200*time.Millisecond, 1024)
	cl.SetPingHandler(func(string) error { return nil }) // never answers
	go func() {
		for {
			if _, _, err := cl.ReadMessage(); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	err := s.Discard()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Discard: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timed out after %s, want about 200ms", d)
	}
}

func TestPongsKeepTheSocket(t *testing.T) {
	s, cl := pair(t, Plain, 300*time.Millisecond, 1024)
	go func() {
		for {
			if _, _, err := cl.ReadMessage(); err != nil { // answers pings by default
				return
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- s.Discard() }()
	for range 10 { // 1s of pings, three times the pong wait
		if err := s.Write([]*rig.Event{{Kind: rig.KindHeartbeat}}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			t.Fatalf("socket ended although pongs came: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestCloseWithSendsCode(t *testing.T) {
	s, cl := pair(t, Phoenix2, time.Minute, 1024)
	s.CloseWith(websocket.CloseInvalidFramePayloadData, strings.Repeat("x", 200))
	s.CloseWith(websocket.ClosePolicyViolation, "second") // ignored
	go s.Finish(nil)
	if code := closeCode(t, cl); code != websocket.CloseInvalidFramePayloadData {
		t.Fatalf("close code %d, want 1007", code)
	}
}
