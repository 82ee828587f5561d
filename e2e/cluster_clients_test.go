package e2e

import (
	"bytes"
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

	"github.com/rig-go/rig/internal/check"
)

// EventSource is an SSE client that behaves like a browser's EventSource:
// when the stream ends or the connection fails it waits the retry delay the
// server last sent and reconnects with Last-Event-ID set to the last id it
// saw; an answer other than 200 text/event-stream ends it for good, as it
// ends a browser's (Failed says why).
type EventSource struct {
	url    string
	client *http.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	ids      []string // message ids, in the order received
	lastID   string
	retry    time.Duration
	opens    int    // streams opened (200)
	errs     int    // connection attempts that failed
	failed   string // why it gave up, as a browser would
	kinds    map[string]int
	received chan struct{} // signalled on every message
	body     io.Closer     // the open stream's, for Drop
}

// OpenEventSource starts the client on url and waits for its first stream
// to open.
func OpenEventSource(t testing.TB, url string) *EventSource {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	es := &EventSource{
		url: url, cancel: cancel, done: make(chan struct{}),
		// A browser's default before the server sends retry: (3s).
		retry: 3 * time.Second, kinds: map[string]int{},
		client:   &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		received: make(chan struct{}, 1),
	}
	go es.run(ctx)
	t.Cleanup(es.Close)
	check.For(t, 20*time.Second, 10*time.Millisecond, func() error {
		es.mu.Lock()
		defer es.mu.Unlock()
		if es.failed != "" {
			t.Fatalf("EventSource %s: %s", url, es.failed)
		}
		if es.opens == 0 {
			return fmt.Errorf("EventSource %s did not open", url)
		}
		return nil
	})
	return es
}

// Close stops the client for good.
func (es *EventSource) Close() {
	es.cancel()
	<-es.done
}

func (es *EventSource) run(ctx context.Context) {
	defer close(es.done)
	for ctx.Err() == nil {
		err := es.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		es.mu.Lock()
		if es.failed != "" {
			es.mu.Unlock()
			return
		}
		if err != nil {
			es.errs++
		}
		wait := es.retry
		es.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// stream opens one connection and reads it until it ends.
func (es *EventSource) stream(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", es.url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	es.mu.Lock()
	if es.lastID != "" {
		req.Header.Set("Last-Event-ID", es.lastID)
	}
	es.mu.Unlock()
	resp, err := es.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		es.mu.Lock()
		es.failed = fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), bytes.TrimSpace(b))
		es.mu.Unlock()
		return nil
	}
	es.mu.Lock()
	es.opens++
	es.body = resp.Body
	es.mu.Unlock()
	defer func() {
		es.mu.Lock()
		es.body = nil
		es.mu.Unlock()
	}()
	// The SSE spec's parsing: fields until a blank line dispatches.
	r := newLineReader(resp.Body)
	var id, event string
	var data []string
	hasID := false
	for {
		line, err := r.line()
		if err != nil {
			return err
		}
		if line == "" {
			es.dispatch(id, hasID, event, data)
			event, data, hasID = "", nil, false
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id, hasID = value, true
		case "event":
			event = value
		case "data":
			data = append(data, value)
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil {
				es.mu.Lock()
				es.retry = time.Duration(ms) * time.Millisecond
				es.mu.Unlock()
			}
		}
	}
}

func (es *EventSource) dispatch(id string, hasID bool, event string, data []string) {
	es.mu.Lock()
	defer es.mu.Unlock()
	// As in a browser, an id field sets the last event id even when the
	// event has no data.
	if hasID {
		es.lastID = id
	}
	if data == nil {
		return
	}
	if event == "" {
		event = "message"
	}
	es.kinds[event]++
	if event == "message" {
		es.ids = append(es.ids, id)
		select {
		case es.received <- struct{}{}:
		default:
		}
	}
}

