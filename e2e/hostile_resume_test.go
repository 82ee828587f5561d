package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// The hostile-load suite's resume tests: many clients resume at once, from
// real cursors and from bogus ones, and every one must end with exactly the
// messages it missed, in order, once, or be told (a gap) it may have missed
// some; a client that was refused or cut off resumes again, as real clients
// do, from the last id it got. Silence is the failure they catch.

const (
	resumeVictims  = 5    // users resuming from a real seq: cursor
	resumeMissed   = 1000 // messages each victim missed (HISTORY_MAX_PER_USER is above it)
	resumeFlooders = 150  // clients resuming from a bogus id at the same time
	floodUsers     = 10   // their users (15 sessions each)
	resumeFlood    = 1000 // messages each flooder's user holds
	floodPayload   = 2000 // bytes of padding in each of them
)

// resumeSetup is the history the resume tests replay: victims with a cursor
// each and the ids of the messages they missed, flooders with theirs.
type resumeSetup struct {
	st      *Stack
	victims []resumeUser
	flood   []resumeUser
}

type resumeUser struct {
	user   string
	cursor string   // where it resumes from
	want   []string // the message ids it must get, in order
	gap    bool     // it must get a gap first
}

// postBatches posts msgs (one user each) through ingest's batch API, 1000
// at a time, and returns their ids in order.
func postBatches(t testing.TB, ingestURL string, msgs []map[string]any) []string {
	t.Helper()
	var ids []string
	for len(msgs) > 0 {
		n := min(len(msgs), 1000)
		b, _ := json.Marshal(msgs[:n])
		msgs = msgs[n:]
		r := Do(t, "POST", ingestURL+"/v1/messages", "application/json", b)
		if r.Status != 202 {
			t.Fatalf("batch: %d %s", r.Status, r.Body)
		}
		var a struct{ IDs []string }
		r.JSON(t, &a)
		if len(a.IDs) != n {
			t.Fatalf("batch of %d answered %d ids", n, len(a.IDs))
		}
		ids = append(ids, a.IDs...)
	}
	return ids
}

func setupResume(t *testing.T) *resumeSetup {
	t.Helper()
	// Above resumeMissed: a user with HISTORY_MAX_PER_USER messages after a
	// cursor may have lost older ones, and gets a gap.
	perUser := strconv.Itoa(2 * resumeMissed)
	st := StartStack(t, map[string]string{"LONGPOLL_TIMEOUT": "1s", "LOG_LEVEL": "info", "HISTORY_MAX_PER_USER": perUser},
		map[string]string{"LOG_LEVEL": "info", "HISTORY_MAX_PER_USER": perUser})
	rs := &resumeSetup{st: st}
	var msgs []map[string]any
	pad := strings.Repeat("x", floodPayload)
	for i := range floodUsers {
		for j := range resumeFlood {
			msgs = append(msgs, map[string]any{"user": fmt.Sprintf("flooder-%d", i), "n": j, "pad": pad})
		}
	}
	ids := postBatches(t, st.Ingest.URL, msgs)
	for i := range resumeFlooders {
		u := i % floodUsers
		rs.flood = append(rs.flood, resumeUser{user: fmt.Sprintf("flooder-%d", u), cursor: "bogus-" + strconv.Itoa(i), gap: true,
			want: ids[u*resumeFlood : (u+1)*resumeFlood]})
	}
	for i := range resumeVictims {
		u := fmt.Sprintf("victim-%d", i)
		lp := Poll(t, pollURL(st.Edge.URL, Token(t, u), ""))
		rs.victims = append(rs.victims, resumeUser{user: u, cursor: lp.LastEventID})
	}
	msgs = msgs[:0]
	for j := range resumeMissed {
		for i := range resumeVictims {
			msgs = append(msgs, map[string]any{"user": rs.victims[i].user, "n": j})
		}
	}
	ids = postBatches(t, st.Ingest.URL, msgs)
	for k, id := range ids {
		v := &rs.victims[k%resumeVictims]
		v.want = append(v.want, id)
	}
	return rs
}

// resumed is what one resuming client ended with.
type resumed struct {
	user     string
	ids      []string // message ids, in the order received
	gaps     int
	connects int      // connections (or polls, or joins) it took
	refusals []string // statuses or reasons of refused attempts
	err      error
}

