package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/phoenix"
	"github.com/rig-go/rig/internal/rig"
)

// newPollSession opens a long-poll session of alice on an edge whose polls
// wait timeout.
func newPollSession(t *testing.T, timeout time.Duration, adjust func(*config.Edge)) (*Server, *lpSession) {
	t.Helper()
	s, _ := newTestEdgeWith(t, func(c *config.Edge) {
		c.PhoenixLongPoll = config.PhoenixLongPoll{Timeout: timeout, MaxSessions: 10}
		c.WSMaxFrameSize = 64 << 10
		if adjust != nil {
			adjust(c)
		}
	})
	a := &admission{session: &rig.Session{User: "alice", ID: "jti-1", Expires: time.Now().Add(time.Hour)}}
	ls, err := s.openPollSession(a, &phoenix.PollToken{ID: newSessionID(), Auth: phoenix.AuthOf("jwt"), Vsn: phoenix.V2})
	if err != nil {
		t.Fatal(err)
	}
	return s, ls
}

// pollOnce polls and decodes the answer.
func pollOnce(t *testing.T, s *Server, ls *lpSession, gen uint64) (status int, frames []string, tok *phoenix.PollToken) {
	t.Helper()
	body, ok := ls.poll(context.Background(), gen)
	if !ok {
		t.Fatalf("poll with gen %d: the session says it was passed by", gen)
	}
	return decodeAnswer(t, s, body)
}

