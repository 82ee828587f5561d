package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBatchMessages: POST /v1/messages with a JSON array stores every
// message (202 {"ids":[...]}, in order) and each user's stream gets its own,
// in the order given, with those ids; a batch with one bad message is
// refused whole (400 naming its index) and delivers nothing.
func TestBatchMessages(t *testing.T) {
	st := StartStackInProcess(t, nil, map[string]string{"MESSAGE_BATCH_MAX_COUNT": "5"})
	alice := MustSSE(t, st.Edge.URL+"/socket/sse?token="+Token(t, "batch-alice"))
	bob := MustSSE(t, st.Edge.URL+"/socket/sse?token="+Token(t, "batch-bob"))

	body := `[{"user":"batch-alice","n":0},{"user":"batch-bob","n":1},{"user":"batch-alice","n":2},
		{"user":"batch-alice","n":3}]`
	r := Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json", []byte(body))
	if r.Status != 202 {
		t.Fatalf("batch: %d %s", r.Status, r.Body)
	}
	var a struct{ IDs []string }
	r.JSON(t, &a)
	if len(a.IDs) != 4 {
		t.Fatalf("202 body %s: want 4 ids", r.Body)
	}
	for _, want := range []struct {
		s *SSE
		i int
	}{{alice, 0}, {alice, 2}, {alice, 3}, {bob, 1}} {
		ev := want.s.NextMessage(t, 5*time.Second)
		if ev.ID != a.IDs[want.i] || ev.Data != fmt.Sprintf(`{"user":"%s","n":%d}`, map[bool]string{true: "batch-alice", false: "batch-bob"}[want.s == alice], want.i) {
			t.Errorf("got %+v, want message %d with id %s", ev, want.i, a.IDs[want.i])
		}
	}

	for body, wantErr := range map[string]string{
		`[{"user":"batch-alice","n":"bad batch"},{"n":5}]`:     `message 1: missing field "user"`,
		`[{"user":"batch-alice","n":"bad batch"},"text"]`:      "message 1: body must be a JSON object",
		`[{"user":"batch-alice","n":"bad batch"},{"user":""}]`: `message 1: field "user"`,
		`[]`:          "empty batch",
		`[{"user":}]`: "not valid JSON",
	} {
		r := Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json", []byte(body))
		if r.Status != 400 || !strings.Contains(r.ErrorMessage(t), wantErr) {
			t.Errorf("%s: %d %s, want 400 with %q", body, r.Status, r.Body, wantErr)
		}
	}
	six, _ := json.Marshal([]map[string]string{{"user": "batch-alice"}, {"user": "batch-alice"}, {"user": "batch-alice"},
		{"user": "batch-alice"}, {"user": "batch-alice"}, {"user": "batch-alice"}})
	if r := Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json", six); r.Status != 413 {
		t.Errorf("6 messages over MESSAGE_BATCH_MAX_COUNT=5: %d %s, want 413", r.Status, r.Body)
	}
	// Nothing of the refused batches was delivered: the next message is
	// the first alice gets after the good batch.
	id := Post(t, st.Ingest.URL, map[string]any{"user": "batch-alice", "n": "after"})
	if ev := alice.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("after refused batches alice got %+v, want the message %s", ev, id)
	}
}

// TestBodyLimitOutsideMessages: the larger batch limit does not raise the
// limit of other endpoints' bodies (MESSAGE_MAX_SIZE).
func TestBodyLimitOutsideMessages(t *testing.T) {
	st := StartStackInProcess(t, nil, map[string]string{"MESSAGE_MAX_SIZE": "1KiB"})
	big := `{"sessionId":"x","validityInSeconds":60,"pad":"` + strings.Repeat("x", 2000) + `"}`
	if r := Do(t, "POST", st.Ingest.URL+"/v1/session-blacklist", "application/json", []byte(big)); r.Status != 413 {
		t.Errorf("2 KB blacklist body: %d %s, want 413", r.Status, r.Body)
	}
	if r := Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json", []byte(`{"user":"a","pad":"`+strings.Repeat("x", 2000)+`"}`)); r.Status != 413 {
		t.Errorf("2 KB message: %d %s, want 413", r.Status, r.Body)
	}
	batch := `[{"user":"a","pad":"` + strings.Repeat("x", 500) + `"},{"user":"a","pad":"` + strings.Repeat("x", 500) + `"},{"user":"a"}]`
	if r := Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json", []byte(batch)); r.Status != 202 {
		t.Errorf("batch of three messages under 1 KiB each: %d %s, want 202", r.Status, r.Body)
	}
}

// TestBatchesBeyondInFlightLimit: batches that together hold more messages
// than ingest keeps waiting for JetStream at once (8,192) are all stored:
// the publishes beyond the limit wait for room.
func TestBatchesBeyondInFlightLimit(t *testing.T) {
	st := StartStackInProcess(t, nil, map[string]string{"MESSAGE_BATCH_MAX_COUNT": "5000", "LOG_LEVEL": "info"})
	var b strings.Builder
	b.WriteByte('[')
	for i := range 5000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"user":"inflight-%d","n":%d}`, i%50, i)
	}
	b.WriteByte(']')
	body := []byte(b.String())
	// Not Do, which may call t.Fatalf: only the test's goroutine may.
	type answer struct {
		status int
		body   []byte
		err    error
	}
	answers := make(chan answer, 4)
	for range 4 { // 20,000 messages at once
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second) // as Do
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "POST", st.Ingest.URL+"/v1/messages", bytes.NewReader(body))
			if err != nil {
				answers <- answer{err: err}
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answers <- answer{err: fmt.Errorf("POST %s: %w", req.URL, err)}
				return
			}
			defer resp.Body.Close()
			rb, _ := io.ReadAll(resp.Body)
			answers <- answer{status: resp.StatusCode, body: rb}
		}()
	}
	for range 4 {
		switch a := <-answers; {
		case a.err != nil:
			t.Errorf("batch of 5,000: %v", a.err)
		case a.status != 202:
			t.Errorf("batch of 5,000: %d %s", a.status, a.body)
		}
	}
}