// check compares what a client got with what it must get.
func (r resumed) check(u resumeUser) error {
	if r.err != nil {
		return fmt.Errorf("%s: %v (after %d of %d messages)", r.user, r.err, len(r.ids), len(u.want))
	}
	if u.gap && r.gaps == 0 {
		return fmt.Errorf("%s: resumed from %q, no gap", r.user, u.cursor)
	}
	if !u.gap && r.gaps > 0 {
		return fmt.Errorf("%s: %d gaps, want none", r.user, r.gaps)
	}
	if strings.Join(r.ids, ",") != strings.Join(u.want, ",") {
		lost, dup := diff(u.want, r.ids)
		return fmt.Errorf("%s: got %d of %d messages (%d lost, %d duplicated, or out of order), %d gaps",
			r.user, len(r.ids), len(u.want), len(lost), len(dup), r.gaps)
	}
	return nil
}

// resumeAll runs one resuming client per user at once, each until it has
// all its messages or the deadline passes, and checks every one.
func resumeAll(t *testing.T, users []resumeUser, deadline time.Duration, run func(ctx context.Context, u resumeUser) resumed) []resumed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	out := make([]resumed, len(users))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = run(ctx, u)
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d concurrent resumes took %s", len(users), time.Since(began).Round(time.Millisecond))
	return out
}

// report logs the figures and fails the test for every client that did not
// end with exactly its messages.
func report(t *testing.T, what string, users []resumeUser, got []resumed) {
	t.Helper()
	bad, connects, refused := 0, 0, 0
	for i, u := range users {
		connects += got[i].connects
		refused += len(got[i].refusals)
		if err := got[i].check(u); err != nil {
			bad++
			if bad <= 5 || !u.gap {
				t.Errorf("%s: %v", what, err)
			}
		}
	}
	t.Logf("%s: %d of %d clients exact; %d connections, %d refused or cut off", what, len(users)-bad, len(users), connects, refused)
	if bad > 5 {
		t.Errorf("%s: %d clients in all did not get exactly their messages", what, bad)
	}
}

// TestHostileConcurrentResume: 150 clients resume from bogus ids at the
// same time as 5 resume from a real seq: cursor with 1,000 messages to
// replay, on SSE, plain WebSocket and Phoenix; then 200 long-polls from the
// real cursors at once. Each must end with exactly its messages, in order,
// once (the bogus ones after a gap), resuming again when it was refused or
// cut off. Under this load the history reader used to end a replay at the
// first empty fetch: victims got 0 of 1,000 and no gap, and long-polls a
// cursor at the stream's end.
func TestHostileConcurrentResume(t *testing.T) {
	rs := setupResume(t)
	all := append(append([]resumeUser{}, rs.flood...), rs.victims...)
	edge := rs.st.Edge.URL

	t.Run("sse", func(t *testing.T) {
		got := resumeAll(t, all, 40*time.Second, func(ctx context.Context, u resumeUser) resumed {
			return resumeSSE(ctx, edge, u)
		})
		report(t, "sse", all, got)
	})
	t.Run("websocket", func(t *testing.T) {
		got := resumeAll(t, all, 40*time.Second, func(ctx context.Context, u resumeUser) resumed {
			return resumeWS(ctx, edge, u)
		})
		report(t, "websocket", all, got)
	})
	t.Run("phoenix", func(t *testing.T) {
		got := resumeAll(t, all, 40*time.Second, func(ctx context.Context, u resumeUser) resumed {
			return resumePhoenix(ctx, edge, u)
		})
		report(t, "phoenix", all, got)
	})
	t.Run("longpoll", func(t *testing.T) {
		// 40 pollers per victim, each its own session, all at once, while
		// the flooders resume over SSE.
		clients := append([]resumeUser{}, rs.flood...)
		for range 200 / resumeVictims {
			clients = append(clients, rs.victims...)
		}
		got := resumeAll(t, clients, 40*time.Second, func(ctx context.Context, u resumeUser) resumed {
			if u.gap {
				return resumeSSE(ctx, edge, u)
			}
			return resumeLongPoll(ctx, edge, u)
		})
		report(t, "longpoll", clients, got)
	})
}

