package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishDirect stores data on subject the way a back-end that speaks
// NATS does, with Nats-Msg-Id id (none if empty), and returns its stream
// sequence.
func publishDirect(t *testing.T, natsURL, subject, id string, data []byte) uint64 {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(subject)
	if id != "" {
		m.Header.Set("Nats-Msg-Id", id)
	}
	m.Data = data
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatalf("publish to %s: %v", subject, err)
	}
	return ack.Sequence
}

// TestHostileForgedSeqID: a direct publisher sets Nats-Msg-Id: seq:999.
// The edge must deliver it with its real position, never seq:999 (a client
// resuming from that would skip whatever lies between), and a resume from a
// seq: past the stream's end, or malformed, gets a gap, then everything
// history holds; on every transport.
func TestHostileForgedSeqID(t *testing.T) {
	st := StartStack(t, map[string]string{"LONGPOLL_TIMEOUT": "1s"}, nil)
	tok := Token(t, "forged")
	live := MustSSE(t, sseURL(st.Edge.URL, tok))
	before := Post(t, st.Ingest.URL, map[string]any{"user": "forged", "n": 0})
	seq := publishDirect(t, st.NATSURL, "user.forged", "seq:999", []byte(`{"forged":true}`))
	after := Post(t, st.Ingest.URL, map[string]any{"user": "forged", "n": 2})
	real := fmt.Sprintf("seq:%d", seq)
	all := []string{before, real, after}
	for i, want := range all {
		if ev := live.NextMessage(t, 5*time.Second); ev.ID != want {
			t.Fatalf("live message %d has id %q, want %q (the forged one with its stream position)", i, ev.ID, want)
		}
	}
	// Its real position resumes exactly: no gap, only what came after.
	r := MustSSE(t, sseURL(st.Edge.URL, tok), http.Header{"Last-Event-ID": {real}})
	if ev := r.Next(t, 5*time.Second); ev.Event != "message" || ev.ID != after {
		t.Fatalf("after %s: %+v, want %s", real, ev, after)
	}
	for _, cursor := range []string{"seq:999", "seq:abc", "seq:18446744073709551615"} {
		t.Run(cursor, func(t *testing.T) {
			r := MustSSE(t, sseURL(st.Edge.URL, tok), http.Header{"Last-Event-ID": {cursor}})
			if ev := r.Next(t, 5*time.Second); ev.Event != "gap" || ev.Data != cursor {
				t.Fatalf("sse: first %+v, want a gap naming %s", ev, cursor)
			}
			for _, want := range all {
				if ev := r.NextMessage(t, 5*time.Second); ev.ID != want {
					t.Fatalf("sse: got %s, want %s", ev.ID, want)
				}
			}
			q := plainQuery(tok)
			q.Set("last_event_id", cursor)
			w := MustWS(t, wsURL(st.Edge.URL, q))
			if ev := w.Next(t, 5*time.Second); ev.Event != "connected" {
				t.Fatalf("websocket: first %+v", ev)
			}
			if ev := w.Next(t, 5*time.Second); ev.Event != "gap" {
				t.Fatalf("websocket: %+v, want a gap", ev)
			}
			for _, want := range all {
				if ev := w.Next(t, 5*time.Second); ev.ID != want {
					t.Fatalf("websocket: got %+v, want %s", ev, want)
				}
			}
			lp := Poll(t, pollURL(st.Edge.URL, tok, cursor))
			if len(lp.Events) != 4 || lp.Events[0].Event != "gap" || lp.Events[1].ID != before || lp.Events[2].ID != real || lp.Events[3].ID != after {
				t.Fatalf("long-poll: %+v, want a gap and all three", lp)
			}
			if lp.LastEventID != fmt.Sprintf("seq:%d", seq+1) {
				t.Fatalf("long-poll cursor %s", lp.LastEventID)
			}
		})
	}
}

// TestHostileInvalidUTF8: a direct NATS publish with invalid UTF-8 in its
// payload reaches a WebSocket client as valid text (each invalid run
// replaced by U+FFFD), which Node's ws (like a browser) accepts, and a
// resume sends it again without breaking the socket; SSE and long-poll
// carry the same text.
func TestHostileInvalidUTF8(t *testing.T) {
	node := nodeClients(t)
	st := StartStack(t, map[string]string{"LONGPOLL_TIMEOUT": "1s"}, nil)
	tok := Token(t, "carol")
	start := Poll(t, pollURL(st.Edge.URL, tok, "")).LastEventID
	seq := publishDirect(t, st.NATSURL, "user.carol", "", []byte("{\"t\":\"bad \xff\"}"))
	ok := Post(t, st.Ingest.URL, map[string]any{"user": "carol", "t": "fine"})
	const want = "{\"t\":\"bad \uFFFD\"}"

	// Twice: the resume replays the same message to a fresh socket.
	for round := range 2 {
		q := plainQuery(tok)
		q.Set("last_event_id", start)
		frames := nodeFrames(t, node, wsURL(st.Edge.URL, q), 3)
		if len(frames) != 3 {
			t.Fatalf("round %d: node got %d frames, want connected and two messages: %v", round, len(frames), frames)
		}
		var ev struct {
			Event string          `json:"event"`
			ID    string          `json:"id"`
			Data  json.RawMessage `json:"data"`
		}
		mustJSON(t, []byte(frames[1]), &ev)
		if ev.Event != "message" || ev.ID != fmt.Sprintf("seq:%d", seq) || string(ev.Data) != want {
			t.Fatalf("round %d: frame %s, want the message with %s", round, frames[1], want)
		}
		mustJSON(t, []byte(frames[2]), &ev)
		if ev.ID != ok {
			t.Fatalf("round %d: the message after it is %s, want %s", round, frames[2], ok)
		}
	}
	r := MustSSE(t, sseURL(st.Edge.URL, tok), http.Header{"Last-Event-ID": {start}})
	if ev := r.NextMessage(t, 5*time.Second); ev.Data != want || !utf8.ValidString(ev.Data) {
		t.Fatalf("sse data %q, want %q", ev.Data, want)
	}
	lp := Poll(t, pollURL(st.Edge.URL, tok, start))
	if len(lp.Events) != 2 || string(lp.Events[0].Data) != want {
		t.Fatalf("long-poll %+v", lp)
	}
}

