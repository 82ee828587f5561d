package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

// A reconnecting client behaves like a well-written front-end: when its
// connection ends or cannot be made, it waits a little and connects again,
// to the next edge in its list, resuming after the last event it received.
// It never fails the test itself (it runs on its own goroutine); the test
// reads what it received.
type reconnecting struct {
	name  string
	edges []string
	token string
	users []string

	mu          sync.Mutex
	got         []string // message ids, in arrival order
	gaps        int
	last        string // resume cursor
	connects    int
	errs        []string
	connectedAt []string // edge of each successful connection
}

func newReconnecting(name string, edges []string, token string, users ...string) *reconnecting {
	return &reconnecting{name: name, edges: edges, token: token, users: users}
}

func (r *reconnecting) record(id string) {
	r.mu.Lock()
	r.got = append(r.got, id)
	r.mu.Unlock()
}

func (r *reconnecting) setLast(id string) {
	r.mu.Lock()
	r.last = id
	r.mu.Unlock()
}

func (r *reconnecting) cursor() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func (r *reconnecting) fail(err error) {
	r.mu.Lock()
	if len(r.errs) < 20 {
		r.errs = append(r.errs, err.Error())
	}
	r.mu.Unlock()
}

func (r *reconnecting) connected(edge string) {
	r.mu.Lock()
	r.connects++
	r.connectedAt = append(r.connectedAt, edge)
	r.mu.Unlock()
}

// received returns a copy of the ids received so far.
func (r *reconnecting) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func (r *reconnecting) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%s: %d messages, %d connections, %d gaps, errors %v", r.name, len(r.got), r.connects, r.gaps, r.errs)
}

// runSSE keeps an SSE stream open, like EventSource with Last-Event-ID.
func (r *reconnecting) runSSE(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		edge := r.edges[i%len(r.edges)]
		q := url.Values{"token": {r.token}}
		for _, u := range r.users {
			q.Add("users[]", u)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", edge+"/socket/sse?"+q.Encode(), nil)
		if last := r.cursor(); last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			pause(ctx)
			continue
		}
		if resp.StatusCode != 200 {
			r.fail(fmt.Errorf("SSE on %s: %d", edge, resp.StatusCode))
			resp.Body.Close()
			pause(ctx)
			continue
		}
		r.connected(edge)
		_ = ParseSSE(resp.Body, func(ev SSEEvent) {
			// Like EventSource: any event's id becomes the Last-Event-ID
			// (the connected event carries the starting position).
			if ev.ID != "" {
				r.setLast(ev.ID)
			}
			switch ev.Event {
			case "message":
				r.record(ev.ID)
			case "gap":
				r.mu.Lock()
				r.gaps++
				r.mu.Unlock()
			}
		})
		resp.Body.Close()
		pause(ctx)
	}
}

// runWebSocket keeps a plain WebSocket open, resuming with last_event_id=.
func (r *reconnecting) runWebSocket(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		edge := r.edges[i%len(r.edges)]
		q := url.Values{"token": {r.token}}
		for _, u := range r.users {
			q.Add("users[]", u)
		}
		if last := r.cursor(); last != "" {
			q.Set("last_event_id", last)
		}
		d := websocket.Dialer{HandshakeTimeout: 3 * time.Second}
		c, resp, err := d.DialContext(ctx, strings.Replace(edge, "http://", "ws://", 1)+"/socket/websocket?"+q.Encode(), nil)
		if err != nil {
			if resp != nil && resp.StatusCode != 0 {
				r.fail(fmt.Errorf("WebSocket on %s: %d", edge, resp.StatusCode))
			}
			pause(ctx)
			continue
		}
		r.connected(edge)
		stop := context.AfterFunc(ctx, func() { c.Close() })
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				break
			}
			var ev struct {
				Event string `json:"event"`
				ID    string `json:"id"`
			}
			if json.Unmarshal(data, &ev) != nil {
				r.fail(fmt.Errorf("bad frame %q", data))
				continue
			}
			if ev.ID != "" {
				r.setLast(ev.ID) // connected carries the starting position
			}
			switch ev.Event {
			case "message":
				r.record(ev.ID)
			case "gap":
				r.mu.Lock()
				r.gaps++
				r.mu.Unlock()
			}
		}
		stop()
		c.Close()
		pause(ctx)
	}
}

// runLongPoll polls, alternating edges, with the cursor each answer gives.
func (r *reconnecting) runLongPoll(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		edge := r.edges[i%len(r.edges)]
		q := url.Values{"token": {r.token}}
		for _, u := range r.users {
			q.Add("users[]", u)
		}
		if last := r.cursor(); last != "" {
			q.Set("last_event_id", last)
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", edge+"/socket/longpoll?"+q.Encode(), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			pause(ctx)
			continue
		}
		var lp LongPoll
		err = json.NewDecoder(resp.Body).Decode(&lp)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			if resp.StatusCode != 503 {
				r.fail(fmt.Errorf("long-poll on %s: %d %v", edge, resp.StatusCode, err))
			}
			pause(ctx)
			continue
		}
		r.connected(edge)
		for _, ev := range lp.Events {
			switch ev.Event {
			case "message":
				r.record(ev.ID)
			case "gap":
				r.mu.Lock()
				r.gaps++
				r.mu.Unlock()
			}
		}
		r.setLast(lp.LastEventID)
	}
}

// pause is a client's reconnect delay.
func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(100 * time.Millisecond):
	}
}

// tryPost is Post for goroutines other than the test's: it returns an
// error instead of failing the test.
func tryPost(ingestURL string, msg any) (string, error) {
	b, err := json.Marshal(msg)
	if err != nil {
		return "", err
	}
	status, id, why := post(http.DefaultClient, ingestURL, b)
	if status != 202 {
		return "", fmt.Errorf("POST /v1/messages: %s", why)
	}
	return id, nil
}
