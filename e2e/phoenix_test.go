package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/rig-go/rig/internal/check"
)

// phxMsg is a Phoenix frame, whichever serializer carried it.
type phxMsg struct {
	JoinRef, Ref any
	Topic, Event string
	Payload      json.RawMessage
}

// phx is a Phoenix socket spoken by hand, in vsn 1.0.0 or 2.0.0.
type phx struct {
	*WS
	vsn string
}

func dialPhx(t testing.TB, edgeURL, token, vsn string) *phx {
	t.Helper()
	return &phx{MustWS(t, wsURL(edgeURL, phxQuery(token, vsn))), vsn}
}

func (p *phx) push(t testing.TB, joinRef, ref any, topic, event string, payload any) {
	t.Helper()
	var v any = []any{joinRef, ref, topic, event, payload}
	if p.vsn == "1.0.0" {
		v = map[string]any{"join_ref": joinRef, "ref": ref, "topic": topic, "event": event, "payload": payload}
	}
	b, _ := json.Marshal(v)
	p.Send(t, string(b))
}

func (p *phx) next(t testing.TB) phxMsg {
	t.Helper()
	f := p.NextFrame(t, 5*time.Second)
	var m phxMsg
	if p.vsn == "1.0.0" {
		var o struct {
			JoinRef any             `json:"join_ref"`
			Ref     any             `json:"ref"`
			Topic   string          `json:"topic"`
			Event   string          `json:"event"`
			Payload json.RawMessage `json:"payload"`
		}
		mustJSON(t, f, &o)
		m = phxMsg{o.JoinRef, o.Ref, o.Topic, o.Event, o.Payload}
	} else {
		var a []json.RawMessage
		mustJSON(t, f, &a)
		if len(a) != 5 {
			t.Fatalf("frame %s has %d elements", f, len(a))
		}
		mustJSON(t, a[0], &m.JoinRef)
		mustJSON(t, a[1], &m.Ref)
		mustJSON(t, a[2], &m.Topic)
		mustJSON(t, a[3], &m.Event)
		m.Payload = a[4]
	}
	return m
}

// reply reads the next frame and checks it is the phx_reply to ref on topic
// with status; it returns the response.
func (p *phx) reply(t testing.TB, ref, topic, status string) json.RawMessage {
	t.Helper()
	m := p.next(t)
	var pl struct {
		Status   string          `json:"status"`
		Response json.RawMessage `json:"response"`
	}
	mustJSON(t, m.Payload, &pl)
	if m.Event != "phx_reply" || m.Ref != ref || m.Topic != topic || pl.Status != status {
		t.Fatalf("got %+v %s, want %s reply to %s on %s", m, m.Payload, status, ref, topic)
	}
	return pl.Response
}

func (p *phx) join(t testing.TB, ref, topic string, payload any) json.RawMessage {
	t.Helper()
	p.push(t, ref, ref, topic, "phx_join", payload)
	m := p.next(t)
	if m.Event != "phx_reply" || m.Ref != ref || m.JoinRef != ref || m.Topic != topic {
		t.Fatalf("join %s: got %+v %s", topic, m, m.Payload)
	}
	return m.Payload
}

// heartbeat round-trips a heartbeat: everything the edge wrote before it
// answered has been read.
func (p *phx) heartbeat(t testing.TB, ref string) {
	t.Helper()
	p.push(t, nil, ref, "phoenix", "heartbeat", map[string]any{})
	p.reply(t, ref, "phoenix", "ok")
}

