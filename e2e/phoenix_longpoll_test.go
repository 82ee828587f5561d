package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rig-go/rig/internal/check"
)

// nodeLongPoll is e2e/js/phoenix_longpoll_client.mjs running: the phoenix
// npm package over its LongPoll transport.
type nodeLongPoll struct {
	t      *testing.T
	lines  chan jsLine
	stderr *syncBuffer

	mu   sync.Mutex
	seen []jsLine
}

func startNodeLongPoll(t *testing.T, edgeURL, token, user, other, mode string) *nodeLongPoll {
	t.Helper()
	node := nodeClients(t)
	cmd := exec.Command(node, "phoenix_longpoll_client.mjs")
	cmd.Dir = jsDir
	cmd.Env = append(os.Environ(), "EDGE_URL="+edgeURL, "TOKEN="+token, "USER="+user, "OTHER_USER="+other, "MODE="+mode)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	n := &nodeLongPoll{t: t, lines: make(chan jsLine, 10000), stderr: &syncBuffer{}}
	cmd.Stderr = n.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l jsLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				continue
			}
			l.raw = sc.Text()
			n.lines <- l
		}
		close(n.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("node stderr:\n%s", n.stderr.String())
		}
	})
	return n
}

// next returns the next line for which match holds, logging the others.
func (n *nodeLongPoll) next(timeout time.Duration, what string, match func(jsLine) bool) jsLine {
	n.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-n.lines:
			if !ok {
				n.t.Fatalf("node exited before %s\n%s", what, n.stderr.String())
			}
			n.mu.Lock()
			n.seen = append(n.seen, l)
			n.mu.Unlock()
			if l.Event != "message" {
				n.t.Logf("node: %s", l.raw)
			}
			if match(l) {
				return l
			}
		case <-deadline:
			n.t.Fatalf("node printed no %s within %s", what, timeout)
		}
	}
}

// messages reads message lines until want of them are in, and returns
// their ids in the order they came.
func (n *nodeLongPoll) messages(timeout time.Duration, want int) []string {
	n.t.Helper()
	var ids []string
	deadline := time.Now().Add(timeout)
	for len(ids) < want {
		l := n.next(time.Until(deadline), fmt.Sprintf("message %d of %d", len(ids)+1, want), func(l jsLine) bool { return l.Event == "message" })
		ids = append(ids, l.ID)
	}
	return ids
}

// joinedAliceRefusedBob waits for the two joins' answers, in either order.
func (n *nodeLongPoll) joinedAliceRefusedBob() {
	n.t.Helper()
	var joined, refused bool
	for !joined || !refused {
		l := n.next(30*time.Second, "the joins of user:alice and user:bob", func(l jsLine) bool {
			return l.Event == "joined" || l.Event == "join_error"
		})
		switch {
		case l.Event == "joined" && l.Topic == "user:alice":
			joined = true
		case l.Event == "join_error" && l.Topic == "user:bob":
			if !sameJSON(l.Response, []byte(`{"reason":"unauthorized"}`)) {
				n.t.Fatalf("user:bob refused with %s", l.Response)
			}
			refused = true
		default:
			n.t.Fatalf("unexpected join answer: %s", l.raw)
		}
	}
}