// nodeFrames runs e2e/js/ws_frames.mjs against u and returns the text
// frames it printed; it fails the test if the socket broke first.
func nodeFrames(t *testing.T, node, u string, n int) []string {
	t.Helper()
	cmd := exec.Command(node, "ws_frames.mjs")
	cmd.Dir = jsDir
	cmd.Env = append(os.Environ(), "WS_URL="+u, fmt.Sprintf("FRAMES=%d", n), "TIMEOUT_MS=15000")
	out, err := cmd.Output()
	var frames []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Event, Text, Error string
			Code               int
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			t.Fatalf("node printed %q", sc.Text())
		}
		switch l.Event {
		case "frame":
			frames = append(frames, l.Text)
		default:
			t.Fatalf("node's ws: %s (after %d frames)", sc.Text(), len(frames))
		}
	}
	if err != nil {
		t.Fatalf("node exited with %v after %d frames", err, len(frames))
	}
	return frames
}

// TestHostileHistoryUnavailable: when history cannot be read (here the
// stream is gone), no transport carries on as if nothing was missed, and
// none moves the client's cursor: an SSE resume ends with a reconnect event
// (no id), a plain socket with the reconnect frame and 1012, a Phoenix join
// gets an error reply, a long-poll 503 with Retry-After and no NATS
// internals; a fresh connection the same.
func TestHostileHistoryUnavailable(t *testing.T) {
	st := StartStack(t, map[string]string{"LONGPOLL_TIMEOUT": "1s"}, nil)
	tok := Token(t, "dana")
	start := Poll(t, pollURL(st.Edge.URL, tok, "")).LastEventID
	Post(t, st.Ingest.URL, map[string]any{"user": "dana", "n": 1})
	nc, err := nats.Connect(st.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, "RIG_HISTORY"); err != nil {
		t.Fatal(err)
	}

	for _, cursor := range []string{start, ""} {
		h := http.Header{}
		if cursor != "" {
			h.Set("Last-Event-ID", cursor)
		}
		s, r := DialSSE(t, sseURL(st.Edge.URL, tok), h)
		if s == nil {
			t.Fatalf("sse from %q: %d %s, want a stream that ends with reconnect", cursor, r.Status, r.Body)
		}
		if ev := s.Next(t, 15*time.Second); ev.Event != "reconnect" || ev.ID != "" {
			t.Fatalf("sse from %q: %+v, want reconnect without an id", cursor, ev)
		}
		if !s.Ended(5 * time.Second) {
			t.Fatalf("sse from %q: the stream did not end", cursor)
		}

		q := plainQuery(tok)
		if cursor != "" {
			q.Set("last_event_id", cursor)
		}
		w := MustWS(t, wsURL(st.Edge.URL, q))
		if ev := w.Next(t, 15*time.Second); ev.Event != "reconnect" || ev.ID != "" {
			t.Fatalf("websocket from %q: %+v, want reconnect", cursor, ev)
		}
		if code, ok := w.Closed(5 * time.Second); !ok || code != 1012 {
			t.Fatalf("websocket from %q: closed %v with %d, want 1012", cursor, ok, code)
		}

		p := dialPhx(t, st.Edge.URL, tok, "2.0.0")
		payload := map[string]any{}
		if cursor != "" {
			payload["last_event_id"] = cursor
		}
		p.push(t, "1", "1", "user:dana", "phx_join", payload)
		m := p.NextFrame(t, 15*time.Second)
		if !strings.Contains(string(m), `"phx_reply"`) || !strings.Contains(string(m), `"error"`) {
			t.Fatalf("phoenix join from %q: %s, want an error reply", cursor, m)
		}

		r2 := Do(t, "GET", pollURL(st.Edge.URL, tok, cursor), "", nil)
		if r2.Status != 503 || r2.Header.Get("Retry-After") == "" || leaksInternals(r2.Body) {
			t.Fatalf("long-poll from %q: %d %v %s, want 503 with Retry-After and no internals", cursor, r2.Status, r2.Header, r2.Body)
		}
	}
}