// TestPhoenixProtocol speaks both serializers by hand.
func TestPhoenixProtocol(t *testing.T) {
	st := StartStack(t, nil, nil)
	for _, vsn := range []string{"2.0.0", "1.0.0"} {
		t.Run("vsn "+vsn, func(t *testing.T) {
			alice := fmt.Sprintf("alice-%s", vsn[:1])
			p := dialPhx(t, st.Edge.URL, Token(t, alice), vsn)
			p.heartbeat(t, "1")

			// Before joining, the topic is not the socket's.
			p.push(t, nil, "2", "user:"+alice, "message", map[string]any{})
			if r := p.reply(t, "2", "user:"+alice, "error"); !sameJSON(r, []byte(`{"reason":"unmatched topic"}`)) {
				t.Fatalf("push before join: %s", r)
			}

			if pl := p.join(t, "3", "user:"+alice, map[string]any{"last_event_id": "01OLD"}); !sameJSON(pl, []byte(`{"status":"ok","response":{}}`)) {
				t.Fatalf("join: %s", pl)
			}
			// "01OLD" was never in history: the channel is told it may have
			// missed messages.
			if g := p.next(t); g.Event != "gap" || g.Topic != "user:"+alice || string(g.Payload) != `"01OLD"` {
				t.Fatalf("got %+v %s, want a gap naming 01OLD", g, g.Payload)
			}
			id := Post(t, st.Ingest.URL, map[string]any{"user": alice, "text": "Hi"})
			m := p.next(t)
			if m.Event != "message" || m.Topic != "user:"+alice || m.JoinRef != nil || m.Ref != id ||
				!sameJSON(m.Payload, []byte(fmt.Sprintf(`{"user":%q,"text":"Hi"}`, alice))) {
				t.Fatalf("got %+v %s, want message %s", m, m.Payload, id)
			}

			// Someone else's topic, without a privileged role.
			if pl := p.join(t, "4", "user:bob", map[string]any{}); !sameJSON(pl, []byte(`{"status":"error","response":{"reason":"unauthorized"}}`)) {
				t.Fatalf("join of user:bob: %s", pl)
			}
			for _, c := range []struct{ topic, event, reason string }{
				{"user:" + alice, "shout", "unknown event"},
				{"room:lobby", "phx_join", "unmatched topic"},
				{"user:", "phx_join", "unmatched topic"},
				{"phoenix", "phx_join", "unmatched topic"},
				{"user:bob", "phx_leave", "unmatched topic"},
			} {
				p.push(t, "5", "5", c.topic, c.event, map[string]any{})
				if r := p.reply(t, "5", c.topic, "error"); !sameJSON(r, []byte(fmt.Sprintf(`{"reason":%q}`, c.reason))) {
					t.Fatalf("%s on %s: %s", c.event, c.topic, r)
				}
			}
			if pl := p.join(t, "6", "user:"+alice, map[string]any{"last_event_id": 5}); !strings.Contains(string(pl), "invalid last_event_id") {
				t.Fatalf("join with a numeric last_event_id: %s", pl)
			}

			// Joining again answers ok and still delivers once.
			p.join(t, "7", "user:"+alice, nil)
			id = Post(t, st.Ingest.URL, map[string]any{"user": alice, "n": 2})
			if m := p.next(t); m.Ref != id {
				t.Fatalf("got %+v, want %s", m, id)
			}
			p.heartbeat(t, "8") // not a second copy of the message

			// After leaving, nothing more arrives for the topic.
			p.push(t, "7", "9", "user:"+alice, "phx_leave", map[string]any{})
			p.reply(t, "9", "user:"+alice, "ok")
			watch := MustWS(t, wsURL(st.Edge.URL, plainQuery(Token(t, alice))))
			watch.Next(t, 5*time.Second)
			id = Post(t, st.Ingest.URL, map[string]any{"user": alice, "n": 3})
			if ev := watch.Next(t, 5*time.Second); ev.ID != id {
				t.Fatalf("watcher got %+v", ev)
			}
			p.heartbeat(t, "10")
			p.heartbeat(t, "11")
		})
	}

	t.Run("several topics on one socket", func(t *testing.T) {
		p := dialPhx(t, st.Edge.URL, Token(t, "agent", TokenOpts{Roles: []string{"support"}}), "2.0.0")
		p.join(t, "1", "user:erin", nil)
		p.join(t, "2", "user:frank", map[string]any{})
		e := Post(t, st.Ingest.URL, map[string]any{"user": "erin"})
		f := Post(t, st.Ingest.URL, map[string]any{"user": "frank"})
		got := map[string]string{}
		for range 2 {
			m := p.next(t)
			got[m.Topic] = m.Ref.(string)
		}
		if got["user:erin"] != e || got["user:frank"] != f {
			t.Fatalf("got %v, want erin %s and frank %s", got, e, f)
		}
	})
}

