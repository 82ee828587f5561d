package e2e

import (
	"bufio"
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
)

// TestHostileSSEFirstEvent: a third-party Go SSE client (tmaxmax/go-sse)
// reports the connected event, with its id, as the first event of a
// stream, then the messages; no empty event. The edge used to open every
// stream with a block holding only retry:, which such clients report as
// an event with no type and no data. The wire shows why: retry: now opens
// the connected event's own block.
func TestHostileSSEFirstEvent(t *testing.T) {
	st := StartStack(t, nil, nil)
	tok := Token(t, "alice")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", sseURL(st.Edge.URL, tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan gosse.Event, 100)
	conn := (&gosse.Client{HTTPClient: http.DefaultClient}).NewConnection(req)
	conn.SubscribeToAll(func(e gosse.Event) { events <- e })
	go func() { _ = conn.Connect() }()
	next := func() gosse.Event {
		t.Helper()
		for {
			select {
			case e := <-events:
				if e.Type != "heartbeat" {
					return e
				}
			case <-time.After(5 * time.Second):
				t.Fatal("go-sse reported no event within 5s")
			}
		}
	}
	first := next()
	if first.Type != "connected" || !strings.HasPrefix(first.LastEventID, "seq:") || first.Data != `{"users":["alice"]}` {
		t.Fatalf("go-sse's first event: %+v, want connected with a seq: id and the users", first)
	}
	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "Hi"})
	if e := next(); e.Type != "message" || e.LastEventID != id {
		t.Fatalf("go-sse's second event: %+v, want message %s", e, id)
	}

	// On the wire: the body starts with the connected event's block, whose
	// first line is retry:.
	resp, err := http.Get(sseURL(st.Edge.URL, tok))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := bufio.NewReader(resp.Body) // net/http undoes the chunked encoding
	var block []string
	for {
		line, err := body.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before its first blank line: %v (read %q)", err, block)
		}
		if line == "\n" {
			break
		}
		block = append(block, strings.TrimSuffix(line, "\n"))
	}
	want := regexp.MustCompile(`^retry: [0-9]+\nid: seq:[0-9]+\nevent: connected\ndata: \{"users":\["alice"\]\}$`)
	if got := strings.Join(block, "\n"); !want.MatchString(got) {
		t.Fatalf("first block of the stream:\n%s\nwant retry:, id:, event: connected, data:", got)
	}
	t.Logf("first block: %q; go-sse's first event: type %q, id %q", block, first.Type, first.LastEventID)
}
