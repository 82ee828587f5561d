package edge

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/ws/wstest"

	"github.com/fasthttp/websocket"

	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/phoenix"
	"github.com/rig-go/rig/internal/positions"
	"github.com/rig-go/rig/internal/rig"
	"github.com/rig-go/rig/internal/ws"
)

// wsPair upgrades a real loopback connection the way the edge does and
// returns the server's socket, writing frames with enc, and a real client.
func wsPair(t *testing.T, enc ws.Encoder) (*ws.Conn, *websocket.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan *ws.Conn, 1)
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
		c, err := ws.Upgrade(nc, r.Header.Get("Sec-WebSocket-Key"), time.Second, 1024)
		if err != nil {
			t.Error(err)
			srv <- nil
			return
		}
		srv <- ws.New(c, enc, time.Second, time.Minute, 1024)
	}()
	cl, _, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/socket/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := <-srv
	if s == nil {
		t.FailNow()
	}
	t.Cleanup(func() { cl.Close(); s.Close(client.DisconnectShutdown) })
	return s, cl
}

// newPhoenixPair is a Phoenix socket of a registered client, on a real
// socket, with a real client at the other end.
func newPhoenixPair(t *testing.T, s *Server, v phoenix.Version) (*phoenixSocket, *websocket.Conn) {
	t.Helper()
	cl := client.New(&rig.Session{User: "alice", ID: "s1", Expires: time.Now().Add(time.Hour)}, "phoenix", 64)
	if err := s.hub.Register(cl, "s1", nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.hub.Unregister(cl) })
	p := s.newPhoenixSocket(&conn{Client: cl}, v)
	wc, peer := wsPair(t, p.frames)
	p.wc, p.w = wc, wsReplies{wc}
	return p, peer
}

