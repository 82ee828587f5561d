// Package e2e holds black-box tests that build and start the real binaries
// (edge, ingest, and the nats-server of the go.mod dependency) and talk to
// them over real HTTP, SSE and NATS connections.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/check"
)

// bin holds the paths of the binaries TestMain built.
var bin struct {
	dir, edge, ingest, natsServer string
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "rig-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin.dir = dir
	bin.edge = filepath.Join(dir, "edge")
	bin.ingest = filepath.Join(dir, "ingest")
	bin.natsServer = filepath.Join(dir, "nats-server")
	for _, b := range [][]string{
		{"build", "-o", dir + "/", "../cmd/edge", "../cmd/ingest"},
		{"build", "-o", bin.natsServer, "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command("go", b...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building binaries:", err)
			return 1
		}
	}
	return m.Run()
}

// Secret is the JWT secret every test stack uses.
const Secret = "e2e-secret-0123456789abcdef"

// Listening ports come from [listenPortLow, listenPortHigh): below the
// kernel's ephemeral range (32768-60999 by default), so no outgoing
// connection of this or another process can take one between FreePort and
// the binary binding it, and above the flood tests' source ports (see
// srcPortLow). A port from the ephemeral range ("listen on :0") was taken
// that way under CI's load: the edge's embedded NATS then failed to bind.
const (
	listenPortLow  = 20000
	listenPortHigh = 32000
)

var listenPort atomic.Int64

func init() { listenPort.Store(rand.Int64N(listenPortHigh - listenPortLow)) }

// FreePort returns a TCP port outside the ephemeral range that was free a
// moment ago on every address (the edge and ingest listen on all of them)
// and that no other FreePort call of this run returns.
func FreePort(t testing.TB) int {
	for range listenPortHigh - listenPortLow {
		p := listenPortLow + int(listenPort.Add(1)%(listenPortHigh-listenPortLow))
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	panic("no free TCP port in the test range")
}

// syncBuffer collects a process's output safely.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Proc is a running binary whose output is kept and shown if the test fails.
type Proc struct {
	t    testing.TB
	Name string
	path string
	args []string
	env  []string
	out  *syncBuffer
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	// stop ends a program run in-process (see StartEdgeInProcess): what
	// SIGTERM does to a binary. Nil for a binary.
	stop context.CancelFunc
}

// StartProc starts path with args and env (on top of a minimal environment).
func StartProc(t testing.TB, name, path string, args []string, env map[string]string) *Proc {
	t.Helper()
	p := &Proc{t: t, Name: name, path: path, args: args, out: &syncBuffer{}}
	p.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	for k, v := range env {
		p.env = append(p.env, k+"="+v)
	}
	p.start()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() || testing.Verbose() {
			t.Logf("--- output of %s ---\n%s", p.Name, p.Logs())
		}
	})
	return p
}

func (p *Proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.path, p.args...)
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.done = make(chan struct{})
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.Name, err)
	}
	go func(cmd *exec.Cmd, done chan struct{}) {
		p.err = cmd.Wait()
		close(done)
	}(p.cmd, p.done)
}

// Logs returns everything the process printed so far.
func (p *Proc) Logs() string { return p.out.String() }

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process. A program run in-process takes SIGTERM
// and SIGINT only (its context ends). SIGSTOP returns once the process is
// stopped: the kernel delivers it asynchronously, and a process still
// running for a moment after the call answered what a test sent it next.
func (p *Proc) Signal(sig syscall.Signal) {
	if p.stop == nil {
		_ = p.cmd.Process.Signal(sig)
		if sig == syscall.SIGSTOP {
			check.For(p.t, 5*time.Second, time.Millisecond, func() error {
				if st := procState(p.cmd.Process.Pid); st != "T" {
					return fmt.Errorf("%s not stopped after SIGSTOP: state %q", p.Name, st)
				}
				return nil
			})
		}
		return
	}
	if sig != syscall.SIGTERM && sig != syscall.SIGINT {
		p.t.Fatalf("%s runs in-process: it cannot take %v", p.Name, sig)
	}
	p.stop()
}

