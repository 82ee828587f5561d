package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// jsDir holds the Node clients: e2e/js with its package-lock.json.
const jsDir = "js"

var npmOnce sync.Once
var npmErr error

// nodeClients makes sure e2e/js has its node_modules (npm ci, from the
// lock file) and returns the node binary. Without Node the test is skipped
// on a developer machine, and fails in CI (CI=true), which has Node.
func nodeClients(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node not found, but CI needs it for the phoenix client test: %v", err)
		}
		t.Skipf("node not found (%v); install Node 20 and npm to run the phoenix.js client test", err)
	}
	npmOnce.Do(func() {
		if _, err := os.Stat(jsDir + "/node_modules/phoenix/package.json"); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = jsDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			npmErr = err
			t.Logf("npm ci:\n%s", out)
		}
	})
	if npmErr != nil {
		t.Fatalf("npm ci in e2e/js: %v", npmErr)
	}
	return node
}

// jsLine is one line the Node client prints.
type jsLine struct {
	Event    string          `json:"event"`
	Topic    string          `json:"topic"`
	ID       string          `json:"id"`
	Payload  json.RawMessage `json:"payload"`
	Response json.RawMessage `json:"response"`
	Error    string          `json:"error"`
	raw      string
}

// TestPhoenixJSClient: the official phoenix client from npm, as a RIG
// front-end used it, connects with params {token}, joins user:alice,
// receives a message POSTed to ingest, and is refused user:bob.
func TestPhoenixJSClient(t *testing.T) {
	node := nodeClients(t)
	st := StartStack(t, nil, nil)

	cmd := exec.Command(node, "phoenix_client.mjs")
	cmd.Dir = jsDir
	cmd.Env = append(os.Environ(),
		"EDGE_URL="+strings.Replace(st.Edge.URL, "http://", "ws://", 1),
		"TOKEN="+Token(t, "alice"), "USER=alice", "OTHER_USER=bob", "TIMEOUT_MS=30000")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	lines := make(chan jsLine, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l jsLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("node printed %q: %v", sc.Text(), err)
				continue
			}
			l.raw = sc.Text()
			lines <- l
		}
		close(lines)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("node stderr:\n%s", stderr.String())
		}
	})
	next := func(want string) jsLine {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("node exited before %q: %v\n%s", want, <-done, stderr.String())
				}
				t.Logf("node: %s", l.raw)
				switch l.Event {
				case want:
					return l
				case "timeout", "socket_error":
					t.Fatalf("node client: %s", l.raw)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("node client printed no %q within 20s", want)
			}
		}
	}

	// The two joins answer in either order.
	var joined, refused *jsLine
	for joined == nil || refused == nil {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("node exited: %v\n%s", <-done, stderr.String())
			}
			t.Logf("node: %s", l.raw)
			switch {
			case l.Event == "joined" && l.Topic == "user:alice":
				joined = &l
			case l.Event == "join_error" && l.Topic == "user:bob":
				refused = &l
			case l.Event == "open" || l.Event == "heartbeat_ok":
			default:
				t.Fatalf("unexpected: %s", l.raw)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the phoenix client did not join user:alice and get refused user:bob within 20s")
		}
	}
	if !sameJSON(refused.Response, []byte(`{"reason":"unauthorized"}`)) {
		t.Fatalf("user:bob refused with %s", refused.Response)
	}

	id := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "Hi from ingest"})
	m := next("message")
	if m.Topic != "user:alice" || m.ID != id || !sameJSON(m.Payload, []byte(`{"user":"alice","text":"Hi from ingest"}`)) {
		t.Fatalf("message %s, want id %s", m.raw, id)
	}
	// The client exits once its heartbeats were answered too.
	for l := range lines {
		t.Logf("node: %s", l.raw)
		if l.Event == "message" || l.Event == "timeout" || l.Event == "socket_error" {
			t.Fatalf("after the message: %s", l.raw)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("node exited with %v (no heartbeat reply?)\n%s", err, stderr.String())
	}
}