// TestPhoenixLongPollNode: the phoenix npm package under Node with its
// LongPoll transport forced joins user:alice, is refused user:bob, and
// gets every message posted to ingest once, in order, with its event id.
func TestPhoenixLongPollNode(t *testing.T) {
	st := StartStack(t, map[string]string{"PHOENIX_LONGPOLL_TIMEOUT": "2s"}, nil)
	n := startNodeLongPoll(t, st.Edge.URL, Token(t, "alice"), "alice", "bob", "longpoll")
	n.next(20*time.Second, "open", func(l jsLine) bool { return l.Event == "open" })
	n.joinedAliceRefusedBob()

	var posted []string
	for i := range 20 {
		posted = append(posted, Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": i}))
	}
	got := n.messages(30*time.Second, len(posted))
	if !slices.Equal(got, posted) {
		lost, dup := diff(posted, got)
		t.Fatalf("got %v, posted %v: lost %v, duplicated %v", got, posted, lost, dup)
	}
	t.Logf("phoenix.js LongPoll: %d messages, each once, in order", len(got))
}

// TestPhoenixLongPollAcrossEdges: two edges behind nginx, the client's
// polls and POSTs landing on either; each edge is restarted in turn while
// messages are posted. The session moves between edges on its token, and
// the client gets every message once, in order.
func TestPhoenixLongPollAcrossEdges(t *testing.T) {
	nginx := NginxPath(t)
	st := StartTwoEdges(t, map[string]string{"PHOENIX_LONGPOLL_TIMEOUT": "2s"}, nil)
	lb := StartNginx(t, nginx, st.A, st.B)
	n := startNodeLongPoll(t, lb.URL, Token(t, "alice"), "alice", "bob", "longpoll")
	n.joinedAliceRefusedBob()

	var posted []string
	post := func(k int) {
		for range k {
			posted = append(posted, Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": len(posted)}))
		}
	}
	var got []string
	post(10)
	got = append(got, n.messages(30*time.Second, 10)...)
	for _, e := range st.Edges() {
		post(5)
		e.Signal(syscall.SIGTERM)
		post(5)
		if !e.Wait(15 * time.Second) {
			t.Fatal("edge did not stop")
		}
		post(5)
		e.Restart()
		e.WaitReady(t)
		post(5)
		got = append(got, n.messages(60*time.Second, 20)...)
	}
	if !slices.Equal(got, posted) {
		lost, dup := diff(posted, got)
		t.Fatalf("got %d of %d: lost %v, duplicated %v (or out of order)", len(got), len(posted), lost, dup)
	}
	// No message beyond those posted arrives late.
	post(1)
	if last := n.messages(30*time.Second, 1); last[0] != posted[len(posted)-1] {
		t.Fatalf("after the restarts got %s, want %s", last[0], posted[len(posted)-1])
	}
	logs := st.A.Logs() + st.B.Logs()
	t.Logf("phoenix.js LongPoll behind nginx: %d messages across two edge restarts, each once, in order; takeovers: %d",
		len(posted), strings.Count(logs, "long-poll session taken over\""))
}

// TestPhoenixLongPollBlacklistAndExpiry: a blacklisted session's channel
// gets session_killed; a token that expires gets token_expired; neither
// comes back.
func TestPhoenixLongPollBlacklistAndExpiry(t *testing.T) {
	st := StartStack(t, map[string]string{"PHOENIX_LONGPOLL_TIMEOUT": "2s"}, nil)

	jti := fmt.Sprintf("lp-kill-%d", time.Now().UnixNano())
	killed := startNodeLongPoll(t, st.Edge.URL, Token(t, "alice", TokenOpts{JTI: jti}), "alice", "", "longpoll")
	killed.next(20*time.Second, "joined", func(l jsLine) bool { return l.Event == "joined" })
	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "before"})
	if got := killed.messages(20*time.Second, 1); got[0] != id {
		t.Fatalf("got %s, want %s", got[0], id)
	}
	Blacklist(t, st.Ingest.URL, jti, 60)
	// The push that says why, whether the kill meets a poll on its way or
	// falls between two (see TestPhoenixLongPollKilledBetweenPolls): the
	// refusal of the next poll waits the poll timeout, so phoenix.js hands
	// the push to the channel before a 403 makes it drop what it holds.
	l := killed.next(20*time.Second, "session_killed", func(l jsLine) bool {
		return l.Event == "session_killed" || l.Event == "message" || l.Event == "close"
	})
	if l.Event != "session_killed" || l.Topic != "user:alice" {
		t.Fatalf("after the blacklisting: %s, want session_killed on user:alice", l.raw)
	}

	expiring := startNodeLongPoll(t, st.Edge.URL, Token(t, "alice", TokenOpts{TTL: 4 * time.Second}), "alice", "", "longpoll")
	expiring.next(20*time.Second, "joined", func(l jsLine) bool { return l.Event == "joined" })
	l = expiring.next(20*time.Second, "token_expired", func(l jsLine) bool {
		return l.Event == "token_expired" || l.Event == "message" || l.Event == "close"
	})
	if l.Event != "token_expired" || l.Topic != "user:alice" {
		t.Fatalf("at the expiry: %s, want token_expired on user:alice", l.raw)
	}

	// Neither is served again: a message posted now reaches neither, while
	// each is refused twice (phoenix.js closes on a 403, and reconnects).
	Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "after"})
	for name, n := range map[string]*nodeLongPoll{"blacklisted": killed, "expired": expiring} {
		for range 2 {
			l := n.next(20*time.Second, "a refused poll", func(l jsLine) bool { return l.Event == "close" || l.Event == "message" })
			if l.Event == "message" {
				t.Fatalf("the %s client got %s", name, l.raw)
			}
		}
	}
	if !strings.Contains(st.Edge.Logs(), "long-poll refused") {
		t.Fatal("the edge logged no refused poll")
	}
}