// Wait waits up to timeout for the process to exit and reports whether it did.
func (p *Proc) Wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Stop asks the process to stop (SIGTERM) and kills it after 15s.
func (p *Proc) Stop() {
	if !p.Running() {
		return
	}
	p.Signal(syscall.SIGTERM)
	if !p.Wait(15 * time.Second) {
		p.t.Errorf("%s did not stop within 15s of SIGTERM; killing it", p.Name)
		p.Kill()
	}
}

// Kill kills the process at once (SIGKILL) and waits for it.
func (p *Proc) Kill() {
	if !p.Running() {
		return
	}
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Restart starts the process again with the same arguments.
func (p *Proc) Restart() {
	p.t.Helper()
	if p.Running() {
		p.t.Fatalf("restart %s: still running", p.Name)
	}
	fmt.Fprintf(p.out, "----- restart -----\n")
	p.start()
}

// ExitCode returns the exit code after the process ended.
func (p *Proc) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// NATSServer is a nats-server process with JetStream.
type NATSServer struct {
	*Proc
	Port int
	URL  string
}

// StartNATS starts the nats-server built from the go.mod dependency.
func StartNATS(t testing.TB, extra ...string) *NATSServer {
	t.Helper()
	port := FreePort(t)
	args := append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir()}, extra...)
	n := &NATSServer{Port: port, URL: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	n.Proc = StartProc(t, "nats-server", bin.natsServer, args, nil)
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !dialOK(fmt.Sprintf("127.0.0.1:%d", port)) {
			return fmt.Errorf("nats-server did not listen")
		}
		return nil
	})
	return n
}

func dialOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Server is an edge or ingest process with its HTTP base URL.
type Server struct {
	*Proc
	Port int
	URL  string
	// OpsURL is an edge's operations port (METRICS_PORT), if it has one.
	OpsURL string
}

// WaitReady waits up to 20s for GET /health/ready to answer 200.
func (s *Server) WaitReady(t testing.TB) {
	t.Helper()
	waitReady(t, s, 20*time.Second)
}

// waitReady waits for GET /health/ready to answer 200.
func waitReady(t testing.TB, s *Server, timeout time.Duration) {
	t.Helper()
	check.For(t, timeout, 10*time.Millisecond, func() error {
		if !s.Running() {
			t.Fatalf("%s exited: %v\n%s", s.Name, s.err, s.Logs())
		}
		if got := readyStatus(s); got != 200 {
			return fmt.Errorf("%s not ready: got %v", s.Name, got)
		}
		return nil
	})
}

// readyStatus is the status of GET /health/ready, or 0 when the server
// does not answer.
func readyStatus(s *Server) int {
	return statusWithin(s.URL+"/health/ready", 3*time.Second)
}

// EdgeEnv is the environment of a test edge; callers add to it.
func EdgeEnv(port int, natsURL string) map[string]string {
	return map[string]string{
		"INBOUND_PORT":       strconv.Itoa(port),
		"NATS_URL":           natsURL,
		"JWT_SECRET_KEY":     Secret,
		"PRIVILEGED_ROLES":   "support",
		"HEARTBEAT_INTERVAL": "10s",
		"DRAIN_TIMEOUT":      "3s",
		"METRICS_PORT":       strconv.Itoa(FreePort(nil)),
		"LOG_LEVEL":          "debug",
	}
}