// retryPause is how long a refused client waits before trying again.
const retryPause = 200 * time.Millisecond

func retryWait(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(retryPause):
		return true
	}
}

// resumeSSE is EventSource: it sends its last id as Last-Event-ID, and
// reconnects with it whenever the stream ends.
func resumeSSE(ctx context.Context, edge string, u resumeUser) resumed {
	r := resumed{user: u.user}
	last := u.cursor
	tok := mintToken(u.user)
	for len(r.ids) < len(u.want) {
		if ctx.Err() != nil {
			r.err = fmt.Errorf("deadline: %v", r.refusals)
			return r
		}
		r.connects++
		req, _ := http.NewRequestWithContext(ctx, "GET", sseURL(edge, tok), nil)
		req.Header.Set("Last-Event-ID", last)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			r.refusals = append(r.refusals, err.Error())
			retryWait(ctx)
			continue
		}
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r.refusals = append(r.refusals, fmt.Sprintf("%d %s", resp.StatusCode, b))
			if resp.StatusCode != 503 && resp.StatusCode != 429 {
				r.err = fmt.Errorf("refused: %d %s", resp.StatusCode, b)
				return r
			}
			retryWait(ctx)
			continue
		}
		err = ParseSSE(resp.Body, func(ev SSEEvent) {
			switch ev.Event {
			case "message":
				r.ids = append(r.ids, ev.ID)
			case "gap":
				r.gaps++
			case "reconnect":
				r.refusals = append(r.refusals, "reconnect event")
			}
			if ev.ID != "" {
				last = ev.ID
			}
			if len(r.ids) >= len(u.want) {
				resp.Body.Close() // ParseSSE returns at the next read
			}
		})
		resp.Body.Close()
		if len(r.ids) < len(u.want) && err != nil && ctx.Err() == nil {
			r.refusals = append(r.refusals, "stream ended: "+err.Error())
		}
	}
	return r
}

// resumeWS is the README's plain-socket client: last_event_id= on every
// connect, the last id it got, reconnecting after any close.
func resumeWS(ctx context.Context, edge string, u resumeUser) resumed {
	r := resumed{user: u.user}
	last := u.cursor
	tok := mintToken(u.user)
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	for len(r.ids) < len(u.want) {
		if ctx.Err() != nil {
			r.err = fmt.Errorf("deadline: %v", r.refusals)
			return r
		}
		r.connects++
		q := plainQuery(tok)
		q.Set("last_event_id", last)
		c, resp, err := d.DialContext(ctx, wsURL(edge, q), nil)
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			r.refusals = append(r.refusals, fmt.Sprintf("%d %v", status, err))
			if status != 0 && status != 503 && status != 429 {
				r.err = fmt.Errorf("refused: %d %v", status, err)
				return r
			}
			retryWait(ctx)
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		for len(r.ids) < len(u.want) {
			_, data, err := c.ReadMessage()
			if err != nil {
				r.refusals = append(r.refusals, "closed: "+err.Error())
				break
			}
			var ev WSEvent
			if json.Unmarshal(data, &ev) != nil {
				r.err = fmt.Errorf("frame %q is not a JSON event", data)
				c.Close()
				return r
			}
			switch ev.Event {
			case "message":
				r.ids = append(r.ids, ev.ID)
			case "gap":
				r.gaps++
			}
			if ev.ID != "" && ev.Event != "gap" {
				last = ev.ID
			}
		}
		stop()
		c.Close()
	}
	return r
}