// TestPhoenixLongPollFallback: behind a proxy that refuses WebSocket
// upgrades, phoenix.js with longPollFallbackMs falls back to LongPoll and
// works: it joins, and gets every message once.
func TestPhoenixLongPollFallback(t *testing.T) {
	st := StartStack(t, map[string]string{"PHOENIX_LONGPOLL_TIMEOUT": "2s"}, nil)
	target, _ := url.Parse(st.Edge.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	var upgrades, proxied sync.Map
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			upgrades.Store(r.URL.Path, true)
			http.Error(w, "WebSocket blocked by this proxy", http.StatusForbidden)
			return
		}
		proxied.Store(r.Method+" "+r.URL.Path, true)
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()

	n := startNodeLongPoll(t, strings.Replace(proxy.URL, "http://", "ws://", 1), Token(t, "alice"), "alice", "bob", "fallback")
	open := n.next(30*time.Second, "open", func(l jsLine) bool { return l.Event == "open" })
	if !strings.Contains(open.raw, "LongPoll") {
		t.Fatalf("opened with %s, want LongPoll", open.raw)
	}
	n.joinedAliceRefusedBob()
	if _, ok := upgrades.Load("/socket/websocket"); !ok {
		t.Fatal("phoenix.js never tried the WebSocket")
	}
	var posted []string
	for i := range 5 {
		posted = append(posted, Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": i}))
	}
	if got := n.messages(30*time.Second, len(posted)); !slices.Equal(got, posted) {
		t.Fatalf("got %v, want %v", got, posted)
	}
	_, gets := proxied.Load("GET /socket/longpoll")
	_, posts := proxied.Load("POST /socket/longpoll")
	if !gets || !posts {
		t.Fatalf("the proxy saw no long-poll GET (%v) or POST (%v)", gets, posts)
	}
}

// lpAnswer is a Phoenix long-poll answer.
type lpAnswer struct {
	HTTP     int
	Status   int      `json:"status"`
	Token    string   `json:"token"`
	Messages []string `json:"messages"`
	Error    string   `json:"error"`
}

// lpDo sends one long-poll request as phoenix.js does: the socket's params
// (token=JWT, vsn) first, then the poll token.
func lpDo(t *testing.T, base, method, jwt, pollToken, contentType string, body []byte, extra ...string) lpAnswer {
	t.Helper()
	q := "token=" + url.QueryEscape(jwt) + "&vsn=2.0.0"
	if pollToken != "" {
		q += "&token=" + url.QueryEscape(pollToken)
	}
	for _, e := range extra {
		q += "&" + e
	}
	r := Do(t, method, base+"/socket/longpoll?"+q, contentType, body)
	var a lpAnswer
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("%s /socket/longpoll: %d %q: %v", method, r.Status, r.Body, err)
	}
	a.HTTP = r.Status
	return a
}

