package ws

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	"github.com/rig-go/rig/internal/ws/wstest"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/rig"
	"github.com/rig-go/rig/internal/wire"
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
// plain frames each event as RIG's JSON, as the edge's plain sockets do.
func plain(dst [][]byte, ev *rig.Event) [][]byte { return append(dst, wire.Encoded(ev)) }

func pair(t *testing.T, enc Encoder, pongWait time.Duration, maxMessage int) (*Conn, *websocket.Conn) {
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
		c, err := Upgrade(nc, r.Header.Get("Sec-WebSocket-Key"), time.Second, maxMessage)
		if err != nil {
			t.Error(err)
			srv <- nil
			return
		}
		srv <- New(c, enc, time.Second, pongWait, maxMessage)
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

func TestPlainWrite(t *testing.T) {
	s, cl := pair(t, plain, time.Minute, 1024)
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
	if got := wstest.ReadText(t, cl); got != `{"event":"connected","data":{"users":["alice"]}}` {
		t.Fatalf("first frame %s", got)
	}
	if got := wstest.ReadText(t, cl); got != `{"event":"message","id":"01K","data":{"text":"Hi"}}` {
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
	if got := wstest.ReadText(t, cl); got != `{"event":"reconnect","data":{"reason":"edge restarting"}}` {
		t.Fatalf("reconnect frame %s", got)
	}
	// Nothing is written after the final event; Close sends its close frame.
	if err := s.Write([]*rig.Event{{Kind: rig.KindMessage, ID: "late"}}); err != nil {
		t.Fatalf("write after the final event: %v", err)
	}
	go s.Close(client.DisconnectDraining)
	if code := wstest.CloseCode(t, cl); code != websocket.CloseServiceRestart {
		t.Fatalf("close code %d, want 1012", code)
	}
	// Nothing is written after the close frame.
	if err := s.Write([]*rig.Event{{Kind: rig.KindMessage, ID: "late"}}); err != nil {
		t.Fatalf("write after close frame: %v", err)
	}
}

func TestReadLimit(t *testing.T) {
	s, cl := pair(t, plain, time.Minute, 256)
	go func() { _ = cl.WriteMessage(websocket.TextMessage, make([]byte, 4096)) }()
	_, err := s.Read()
	if !errors.Is(err, websocket.ErrReadLimit) {
		t.Fatalf("Read of an oversized message: %v", err)
	}
	// The library sent its 1009 and refuses writes: the writer learns the
	// socket is closing (and leaves the reason to the reader), not that a
	// write failed. CI once logged "write failed" for this socket.
	for _, ev := range []*rig.Event{{Kind: rig.KindMessage, ID: "late"}, {Kind: rig.KindHeartbeat}} {
		if err := s.Write([]*rig.Event{ev}); !errors.Is(err, client.ErrClosing) {
			t.Fatalf("%v written after the library's close frame: %v, want ErrClosing", ev.Kind, err)
		}
	}
	go s.CloseAfterRead(err)
	if code := wstest.CloseCode(t, cl); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
}

func TestMissedPongs(t *testing.T) {
	s, cl := pair(t, plain, 200*time.Millisecond, 1024)
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
	s, cl := pair(t, plain, 300*time.Millisecond, 1024)
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
	s, cl := pair(t, plain, time.Minute, 1024)
	s.CloseWith(client.Disconnect{Code: websocket.CloseInvalidFramePayloadData, Reason: strings.Repeat("x", 200)})
	s.CloseWith(client.Disconnect{Code: websocket.ClosePolicyViolation, Reason: "second"}) // ignored
	go s.CloseAfterRead(nil)
	if code := wstest.CloseCode(t, cl); code != websocket.CloseInvalidFramePayloadData {
		t.Fatalf("close code %d, want 1007", code)
	}
}

// TestPingFlood: pings count against the frame budget. The library's
// default handler answered every one; now the read fails with ErrFlood
// after the burst, and no more pongs go out.
func TestPingFlood(t *testing.T) {
	s, cl := pair(t, plain, time.Minute, 1024)
	var pongs atomic.Int64
	cl.SetPongHandler(func(string) error { pongs.Add(1); return nil })
	go func() {
		for {
			if _, _, err := cl.ReadMessage(); err != nil {
				return
			}
		}
	}()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if cl.WriteControl(websocket.PingMessage, []byte("x"), time.Now().Add(time.Second)) != nil {
				return
			}
		}
	}()
	err := s.Discard()
	if !errors.Is(err, ErrFlood) {
		t.Fatalf("Discard during a ping flood: %v, want ErrFlood", err)
	}
	// The frame over the budget was not answered; the client may not have
	// read every earlier pong yet, so this is an upper bound.
	if n := pongs.Load(); n > FrameBurst+1 {
		t.Fatalf("%d pongs answered, want at most the burst of %d", n, FrameBurst)
	}
}

