package ingest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/broker/brokertest"
	"github.com/rig-go/rig/internal/config"
)

// testServer is ingest on an embedded NATS server with the real history
// stream, driven in-process through its fiber app.
func testServer(t *testing.T, maxPerUser int) (*Server, jetstream.Stream) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc := config.NATS{Embedded: true, Listen: "127.0.0.1:0", StoreDir: t.TempDir(), MaxAge: time.Minute,
		MaxPerUser: maxPerUser, IdempotencyWindow: 30 * time.Second, Name: "test"}
	b, err := broker.Open(nc, log)
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Run(t, b, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := New(&config.Ingest{NATS: nc, MessageUserField: "user", MaxMessageSize: 64 << 10, BatchMaxSize: 1 << 20,
		BatchMaxCount: 100, PublishTimeout: 2 * time.Second, PresenceTimeout: time.Second}, log, b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Go(t, s.Run)
	st, err := b.JS.Stream(ctx, broker.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

type answer struct {
	status int
	id     string
	err    string
}

func post(t *testing.T, s *Server, key, body string) answer {
	t.Helper()
	req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(HeaderIdempotencyKey, key)
	}
	resp, err := s.app.Test(req, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct{ ID, Error string }
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("%d %q is not JSON", resp.StatusCode, b)
	}
	return answer{resp.StatusCode, a.ID, a.Error}
}

func stored(t *testing.T, st jetstream.Stream) uint64 {
	t.Helper()
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestKeyedMessages: keys are scoped per user; a retry gets the first's
// id and stores nothing; the same key with another body gets 409.
func TestKeyedMessages(t *testing.T) {
	s, st := testServer(t, 100)
	alice := post(t, s, "order-42", `{"user":"alice","t":1}`)
	bob := post(t, s, "order-42", `{"user":"bob","t":1}`)
	if alice.status != 202 || bob.status != 202 || alice.id == bob.id || alice.id == "order-42" {
		t.Fatalf("alice %+v, bob %+v: want two 202s with distinct new ids", alice, bob)
	}
	// A key equal to another message's id is just a key.
	plain := post(t, s, "", `{"user":"carol"}`)
	reuse := post(t, s, plain.id, `{"user":"carol","other":true}`)
	if reuse.status != 202 || reuse.id == plain.id {
		t.Fatalf("key = another message's id: %+v (that message is %s)", reuse, plain.id)
	}
	if n := stored(t, st); n != 4 {
		t.Fatalf("stream holds %d messages, want 4", n)
	}
	if again := post(t, s, "order-42", `{"user":"alice","t":1}`); again != alice {
		t.Fatalf("retry: %+v, want %+v", again, alice)
	}
	conflict := post(t, s, "order-42", `{"user":"alice","t":2}`)
	if conflict.status != 409 || !strings.Contains(conflict.err, "different message") {
		t.Fatalf("same key, other body: %+v", conflict)
	}
	if n := stored(t, st); n != 4 {
		t.Fatalf("a retry or a conflict was stored: %d messages, want 4", n)
	}
	// Batches take no key: one key cannot name each message.
	if a := post(t, s, "order-43", `[{"user":"alice"}]`); a.status != 400 {
		t.Fatalf("batch with a key: %+v", a)
	}
}

// TestKeyedConcurrentRetries: retries racing each other (and the first)
// all answer 202 with one id, and one message is stored.
func TestKeyedConcurrentRetries(t *testing.T) {
	s, st := testServer(t, 100)
	const n = 20
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(`{"user":"alice","t":"race"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(HeaderIdempotencyKey, "race-1")
			resp, err := s.app.Test(req, 10_000)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var a struct{ ID string }
			_ = json.NewDecoder(resp.Body).Decode(&a)
			answers[i] = answer{status: resp.StatusCode, id: a.ID}
		})
	}
	wg.Wait()
	for _, a := range answers {
		if a.status != 202 || a.id != answers[0].id {
			t.Fatalf("answers %+v: want %d 202s with one id", answers, n)
		}
	}
	if got := stored(t, st); got != 1 {
		t.Fatalf("stream holds %d messages, want 1", got)
	}
}

// TestKeyedFirstGone: when the first message with a key has left history
// (newer messages for the user pushed it out) inside the window, a retry
// cannot be told from a new message and gets 409, not a silent 202.
func TestKeyedFirstGone(t *testing.T) {
	s, _ := testServer(t, 2)
	if a := post(t, s, "k", `{"user":"alice"}`); a.status != 202 {
		t.Fatal(a)
	}
	for range 2 {
		if a := post(t, s, "", `{"user":"alice","newer":true}`); a.status != 202 {
			t.Fatal(a)
		}
	}
	if a := post(t, s, "k", `{"user":"alice"}`); a.status != 409 || !strings.Contains(a.err, "no longer in history") {
		t.Fatalf("retry after the first left history: %+v", a)
	}
}

// TestInvalidUTF8Refused: every body ingest takes must be UTF-8.
func TestInvalidUTF8Refused(t *testing.T) {
	s, st := testServer(t, 100)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/messages", "{\"user\":\"carol\",\"t\":\"bad \xff\"}"},
		{"POST", "/v1/messages", "[{\"user\":\"carol\"},{\"user\":\"carol\",\"t\":\"\xc3\x28\"}]"},
		{"POST", "/v1/messages", "{\"user\":\"car\xffol\"}"},
		{"POST", "/v1/session-blacklist", "{\"sessionId\":\"s\xff\",\"validityInSeconds\":60}"},
		{"POST", "/v1/apis", "{\"id\":\"a\xff\"}"},
	} {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.app.Test(req, 10_000)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), "not valid UTF-8") {
			t.Errorf("%s %s %q: %d %s", c.method, c.path, c.body, resp.StatusCode, b)
		}
	}
	if n := stored(t, st); n != 0 {
		t.Fatalf("stream holds %d messages, want 0", n)
	}
}

func TestKeyedMsgID(t *testing.T) {
	a, b := keyedMsgID("alice", "k"), keyedMsgID("bob", "k")
	if a == b || a != keyedMsgID("alice", "k") || !strings.HasPrefix(a, keyedPrefix) || len(a) != len(keyedPrefix)+43 {
		t.Fatalf("alice %q, bob %q", a, b)
	}
	// The separator cannot be forged: a subject token escapes line breaks.
	if keyedMsgID("a", "b\nc") == keyedMsgID("a\nb", "c") {
		t.Fatal("user a with key b\\nc collides with user a\\nb with key c")
	}
}

func TestInvalidUTF8At(t *testing.T) {
	for in, want := range map[string]int{"": -1, "abc": -1, "ü€😀": -1, "\xff": 0, "ab\xc3": 2, "a\xc3\x28": 1, "\xed\xa0\x80": 0} {
		if got := invalidUTF8At([]byte(in)); got != want {
			t.Errorf("invalidUTF8At(%q) = %d, want %d", in, got, want)
		}
	}
}

// FuzzInvalidUTF8At: -1 exactly for valid UTF-8, else the offset where
// the valid prefix ends.
func FuzzInvalidUTF8At(f *testing.F) {
	for _, s := range []string{"", "ü", "\xff", "a\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		i := invalidUTF8At(b)
		if (i < 0) != utf8.Valid(b) {
			t.Fatalf("invalidUTF8At(%q) = %d, utf8.Valid = %v", b, i, utf8.Valid(b))
		}
		if i < 0 {
			return
		}
		if r, n := utf8.DecodeRune(b[i:]); !utf8.Valid(b[:i]) || r != utf8.RuneError || n != 1 {
			t.Fatalf("invalidUTF8At(%q) = %d: the prefix is invalid or a valid rune starts there", b, i)
		}
	})
}