// TestPhoenixLongPollProtocol speaks Phoenix's LongPoll protocol by hand:
// the 410 handshake, 204 after the poll timeout, POSTed ndjson joins
// answered in the next poll, a message as a push with its event id, resume
// from last_event_id, and the refusals: forged, foreign and expired
// tokens (410), oversized and malformed batches, POST without vsn.
func TestPhoenixLongPollProtocol(t *testing.T) {
	st := StartStack(t, map[string]string{"PHOENIX_LONGPOLL_TIMEOUT": "1s", "WS_MAX_FRAME_SIZE": "1KiB"}, nil)
	base, jwt := st.Edge.URL, Token(t, "alice")

	hs := lpDo(t, base, "GET", jwt, "", "", nil)
	if hs.HTTP != 200 || hs.Status != 410 || !strings.HasPrefix(hs.Token, "lp1.") {
		t.Fatalf("handshake: %+v", hs)
	}
	start := time.Now()
	idle := lpDo(t, base, "GET", jwt, hs.Token, "", nil)
	if idle.Status != 204 || idle.Token == "" || time.Since(start) > 5*time.Second {
		t.Fatalf("idle poll after %s: %+v", time.Since(start), idle)
	}
	tok := idle.Token

	joins := `["1","1","user:alice","phx_join",{}]` + "\n" + `["2","2","user:bob","phx_join",{}]`
	if p := lpDo(t, base, "POST", jwt, tok, "application/x-ndjson", []byte(joins)); p.Status != 200 || p.Token != tok {
		t.Fatalf("POST joins: %+v", p)
	}
	replies := lpDo(t, base, "GET", jwt, tok, "", nil)
	if replies.Status != 200 || len(replies.Messages) != 2 {
		t.Fatalf("poll after the joins: %+v", replies)
	}
	var aliceReply, bobReply []json.RawMessage
	_ = json.Unmarshal([]byte(replies.Messages[0]), &aliceReply)
	_ = json.Unmarshal([]byte(replies.Messages[1]), &bobReply)
	if len(aliceReply) != 5 || string(aliceReply[2]) != `"user:alice"` || !strings.Contains(string(aliceReply[4]), `"status":"ok"`) ||
		!strings.Contains(string(aliceReply[4]), `"last_event_id":"seq:`) {
		t.Fatalf("join reply of user:alice: %s", replies.Messages[0])
	}
	if len(bobReply) != 5 || !sameJSON(bobReply[4], []byte(`{"status":"error","response":{"reason":"unauthorized"}}`)) {
		t.Fatalf("join reply of user:bob: %s", replies.Messages[1])
	}
	tok = replies.Token

	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "hi"})
	msg := lpDo(t, base, "GET", jwt, tok, "", nil)
	want := fmt.Sprintf(`[null,%q,"user:alice","message",{"user":"alice","text":"hi"}]`, id)
	if msg.Status != 200 || len(msg.Messages) != 1 || !sameJSON([]byte(msg.Messages[0]), []byte(want)) {
		t.Fatalf("poll after a message: %+v, want %s", msg, want)
	}
	tok = msg.Token

	// The same token again, from a client whose answer was lost: the
	// session was answered since, so it is rebuilt from the token, and the
	// message comes again (the token says the client does not have it).
	again := lpDo(t, base, "GET", jwt, replies.Token, "", nil)
	if again.Status != 200 || len(again.Messages) != 1 || !sameJSON([]byte(again.Messages[0]), []byte(want)) {
		t.Fatalf("poll with the older token: %+v", again)
	}

	// Resume: a new session's join with last_event_id gets what followed.
	id2 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 2})
	id3 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 3})
	hs2 := lpDo(t, base, "GET", jwt, "", "", nil)
	join := fmt.Sprintf(`["3","3","user:alice","phx_join",{"last_event_id":%q}]`, id)
	if p := lpDo(t, base, "POST", jwt, hs2.Token, "application/json", []byte(join)); p.Status != 200 {
		t.Fatalf("POST resume join: %+v", p)
	}
	var ids []string
	tok2 := hs2.Token
	check.For(t, 10*time.Second, time.Millisecond, func() error {
		a := lpDo(t, base, "GET", jwt, tok2, "", nil)
		tok2 = a.Token
		for _, m := range a.Messages {
			var f []json.RawMessage
			_ = json.Unmarshal([]byte(m), &f)
			if len(f) == 5 && string(f[3]) == `"message"` {
				var mid string
				_ = json.Unmarshal(f[1], &mid)
				ids = append(ids, mid)
			}
		}
		if len(ids) < 2 {
			return fmt.Errorf("resumed %v", ids)
		}
		return nil
	})
	if !slices.Equal(ids, []string{id2, id3}) {
		t.Fatalf("resume after %s: %v, want %v", id, ids, []string{id2, id3})
	}

	// Refusals.
	forged := tok[:len(tok)-2] + "AA"
	if a := lpDo(t, base, "GET", jwt, forged, "", nil); a.Status != 410 || a.Token != "" {
		t.Fatalf("forged token: %+v", a)
	}
	if a := lpDo(t, base, "GET", Token(t, "alice"), tok, "", nil); a.Status != 410 {
		t.Fatalf("token with another JWT of the same user: %+v", a)
	}
	if a := lpDo(t, base, "POST", jwt, forged, "application/json", []byte(join)); a.Status != 410 {
		t.Fatalf("POST with a forged token: %+v", a)
	}
	if a := lpDo(t, base, "GET", wrongKeyToken(t, "alice"), "", "", nil); a.HTTP != 401 || a.Status != 403 {
		t.Fatalf("bad JWT: %+v", a)
	}
	r := Do(t, "POST", base+"/socket/longpoll?token="+jwt, "application/json", []byte(join))
	if r.Status != 400 {
		t.Fatalf("POST without vsn: %d %s", r.Status, r.Body)
	}
	many := strings.Repeat(`[null,"9","phoenix","heartbeat",{}]`+"\n", 101)
	if a := lpDo(t, base, "POST", jwt, tok, "application/x-ndjson", []byte(many)); a.HTTP != 413 {
		t.Fatalf("101 messages: %+v", a)
	}
	long := `[null,"9","phoenix","heartbeat",{"x":"` + strings.Repeat("x", 2000) + `"}]`
	if a := lpDo(t, base, "POST", jwt, tok, "application/x-ndjson", []byte(long)); a.HTTP != 413 {
		t.Fatalf("line over WS_MAX_FRAME_SIZE: %+v", a)
	}
	if a := lpDo(t, base, "POST", jwt, tok, "application/x-ndjson", []byte(`{"not":"a frame"}`)); a.HTTP != 400 {
		t.Fatalf("malformed frame: %+v", a)
	}
	// The session is unharmed by the refusals.
	if a := lpDo(t, base, "POST", jwt, tok, "application/json", []byte(`[null,"7","phoenix","heartbeat",{}]`)); a.Status != 200 {
		t.Fatalf("heartbeat after the refusals: %+v", a)
	}
	// A token is good for 3 poll timeouts after it was issued: polled with
	// again and again (never with the newer ones), it expires.
	stale := idle.Token
	check.For(t, 15*time.Second, 10*time.Millisecond, func() error {
		if a := lpDo(t, base, "GET", jwt, stale, "", nil); a.Status != 410 {
			return fmt.Errorf("a token issued %s ago: %d", time.Since(start).Round(time.Second), a.Status)
		}
		return nil
	})
	if age := time.Since(start); age < 3*time.Second {
		t.Fatalf("a token expired after %s, before 3 poll timeouts", age)
	}
	// Without vsn, /socket/longpoll is RIG-Go's JSON long-poll, as before.
	var plain struct {
		Events      []json.RawMessage `json:"events"`
		LastEventID string            `json:"last_event_id"`
	}
	Do(t, "GET", base+"/socket/longpoll?token="+jwt+"&last_event_id="+url.QueryEscape(id2), "", nil).JSON(t, &plain)
	if len(plain.Events) != 1 || !strings.Contains(string(plain.Events[0]), id3) {
		t.Fatalf("JSON long-poll: %+v", plain)
	}
}