// TestFrameBudgetCountsEverything: messages and pongs share the budget.
func TestFrameBudgetCountsEverything(t *testing.T) {
	s, cl := pair(t, plain, time.Minute, 1024)
	go func() {
		for i := 0; ; i++ {
			var err error
			if i%2 == 0 {
				err = cl.WriteMessage(websocket.TextMessage, []byte(`[null,"1","phoenix","heartbeat",{}]`))
			} else {
				err = cl.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
			}
			if err != nil {
				return
			}
		}
	}()
	reads := 0
	for {
		_, err := s.Read()
		if errors.Is(err, ErrFlood) {
			break
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		reads++
	}
	// About half the burst went to pongs.
	if reads > FrameBurst/2+1 || reads < FrameBurst/2-FrameRate {
		t.Fatalf("%d messages read before ErrFlood, want about %d (half of the burst)", reads, FrameBurst/2)
	}
}

// TestInvalidUTF8: a text message that is not UTF-8 fails the read, on a
// plain socket (checked while it is dropped) and a Phoenix one; a binary
// message on a plain socket is dropped unchecked; valid text passes.
func TestInvalidUTF8(t *testing.T) {
	s, cl := pair(t, plain, time.Minute, 1<<16)
	msgs := []struct {
		typ  int
		data []byte
	}{
		{websocket.TextMessage, []byte("héllo, 世界 🎉")},
		{websocket.BinaryMessage, []byte("bad \xff")},
		{websocket.TextMessage, []byte(strings.Repeat("é", 3000))}, // runes cut between reads
		{websocket.TextMessage, append([]byte(strings.Repeat("a", 2000)), 0xff)},
	}
	go func() {
		for _, m := range msgs {
			if cl.WriteMessage(m.typ, m.data) != nil {
				return
			}
		}
	}()
	for _, m := range msgs[:3] {
		if err := s.Discard(); err != nil {
			t.Fatalf("Discard(%.20q): %v", m.data, err)
		}
	}
	if err := s.Discard(); !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("Discard of invalid UTF-8: %v, want ErrInvalidUTF8", err)
	}

	p, pcl := pair(t, plain, time.Minute, 1024)
	go func() {
		_ = pcl.WriteMessage(websocket.TextMessage, []byte(`["1","1","user:a","phx_join",{"x":"bad `+"\xff"+`"}]`))
	}()
	if _, err := p.Read(); !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("Read of invalid UTF-8: %v, want ErrInvalidUTF8", err)
	}
}

// chunkReader returns its data a few bytes at a time.
type chunkReader struct {
	data []byte
	size int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.size, len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestCheckUTF8(t *testing.T) {
	for _, c := range []struct {
		in    string
		valid bool
	}{
		{"", true},
		{"plain", true},
		{"é世🎉", true},
		{"\xff", false},
		{"\xc3", false},          // cut at the end
		{"\xf0\x9f\x8e", false},  // cut at the end
		{"a\xed\xa0\x80", false}, // a surrogate
		{"\xc0\xaf", false},      // overlong
		{"\x80", false},          // a lone continuation byte
	} {
		for size := 1; size <= 5; size++ {
			err := checkUTF8(&chunkReader{data: []byte(c.in), size: size})
			if got := err == nil; got != c.valid || (err != nil && !errors.Is(err, ErrInvalidUTF8)) {
				t.Errorf("checkUTF8(%q) in pieces of %d: %v, want valid %v", c.in, size, err, c.valid)
			}
		}
	}
	if err := checkUTF8(iotest.ErrReader(io.ErrUnexpectedEOF)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a read error: %v, want it returned", err)
	}
}

// FuzzCheckUTF8: read in pieces of any size, checkUTF8 agrees with
// utf8.Valid on the whole.
func FuzzCheckUTF8(f *testing.F) {
	f.Add([]byte("é世🎉"), uint8(1))
	f.Add([]byte("bad \xff"), uint8(3))
	f.Add([]byte(strings.Repeat("🎉", 200)), uint8(255))
	f.Fuzz(func(t *testing.T, data []byte, size uint8) {
		err := checkUTF8(&chunkReader{data: data, size: int(size%64) + 1})
		if want := utf8.Valid(data); (err == nil) != want {
			t.Fatalf("checkUTF8(%q) in pieces of %d: %v, utf8.Valid: %v", data, int(size%64)+1, err, want)
		}
	})
}

// TestFragmentFlood: a message that never ends, as empty continuation
// frames sent as fast as the client can, runs out of the byte budget;
// the frame budget never sees them (they are inside one message).
func TestFragmentFlood(t *testing.T) {
	s, cl := pair(t, plain, time.Minute, 1024)
	nc := cl.NetConn()
	frames := bytes.Repeat([]byte{0x00, 0x80, 0, 0, 0, 0}, 1000) // continuation, not final, masked, empty
	go func() {
		if _, err := nc.Write([]byte{0x01, 0x80, 0, 0, 0, 0}); err != nil { // a text message, not final
			return
		}
		for {
			_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := nc.Write(frames); err != nil {
				return
			}
		}
	}()
	start := time.Now()
	if err := s.Discard(); !errors.Is(err, ErrFlood) {
		t.Fatalf("Discard of an endless message: %v, want ErrFlood", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("ErrFlood after %s, want it once the burst (%d bytes) is spent", d, 1024+ByteBurst)
	}
}
