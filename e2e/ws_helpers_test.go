package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// wsURL is the /socket/websocket address of an edge, with query q.
func wsURL(edgeURL string, q url.Values) string {
	return strings.Replace(edgeURL, "http://", "ws://", 1) + "/socket/websocket?" + q.Encode()
}

// plainQuery is the query of a plain socket: token and users[].
func plainQuery(token string, users ...string) url.Values {
	q := url.Values{}
	if token != "" {
		q.Set("token", token)
	}
	for _, u := range users {
		q.Add("users[]", u)
	}
	return q
}

// phxQuery is the query phoenix.js sends: its params, then vsn.
func phxQuery(token, vsn string) url.Values {
	return url.Values{"token": {token}, "vsn": {vsn}}
}

// WS is a live WebSocket read in the background by a real client.
type WS struct {
	Conn   *websocket.Conn
	Frames chan []byte // text frames, in order
	pings  chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	err    error // why reading stopped
}

// WSOpts adjusts how a test socket behaves.
type WSOpts struct {
	Header http.Header
	// NoPong makes the client ignore the server's pings.
	NoPong bool
	// NoRead makes the client never read: a slow client.
	NoRead bool
}

// DialWS opens a socket. A refused handshake returns nil and the HTTP answer.
func DialWS(t testing.TB, u string, o ...WSOpts) (*WS, Response) {
	t.Helper()
	var opt WSOpts
	if len(o) > 0 {
		opt = o[0]
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(u, opt.Header)
	if err != nil {
		if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
			var r Response
			r.Status, r.Header = resp.StatusCode, resp.Header
			r.Body = readAll(resp)
			return nil, r
		}
		t.Fatalf("dial %s: %v", u, err)
	}
	w := &WS{Conn: c, Frames: make(chan []byte, 10000), pings: make(chan struct{}, 1000), done: make(chan struct{})}
	c.SetPingHandler(func(data string) error {
		select {
		case w.pings <- struct{}{}:
		default:
		}
		if opt.NoPong {
			return nil
		}
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	if !opt.NoRead {
		go w.read()
	}
	t.Cleanup(func() { c.Close() })
	return w, Response{Status: 101, Header: resp.Header}
}

func readAll(resp *http.Response) []byte {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return []byte(b.String())
		}
	}
}

// MustWS opens a socket and fails the test unless it opens.
func MustWS(t testing.TB, u string, o ...WSOpts) *WS {
	t.Helper()
	w, r := DialWS(t, u, o...)
	if w == nil {
		t.Fatalf("dial %s: %d %s", u, r.Status, r.Body)
	}
	return w
}

func (w *WS) read() {
	defer close(w.done)
	defer close(w.Frames)
	for {
		mt, data, err := w.Conn.ReadMessage()
		if err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return
		}
		if mt == websocket.TextMessage {
			w.Frames <- data
		}
	}
}

// Send writes a text frame.
func (w *WS) Send(t testing.TB, frame string) {
	t.Helper()
	if err := w.Conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatalf("send %.80q (%d bytes): %v", frame, len(frame), err)
	}
}

// NextFrame returns the next text frame, failing after timeout or at the end.
func (w *WS) NextFrame(t testing.TB, timeout time.Duration) []byte {
	t.Helper()
	select {
	case f, ok := <-w.Frames:
		if !ok {
			t.Fatalf("socket closed: %v", w.Err())
		}
		return f
	case <-time.After(timeout):
		t.Fatalf("no frame within %s", timeout)
	}
	return nil
}

// WSEvent is a plain socket's JSON event.
type WSEvent struct {
	Event string          `json:"event"`
	ID    string          `json:"id"`
	Data  json.RawMessage `json:"data"`
}

// Next returns the next event of a plain socket.
func (w *WS) Next(t testing.TB, timeout time.Duration) WSEvent {
	t.Helper()
	f := w.NextFrame(t, timeout)
	var ev WSEvent
	if err := json.Unmarshal(f, &ev); err != nil || ev.Event == "" {
		t.Fatalf("frame %s is not a JSON event: %v", f, err)
	}
	return ev
}

// Closed waits up to timeout for the socket to end and returns the close
// code the server sent (websocket.CloseAbnormalClosure, 1006, if none).
func (w *WS) Closed(timeout time.Duration) (code int, ok bool) {
	select {
	case <-w.done:
	case <-time.After(timeout):
		return 0, false
	}
	var ce *websocket.CloseError
	if errors.As(w.Err(), &ce) {
		return ce.Code, true
	}
	return websocket.CloseAbnormalClosure, true
}

// Open reports whether the socket is still being read.
func (w *WS) Open() bool {
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// Err is why reading stopped, nil while it goes on.
func (w *WS) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Reset ends the socket with a TCP reset, as a crashed client or a
// dropped network path does.
func (w *WS) Reset() {
	if tc, ok := w.Conn.NetConn().(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	w.Conn.NetConn().Close()
}

// mustJSON unmarshals b into v, failing the test.
func mustJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

// sameJSON reports whether a and b hold equal JSON values.
func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ax, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(ax) == string(by)
}