// lpMessageIDs returns the ids of the message pushes of an answer.
func lpMessageIDs(a lpAnswer) []string {
	var ids []string
	for _, m := range a.Messages {
		var f []json.RawMessage
		if json.Unmarshal([]byte(m), &f) == nil && len(f) == 5 && string(f[3]) == `"message"` {
			var id string
			_ = json.Unmarshal(f[1], &id)
			ids = append(ids, id)
		}
	}
	return ids
}

// TestPhoenixLongPollRelayAndTakeover: a session opened on edge A is
// served through edge B (B passes its requests to A over NATS); when A is
// killed, B takes the session over from the token and replays what the
// client was not answered with, once.
func TestPhoenixLongPollRelayAndTakeover(t *testing.T) {
	st := StartTwoEdges(t, map[string]string{"PHOENIX_LONGPOLL_TIMEOUT": "1s"}, nil)
	a, b, jwt := st.A.URL, st.B.URL, Token(t, "alice")

	hs := lpDo(t, a, "GET", jwt, "", "", nil)
	if hs.Status != 410 {
		t.Fatalf("handshake on A: %+v", hs)
	}
	// The join lands on B, its reply is polled on A.
	if p := lpDo(t, b, "POST", jwt, hs.Token, "application/json", []byte(`["1","1","user:alice","phx_join",{}]`)); p.Status != 200 || p.Token != hs.Token {
		t.Fatalf("POST join on B: %+v", p)
	}
	r := lpDo(t, a, "GET", jwt, hs.Token, "", nil)
	if r.Status != 200 || len(r.Messages) != 1 || !strings.Contains(r.Messages[0], `"status":"ok"`) {
		t.Fatalf("poll on A after the join on B: %+v", r)
	}
	tok := r.Token
	// A message, polled through B.
	id1 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 1})
	var got []string
	check.For(t, 10*time.Second, time.Millisecond, func() error {
		m := lpDo(t, b, "GET", jwt, tok, "", nil)
		tok = m.Token
		got = append(got, lpMessageIDs(m)...)
		if len(got) == 0 {
			return fmt.Errorf("no message yet")
		}
		return nil
	})
	if !slices.Equal(got, []string{id1}) {
		t.Fatalf("through B: %v, want [%s]", got, id1)
	}
	if strings.Contains(st.B.Logs(), "long-poll session taken over") {
		t.Fatal("B took the session over while A served it")
	}

	// A dies with messages the client was not answered with.
	id2 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 2})
	id3 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 3})
	st.A.Kill()
	got = nil
	check.For(t, 20*time.Second, time.Millisecond, func() error {
		m := lpDo(t, b, "GET", jwt, tok, "", nil)
		if m.Status == 410 || m.Token == "" {
			t.Fatalf("B refused the session: %+v", m)
		}
		tok = m.Token
		got = append(got, lpMessageIDs(m)...)
		if len(got) < 2 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	if !slices.Equal(got, []string{id2, id3}) {
		t.Fatalf("after A died: %v, want %v", got, []string{id2, id3})
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(st.B.Logs(), "long-poll session taken over") {
			return fmt.Errorf("B did not log the takeover")
		}
		return nil
	})
	// And B now is the home: the next message comes once.
	id4 := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 4})
	got = nil
	check.For(t, 10*time.Second, time.Millisecond, func() error {
		m := lpDo(t, b, "GET", jwt, tok, "", nil)
		tok = m.Token
		got = append(got, lpMessageIDs(m)...)
		if len(got) == 0 {
			return fmt.Errorf("no message yet")
		}
		return nil
	})
	if !slices.Equal(got, []string{id4}) {
		t.Fatalf("on B as the home: %v, want [%s]", got, id4)
	}
}

