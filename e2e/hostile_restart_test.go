package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rig-go/rig/internal/check"
)

// taskEnv returns the environment Taskfile.yml gives one of its tasks.
func taskEnv(t testing.TB, task string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../Taskfile.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Tasks map[string]struct {
			Env map[string]string `yaml:"env"`
		} `yaml:"tasks"`
	}
	if err := yaml.Unmarshal(b, &tf); err != nil {
		t.Fatalf("Taskfile.yml: %v", err)
	}
	tk, ok := tf.Tasks[task]
	if !ok {
		t.Fatalf("Taskfile.yml has no task %s", task)
	}
	return tk.Env
}

// StartTaskRunStack starts the single-node stack the way `go tool task
// run` does, as Taskfile.yml's run:edge and run:ingest say (which of them
// embeds NATS, where each connects), on free ports and a fresh store. The
// process that embeds NATS starts first; the test edge's and ingest's
// settings (EdgeEnv, IngestEnv) fill in the rest.
func StartTaskRunStack(t testing.TB) *Stack {
	t.Helper()
	natsAddr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	natsURL := "nats://" + natsAddr
	edgeEnv := EdgeEnv(FreePort(t), natsURL)
	ingestEnv := IngestEnv(FreePort(t), natsURL)
	ingestURL := "http://127.0.0.1:" + ingestEnv["API_PORT"]
	for env, task := range map[*map[string]string]string{&edgeEnv: "run:edge", &ingestEnv: "run:ingest"} {
		for k, v := range taskEnv(t, task) {
			switch k {
			case "INBOUND_PORT", "API_PORT":
				continue // the test's free ports
			case "NATS_STORE_DIR":
				v = t.TempDir()
			case "NATS_URL", "NATS_LISTEN":
				v = strings.ReplaceAll(v, "127.0.0.1:4222", natsAddr)
			case "DEMO_INGEST_URL":
				v = ingestURL // the Taskfile's names its INGEST_PORT
			}
			(*env)[k] = v
		}
		if (*env)["NATS_EMBEDDED"] == "true" {
			(*env)["NATS_LISTEN"] = natsAddr // the default is the Taskfile's 4222 too
		}
	}
	st := &Stack{NATSURL: natsURL}
	if edgeEnv["NATS_EMBEDDED"] == "true" {
		st.Edge = StartEdge(t, edgeEnv)
		st.Ingest = StartIngest(t, ingestEnv)
	} else {
		st.Ingest = StartIngest(t, ingestEnv)
		st.Edge = StartEdge(t, edgeEnv)
	}
	return st
}

// eventSource reads an SSE stream the way a browser's EventSource does:
// when the stream ends or the connection fails it reconnects (after a
// short pause), sending the last id it saw as Last-Event-ID, and it gives
// up for good on any answer other than 200.
type eventSource struct {
	url    string
	mu     sync.Mutex
	ids    []string // message ids, in the order received
	last   string   // the last id of any event (connected carries one)
	tries  int      // connection attempts
	gaps   int
	refuse []int // statuses other than 200; EventSource would stop at the first
	cancel context.CancelFunc
	done   chan struct{}
}