// resumePhoenix is phoenix.js: it joins user:<id> with {"last_event_id":
// <last id>} and joins again with the same params after an error reply or
// a lost socket.
func resumePhoenix(ctx context.Context, edge string, u resumeUser) resumed {
	r := resumed{user: u.user}
	last := u.cursor
	tok := mintToken(u.user)
	topic := "user:" + u.user
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	for len(r.ids) < len(u.want) {
		if ctx.Err() != nil {
			r.err = fmt.Errorf("deadline: %v", r.refusals)
			return r
		}
		c, resp, err := d.DialContext(ctx, wsURL(edge, phxQuery(tok, "2.0.0")), nil)
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			r.refusals = append(r.refusals, fmt.Sprintf("%d %v", status, err))
			retryWait(ctx)
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		joined := false
		for ref := 1; len(r.ids) < len(u.want); {
			if !joined {
				r.connects++
				b, _ := json.Marshal([]any{"1", strconv.Itoa(ref), topic, "phx_join", map[string]string{"last_event_id": last}})
				if c.WriteMessage(websocket.TextMessage, b) != nil {
					break
				}
				joined = true
			}
			_, data, err := c.ReadMessage()
			if err != nil {
				r.refusals = append(r.refusals, "closed: "+err.Error())
				break
			}
			var f []json.RawMessage
			if json.Unmarshal(data, &f) != nil || len(f) != 5 {
				r.err = fmt.Errorf("frame %q is not a Phoenix message", data)
				c.Close()
				return r
			}
			var event, id string
			_ = json.Unmarshal(f[3], &event)
			_ = json.Unmarshal(f[1], &id)
			switch event {
			case "phx_reply":
				var p struct{ Status string }
				_ = json.Unmarshal(f[4], &p)
				if p.Status != "ok" {
					r.refusals = append(r.refusals, "join "+string(f[4]))
					joined = false
					ref++
					if !retryWait(ctx) {
						break
					}
				}
			case "message":
				r.ids = append(r.ids, id)
				last = id
			case "gap":
				r.gaps++
			}
		}
		stop()
		c.Close()
	}
	return r
}

// resumeLongPoll polls with the last answer's last_event_id until it has
// every message; a 503 is retried with the same cursor after Retry-After.
func resumeLongPoll(ctx context.Context, edge string, u resumeUser) resumed {
	r := resumed{user: u.user}
	last := u.cursor
	tok := mintToken(u.user)
	empty := 0
	for len(r.ids) < len(u.want) {
		if ctx.Err() != nil {
			r.err = fmt.Errorf("deadline: %v", r.refusals)
			return r
		}
		r.connects++
		req, _ := http.NewRequestWithContext(ctx, "GET", pollURL(edge, tok, last), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			r.refusals = append(r.refusals, err.Error())
			retryWait(ctx)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			r.refusals = append(r.refusals, fmt.Sprintf("%d %s", resp.StatusCode, b))
			if resp.StatusCode != 503 && resp.StatusCode != 429 {
				r.err = fmt.Errorf("refused: %d %s", resp.StatusCode, b)
				return r
			}
			if resp.Header.Get("Retry-After") == "" {
				r.err = fmt.Errorf("%d without Retry-After", resp.StatusCode)
				return r
			}
			if leaksInternals(b) {
				r.err = fmt.Errorf("%d echoes NATS internals: %s", resp.StatusCode, b)
				return r
			}
			retryWait(ctx)
			continue
		}
		var lp LongPoll
		if err := json.Unmarshal(b, &lp); err != nil || lp.LastEventID == "" {
			r.err = fmt.Errorf("answer %q", b)
			return r
		}
		n := 0
		for _, ev := range lp.Events {
			switch ev.Event {
			case "message":
				r.ids = append(r.ids, ev.ID)
				n++
			case "gap":
				r.gaps++
			}
		}
		if n == 0 {
			// An empty answer with a cursor past what it missed is the
			// silent skip: the next poll would wait for new messages only.
			if empty++; empty == 3 {
				r.err = fmt.Errorf("3 empty answers in a row, cursor %s", lp.LastEventID)
				return r
			}
		} else {
			empty = 0
		}
		last = lp.LastEventID
	}
	return r
}

// leaksInternals reports whether an error body tells a client about NATS
// or the edge's code (error codes, stream names, Go errors).
func leaksInternals(body []byte) bool {
	for _, s := range []string{"err_code", "RIG_HISTORY", "nats:", "history:", "context deadline"} {
		if strings.Contains(string(body), s) {
			return true
		}
	}
	return false
}

// mintToken is Token for goroutines: it cannot fail the test.
func mintToken(user string) string {
	return Token(nopTB{}, user)
}

// nopTB lets helpers that take a testing.TB run where the test cannot be
// failed (in a goroutine); Token only fails on a signing error.
type nopTB struct{ testing.TB }

func (nopTB) Helper()                   {}
func (nopTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (nopTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