// longPollPage runs two phoenix.js sockets in the browser, both joining
// user:alice and resuming from the last id they got (as the README shows):
// "lp" with the LongPoll transport forced, "fb" on the browser's WebSocket
// with longPollFallbackMs, pointed at a proxy that refuses WebSockets.
const longPollPage = `<!doctype html>
<html><body><script type="module">
import { Socket, LongPoll } from "/phoenix.mjs";
const q = new URLSearchParams(location.search);
const token = q.get("token");
window.got = {lp: [], fb: []}; window.joined = {lp: 0, fb: 0}; window.opens = {lp: 0, fb: 0}; window.transports = {}; window.errors = []; window.logs = [];
function run(name, url, opts) {
  const logger = (kind, msg, data) => window.logs.push(name + " " + kind + " " + msg + " " + JSON.stringify(data));
  const socket = new Socket(url + "/socket", Object.assign(
    {params: {token}, reconnectAfterMs: () => 200, rejoinAfterMs: () => 200, logger}, opts));
  socket.onOpen(() => { window.opens[name]++; window.transports[name] = socket.transportName(socket.transport); });
  socket.connect();
  let last = null;
  const ch = socket.channel("user:alice", () => (last ? {last_event_id: last} : {}));
  ch.on("message", (payload, id) => { last = id; window.got[name].push(id); });
  ch.on("gap", () => window.errors.push(name + ": gap"));
  ch.join()
    .receive("ok", (r) => { window.joined[name]++; if (!last && r && r.last_event_id) last = r.last_event_id; })
    .receive("error", (r) => window.errors.push(name + ": " + JSON.stringify(r)));
}
run("lp", q.get("lp"), {transport: LongPoll});
run("fb", q.get("fb"), {longPollFallbackMs: 500});
</script></body></html>`