// Drop breaks the open stream, as a network failure would; the client
// reconnects as a browser does.
func (es *EventSource) Drop() {
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.body != nil {
		es.body.Close()
	}
}

// Errors returns how many connection attempts failed (no answer, or the
// connection closed before one).
func (es *EventSource) Errors() int {
	es.mu.Lock()
	defer es.mu.Unlock()
	return es.errs
}

// IDs returns the message ids received so far, in order.
func (es *EventSource) IDs() []string {
	es.mu.Lock()
	defer es.mu.Unlock()
	return append([]string(nil), es.ids...)
}

// Opens returns how many streams opened.
func (es *EventSource) Opens() int {
	es.mu.Lock()
	defer es.mu.Unlock()
	return es.opens
}

// Failed returns why the client gave up for good, or "".
func (es *EventSource) Failed() string {
	es.mu.Lock()
	defer es.mu.Unlock()
	return es.failed
}

// Kinds returns how many events of each kind arrived.
func (es *EventSource) Kinds() map[string]int {
	es.mu.Lock()
	defer es.mu.Unlock()
	out := map[string]int{}
	for k, v := range es.kinds {
		out[k] = v
	}
	return out
}

// Publisher posts messages to ingest at a steady pace, round-robin over
// its users, one at a time, and keeps the ids ingest accepted (202) per
// user, in order, and how many it refused.
type Publisher struct {
	ingest string
	users  []string
	pause  time.Duration
	stop   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	accepted map[string][]string
	total    int            // accepted, all users
	statuses map[int]int    // answers other than 202, by status (0: no answer)
	errors   map[string]int // why, for the report
	sent     int
	// The first and the last refusal: how long ingest refused.
	firstRefused, lastRefused time.Time
}

// StartPublisher starts posting to ingestURL; pause is the wait between
// two posts.
func StartPublisher(t testing.TB, ingestURL string, users []string, pause time.Duration) *Publisher {
	p := &Publisher{ingest: ingestURL, users: users, pause: pause, stop: make(chan struct{}), done: make(chan struct{}),
		accepted: map[string][]string{}, statuses: map[int]int{}, errors: map[string]int{}}
	go p.run()
	t.Cleanup(p.Stop)
	return p
}

func (p *Publisher) run() {
	defer close(p.done)
	c := &http.Client{Timeout: 15 * time.Second}
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			return
		default:
		}
		user := p.users[i%len(p.users)]
		body, _ := json.Marshal(map[string]any{"user": user, "n": i})
		status, id, why := post(c, p.ingest, body)
		p.mu.Lock()
		p.sent++
		if status == 202 {
			p.accepted[user] = append(p.accepted[user], id)
			p.total++
		} else {
			p.statuses[status]++
			p.errors[why]++
			if p.firstRefused.IsZero() {
				p.firstRefused = time.Now()
			}
			p.lastRefused = time.Now()
		}
		p.mu.Unlock()
		select {
		case <-p.stop:
			return
		case <-time.After(p.pause):
		}
	}
}

// post sends one message: the status (0 when there was no answer), the id
// of a 202, and what went wrong otherwise.
func post(c *http.Client, ingestURL string, body []byte) (int, string, string) {
	resp, err := c.Post(ingestURL+"/v1/messages", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, "", err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 202 {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		return resp.StatusCode, "", fmt.Sprintf("%d %s", resp.StatusCode, e.Error)
	}
	var a struct{ ID string }
	if json.Unmarshal(b, &a) != nil || a.ID == "" {
		return 0, "", fmt.Sprintf("202 without an id: %q", b)
	}
	return 202, a.ID, ""
}

// Stop stops posting and waits for the post in flight.
func (p *Publisher) Stop() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// Accepted returns how many posts got a 202 so far.
func (p *Publisher) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// AcceptedFor returns the ids accepted for user, in order.
func (p *Publisher) AcceptedFor(user string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.accepted[user]...)
}