// TestPhoenixFrames: a Phoenix socket pushes the messages of joined topics
// only, writes no connected event, and tells each channel of a final
// event before the close frame.
func TestPhoenixFrames(t *testing.T) {
	s, _ := newTestEdge(t)
	p, peer := newPhoenixPair(t, s, phoenix.V2)
	if err := s.hub.AddUser(p.cn.Client, "alice"); err != nil { // as a join does
		t.Fatal(err)
	}
	err := p.wc.Write([]*rig.Event{
		{Kind: rig.KindConnected, Data: []byte(`{"users":[]}`)},              // no frame in Phoenix
		{Kind: rig.KindMessage, ID: "b1", User: "bob", Data: []byte(`{}`)},   // not joined
		{Kind: rig.KindMessage, ID: "a1", User: "alice", Data: []byte(`{}`)}, // joined
		{Kind: rig.KindSessionKilled, Data: []byte(`{"reason":"session blacklisted"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := wstest.ReadText(t, peer); got != `[null,"a1","user:alice","message",{}]` {
		t.Fatalf("message push %s", got)
	}
	if got := wstest.ReadText(t, peer); got != `[null,null,"user:alice","session_killed",{"reason":"session blacklisted"}]` {
		t.Fatalf("session_killed push %s", got)
	}
	go p.wc.Close(client.DisconnectSessionKilled)
	if code := wstest.CloseCode(t, peer); code != websocket.CloseNormalClosure {
		t.Fatalf("close code %d, want 1000", code)
	}
}

// TestPhoenixLeaveStopsMessages: after a leave's reply, nothing more of
// the topic is written, even what was already queued.
func TestPhoenixLeaveStopsMessages(t *testing.T) {
	s, _ := newTestEdge(t)
	p, peer := newPhoenixPair(t, s, phoenix.V1)
	if err := s.hub.AddUser(p.cn.Client, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := p.leave(phoenix.Frame{Topic: "user:alice", Event: phoenix.EventLeave, Ref: `"2"`}); err != nil {
		t.Fatal(err)
	}
	if got := wstest.ReadText(t, peer); got != `{"topic":"user:alice","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"2","join_ref":null}` {
		t.Fatalf("leave reply %s", got)
	}
	if users := p.cn.Users(); len(users) != 0 || s.hub.UserCount() != 0 {
		t.Fatalf("after leaving: users %v, subscriptions %d", users, s.hub.UserCount())
	}
	_ = p.wc.Write([]*rig.Event{{Kind: rig.KindMessage, ID: "a1", User: "alice", Data: []byte(`{}`)}})
	_ = p.wc.WriteText([]byte(`"after"`))
	if got := wstest.ReadText(t, peer); got != `"after"` {
		t.Fatalf("got %s after leaving, want nothing for the topic", got)
	}
}

// slowHistory is the edge's history, except that reading a user's latest
// position waits until release is closed: a join that reads where it
// starts waits as it would on a JetStream that is slow to answer.
type slowHistory struct {
	positions.History
	reading chan struct{} // closed when the read began
	once    sync.Once
	release chan struct{}
}

func (h *slowHistory) LastSeq(ctx context.Context, user string) (uint64, error) {
	h.once.Do(func() { close(h.reading) })
	select {
	case <-h.release:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return h.History.LastSeq(ctx, user)
}

// TestPhoenixJoinDoesNotStallTheSocket: while a join waits for history
// (up to 10 s), the socket still writes: pings, and the messages of the
// channels already joined. The join's reply comes before its first message.
func TestPhoenixJoinDoesNotStallTheSocket(t *testing.T) {
	s, _ := newTestEdge(t)
	slow := &slowHistory{History: s.history, reading: make(chan struct{}), release: make(chan struct{})}
	// Before any subscription: the lanes have not read it yet.
	s.subs.positions = positions.New(slow, positions.Counters{
		Duplicates: s.metrics.Duplicates, Fills: s.metrics.GapFills, Filled: s.metrics.GapFilled, ReadFailures: s.metrics.HistoryReadFailures,
	}, s.log)
	defer func() {
		select {
		case <-slow.release:
		default:
			close(slow.release)
		}
	}()
	p, peer := newPhoenixPair(t, s, phoenix.V2)
	p.cn.Attach(p.wc)
	if err := s.hub.AddUser(p.cn.Client, "bob"); err != nil { // a channel joined before
		t.Fatal(err)
	}
	pings := make(chan struct{}, 8)
	peer.SetPingHandler(func(string) error { pings <- struct{}{}; return nil })
	frames := make(chan string, 8)
	go func() {
		for {
			_, b, err := peer.ReadMessage()
			if err != nil {
				close(frames)
				return
			}
			frames <- string(b)
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case f := <-frames:
			return f
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s", what)
		}
		return ""
	}

	joined := make(chan error, 1)
	go func() {
		joined <- p.join(phoenix.Frame{JoinRef: `"1"`, Ref: `"1"`, Topic: "user:alice", Event: phoenix.EventJoin, Payload: []byte(`{}`)})
	}()
	select {
	case <-slow.reading:
	case <-time.After(5 * time.Second):
		t.Fatal("the join did not read history")
	}
	// The join waits. The socket writes meanwhile.
	p.cn.Deliver(heartbeat)
	select {
	case <-pings:
	case <-time.After(5 * time.Second):
		t.Fatal("no ping while a join waited")
	}
	s.hub.Publish("bob", &rig.Event{Kind: rig.KindMessage, ID: "b1", User: "bob", Seq: 1, Data: []byte(`{}`)})
	if got := next("message of a joined channel while a join waited"); got != `[null,"b1","user:bob","message",{}]` {
		t.Fatalf("got %s", got)
	}
	s.hub.Publish("alice", &rig.Event{Kind: rig.KindMessage, ID: "a1", User: "alice", Seq: 2, Data: []byte(`{}`)})
	close(slow.release)
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	if got := next("join reply"); !strings.HasPrefix(got, `["1","1","user:alice","phx_reply",{"status":"ok"`) {
		t.Fatalf("got %s, want the join reply first", got)
	}
	if got := next("alice's message after the join"); got != `[null,"a1","user:alice","message",{}]` {
		t.Fatalf("got %s", got)
	}
}
