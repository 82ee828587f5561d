package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/rig-go/rig/internal/auth"
)

// WorkerSpec is what one worker process connects: the connections of users
// [UserFrom, UserTo), Devices each, numbered from First across all workers
// so that edges and source addresses are spread evenly.
type WorkerSpec struct {
	Transport   string        `json:"transport"` // sse, websocket, longpoll, centrifugo-sse
	Edges       []string      `json:"edges"`     // host:port
	SourceIPs   []string      `json:"source_ips"`
	UserPrefix  string        `json:"user_prefix"`
	UserFrom    int           `json:"user_from"`
	UserTo      int           `json:"user_to"`
	Devices     int           `json:"devices"`
	First       int           `json:"first"` // global index of the first connection
	Secret      string        `json:"secret"`
	Concurrency int           `json:"concurrency"` // connects in flight
	Timeout     time.Duration `json:"timeout"`     // per connect
}

// Connected is a worker's first line: how connecting went.
type Connected struct {
	OK      int      `json:"ok"`
	Failed  int      `json:"failed"`
	Errors  []string `json:"errors,omitempty"` // the first few
	StartNS int64    `json:"start_ns"`
	EndNS   int64    `json:"end_ns"` // the last connection's connected event
	Connect *Hist    `json:"connect"`
}

// Report is a worker's answer to "report": what its connections received.
type Report struct {
	Counts   []uint32 `json:"counts"` // messages per connection, by user then device
	Received uint64   `json:"received"`
	Ended    int      `json:"ended"` // connections the server ended or broke
	Latency  *Hist    `json:"latency"`
	FirstNS  int64    `json:"first_ns"` // first and last message received since reset
	LastNS   int64    `json:"last_ns"`
	CPU      float64  `json:"cpu_seconds"`
}

type worker struct {
	spec    WorkerSpec
	counts  []atomic.Uint32
	ended   atomic.Int64
	latency atomicHist
	first   atomic.Int64
	last    atomic.Int64
	lp      *http.Client
}

// runWorker is the worker process: it reads its spec from the first line of
// stdin, connects, prints Connected, then answers "report" and "reset"
// lines until stdin closes, and exits (the kernel closes its sockets).
func runWorker() error {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	var spec WorkerSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	w := &worker{spec: spec, counts: make([]atomic.Uint32, (spec.UserTo-spec.UserFrom)*spec.Devices)}
	if spec.Transport == "longpoll" {
		w.lp = longPollClient(spec)
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(w.connectAll()); err != nil {
		return err
	}
	for {
		cmd, err := in.ReadString('\n')
		if err != nil {
			return nil // the coordinator is done
		}
		switch string(bytes.TrimSpace([]byte(cmd))) {
		case "report":
			err = out.Encode(w.report())
		case "reset":
			w.latency.reset()
			w.first.Store(0)
			w.last.Store(0)
			err = out.Encode(struct{}{})
		}
		if err != nil {
			return err
		}
	}
}

func (w *worker) report() Report {
	r := Report{Counts: make([]uint32, len(w.counts)), Ended: int(w.ended.Load()), Latency: w.latency.snapshot(),
		FirstNS: w.first.Load(), LastNS: w.last.Load()}
	for i := range w.counts {
		r.Counts[i] = w.counts[i].Load()
		r.Received += uint64(r.Counts[i])
	}
	if s, err := readProc(os.Getpid()); err == nil {
		r.CPU = s.CPU
	}
	return r
}

// connectAll opens every connection, Concurrency at a time, and returns
// once each has its connected event (or failed).
func (w *worker) connectAll() Connected {
	n := len(w.counts)
	res := Connected{StartNS: time.Now().UnixNano(), Connect: NewHist()}
	var mu sync.Mutex
	sem := make(chan struct{}, max(w.spec.Concurrency, 1))
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			start := time.Now()
			connected := make(chan error, 1)
			go w.run(i, connected)
			err := <-connected
			<-sem
			mu.Lock()
			if err != nil {
				res.Failed++
				if len(res.Errors) < 5 {
					res.Errors = append(res.Errors, err.Error())
				}
			} else {
				res.OK++
				res.Connect.Add(time.Since(start))
				res.EndNS = max(res.EndNS, time.Now().UnixNano())
			}
			mu.Unlock()
			wg.Done()
		}()
	}
	wg.Wait()
	return res
}