func startEventSource(url string) *eventSource {
	ctx, cancel := context.WithCancel(context.Background())
	es := &eventSource{url: url, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(es.done)
		for ctx.Err() == nil {
			es.connect(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return es
}

func (es *eventSource) connect(ctx context.Context) {
	req, _ := http.NewRequestWithContext(ctx, "GET", es.url, nil)
	req.Header.Set("Accept", "text/event-stream")
	es.mu.Lock()
	es.tries++
	if es.last != "" {
		req.Header.Set("Last-Event-ID", es.last)
	}
	es.mu.Unlock()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // refused or reset: the edge is away; try again
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		es.mu.Lock()
		es.refuse = append(es.refuse, resp.StatusCode)
		es.mu.Unlock()
		return
	}
	_ = ParseSSE(resp.Body, func(ev SSEEvent) {
		es.mu.Lock()
		defer es.mu.Unlock()
		if ev.ID != "" {
			es.last = ev.ID
		}
		switch ev.Event {
		case "message":
			es.ids = append(es.ids, ev.ID)
		case "gap":
			es.gaps++
		}
	})
}

func (es *eventSource) received() []string {
	es.mu.Lock()
	defer es.mu.Unlock()
	return append([]string(nil), es.ids...)
}

func (es *eventSource) stop() {
	es.cancel()
	<-es.done
}

// poster POSTs one message after another to ingest, recording every
// answer, until stopped.
type poster struct {
	mu       sync.Mutex
	accepted []string // ids of the 202s, in order
	statuses map[int]int
	failed   int // requests that got no answer
	stopc    chan struct{}
	done     chan struct{}
}

func startPoster(ingestURL, user string) *poster {
	p := &poster{statuses: map[int]int{}, stopc: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		for i := 0; ; i++ {
			select {
			case <-p.stopc:
				return
			default:
			}
			body := fmt.Sprintf(`{"user":%q,"n":%d}`, user, i)
			resp, err := client.Post(ingestURL+"/v1/messages", "application/json", strings.NewReader(body))
			p.mu.Lock()
			if err != nil {
				p.failed++
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				p.statuses[resp.StatusCode]++
				if resp.StatusCode == 202 {
					_, id, _ := bytes.Cut(b, []byte(`"id":"`))
					id, _, _ = bytes.Cut(id, []byte(`"`))
					p.accepted = append(p.accepted, string(id))
				}
			}
			p.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return p
}

func (p *poster) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.accepted)
}

// attempts is how many POSTs were answered or failed.
func (p *poster) attempts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.failed
	for _, c := range p.statuses {
		n += c
	}
	return n
}

func (p *poster) stop() {
	close(p.stopc)
	<-p.done
}

// TestHostileEdgeRestartSingleNode: on the stack of `go tool task run`,
// restarting the edge (SIGTERM, then SIGKILL) makes ingest refuse nothing
// (every POST 202, no 503), and an EventSource-like client, reconnecting
// with Last-Event-ID, gets every message once, in order. With NATS inside
// the edge, as task run had it, ingest answered 503 for as long as the
// edge was away.
func TestHostileEdgeRestartSingleNode(t *testing.T) {
	st := StartTaskRunStack(t)
	es := startEventSource(sseURL(st.Edge.URL, Token(t, "alice")))
	defer es.stop()
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		es.mu.Lock()
		defer es.mu.Unlock()
		if es.last == "" {
			return fmt.Errorf("the client did not connect")
		}
		return nil
	})
	p := startPoster(st.Ingest.URL, "alice")
	waitPosted := func(n int) {
		t.Helper()
		check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
			if got := p.attempts(); got < n {
				return fmt.Errorf("fewer than %d messages posted: got %v", n, got)
			}
			return nil
		})
	}
	waitPosted(20)

	restarts := []struct {
		name string
		stop func()
	}{
		{"SIGTERM", func() {
			st.Edge.Signal(syscall.SIGTERM)
			if !st.Edge.Wait(15 * time.Second) {
				t.Fatal("the edge did not stop within 15s of SIGTERM")
			}
		}},
		{"SIGKILL", st.Edge.Kill},
	}
	for _, r := range restarts {
		before, accepted := p.attempts(), p.count()
		start := time.Now()
		r.stop()
		down := time.Now()
		waitPosted(p.attempts() + 20) // messages posted while the edge is away
		st.Edge.Restart()
		st.Edge.WaitReady(t)
		t.Logf("%s: edge stopped %s after the signal, ready again %s later; meanwhile %d POSTs, %d accepted",
			r.name, down.Sub(start).Round(time.Millisecond), time.Since(down).Round(time.Millisecond), p.attempts()-before, p.count()-accepted)
		waitPosted(p.attempts() + 20)
	}
	p.stop()

	p.mu.Lock()
	want := append([]string(nil), p.accepted...)
	statuses, failed := fmt.Sprint(p.statuses), p.failed
	non202 := failed
	for code, n := range p.statuses {
		if code != 202 {
			non202 += n
		}
	}
	p.mu.Unlock()
	t.Logf("POSTs: %s, %d without an answer", statuses, failed)
	if non202 > 0 {
		t.Errorf("%d POSTs not accepted while the edge restarted (%s, %d without an answer), want every one 202", non202, statuses, failed)
	}
	check.For(t, 15*time.Second, 10*time.Millisecond, func() error {
		if got := len(es.received()); got < len(want) {
			return fmt.Errorf("the client got %d of %d accepted messages", got, len(want))
		}
		return nil
	})
	got := es.received()
	es.mu.Lock()
	tries, gaps, refused := es.tries, es.gaps, append([]int(nil), es.refuse...)
	es.mu.Unlock()
	t.Logf("client: %d messages of %d accepted, %d connections, %d gaps, refused %v", len(got), len(want), tries, gaps, refused)
	if len(refused) > 0 {
		t.Errorf("the edge answered a reconnecting EventSource with %v: a browser gives up for good on that", refused)
	}
	if gaps > 0 {
		t.Errorf("%d gap events: the client was told it may have missed messages", gaps)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		seen := map[string]int{}
		for _, id := range got {
			seen[id]++
		}
		missing, dup := 0, 0
		for _, id := range want {
			if seen[id] == 0 {
				missing++
			}
		}
		for _, n := range seen {
			if n > 1 {
				dup += n - 1
			}
		}
		t.Errorf("the client's messages are not the accepted ones, once each, in order: %d missing, %d duplicated, %d received of %d",
			missing, dup, len(got), len(want))
	}
}

// TestTaskRunIngestRestart: on the stack of `go tool task run`, restarting
// ingest restarts NATS with it; the edge keeps its open stream, which gets
// the messages posted once ingest is back, and takes new connections.
func TestTaskRunIngestRestart(t *testing.T) {
	st := StartTaskRunStack(t)
	s := MustSSE(t, sseURL(st.Edge.URL, Token(t, "alice")))
	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 1})
	if ev := s.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("got %+v, want %s", ev, id)
	}
	start := time.Now()
	st.Ingest.Signal(syscall.SIGTERM)
	if !st.Ingest.Wait(15 * time.Second) {
		t.Fatal("ingest did not stop within 15s of SIGTERM")
	}
	st.Ingest.Restart()
	st.Ingest.WaitReady(t)
	id = Post(t, st.Ingest.URL, map[string]any{"user": "alice", "n": 2})
	if ev := s.NextMessage(t, 15*time.Second); ev.ID != id {
		t.Fatalf("after ingest restarted, the open stream got %+v, want %s", ev, id)
	}
	check.For(t, 15*time.Second, 10*time.Millisecond, func() error {
		code, _ := SSEStatus(t, sseURL(st.Edge.URL, Token(t, "bob")))
		if code != 200 {
			return fmt.Errorf("the edge takes no new connection after ingest restarted: got %v", code)
		}
		return nil
	})
	t.Logf("ingest (and NATS) restarted; the open stream went on, new connections %s after the signal", time.Since(start).Round(time.Millisecond))
}
