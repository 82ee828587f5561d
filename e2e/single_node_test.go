package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/rig"
)

func sseURL(base, token string, users ...string) string {
	q := url.Values{}
	if token != "" {
		q.Set("token", token)
	}
	for _, u := range users {
		q.Add("users[]", u)
	}
	return base + "/socket/sse?" + q.Encode()
}

// TestSingleNode runs the delivery checks against one stack.
func TestSingleNode(t *testing.T) {
	st := StartStack(t, nil, nil)

	t.Run("posted message reaches the user's stream", func(t *testing.T) {
		s := MustSSE(t, sseURL(st.Edge.URL, Token(t, "alice")))
		id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "Hi"})
		ev := s.NextMessage(t, 5*time.Second)
		if ev.ID != id {
			t.Fatalf("event id %q, want the 202 id %q", ev.ID, id)
		}
		var payload map[string]any
		if err := json.Unmarshal([]byte(ev.Data), &payload); err != nil || payload["text"] != "Hi" || payload["user"] != "alice" {
			t.Fatalf("payload %q, want the posted body", ev.Data)
		}
	})

	t.Run("Authorization header works like token=", func(t *testing.T) {
		s := MustSSE(t, st.Edge.URL+"/socket/sse", http.Header{"Authorization": {"Bearer " + Token(t, "header-user")}})
		id := Post(t, st.Ingest.URL, map[string]any{"user": "header-user", "n": 1})
		if ev := s.NextMessage(t, 5*time.Second); ev.ID != id {
			t.Fatalf("got %+v, want id %s", ev, id)
		}
	})

	t.Run("message published straight to NATS reaches the stream", func(t *testing.T) {
		user := "direct@example.com"
		s := MustSSE(t, sseURL(st.Edge.URL, Token(t, user)))
		nc, err := nats.Connect(st.NATSURL)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		subject, _ := rig.Subject(user)
		if subject != "user.direct%40example%2Ecom" {
			t.Fatalf("subject %q", subject)
		}
		msg := nats.NewMsg(subject)
		msg.Header.Set("Nats-Msg-Id", "backend-id-1")
		msg.Data = []byte(`{"from":"backend"}`)
		if err := nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
		// Without an id the edge makes one up.
		if err := nc.Publish(subject, []byte("plain text\nsecond line")); err != nil {
			t.Fatal(err)
		}
		ev := s.NextMessage(t, 5*time.Second)
		if ev.ID != "backend-id-1" || ev.Data != `{"from":"backend"}` {
			t.Fatalf("got %+v", ev)
		}
		ev = s.NextMessage(t, 5*time.Second)
		if ev.ID == "" || ev.ID == "backend-id-1" || ev.Data != "plain text\nsecond line" {
			t.Fatalf("got %+v, want a made-up id and the two-line payload", ev)
		}
	})

	t.Run("every connection of a user gets the message, other users none", func(t *testing.T) {
		phone := MustSSE(t, sseURL(st.Edge.URL, Token(t, "carol")))
		laptop := MustSSE(t, sseURL(st.Edge.URL, Token(t, "carol")))
		bob := MustSSE(t, sseURL(st.Edge.URL, Token(t, "bob")))
		id := Post(t, st.Ingest.URL, map[string]any{"user": "carol", "text": "for carol"})
		for _, s := range []*SSE{phone, laptop} {
			if ev := s.NextMessage(t, 5*time.Second); ev.ID != id {
				t.Fatalf("got %+v, want %s", ev, id)
			}
		}
		// bob's stream must not carry carol's message: the next message
		// bob sees is his own, posted after carol's.
		bobID := Post(t, st.Ingest.URL, map[string]any{"user": "bob", "text": "for bob"})
		if ev := bob.NextMessage(t, 5*time.Second); ev.ID != bobID {
			t.Fatalf("bob got %+v before his own message", ev)
		}
	})

	t.Run("privileged token watches other users, others get 403", func(t *testing.T) {
		support := MustSSE(t, sseURL(st.Edge.URL, Token(t, "agent", TokenOpts{Roles: []string{"support"}}), "dave", "erin"))
		d := Post(t, st.Ingest.URL, map[string]any{"user": "dave", "x": 1})
		e := Post(t, st.Ingest.URL, map[string]any{"user": "erin", "x": 2})
		// Order is kept per user, not across users: dave's subscription may
		// still be settling its position when erin's message arrives.
		got := []string{support.NextMessage(t, 5*time.Second).ID, support.NextMessage(t, 5*time.Second).ID}
		if !(got[0] == d && got[1] == e) && !(got[0] == e && got[1] == d) {
			t.Fatalf("support got %v, want %s and %s", got, d, e)
		}
		_, r := DialSSE(t, sseURL(st.Edge.URL, Token(t, "mallory"), "dave"), nil)
		if r.Status != 403 {
			t.Fatalf("non-privileged watching dave: %d %s", r.Status, r.Body)
		}
		r.ErrorMessage(t)
		_, r = DialSSE(t, sseURL(st.Edge.URL, Token(t, "mallory", TokenOpts{Roles: []string{"admin"}}), "mallory", "dave"), nil)
		if r.Status != 403 {
			t.Fatalf("unprivileged role watching dave among own: %d", r.Status)
		}
	})

	t.Run("multi-line payload is split into data lines", func(t *testing.T) {
		s := MustSSE(t, sseURL(st.Edge.URL, Token(t, "frank")))
		text := "line one\nline two\r\nline three"
		Post(t, st.Ingest.URL, map[string]any{"user": "frank", "text": text})
		ev := s.NextMessage(t, 5*time.Second)
		var payload map[string]string
		if err := json.Unmarshal([]byte(ev.Data), &payload); err != nil || payload["text"] != text {
			t.Fatalf("payload %q", ev.Data)
		}
		// Raw line breaks arrive as separate data: lines, joined by "\n".
		nc, _ := nats.Connect(st.NATSURL)
		defer nc.Close()
		nc.Publish("user.frank", []byte("a\r\nb\rc\nd"))
		if ev := s.NextMessage(t, 5*time.Second); ev.Data != "a\nb\nc\nd" {
			t.Fatalf("data %q", ev.Data)
		}
	})

	t.Run("SSE stream headers", func(t *testing.T) {
		s, r := DialSSE(t, sseURL(st.Edge.URL, Token(t, "gina")), nil)
		if s == nil {
			t.Fatalf("status %d", r.Status)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("Content-Type %q", ct)
		}
		if r.Header.Get("Cache-Control") == "" || r.Header.Get("X-Accel-Buffering") != "no" {
			t.Fatalf("headers %v", r.Header)
		}
	})

	t.Run("health", func(t *testing.T) {
		for _, base := range []string{st.Edge.URL, st.Ingest.URL} {
			if r := Do(t, "GET", base+"/health", "", nil); r.Status != 200 {
				t.Fatalf("%s/health: %d", base, r.Status)
			}
		}
	})
}