// conn i's user, edge and source address.
func (w *worker) target(i int) (user, edge string, src net.IP) {
	g := w.spec.First + i
	user = w.spec.UserPrefix + strconv.Itoa(w.spec.UserFrom+i/w.spec.Devices)
	edge = w.spec.Edges[g%len(w.spec.Edges)]
	if len(w.spec.SourceIPs) > 0 {
		src = net.ParseIP(w.spec.SourceIPs[g%len(w.spec.SourceIPs)])
	}
	return user, edge, src
}

func (w *worker) token(i int, user string) (string, error) {
	if w.spec.Transport == "centrifugo-sse" {
		// Centrifugo's connection JWT: the user in sub, HS256 with its
		// client.token.hmac_secret_key.
		return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(24 * time.Hour).Unix()}).
			SignedString([]byte(w.spec.Secret))
	}
	return auth.Mint(w.spec.Secret, auth.Claims{User: user, ID: fmt.Sprintf("%s-%d", user, w.spec.First+i), TTL: 24 * time.Hour}, time.Now())
}

// Client connections take their source ports from [portLow, portHigh),
// below the ephemeral range (32768 and up here), not from it: the ports of
// tens of thousands of connections, and of their TIME_WAIT after, would
// otherwise collide with servers (and tests) that pick a free ephemeral
// port and bind it on every address.
const (
	portLow  = 10000
	portHigh = 20000
)

