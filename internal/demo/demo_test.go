package demo

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		body   string
		status int // 0: accepted
		says   string
	}{
		{`{"to":"alice","text":"hi"}`, 0, ""},
		{`{"to":"alice@example.com","text":"` + strings.Repeat("é", MaxText) + `"}`, 0, ""},
		{` {"text":"hi","to":"a.b*>"} `, 0, ""}, // any bytes: the subject escapes them
		{`{"to":"alice","text":"` + strings.Repeat("é", MaxText+1) + `"}`, 400, "501 characters"},
		{`{"to":"","text":"hi"}`, 400, "empty"},
		{`{"text":"hi"}`, 400, "empty"},
		{`{"to":null,"text":"hi"}`, 400, "empty"},
		{`{"to":"` + strings.Repeat("a", 257) + `","text":"hi"}`, 400, "257 bytes"},
		{`{"to":"alice","text":""}`, 400, `"text" is empty`},
		{`{"to":"alice","text":" \n\t"}`, 400, `"text" is empty`},
		{`{"to":"alice"}`, 400, `"text" is empty`},
		{`{"to":"alice","text":"hi","from":"mallory"}`, 400, `unknown field "from"`},
		{`{"to":"alice","text":1}`, 400, "JSON object"},
		{`{"to":"alice","text":"hi"} x`, 400, "nothing after it"},
		{`[]`, 400, "JSON object"},
		{`null`, 400, "empty"},
		{``, 400, "JSON object"},
		{"{\"to\":\"alice\",\"text\":\"\xc3\"}", 400, "UTF-8"},
		{`{"to":"alice","text":"` + strings.Repeat("a", MaxBody) + `"}`, 413, "at most 4096"},
	} {
		m, err := Parse([]byte(c.body))
		var e *Error
		switch {
		case c.status == 0 && err != nil:
			t.Errorf("Parse(%.60q): %v, want it accepted", c.body, err)
		case c.status == 0 && (m.To == "" || m.Text == ""):
			t.Errorf("Parse(%.60q) = %+v", c.body, m)
		case c.status != 0 && (!errors.As(err, &e) || e.Status != c.status || !strings.Contains(e.Msg, c.says)):
			t.Errorf("Parse(%.60q): %v, want %d saying %q", c.body, err, c.status, c.says)
		case c.status != 0 && m != (Message{}):
			t.Errorf("Parse(%.60q) refused but returned %+v", c.body, m)
		}
	}
}

// FuzzParse: whatever the body, Parse either refuses it with a 4xx or
// returns a message a forward can carry: a valid user id and 1 to MaxText
// characters of valid UTF-8.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"to":"alice","text":"hi"}`, `{"to":"","text":""}`, `{"to":"a","text":"b"}{}`, `{"to":"\u0000","text":"\ud800"}`, `[`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Parse(body)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 || e.Msg == "" {
				t.Fatalf("Parse(%q): %v, want a 4xx *Error", body, err)
			}
			return
		}
		if len(body) > MaxBody || m.To == "" || len(m.To) > 256 || strings.TrimSpace(m.Text) == "" || len([]rune(m.Text)) > MaxText {
			t.Fatalf("Parse(%q) accepted %+v", body, m)
		}
	})
}

func TestFiles(t *testing.T) {
	for _, name := range []string{"index.html", "demo.js", "demo.css", "client/index.js", "client/sse.js", "client/backoff.js", "client/seen.js", "client/index.d.ts"} {
		f, err := Files.Open("/" + name)
		if err != nil {
			t.Errorf("Open(%s): %v", name, err)
			continue
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %d bytes, %v", name, len(b), err)
		}
	}
	// Only the page's files and the client's module: not the client's
	// tests, its package.json, nor a way out of either directory.
	for _, name := range []string{"client/test/unit.test.js", "client/package.json", "client/embed.go", "static/index.html", "../demo.go", "client/../../demo.go", "demo.go", "nope"} {
		if f, err := Files.Open("/" + name); err == nil {
			f.Close()
			t.Errorf("Open(%s) opened a file", name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(%s): %v, want not found", name, err)
		}
	}
}

// TestForwarder posts to a real HTTP server standing in for ingest: the
// body a back-end would send, the bearer token, ingest's answer relayed; and
// past maxInFlight waiting forwards, ErrBusy at once.
func TestForwarder(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []*http.Request
	var bodies []string
	block := false
	ingest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, string(b))
		wait := block
		mu.Unlock()
		if wait {
			<-release
		}
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"01X"}`)
	}))
	defer ingest.Close()

	f := NewForwarder(ingest.URL+"/", "api-token-0123456789")
	a, err := f.Send(context.Background(), "bob", Message{To: "alice", Text: "hi"})
	if err != nil || a.Status != 202 || string(a.Body) != `{"id":"01X"}` || a.RetryAfter != "2" {
		t.Fatalf("Send: %+v, %v", a, err)
	}
	if r := got[0]; r.URL.Path != "/v1/messages" || r.Header.Get("Authorization") != "Bearer api-token-0123456789" || r.Header.Get("Content-Type") != "application/json" ||
		bodies[0] != `{"user":"alice","from":"bob","text":"hi"}` {
		t.Fatalf("ingest got %s %s %v %s", r.Method, r.URL, r.Header, bodies[0])
	}

	mu.Lock()
	block = true
	mu.Unlock()
	var wg sync.WaitGroup
	for range maxInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.Send(context.Background(), "bob", Message{To: "alice", Text: "hi"}); err != nil {
				t.Errorf("a forward within the bound: %v", err)
			}
		}()
	}
	check.For(t, 5*time.Second, time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < 1+maxInFlight {
			return errors.New("the forwards have not reached ingest")
		}
		return nil
	})
	if _, err := f.Send(context.Background(), "bob", Message{To: "alice", Text: "hi"}); !errors.Is(err, ErrBusy) {
		t.Errorf("forward %d while %d wait: %v, want ErrBusy", maxInFlight+1, maxInFlight, err)
	}
	close(release)
	wg.Wait()

	ingest.Close()
	if _, err := f.Send(context.Background(), "bob", Message{To: "alice", Text: "hi"}); err == nil || !strings.Contains(err.Error(), ingest.URL) {
		t.Errorf("ingest gone: %v, want an error naming it", err)
	}
}