func TestSSEErrors(t *testing.T) {
	st := StartStack(t, nil, nil)
	expired := Token(t, "alice", TokenOpts{TTL: -time.Minute})
	cases := []struct {
		name   string
		url    string
		header http.Header
		status int
	}{
		{"no token", st.Edge.URL + "/socket/sse", nil, 400},
		{"empty token", st.Edge.URL + "/socket/sse?token=", nil, 400},
		{"Authorization not Bearer", st.Edge.URL + "/socket/sse", http.Header{"Authorization": {"Basic YWxpY2U6cHc="}}, 400},
		{"empty user in users[]", sseURL(st.Edge.URL, Token(t, "alice")) + "&users[]=", nil, 400},
		{"user id too long", sseURL(st.Edge.URL, Token(t, "alice"), strings.Repeat("a", 257)), nil, 400},
		{"garbage token", sseURL(st.Edge.URL, "garbage"), nil, 401},
		{"alg none", sseURL(st.Edge.URL, noneToken("alice")), nil, 401},
		{"wrong key", sseURL(st.Edge.URL, wrongKeyToken(t, "alice")), nil, 401},
		{"expired", sseURL(st.Edge.URL, expired), nil, 401},
		{"someone else", sseURL(st.Edge.URL, Token(t, "alice"), "bob"), nil, 403},
		{"hostile user id", sseURL(st.Edge.URL, Token(t, "alice"), "alice.>"), nil, 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, r := DialSSE(t, c.url, c.header)
			if s != nil {
				t.Fatalf("stream opened, want %d", c.status)
			}
			if r.Status != c.status {
				t.Fatalf("status %d %s, want %d", r.Status, r.Body, c.status)
			}
			r.ErrorMessage(t)
		})
	}
	if strings.Contains(st.Edge.Logs(), expired) {
		t.Fatal("edge logged a JWT")
	}
}

func noneToken(user string) string {
	enc := func(s string) string {
		return strings.TrimRight(base64URL([]byte(s)), "=")
	}
	return enc(`{"alg":"none","typ":"JWT"}`) + "." + enc(fmt.Sprintf(`{"user":%q,"exp":%d}`, user, time.Now().Add(time.Hour).Unix())) + "."
}