// dial connects to addr from source address src and a source port that
// depends on g, the connection's global index: with n source addresses,
// connection g has port portLow + g/n, so no two connections of a run
// share one. A port still in use (another process) moves it further.
// The socket closes with a reset (SO_LINGER 0): no TIME_WAIT is left
// holding its port when the run ends.
func dial(network, addr string, src net.IP, g, n int, timeout time.Duration) (net.Conn, error) {
	var err error
	for attempt := range 4 {
		d := &net.Dialer{Timeout: timeout, Control: reuseAddr}
		if src != nil {
			port := portLow + (g/max(n, 1)+attempt*3331)%(portHigh-portLow)
			d.LocalAddr = &net.TCPAddr{IP: src, Port: port}
		}
		var c net.Conn
		if c, err = d.Dial(network, addr); err == nil {
			_ = c.(*net.TCPConn).SetLinger(0)
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || src == nil {
			return nil, err
		}
	}
	return nil, err
}

func reuseAddr(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	return errors.Join(err, serr)
}

// dial opens connection i's TCP connection to edge.
func (w *worker) dial(i int, edge string, src net.IP) (net.Conn, error) {
	return dial("tcp", edge, src, w.spec.First+i, len(w.spec.SourceIPs), w.spec.Timeout)
}

// run holds connection i until the process ends. It reports on connected
// once the stream has started (or could not).
func (w *worker) run(i int, connected chan<- error) {
	ok := false
	ready := func() {
		if !ok {
			ok = true
			connected <- nil
		}
	}
	var err error
	switch w.spec.Transport {
	case "sse", "centrifugo-sse":
		err = w.runSSE(i, ready)
	case "websocket":
		err = w.runWS(i, ready)
	case "longpoll":
		err = w.runLongPoll(i, ready)
	default:
		err = fmt.Errorf("unknown transport %q", w.spec.Transport)
	}
	if !ok {
		connected <- err
	} else {
		w.ended.Add(1)
	}
}

// received records one message of connection i, sent at payload's ts.
func (w *worker) received(i int, payload []byte) {
	now := time.Now()
	w.counts[i].Add(1)
	if ts, ok := sentAt(payload); ok {
		w.latency.add(now.Sub(time.Unix(0, ts)))
	}
	ns := now.UnixNano()
	w.first.CompareAndSwap(0, ns)
	for {
		l := w.last.Load()
		if l >= ns || w.last.CompareAndSwap(l, ns) {
			return
		}
	}
}

var tsField = []byte(`"ts":`)

// sentAt reads the send time (Unix ns) the publisher put in the payload.
func sentAt(p []byte) (int64, bool) {
	i := bytes.Index(p, tsField)
	if i < 0 {
		return 0, false
	}
	p = p[i+len(tsField):]
	n, j := int64(0), 0
	for ; j < len(p) && p[j] >= '0' && p[j] <= '9'; j++ {
		n = n*10 + int64(p[j]-'0')
	}
	return n, j > 0
}

// sseDialect is how one server's SSE stream is opened and read: RIG's
// named events, or Centrifugo's unidirectional SSE, whose every event is a
// bare data line holding a JSON push. The rest (the dial, the chunked
// body, long lines, what counts as received) is shared, so both systems'
// client work is the same code.
type sseDialect struct {
	path func(token string) string // the request's path and query
	// event says what a line of the stream is; message carries whether
	// the current event is a message (RIG: set by its event line).
	event func(line []byte, message *bool) sseLine
}

type sseLine int

const (
	sseOther     sseLine = iota
	sseConnected         // the stream is up: the connection counts as connected
	sseMessage           // a message's data line, with the publisher's ts
)

var dialects = map[string]sseDialect{
	"sse": {
		path: func(tok string) string { return "/socket/sse?token=" + tok },
		event: func(line []byte, message *bool) sseLine {
			switch {
			case len(line) <= 2: // blank line: the event ends
				*message = false
			case bytes.HasPrefix(line, []byte("event: message")):
				*message = true
			case bytes.HasPrefix(line, []byte("event: connected")):
				return sseConnected
			case *message && bytes.HasPrefix(line, []byte("data: ")):
				return sseMessage
			}
			return sseOther
		},
	},
	// Centrifugo's /connection/uni_sse: the connect command in cf_connect;
	// the server subscribes the user to their personal channel and
	// answers with a connect push, then one push per publication
	// ({"channel":...,"pub":{"data":...}}) and {} as its ping.
	"centrifugo-sse": {
		path: func(tok string) string {
			return "/connection/uni_sse?cf_connect=" + url.QueryEscape(`{"token":"`+tok+`"}`)
		},
		event: func(line []byte, _ *bool) sseLine {
			switch {
			case bytes.HasPrefix(line, []byte(`data: {"channel":`)):
				return sseMessage
			case bytes.HasPrefix(line, []byte(`data: {"connect":`)):
				return sseConnected
			}
			return sseOther
		},
	},
}

func (w *worker) runSSE(i int, ready func()) error {
	d, ok := dialects[w.spec.Transport]
	if !ok {
		return fmt.Errorf("unknown SSE dialect %q", w.spec.Transport)
	}
	user, edge, src := w.target(i)
	tok, err := w.token(i, user)
	if err != nil {
		return err
	}
	nc, err := w.dial(i, edge, src)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(w.spec.Timeout))
	if _, err := fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", d.path(tok), edge); err != nil {
		return err
	}
	br := bufio.NewReaderSize(nc, 1024)
	status, err := br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("SSE %s: %w", edge, err)
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) {
		return fmt.Errorf("SSE %s: %s", edge, bytes.TrimSpace(status))
	}
	for { // the response head
		h, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(h)) == 0 {
			break
		}
	}
	lines := bufio.NewReaderSize(httputil.NewChunkedReader(br), 4096)
	message, long := false, false
	for {
		line, err := lines.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long data line: its start (with the ts) is read; skip the rest.
			if !long && d.event(line, &message) == sseMessage {
				w.received(i, line)
			}
			long = true
			continue
		}
		if err != nil {
			return err
		}
		if long {
			long = false
			continue
		}
		switch d.event(line, &message) {
		case sseConnected:
			_ = nc.SetDeadline(time.Time{})
			ready()
		case sseMessage:
			w.received(i, line)
		}
	}
}