// TestPhoenixHostileInput: bad frames close only their own socket, once.
func TestPhoenixHostileInput(t *testing.T) {
	st := StartStack(t, nil, nil)
	bystander := dialPhx(t, st.Edge.URL, Token(t, "alice"), "2.0.0")
	bystander.join(t, "1", "user:alice", nil)
	tok := Token(t, "mallory")

	for _, c := range []struct {
		name  string
		frame string
		code  int
	}{
		{"invalid JSON", `["1","1","user:mallory",`, websocket.CloseInvalidFramePayloadData},
		{"object in vsn 2", `{"topic":"user:mallory","event":"phx_join","payload":{},"ref":"1"}`, websocket.CloseInvalidFramePayloadData},
		{"four elements", `["1","1","user:mallory","phx_join"]`, websocket.CloseInvalidFramePayloadData},
	} {
		p := dialPhx(t, st.Edge.URL, tok, "2.0.0")
		p.Send(t, c.frame)
		if code, ok := p.Closed(5 * time.Second); !ok || code != c.code {
			t.Fatalf("%s: closed %v with %d, want %d", c.name, ok, code, c.code)
		}
	}

	p := dialPhx(t, st.Edge.URL, tok, "2.0.0")
	if err := p.Conn.WriteMessage(websocket.BinaryMessage, []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if code, ok := p.Closed(5 * time.Second); !ok || code != websocket.CloseUnsupportedData {
		t.Fatalf("binary frame: closed %v with %d, want 1003", ok, code)
	}

	t.Run("flood of joins", func(t *testing.T) {
		p := dialPhx(t, st.Edge.URL, Token(t, "agent", TokenOpts{Roles: []string{"support"}}), "2.0.0")
		for i := range 101 {
			p.push(t, fmt.Sprint(i), fmt.Sprint(i), fmt.Sprintf("user:u%d", i), "phx_join", map[string]any{})
		}
		for i := range 100 {
			p.reply(t, fmt.Sprint(i), fmt.Sprintf("user:u%d", i), "ok")
		}
		if r := p.reply(t, "100", "user:u100", "error"); !sameJSON(r, []byte(`{"reason":"too many topics"}`)) {
			t.Fatalf("101st join: %s", r)
		}
		// A client that keeps sending faster than the edge allows is closed.
		for i := range 300 {
			if p.Conn.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`[null,"h%d","phoenix","heartbeat",{}]`, i))) != nil {
				break
			}
		}
		if code, ok := p.Closed(5 * time.Second); !ok || code != websocket.ClosePolicyViolation {
			t.Fatalf("flood: closed %v with %d, want 1008", ok, code)
		}
		_, users := edgeHealth(t, st.Edge.URL)
		check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
			_, users = edgeHealth(t, st.Edge.URL)
			if users != 1 {
				return fmt.Errorf("after the flooding socket closed, %d users are subscribed, want alice only", users)
			}
			return nil
		})
	})

	t.Run("abrupt reset", func(t *testing.T) {
		p := dialPhx(t, st.Edge.URL, tok, "2.0.0")
		p.join(t, "1", "user:mallory", nil)
		p.Reset()
		check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
			n, _ := edgeHealth(t, st.Edge.URL)
			if n != 1 {
				return fmt.Errorf("the reset socket is still counted: got %v", n)
			}
			return nil
		})
	})

	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice"})
	if m := bystander.next(t); m.Ref != id {
		t.Fatalf("bystander got %+v", m)
	}
	logs := st.Edge.Logs()
	if n := strings.Count(logs, "invalid phoenix frame"); n != 3 {
		t.Fatalf("%d log lines about invalid frames, want 3", n)
	}
	if strings.Contains(logs, "panic") {
		t.Fatal("the edge panicked")
	}
}