// TestBrowserPhoenixLongPoll: Chromium runs phoenix.js with LongPoll
// forced, and with longPollFallbackMs behind a proxy that refuses
// WebSockets, against two edges behind nginx; each edge is restarted in
// turn while messages are posted, and both sockets end with every message
// once, in order.
func TestBrowserPhoenixLongPoll(t *testing.T) {
	nginx := NginxPath(t)
	nodeClients(t) // e2e/js/node_modules holds phoenix.mjs
	st := StartTwoEdges(t, map[string]string{"PHOENIX_LONGPOLL_TIMEOUT": "2s"}, nil)
	lb := StartNginx(t, nginx, st.A, st.B)
	target, _ := url.Parse(lb.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	var refused sync.Map
	noWS := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			refused.Store(r.URL.Path, true)
			http.Error(w, "WebSocket blocked by this proxy", http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer noWS.Close()

	phx, err := os.ReadFile(jsDir + "/node_modules/phoenix/priv/static/phoenix.mjs")
	if err != nil {
		t.Fatal(err)
	}
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/phoenix.mjs" {
			w.Header().Set("Content-Type", "text/javascript")
			w.Write(phx)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, longPollPage)
	}))
	defer page.Close()

	ctx := newBrowser(t)
	u := page.URL + "/?" + url.Values{"lp": {lb.URL}, "fb": {noWS.URL}, "token": {Token(t, "alice")}}.Encode()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("open the page in chromium: %v", err)
	}
	check.For(t, 30*time.Second, 20*time.Millisecond, func() error {
		tr := evaluate[map[string]string](t, ctx, `window.transports`)
		joined := evaluate[map[string]int](t, ctx, `window.joined`)
		if tr["lp"] != "LongPoll" || tr["fb"] != "LongPoll" || joined["lp"] == 0 || joined["fb"] == 0 {
			return fmt.Errorf("transports %v, joined %v", tr, joined)
		}
		return nil
	})
	if _, ok := refused.Load("/socket/websocket"); !ok {
		t.Fatal("the fallback socket never tried a WebSocket")
	}

	var posted []string
	post := func(k int) {
		for range k {
			posted = append(posted, Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": len(posted)}))
		}
	}
	post(1)
	waitGot := func(n int) {
		t.Helper()
		check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
			got := evaluate[map[string][]string](t, ctx, `window.got`)
			if len(got["lp"]) < n || len(got["fb"]) < n {
				logs := evaluate[[]string](t, ctx, `[JSON.stringify({got: window.got, opens: window.opens, tr: window.transports, n: window.logs.length, errors: window.errors, href: location.href})].concat(window.logs.slice(-30))`)
				return fmt.Errorf("got %d and %d of %d; the page's last log lines:\n%s", len(got["lp"]), len(got["fb"]), n, strings.Join(logs, "\n"))
			}
			return nil
		})
	}
	waitGot(1)
	for _, e := range st.Edges() {
		post(5)
		e.Signal(syscall.SIGTERM)
		post(5)
		if !e.Wait(15 * time.Second) {
			t.Fatal("edge did not stop")
		}
		post(5)
		e.Restart()
		e.WaitReady(t)
		post(5)
		waitGot(len(posted))
	}
	got := evaluate[map[string][]string](t, ctx, `window.got`)
	for name, ids := range got {
		if !slices.Equal(ids, posted) {
			lost, dup := diff(posted, ids)
			t.Errorf("%s: got %d of %d, lost %v, duplicated %v (or out of order)", name, len(ids), len(posted), lost, dup)
		}
	}
	if errs := evaluate[[]string](t, ctx, `window.errors`); len(errs) > 0 {
		t.Errorf("the page saw %v", errs)
	}
	opens := evaluate[map[string]int](t, ctx, `window.opens`)
	t.Logf("chromium: %d messages across two edge restarts behind nginx, on LongPoll forced and on the WebSocket fallback; each once, in order (opened %v times)", len(posted), opens)
}

// TestPhoenixLongPollHostile: what one holder of a JWT can do to an edge
// with long-poll sessions is bounded: handshakes stop at
// MAX_CONNECTIONS_PER_SESSION, sessions at PHOENIX_LONGPOLL_MAX_SESSIONS, polls of one session at once answer each
// other (one waits), oversized and foreign tokens open nothing; vsn=1.0.0
// works as 2.0.0 does.
func TestPhoenixLongPollHostile(t *testing.T) {
	st := StartStack(t, map[string]string{"PHOENIX_LONGPOLL_TIMEOUT": "4s", "MAX_CONNECTIONS_PER_SESSION": "5", "PHOENIX_LONGPOLL_MAX_SESSIONS": "7"}, nil)
	base := st.Edge.URL
	jwt := Token(t, "alice")

	opened, refused := 0, 0
	var tok string
	for range 8 {
		a := lpDo(t, base, "GET", jwt, "", "", nil)
		switch {
		case a.Status == 410:
			opened++
			tok = a.Token
		case a.HTTP == 429 && a.Status == 500:
			refused++
		default:
			t.Fatalf("handshake: %+v", a)
		}
	}
	if opened != 5 || refused != 3 {
		t.Fatalf("8 handshakes of one session: %d opened, %d refused (429), want 5 and 3", opened, refused)
	}

	// 20 polls of one session at once: each answers within the poll
	// timeout, none with a message that is not there.
	var wg sync.WaitGroup
	start := time.Now()
	answers := make(chan lpAnswer, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- lpDo(t, base, "GET", jwt, tok, "", nil)
		}()
	}
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.Status != 204 {
			t.Fatalf("concurrent poll: %+v", a)
		}
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("20 concurrent polls took %s", took)
	}

	// Bob's session token with alice's JWT, and a huge token: 410.
	bobJWT := Token(t, "bob")
	bob := lpDo(t, base, "GET", bobJWT, "", "", nil)
	if a := lpDo(t, base, "GET", jwt, bob.Token, "", nil); a.Status != 410 {
		t.Fatalf("bob's poll token with alice's JWT: %+v", a)
	}
	if a := lpDo(t, base, "GET", bobJWT, "lp1."+strings.Repeat("A", 7000)+".x", "", nil); a.Status != 410 {
		t.Fatalf("a 7 KB poll token: %+v", a)
	}
	// Two poll tokens, or two JWTs: 400.
	if a := lpDo(t, base, "GET", bobJWT, bob.Token, "", nil, "token="+url.QueryEscape(bob.Token)); a.HTTP != 400 {
		t.Fatalf("two poll tokens: %+v", a)
	}

	// vsn=1.0.0: a join and its reply as JSON objects.
	r := Do(t, "GET", base+"/socket/longpoll?vsn=1.0.0&token="+bobJWT, "", nil)
	var hs lpAnswer
	r.JSON(t, &hs)
	join := `{"topic":"user:bob","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}`
	Do(t, "POST", base+"/socket/longpoll?vsn=1.0.0&token="+bobJWT+"&token="+url.QueryEscape(hs.Token), "application/json", []byte(join))
	var reply lpAnswer
	Do(t, "GET", base+"/socket/longpoll?vsn=1.0.0&token="+bobJWT+"&token="+url.QueryEscape(hs.Token), "", nil).JSON(t, &reply)
	if reply.Status != 200 || len(reply.Messages) != 1 || !strings.Contains(reply.Messages[0], `"event":"phx_reply"`) || !strings.Contains(reply.Messages[0], `"status":"ok"`) {
		t.Fatalf("vsn=1.0.0 join: %+v", reply)
	}
	// A 2.0.0 token is no 1.0.0 session.
	if a := lpDo(t, base, "GET", bobJWT, reply.Token, "", nil); a.Status != 410 {
		t.Fatalf("a vsn=1.0.0 token with vsn=2.0.0: %+v", a)
	}
	// 5 sessions of alice's, 2 of bob's: the edge's 7, and no more.
	if a := lpDo(t, base, "GET", Token(t, "carol"), "", "", nil); a.HTTP != 503 || a.Status != 500 || !strings.Contains(a.Error, "PHOENIX_LONGPOLL_MAX_SESSIONS") {
		t.Fatalf("an 8th session: %+v", a)
	}
	if h := healthJSON(t, st.Edge.OpsURL); h["status"] != "ok" {
		t.Fatalf("edge health after the attacks: %v", h)
	}
}