// StartEdge starts an edge with env (see EdgeEnv) and waits until it is ready.
func StartEdge(t testing.TB, env map[string]string) *Server {
	t.Helper()
	port, _ := strconv.Atoi(env["INBOUND_PORT"])
	s := &Server{Port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if mp := env["METRICS_PORT"]; mp != "" && mp != "0" {
		s.OpsURL = "http://127.0.0.1:" + mp
	}
	s.Proc = StartProc(t, "edge:"+env["INBOUND_PORT"], bin.edge, nil, env)
	s.WaitReady(t)
	return s
}

// IngestEnv is the environment of a test ingest; callers add to it.
func IngestEnv(port int, natsURL string) map[string]string {
	return map[string]string{
		"API_PORT":        strconv.Itoa(port),
		"NATS_URL":        natsURL,
		"JWT_SECRET_KEY":  Secret,
		"PUBLISH_TIMEOUT": "2s",
		"LOG_LEVEL":       "debug",
	}
}

// StartIngest starts an ingest with env (see IngestEnv) and waits until it is ready.
func StartIngest(t testing.TB, env map[string]string) *Server {
	t.Helper()
	port, _ := strconv.Atoi(env["API_PORT"])
	s := &Server{Port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	s.Proc = StartProc(t, "ingest:"+env["API_PORT"], bin.ingest, nil, env)
	s.WaitReady(t)
	return s
}

// Stack is a single-node stack: an edge and an ingest, one of which embeds
// NATS. StartStack embeds it in the edge; StartTaskRunStack starts it as
// `task run` does (in ingest).
type Stack struct {
	Edge, Ingest *Server
	NATSURL      string
}

// StartStack starts a single-node stack. edgeEnv and ingestEnv override
// the defaults.
func StartStack(t testing.TB, edgeEnv, ingestEnv map[string]string) *Stack {
	t.Helper()
	natsPort := FreePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	ee := EdgeEnv(FreePort(t), "")
	delete(ee, "NATS_URL")
	ee["NATS_EMBEDDED"] = "true"
	ee["NATS_LISTEN"] = fmt.Sprintf("127.0.0.1:%d", natsPort)
	ee["NATS_STORE_DIR"] = t.TempDir()
	for k, v := range edgeEnv {
		ee[k] = v
	}
	edge := StartEdge(t, ee)
	ie := IngestEnv(FreePort(t), natsURL)
	for k, v := range ingestEnv {
		ie[k] = v
	}
	return &Stack{Edge: edge, Ingest: StartIngest(t, ie), NATSURL: natsURL}
}

// TokenOpts adjusts a minted token.
type TokenOpts struct {
	Roles []string
	JTI   string
	TTL   time.Duration
}

// Token mints a token for user with the test secret.
func Token(t testing.TB, user string, o ...TokenOpts) string {
	t.Helper()
	var opt TokenOpts
	if len(o) > 0 {
		opt = o[0]
	}
	if opt.TTL == 0 {
		opt.TTL = time.Hour
	}
	if opt.JTI == "" {
		opt.JTI = fmt.Sprintf("%s-%d", user, time.Now().UnixNano())
	}
	tok, err := auth.Mint(Secret, auth.Claims{User: user, Roles: opt.Roles, ID: opt.JTI, TTL: opt.TTL}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Response is an HTTP answer read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test if it is not JSON.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.Body, err)
	}
}

// ErrorMessage returns the "error" field of a JSON error body.
func (r Response) ErrorMessage(t testing.TB) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	r.JSON(t, &e)
	if e.Error == "" {
		t.Fatalf("error body %q has no \"error\" field", r.Body)
	}
	return e.Error
}