// WaitAccepted waits until n more posts than before got a 202.
func (p *Publisher) WaitAccepted(t testing.TB, more int, timeout time.Duration) {
	t.Helper()
	want := p.Accepted() + more
	check.For(t, timeout, 10*time.Millisecond, func() error {
		if got := p.Accepted(); got < want {
			return fmt.Errorf("publisher: %s: got %v", p, got)
		}
		return nil
	})
}

// String reports what was sent and how it was answered.
func (p *Publisher) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := fmt.Sprintf("posted %d, accepted (202) %d, refused %v %v", p.sent, p.total, p.statuses, p.errors)
	if !p.firstRefused.IsZero() {
		s += fmt.Sprintf(" within %s", p.lastRefused.Sub(p.firstRefused).Round(time.Millisecond))
	}
	return s
}

// Delivery compares what a client received with what was accepted for its
// user.
type Delivery struct {
	Accepted, Received int
	Lost, Duplicated   []string
	OutOfOrder         int
	Unconfirmed        int // received, but ingest never answered 202 for it
}

func (d Delivery) String() string {
	return fmt.Sprintf("accepted %d, received %d, lost %d, duplicated %d, out of order %d, unconfirmed %d",
		d.Accepted, d.Received, len(d.Lost), len(d.Duplicated), d.OutOfOrder, d.Unconfirmed)
}

// Compare checks got against the accepted ids, in their order.
func Compare(accepted, got []string) Delivery {
	d := Delivery{Accepted: len(accepted), Received: len(got)}
	d.Lost, d.Duplicated = diff(accepted, got)
	want := map[string]int{}
	for i, id := range accepted {
		want[id] = i
	}
	last := -1
	for _, id := range got {
		i, ok := want[id]
		if !ok {
			d.Unconfirmed++
			continue
		}
		if i < last {
			d.OutOfOrder++
		}
		last = max(last, i)
	}
	return d
}

// WaitDelivered waits until every client got every message accepted for
// its user, then checks none was duplicated or out of order, and logs one
// line per client.
func WaitDelivered(t testing.TB, p *Publisher, clients map[string]*EventSource, timeout time.Duration) map[string]Delivery {
	t.Helper()
	return waitDelivered(t, p, clients, timeout, true)
}

// waitDelivered is WaitDelivered, logging one line per client if logEach.
func waitDelivered(t testing.TB, p *Publisher, clients map[string]*EventSource, timeout time.Duration, logEach bool) map[string]Delivery {
	t.Helper()
	out := map[string]Delivery{}
	deadline := time.Now().Add(timeout)
	for user, es := range clients {
		want := p.AcceptedFor(user)
		for {
			d := Compare(want, es.IDs())
			if len(d.Lost) == 0 {
				break
			}
			if f := es.Failed(); f != "" {
				t.Fatalf("%s: the client gave up as a browser would, after %s: %s", user, f, d)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after %s: %s; first lost %v", user, timeout, d, d.Lost[:min(5, len(d.Lost))])
			}
			select {
			case <-es.received:
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	for user, es := range clients {
		d := Compare(p.AcceptedFor(user), es.IDs())
		out[user] = d
		if logEach {
			t.Logf("%s: %s (streams opened %d, events %v)", user, d, es.Opens(), es.Kinds())
		}
		if len(d.Duplicated) > 0 || d.OutOfOrder > 0 {
			t.Errorf("%s: %s; duplicated %v", user, d, d.Duplicated[:min(5, len(d.Duplicated))])
		}
	}
	return out
}

// Totals adds up deliveries.
func Totals(ds map[string]Delivery) Delivery {
	var t Delivery
	for _, d := range ds {
		t.Accepted += d.Accepted
		t.Received += d.Received
		t.Lost = append(t.Lost, d.Lost...)
		t.Duplicated = append(t.Duplicated, d.Duplicated...)
		t.OutOfOrder += d.OutOfOrder
		t.Unconfirmed += d.Unconfirmed
	}
	return t
}