// TestPhoenixLongPollKilledBetweenPolls: a session blacklisted while no
// poll waits still tells its client why. The next poll, with the JWT the
// edge now refuses, gets the session_killed push its end left behind;
// the one after gets the refusal, once the poll timeout has passed.
func TestPhoenixLongPollKilledBetweenPolls(t *testing.T) {
	st := StartStack(t, map[string]string{"PHOENIX_LONGPOLL_TIMEOUT": "1s"}, nil)
	jti := fmt.Sprintf("lp-between-%d", time.Now().UnixNano())
	base, jwt := st.Edge.URL, Token(t, "alice", TokenOpts{JTI: jti})

	hs := lpDo(t, base, "GET", jwt, "", "", nil)
	if hs.Status != 410 {
		t.Fatalf("handshake: %+v", hs)
	}
	if p := lpDo(t, base, "POST", jwt, hs.Token, "application/json", []byte(`["1","1","user:alice","phx_join",{}]`)); p.Status != 200 {
		t.Fatalf("POST join: %+v", p)
	}
	joined := lpDo(t, base, "GET", jwt, hs.Token, "", nil)
	if joined.Status != 200 || len(joined.Messages) != 1 || !strings.Contains(joined.Messages[0], `"status":"ok"`) {
		t.Fatalf("poll after the join: %+v", joined)
	}

	// No poll waits now: the session ends at once.
	Blacklist(t, st.Ingest.URL, jti, 60)
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, line := range strings.Split(st.Edge.Logs(), "\n") {
			if strings.Contains(line, `msg="connection closed"`) && strings.Contains(line, "transport=phoenix-longpoll") &&
				strings.Contains(line, "session="+jti) {
				return nil
			}
		}
		return fmt.Errorf("the edge has not closed the long-poll session yet")
	})
	last := lpDo(t, base, "GET", jwt, joined.Token, "", nil)
	if last.Status != 200 || len(last.Messages) != 1 || !strings.Contains(last.Messages[0], `"user:alice","session_killed"`) {
		t.Fatalf("first poll after the blacklisting: %+v, want the session_killed push", last)
	}
	// Refused after the poll timeout, not at once: phoenix.js drops the
	// pushes of an answer it has not yet handed to its channels when the
	// poll it sent right after it is refused.
	start := time.Now()
	if after := lpDo(t, base, "GET", jwt, last.Token, "", nil); after.Status != 403 || len(after.Messages) != 0 {
		t.Fatalf("poll after the last words: %+v, want the refusal", after)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("poll after the last words refused after %s, before PHOENIX_LONGPOLL_TIMEOUT (1s)", took)
	}
}