func (w *worker) runWS(i int, ready func()) error {
	user, edge, src := w.target(i)
	tok, err := w.token(i, user)
	if err != nil {
		return err
	}
	d := websocket.Dialer{
		NetDial:          func(string, string) (net.Conn, error) { return w.dial(i, edge, src) },
		HandshakeTimeout: w.spec.Timeout,
		ReadBufferSize:   4096,
		WriteBufferSize:  512,
	}
	c, resp, err := d.Dial("ws://"+edge+"/socket/websocket?token="+url.QueryEscape(tok), nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("WebSocket %s: %s", edge, resp.Status)
		}
		return err
	}
	defer c.Close()
	for {
		_, data, err := c.ReadMessage() // answers pings on the way
		if err != nil {
			return err
		}
		switch {
		case bytes.HasPrefix(data, []byte(`{"event":"message"`)):
			w.received(i, data)
		case bytes.HasPrefix(data, []byte(`{"event":"connected"`)):
			ready()
		}
	}
}

// longPollClient keeps one connection per poller, from the source addresses
// in turn.
func longPollClient(spec WorkerSpec) *http.Client {
	var next atomic.Int64
	n := len(spec.SourceIPs)
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 1 << 20,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			// The worker's connections' ports, then on: a poller whose
			// connection was closed gets a new one.
			g := spec.First + int(next.Add(1)-1)%((portHigh-portLow)*max(n, 1))
			var src net.IP
			if n > 0 {
				src = net.ParseIP(spec.SourceIPs[g%n])
			}
			return dial(network, addr, src, g, n, spec.Timeout)
		},
	}}
}

type pollAnswer struct {
	Events []json.RawMessage `json:"events"`
	Last   string            `json:"last_event_id"`
}

// runLongPoll polls in a loop. A poller counts as connected once its first
// poll is answered: from then on its cursor loses nothing.
func (w *worker) runLongPoll(i int, ready func()) error {
	user, edge, _ := w.target(i)
	tok, err := w.token(i, user)
	if err != nil {
		return err
	}
	cursor := ""
	for {
		u := "http://" + edge + "/socket/longpoll?token=" + url.QueryEscape(tok)
		if cursor != "" {
			u += "&last_event_id=" + url.QueryEscape(cursor)
		}
		resp, err := w.lp.Get(u)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("long-poll %s: %d %s", edge, resp.StatusCode, bytes.TrimSpace(body))
		}
		var a pollAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			return fmt.Errorf("long-poll answer %q: %w", body, err)
		}
		for _, ev := range a.Events {
			if bytes.HasPrefix(ev, []byte(`{"event":"message"`)) {
				w.received(i, ev)
			}
		}
		cursor = a.Last
		ready()
	}
}

// atomicHist is a Hist many goroutines add to at once.
type atomicHist struct {
	counts [1<<(subBits+1) + 40<<subBits]atomic.Uint64
	max    atomic.Int64
}

func (h *atomicHist) add(d time.Duration) {
	us := d.Microseconds()
	h.counts[min(bucketOf(us), len(h.counts)-1)].Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

func (h *atomicHist) snapshot() *Hist {
	out := NewHist()
	for b := range h.counts {
		if n := h.counts[b].Load(); n > 0 {
			out.Counts[b] = n
			out.N += n
		}
	}
	out.Max = h.max.Load()
	return out
}

func (h *atomicHist) reset() {
	for b := range h.counts {
		h.counts[b].Store(0)
	}
	h.max.Store(0)
}