func decodeAnswer(t *testing.T, s *Server, body []byte) (int, []string, *phoenix.PollToken) {
	t.Helper()
	var a struct {
		Status   int      `json:"status"`
		Token    string   `json:"token"`
		Messages []string `json:"messages"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	tok, err := phoenix.DecodeToken(s.lp.key, a.Token)
	if err != nil {
		t.Fatalf("answer's token: %v", err)
	}
	return a.Status, a.Messages, tok
}

// waitForSession waits until cond, read under the session's lock, holds.
func waitForSession(t *testing.T, ls *lpSession, what string, cond func(*lpSession) bool) {
	t.Helper()
	check.For(t, 5*time.Second, time.Millisecond, func() error {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		if !cond(ls) {
			return fmt.Errorf("not yet: %s", what)
		}
		return nil
	})
}

func message(user string, seq uint64) *rig.Event {
	return &rig.Event{Kind: rig.KindMessage, ID: fmt.Sprintf("m%d", seq), User: user, Seq: seq, Data: []byte(`{}`)}
}

// TestLongPollSessionToken: each answer's token lists the joined topics
// with the position of the last message answered, and an older token is
// refused by the session (another edge may have answered it).
func TestLongPollSessionToken(t *testing.T) {
	s, ls := newPollSession(t, 2*time.Second, nil)
	if status, body := ls.post([][]byte{[]byte(`["1","1","user:alice","phx_join",{}]`), []byte(`["2","2","user:bob","phx_join",{}]`)}, ""); status != 200 || !strings.Contains(string(body), `"status":200`) {
		t.Fatalf("post: %d %s", status, body)
	}
	status, frames, tok := pollOnce(t, s, ls, 0)
	if status != 200 || len(frames) != 2 || !strings.Contains(frames[0], `"ok"`) || !strings.Contains(frames[1], "unauthorized") {
		t.Fatalf("replies: %d %v", status, frames)
	}
	if len(tok.Topics) != 1 || tok.Topics[0].User != "alice" {
		t.Fatalf("token after the joins: %+v", tok)
	}
	old := tok.Gen
	s.hub.Publish("alice", message("alice", 5))
	s.hub.Publish("alice", message("alice", 7))
	var got []string
	check.For(t, 5*time.Second, time.Millisecond, func() error {
		_, frames, tok = pollOnce(t, s, ls, tok.Gen)
		got = append(got, frames...)
		if len(got) < 2 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	if !strings.Contains(got[0], `"m5"`) || !strings.Contains(got[1], `"m7"`) {
		t.Fatalf("messages %v", got)
	}
	if tok.Topics[0].Pos != 7 || tok.Gen == old {
		t.Fatalf("token after the messages: %+v (gen before %d)", tok, old)
	}
	if _, ok := ls.poll(context.Background(), old); ok {
		t.Fatal("an older token was served")
	}
	// A leave drops the topic from the next token.
	ls.post([][]byte{[]byte(`["1","3","user:alice","phx_leave",{}]`)}, "")
	_, _, tok = pollOnce(t, s, ls, tok.Gen)
	if len(tok.Topics) != 0 {
		t.Fatalf("token after the leave: %+v", tok)
	}
}

// TestLongPollSessionNewerPollTakesOver: a second poll of the session
// answers the first at once, with nothing; the second gets what comes.
func TestLongPollSessionNewerPollTakesOver(t *testing.T) {
	s, ls := newPollSession(t, 5*time.Second, nil)
	ls.post([][]byte{[]byte(`["1","1","user:alice","phx_join",{}]`)}, "")
	_, _, tok := pollOnce(t, s, ls, 0)
	first := make(chan []byte, 1)
	go func() {
		body, _ := ls.poll(context.Background(), tok.Gen)
		first <- body
	}()
	waitForSession(t, ls, "the first poll waits", func(ls *lpSession) bool { return ls.waiter != nil })
	second := make(chan []byte, 1)
	go func() {
		body, _ := ls.poll(context.Background(), tok.Gen)
		second <- body
	}()
	select {
	case body := <-first:
		if status, frames, _ := decodeAnswer(t, s, body); status != 204 || len(frames) != 0 {
			t.Fatalf("the first poll: %d %v", status, frames)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the first poll still waits")
	}
	waitForSession(t, ls, "the second poll waits", func(ls *lpSession) bool { return ls.waiter != nil })
	s.hub.Publish("alice", message("alice", 3))
	if status, frames, _ := decodeAnswer(t, s, <-second); status != 200 || len(frames) != 1 {
		t.Fatalf("the second poll: %d %v", status, frames)
	}
}

// TestLongPollSessionBounded: a client that stops polling is a slow
// client (its outbox holds CLIENT_QUEUE_SIZE frames), and a session no
// request comes for ends after 3 poll timeouts; either leaves nothing
// behind.
func TestLongPollSessionBounded(t *testing.T) {
	s, ls := newPollSession(t, time.Minute, func(c *config.Edge) { c.QueueSize = 8 })
	ls.post([][]byte{[]byte(`["1","1","user:alice","phx_join",{}]`)}, "")
	for i := range 50 {
		s.hub.Publish("alice", message("alice", uint64(i+1)))
	}
	check.For(t, 5*time.Second, time.Millisecond, func() error {
		if s.hub.Len() != 0 {
			return fmt.Errorf("%d clients in the hub", s.hub.Len())
		}
		return nil
	})
	// What the outbox held is still answered, then the session is gone.
	status, frames, _ := pollOnce(t, s, ls, 0)
	if status != 200 || len(frames) > 8 {
		t.Fatalf("after the overflow: %d, %d frames", status, len(frames))
	}
	if _, ok := ls.poll(context.Background(), 0); ok || s.lp.len() != 0 {
		t.Fatalf("the session lives on: %d sessions", s.lp.len())
	}

	s2, _ := newPollSession(t, 20*time.Millisecond, nil)
	check.For(t, 5*time.Second, time.Millisecond, func() error {
		if s2.lp.len() != 0 || s2.hub.Len() != 0 {
			return fmt.Errorf("%d sessions, %d clients", s2.lp.len(), s2.hub.Len())
		}
		return nil
	})
}

// TestLongPollSessionConcurrent: polls, POSTs and messages at once, under
// the race detector; every message is answered once, in order.
func TestLongPollSessionConcurrent(t *testing.T) {
	s, ls := newPollSession(t, 50*time.Millisecond, func(c *config.Edge) { c.QueueSize = 1024 })
	ls.post([][]byte{[]byte(`["1","1","user:alice","phx_join",{}]`)}, "")
	const n = 300
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range n {
			s.hub.Publish("alice", message("alice", uint64(i+1)))
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 50 {
			ls.post([][]byte{[]byte(fmt.Sprintf(`[null,"%d","phoenix","heartbeat",{}]`, i+10))}, "")
		}
	}()
	var msgs []string
	gen := uint64(0)
	check.For(t, 10*time.Second, time.Millisecond, func() error {
		_, frames, tok := pollOnce(t, s, ls, gen)
		gen = tok.Gen
		for _, f := range frames {
			if strings.Contains(f, `"message"`) {
				msgs = append(msgs, f)
			}
		}
		if len(msgs) < n {
			return fmt.Errorf("%d of %d", len(msgs), n)
		}
		return nil
	})
	wg.Wait()
	for i, f := range msgs {
		if !strings.Contains(f, fmt.Sprintf(`"m%d"`, i+1)) {
			t.Fatalf("message %d is %s", i+1, f)
		}
	}
}

// lpHTTPClient polls an edge's public port as phoenix.js's LongPoll does:
// each request carries the JWT and the poll token of the last answer.
type lpHTTPClient struct {
	t     *testing.T
	base  string
	jwt   string
	token string
}

type lpHTTPAnswer struct {
	HTTP     int
	Status   int      `json:"status"`
	Token    string   `json:"token"`
	Messages []string `json:"messages"`
	Error    string   `json:"error"`
	Took     time.Duration
}

func (c *lpHTTPClient) do(method, body string) lpHTTPAnswer {
	c.t.Helper()
	a, err := c.try(method, body)
	if err != nil {
		c.t.Fatal(err)
	}
	return a
}

// try is do for another goroutine than the test's: it returns the error.
func (c *lpHTTPClient) try(method, body string) (lpHTTPAnswer, error) {
	u := c.base + "/socket/longpoll?vsn=2.0.0&token=" + url.QueryEscape(c.jwt)
	if c.token != "" {
		u += "&token=" + url.QueryEscape(c.token)
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return lpHTTPAnswer{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return lpHTTPAnswer{}, fmt.Errorf("%s /socket/longpoll: %w", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return lpHTTPAnswer{}, fmt.Errorf("%s /socket/longpoll: %w", method, err)
	}
	a := lpHTTPAnswer{HTTP: resp.StatusCode, Took: time.Since(start)}
	if err := json.Unmarshal(raw, &a); err != nil {
		return a, fmt.Errorf("%s /socket/longpoll: %d %q: %w", method, resp.StatusCode, raw, err)
	}
	if a.Token != "" {
		c.token = a.Token
	}
	return a, nil
}

// lastWordsIn says whether an answer carries the push that ends a session.
func lastWordsIn(a lpHTTPAnswer, event string) bool {
	return a.Status == 200 && slices.ContainsFunc(a.Messages, func(m string) bool {
		return strings.Contains(m, `"user:alice","`+event+`"`)
	})
}

// TestLongPollRefusalAfterLastWords: the poll that follows the answer
// carrying session_killed or token_expired is refused only after the
// poll timeout, never at once. phoenix.js hands an answer's messages to
// its channels on a timer (setTimeout 0) and polls again right away; its
// LongPoll.stop, run on a 403, clears those timers. A refusal that comes
// back first swallows the push: phoenix.js saw a bare 403. The kill or
// the expiry meets a poll in flight, and, for the blacklisting, a session
// between two polls too.
func TestLongPollRefusalAfterLastWords(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s, _ := newTestEdgeWith(t, func(c *config.Edge) {
		c.PhoenixLongPoll = config.PhoenixLongPoll{Timeout: timeout, MaxSessions: 10}
		c.WSMaxFrameSize = 64 << 10
	})
	_, port, err := net.SplitHostPort(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	base := "http://127.0.0.1:" + port

	for _, tc := range []struct {
		name, event string
		ttl         time.Duration
		inFlight    bool
	}{
		{"killed during a poll", "session_killed", time.Hour, true},
		{"killed between polls", "session_killed", time.Hour, false},
		{"expired during a poll", "token_expired", 3 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jti := fmt.Sprintf("lp-last-words-%d", time.Now().UnixNano())
			jwt, err := auth.Mint("test-secret", auth.Claims{User: "alice", ID: jti, TTL: tc.ttl}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			c := &lpHTTPClient{t: t, base: base, jwt: jwt}
			if a := c.do("GET", ""); a.Status != 410 || c.token == "" {
				t.Fatalf("handshake: %+v", a)
			}
			tok, err := phoenix.DecodeToken(s.lp.key, c.token)
			if err != nil {
				t.Fatal(err)
			}
			if a := c.do("POST", `["1","1","user:alice","phx_join",{}]`); a.Status != 200 {
				t.Fatalf("join: %+v", a)
			}
			if a := c.do("GET", ""); a.Status != 200 || len(a.Messages) != 1 || !strings.Contains(a.Messages[0], `"ok"`) {
				t.Fatalf("join reply: %+v", a)
			}
			session := s.lp.get(tok.ID)
			if session == nil {
				t.Fatal("no session at its home")
			}
			kill := func() {
				if tc.event == "session_killed" {
					if _, err := s.bucket.Add(t.Context(), jti, time.Minute); err != nil {
						t.Fatal(err)
					}
				}
			}

			var last lpHTTPAnswer
			if tc.inFlight {
				answers, errs := make(chan lpHTTPAnswer, 1), make(chan error, 1)
				go func() {
					// Polls (204 at each timeout) until the one that
					// carries the end, or a refusal.
					for {
						a, err := c.try("GET", "")
						if err != nil {
							errs <- err
							return
						}
						if a.Status != 204 {
							answers <- a
							return
						}
					}
				}()
				waitForSession(t, session, "a poll waits", func(ls *lpSession) bool { return ls.waiter != nil })
				kill()
				select {
				case last = <-answers:
				case err := <-errs:
					t.Fatal(err)
				case <-time.After(10 * time.Second):
					t.Fatalf("no %s within 10s", tc.event)
				}
			} else {
				kill()
				waitForSession(t, session, "the session ended", func(ls *lpSession) bool { return ls.ended })
				last = c.do("GET", "")
			}
			if !lastWordsIn(last, tc.event) {
				t.Fatalf("the poll the end met: %+v, want %s", last, tc.event)
			}

			after := c.do("GET", "")
			if after.HTTP != 401 || after.Status != 403 {
				t.Fatalf("the poll after the last words: %+v, want the refusal", after)
			}
			if after.Took < timeout {
				t.Fatalf("the poll after the last words was refused after %s, before the poll timeout (%s): phoenix.js would drop the %s it was just answered",
					after.Took, timeout, tc.event)
			}
		})
	}
}