// Do sends a request and reads the whole answer.
func Do(t testing.TB, method, url, contentType string, body []byte, header ...http.Header) Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, h := range header {
		for k, vs := range h {
			req.Header[k] = vs
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Post sends a JSON message to ingest's POST /v1/messages and returns the
// event id of a 202, failing the test on any other status.
func Post(t testing.TB, ingestURL string, msg any) string {
	t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	r := Do(t, "POST", ingestURL+"/v1/messages", "application/json", b)
	if r.Status != 202 {
		t.Fatalf("POST /v1/messages: %d %s", r.Status, r.Body)
	}
	var a struct{ ID string }
	r.JSON(t, &a)
	if a.ID == "" {
		t.Fatalf("202 without id: %s", r.Body)
	}
	return a.ID
}

// SSEEvent is one parsed Server-Sent Event.
type SSEEvent struct {
	ID, Event, Data string
	Retry           int
}

// SSE is a live SSE stream read by a real HTTP client.
type SSE struct {
	Resp   *http.Response
	Events chan SSEEvent
	cancel context.CancelFunc
	done   chan struct{}
}

// DialSSE opens url and, on a 200, parses events in the background.
// Other statuses are returned with their body read.
func DialSSE(t testing.TB, url string, header http.Header) (*SSE, Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != 200 {
		defer cancel()
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return nil, Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	}
	s := &SSE{Resp: resp, Events: make(chan SSEEvent, 100000), cancel: cancel, done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.Close)
	return s, Response{Status: 200, Header: resp.Header}
}

// MustSSE opens an SSE stream and fails the test unless it is 200 and
// starts with the connected event.
func MustSSE(t testing.TB, url string, header ...http.Header) *SSE {
	t.Helper()
	var h http.Header
	if len(header) > 0 {
		h = header[0]
	}
	s, r := DialSSE(t, url, h)
	if s == nil {
		t.Fatalf("GET %s: %d %s", url, r.Status, r.Body)
	}
	if ev := s.Next(t, 5*time.Second); ev.Event != "connected" {
		t.Fatalf("first event %+v, want connected", ev)
	}
	return s
}

func (s *SSE) read() {
	defer close(s.done)
	defer close(s.Events)
	_ = ParseSSE(s.Resp.Body, func(ev SSEEvent) { s.Events <- ev })
}

// ParseSSE reads an event stream, calling emit for each event, until the
// stream ends; it returns the read error (io.EOF at a clean end).
func ParseSSE(body io.Reader, emit func(SSEEvent)) error {
	r := newLineReader(body)
	var ev SSEEvent
	var data []string
	hasData := false
	for {
		line, err := r.line()
		if err != nil {
			return err
		}
		if line == "" {
			if hasData || ev.Event != "" {
				ev.Data = strings.Join(data, "\n")
				if ev.Event == "" {
					ev.Event = "message"
				}
				emit(ev)
			}
			ev, data, hasData = SSEEvent{ID: ev.ID}, nil, false
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID = value
		case "event":
			ev.Event = value
		case "data":
			data = append(data, value)
			hasData = true
		case "retry":
			ev.Retry, _ = strconv.Atoi(value)
		}
	}
}

// Next returns the next event other than a heartbeat (heartbeats are
// spread over the interval, so one may come at any moment), failing the
// test after timeout or at the end of the stream.
func (s *SSE) Next(t testing.TB, timeout time.Duration) SSEEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ev := s.NextAny(t, time.Until(deadline)); ev.Event != "heartbeat" {
			return ev
		}
	}
}

// NextAny returns the next event, heartbeats included.
func (s *SSE) NextAny(t testing.TB, timeout time.Duration) SSEEvent {
	t.Helper()
	select {
	case ev, ok := <-s.Events:
		if !ok {
			t.Fatalf("SSE stream ended")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no SSE event within %s", timeout)
	}
	return SSEEvent{}
}

// NextMessage skips heartbeats and returns the next message event.
func (s *SSE) NextMessage(t testing.TB, timeout time.Duration) SSEEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev := s.Next(t, time.Until(deadline))
		if ev.Event == "message" {
			return ev
		}
		if ev.Event != "heartbeat" {
			t.Fatalf("got %q event %+v, want a message", ev.Event, ev)
		}
	}
}

// Ended waits up to timeout for the stream to end and reports whether it did.
func (s *SSE) Ended(timeout time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Close closes the stream.
func (s *SSE) Close() {
	s.cancel()
	s.Resp.Body.Close()
}

// lineReader splits an SSE stream at \r\n, \n or \r.
type lineReader struct {
	r   io.Reader
	buf []byte
	pos int
	n   int
	cr  bool
}

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: r, buf: make([]byte, 64<<10)} }

func (l *lineReader) line() (string, error) {
	var out []byte
	for {
		if l.pos == l.n {
			n, err := l.r.Read(l.buf)
			if n == 0 && err != nil {
				return "", err
			}
			l.pos, l.n = 0, n
		}
		c := l.buf[l.pos]
		l.pos++
		if l.cr {
			l.cr = false
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\n':
			return string(out), nil
		case '\r':
			l.cr = true
			return string(out), nil
		}
		out = append(out, c)
	}
}

// Addr is the server's host:port.
func (n *NATSServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", n.Port) }

// procState is the state letter of process pid (/proc/<pid>/stat: R, S,
// T, ...), "" when it cannot be read.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name, in parentheses, may hold spaces: the state follows
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}
