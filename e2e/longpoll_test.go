package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// LongPoll is one /socket/longpoll answer.
type LongPoll struct {
	Events []struct {
		Event string          `json:"event"`
		ID    string          `json:"id"`
		Data  json.RawMessage `json:"data"`
	} `json:"events"`
	LastEventID string `json:"last_event_id"`
}

func pollURL(edgeURL, token, last string, users ...string) string {
	q := url.Values{"token": {token}}
	if last != "" {
		q.Set("last_event_id", last)
	}
	for _, u := range users {
		q.Add("users[]", u)
	}
	return edgeURL + "/socket/longpoll?" + q.Encode()
}

// Poll sends one long-poll request and returns its answer.
func Poll(t testing.TB, u string) LongPoll {
	t.Helper()
	r := Do(t, "GET", u, "", nil)
	if r.Status != 200 {
		t.Fatalf("long-poll: %d %s", r.Status, r.Body)
	}
	var lp LongPoll
	r.JSON(t, &lp)
	if lp.LastEventID == "" {
		t.Fatalf("answer without last_event_id: %s", r.Body)
	}
	return lp
}

func TestLongPoll(t *testing.T) {
	st := StartStackInProcess(t, map[string]string{"LONGPOLL_TIMEOUT": "1s"}, nil)
	tok := Token(t, "alice")

	t.Run("nothing yet: empty answer after the timeout, with a position", func(t *testing.T) {
		start := time.Now()
		lp := Poll(t, pollURL(st.Edge.URL, tok, ""))
		if len(lp.Events) != 0 || time.Since(start) < 900*time.Millisecond {
			t.Fatalf("answer %+v after %s", lp, time.Since(start))
		}
	})

	t.Run("history after last_event_id comes at once, then live, exactly once", func(t *testing.T) {
		first := Poll(t, pollURL(st.Edge.URL, tok, ""))
		a := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 1})
		b := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 2})
		start := time.Now()
		lp := Poll(t, pollURL(st.Edge.URL, tok, first.LastEventID))
		if len(lp.Events) != 2 || lp.Events[0].ID != a || lp.Events[1].ID != b || time.Since(start) > 900*time.Millisecond {
			t.Fatalf("answer %+v after %s, want [%s %s] at once", lp, time.Since(start), a, b)
		}
		// The next poll waits for the next message and gets only it.
		done := make(chan LongPoll, 1)
		go func() { done <- Poll(t, pollURL(st.Edge.URL, tok, lp.LastEventID)) }()
		check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
			c, _ := edgeHealth(t, st.Edge.URL)
			if c < 1 {
				return fmt.Errorf("poll not waiting: got %v", c)
			}
			return nil
		})
		c := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 3})
		next := <-done
		if len(next.Events) != 1 || next.Events[0].ID != c || next.Events[0].Event != "message" {
			t.Fatalf("live answer %+v, want only %s", next, c)
		}
		var payload map[string]any
		if err := json.Unmarshal(next.Events[0].Data, &payload); err != nil || payload["n"] != 3.0 {
			t.Fatalf("data %s", next.Events[0].Data)
		}
		// An event id (not only our positions) works as last_event_id too.
		lp = Poll(t, pollURL(st.Edge.URL, tok, a))
		if len(lp.Events) != 2 || lp.Events[0].ID != b || lp.Events[1].ID != c {
			t.Fatalf("after %s: %+v", a, lp)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for _, c := range []struct {
			url    string
			status int
		}{
			{st.Edge.URL + "/socket/longpoll", 400},
			{pollURL(st.Edge.URL, "garbage", ""), 401},
			{pollURL(st.Edge.URL, tok, "", "bob"), 403},
			{pollURL(st.Edge.URL, tok, "bad\x01id"), 400},
		} {
			r := Do(t, "GET", c.url, "", nil)
			if r.Status != c.status {
				t.Fatalf("%s: %d %s, want %d", c.url, r.Status, r.Body, c.status)
			}
			r.ErrorMessage(t)
		}
		r := Do(t, "GET", pollURL(st.Edge.URL, tok, "")+"", "", nil, http.Header{"Origin": {"https://app.example"}})
		if r.Status != 200 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
			t.Fatalf("CORS: %d %v", r.Status, r.Header)
		}
	})

	t.Run("gap when the id is no longer in history", func(t *testing.T) {
		lp := Poll(t, pollURL(st.Edge.URL, tok, "01ARZ3NDEKTSV4RRFFQ69G5FAV"))
		if len(lp.Events) == 0 || lp.Events[0].Event != "gap" || string(lp.Events[0].Data) != `"01ARZ3NDEKTSV4RRFFQ69G5FAV"` {
			t.Fatalf("answer %+v", lp)
		}
	})
}

// TestLongPollAcrossEdges: successive polls alternate between two edges
// while messages are posted; the poller ends with each message once, in order.
func TestLongPollAcrossEdges(t *testing.T) {
	te := StartTwoEdges(t, map[string]string{"LONGPOLL_TIMEOUT": "500ms"}, nil)
	tok := Token(t, "alice")
	edges := []string{te.A.URL, te.B.URL}
	const total = 120
	posted := make(chan string, total)
	last := Poll(t, pollURL(edges[0], tok, "")).LastEventID
	go func() {
		for i := range total {
			posted <- Post(t, te.Ingest.URL, map[string]any{"user": "alice", "i": i})
			time.Sleep(3 * time.Millisecond) // a steady publishing rate
		}
		close(posted)
	}()
	var got []string
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; len(got) < total && time.Now().Before(deadline); i++ {
		lp := Poll(t, pollURL(edges[i%2], tok, last))
		for _, ev := range lp.Events {
			if ev.Event != "message" {
				t.Fatalf("unexpected %q event", ev.Event)
			}
			got = append(got, ev.ID)
		}
		last = lp.LastEventID
	}
	var want []string
	for id := range posted {
		want = append(want, id)
	}
	lost, dup := diff(want, got)
	if len(got) != len(want) || len(lost) > 0 || len(dup) > 0 {
		t.Fatalf("got %d of %d: lost %v, duplicated %v", len(got), len(want), lost, dup)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("out of order at %d", i)
		}
	}
	t.Logf("%d messages over long-polls alternating between two edges: 0 lost, 0 duplicated, in order", len(got))
}
