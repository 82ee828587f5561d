package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Scenario is one load test: connect, hold, publish in phases, measure.
type Scenario struct {
	Name      string   `json:"name"`
	Transport string   `json:"transport"` // sse, websocket, longpoll, centrifugo-sse
	Edges     []string `json:"edges"`     // host:port
	Ingest    string   `json:"ingest"`    // host:port, for Via http (and Via centrifugo: Centrifugo's)
	NATSURL   string   `json:"nats_url"`  // for Via nats
	Users     int      `json:"users"`
	Devices   int      `json:"devices"` // connections per user
	// PerWorker bounds a worker process's connections (it has at most
	// 20,000 open files here).
	PerWorker int `json:"per_worker"`
	// SourceIPs is how many loopback source addresses (127.0.0.2, ...) the
	// connections are spread over, to go past one address's port range.
	SourceIPs          int           `json:"source_ips"`
	Secret             string        `json:"-"`
	APIKey             string        `json:"-"`                   // Centrifugo's http_api.key, for Via centrifugo
	ConnectConcurrency int           `json:"connect_concurrency"` // per worker
	ConnectTimeout     time.Duration `json:"connect_timeout"`
	// Settle is how long connections sit idle after connecting before the
	// servers' memory is read (heartbeats run meanwhile).
	Settle time.Duration `json:"settle"`
	// DrainTimeout: after publishing, how long delivery may make no
	// progress before what is missing counts as lost.
	DrainTimeout time.Duration `json:"drain_timeout"`
	Phases       []Publish     `json:"phases"`
	Procs        []Proc        `json:"procs"` // server processes to watch
	Log          io.Writer     `json:"-"`
}

// Result is what a scenario measured.
type Result struct {
	Scenario    string        `json:"scenario"`
	Transport   string        `json:"transport"`
	Connections int           `json:"connections"`
	Users       int           `json:"users"`
	Edges       int           `json:"edges"`
	Workers     int           `json:"workers"`
	Connect     ConnectResult `json:"connect"`
	// Idle is each server's memory before connecting and after Settle,
	// and its CPU over connecting and settling.
	Idle       []ProcUsage   `json:"idle"`
	Phases     []PhaseResult `json:"phases"`
	LoadgenCPU float64       `json:"loadgen_cpu_seconds"` // the worker processes'
	Ended      int           `json:"ended"`               // connections the server closed or broke
}

// ConnectResult is how connecting went.
type ConnectResult struct {
	OK      int      `json:"ok"`
	Failed  int      `json:"failed"`
	Seconds float64  `json:"seconds"`
	Rate    float64  `json:"rate"` // connections/s
	P50ms   float64  `json:"p50_ms"`
	P99ms   float64  `json:"p99_ms"`
	Errors  []string `json:"errors,omitempty"`
}

// PhaseResult is one publishing phase's figures.
type PhaseResult struct {
	Publish
	Sent           int64   `json:"sent"`
	Stored         int64   `json:"stored"` // acknowledged (202 / PubAck)
	Failed         int64   `json:"failed"`
	PublishSeconds float64 `json:"publish_seconds"`
	PublishRate    float64 `json:"publish_rate"` // messages/s acknowledged
	// SendRate is the messages sent per second from the first request to
	// the last, the rate the publishers achieved; LagP99ms and LagMaxMs
	// are how late requests left against an open-loop schedule.
	SendRate float64 `json:"send_rate"`
	LagP99ms float64 `json:"lag_p99_ms"`
	LagMaxMs float64 `json:"lag_max_ms"`
	// Expected deliveries: each stored message once per connection of its user.
	Expected   uint64 `json:"expected"`
	Received   uint64 `json:"received"`
	Lost       uint64 `json:"lost"`
	Duplicates uint64 `json:"duplicates"`
	// DeliverySeconds runs from the first send to the last receipt.
	DeliverySeconds float64     `json:"delivery_seconds"`
	DeliveredRate   float64     `json:"delivered_rate"` // messages/s received
	P50ms           float64     `json:"p50_ms"`
	P99ms           float64     `json:"p99_ms"`
	P999ms          float64     `json:"p999_ms"`
	MaxMs           float64     `json:"max_ms"`
	Procs           []ProcUsage `json:"procs"`               // over the phase
	LoadgenCPU      float64     `json:"loadgen_cpu_seconds"` // publishers and receivers
	Errors          []string    `json:"errors,omitempty"`
}

type workerProc struct {
	spec WorkerSpec
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *json.Decoder
}

func (w *workerProc) call(cmd string, v any) error {
	if _, err := fmt.Fprintln(w.in, cmd); err != nil {
		return err
	}
	return w.out.Decode(v)
}

func (w *workerProc) stop() {
	w.in.Close()
	done := make(chan struct{})
	go func() { _ = w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-done
	}
}

// Session is a scenario's connections, held open across its phases.
type Session struct {
	sc      Scenario
	prefix  string
	workers []*workerProc
	pub     *publisher
	nc      *nats.Conn
	res     *Result
}

func (sc *Scenario) logf(format string, args ...any) {
	if sc.Log != nil {
		fmt.Fprintf(sc.Log, "  [%s] "+format+"\n", append([]any{sc.Name}, args...)...)
	}
}

// Run connects, settles, runs every phase and closes the connections.
func Run(sc Scenario) (*Result, error) {
	s, err := Open(sc)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	for _, ph := range sc.Phases {
		if _, err := s.Phase(ph); err != nil {
			return s.res, err
		}
	}
	return s.res, nil
}

// Open starts the worker processes and waits until every connection is up
// (or failed) and the scenario's Settle has passed.
func Open(sc Scenario) (*Session, error) {
	sc.Devices = max(sc.Devices, 1)
	sc.PerWorker = max(sc.PerWorker, sc.Devices)
	total := sc.Users * sc.Devices
	nw := (total + sc.PerWorker - 1) / sc.PerWorker
	s := &Session{sc: sc, prefix: fmt.Sprintf("lg%x-", time.Now().UnixNano()&0xffffffff)}
	s.res = &Result{Scenario: sc.Name, Transport: sc.Transport, Connections: total, Users: sc.Users, Edges: len(sc.Edges), Workers: nw}
	var ips []string
	for i := range sc.SourceIPs {
		ips = append(ips, fmt.Sprintf("127.0.%d.%d", (i+2)/250, (i+2)%250))
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	before := sampleAll(sc.Procs)
	sc.logf("connecting %d %s connections for %d users to %d edge(s) from %d worker(s)", total, sc.Transport, sc.Users, len(sc.Edges), nw)
	from := 0
	for i := range nw {
		to := sc.Users * (i + 1) / nw
		spec := WorkerSpec{Transport: sc.Transport, Edges: sc.Edges, SourceIPs: ips, UserPrefix: s.prefix,
			UserFrom: from, UserTo: to, Devices: sc.Devices, First: from * sc.Devices, Secret: sc.Secret,
			Concurrency: sc.ConnectConcurrency, Timeout: sc.ConnectTimeout}
		from = to
		w, err := startWorker(exe, spec)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.workers = append(s.workers, w)
	}
	conns := make([]Connected, nw)
	errs := make([]error, nw)
	var wg sync.WaitGroup
	for i, w := range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.out.Decode(&conns[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.Close()
		return nil, fmt.Errorf("worker: %w", err)
	}
	h := NewHist()
	var start, end int64
	for i, c := range conns {
		s.res.Connect.OK += c.OK
		s.res.Connect.Failed += c.Failed
		s.res.Connect.Errors = append(s.res.Connect.Errors, c.Errors...)
		h.Merge(c.Connect)
		if i == 0 || c.StartNS < start {
			start = c.StartNS
		}
		end = max(end, c.EndNS)
	}
	if len(s.res.Connect.Errors) > 5 {
		s.res.Connect.Errors = s.res.Connect.Errors[:5]
	}
	if end > start { // no end when every connect failed
		s.res.Connect.Seconds = float64(end-start) / 1e9
	}
	if s.res.Connect.Seconds > 0 {
		s.res.Connect.Rate = float64(s.res.Connect.OK) / s.res.Connect.Seconds
	}
	s.res.Connect.P50ms, s.res.Connect.P99ms = h.Quantile(0.5), h.Quantile(0.99)
	sc.logf("connected %d, failed %d in %.1fs (%.0f/s)", s.res.Connect.OK, s.res.Connect.Failed, s.res.Connect.Seconds, s.res.Connect.Rate)
	time.Sleep(sc.Settle) // idle connections: what the servers hold for them, heartbeats included
	s.res.Idle = usages(sc.Procs, before, sampleAll(sc.Procs))

	var nc *nats.Conn
	for _, ph := range sc.Phases {
		if ph.Via == "nats" && nc == nil {
			if nc, err = connectNATS(sc.NATSURL); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	s.nc = nc
	if s.pub, err = newPublisher(s.prefix, sc.Users, sc.Ingest, sc.APIKey, nc); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func startWorker(exe string, spec WorkerSpec) (*workerProc, error) {
	cmd := exec.Command(exe, "worker")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	b, _ := json.Marshal(spec)
	if _, err := in.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	return &workerProc{spec: spec, cmd: cmd, in: in, out: json.NewDecoder(bufio.NewReaderSize(out, 1<<20))}, nil
}

// Result returns what was measured so far.
func (s *Session) Result() *Result { return s.res }

// Close ends the workers; their connections close with them.
func (s *Session) Close() {
	var wg sync.WaitGroup
	for _, w := range s.workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.stop() }()
	}
	wg.Wait()
	if s.nc != nil {
		s.nc.Close()
	}
}

func (s *Session) reports() ([]Report, error) {
	out := make([]Report, len(s.workers))
	errs := make([]error, len(s.workers))
	var wg sync.WaitGroup
	for i, w := range s.workers {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = w.call("report", &out[i]) }()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// tally compares what each connection got with what was acknowledged for
// its user.
func (s *Session) tally(reps []Report) (expected, received, lost, dups uint64) {
	for wi, r := range reps {
		spec := s.workers[wi].spec
		for i, got := range r.Counts {
			want := uint64(s.pub.acked[spec.UserFrom+i/spec.Devices].Load())
			expected += want
			received += uint64(got)
			if uint64(got) < want {
				lost += want - uint64(got)
			} else {
				dups += uint64(got) - want
			}
		}
	}
	return
}

// Phase publishes, waits until every acknowledged message was received
// (or delivery stalls for DrainTimeout), and measures.
func (s *Session) Phase(ph Publish) (*PhaseResult, error) {
	sc := s.sc
	for _, w := range s.workers {
		var ok struct{}
		if err := w.call("reset", &ok); err != nil {
			return nil, err
		}
	}
	reps, err := s.reports()
	if err != nil {
		return nil, err
	}
	exp0, baseReceived, lost0, dups0 := s.tally(reps)
	var cpu0 float64
	for _, r := range reps {
		cpu0 += r.CPU
	}
	pr := &PhaseResult{Publish: ph}
	sent0, stored0, failed0 := s.pub.sent.Load(), s.pub.stored.Load(), s.pub.failed.Load()
	before := sampleAll(sc.Procs)
	self0, _ := readProc(os.Getpid()) // the publishers run here
	mode := "closed loop"
	if ph.Rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f/s", ph.Rate)
	}
	sc.logf("%s: publishing %d messages via %s, batch %d, %d in flight, %s", ph.Name, ph.Messages, ph.Via, max(ph.Batch, 1), ph.Concurrency, mode)
	start := time.Now()
	s.pub.run(ph)
	pr.PublishSeconds = time.Since(start).Seconds()
	pr.Sent, pr.Stored, pr.Failed = s.pub.sent.Load()-sent0, s.pub.stored.Load()-stored0, s.pub.failed.Load()-failed0
	pr.PublishRate = float64(pr.Stored) / pr.PublishSeconds
	if first, last := s.pub.firstAt.Load(), s.pub.lastAt.Load(); last > first && pr.Sent > 1 {
		// n requests span n-1 intervals; with batches, count messages.
		perReq := float64(max(ph.Batch, 1))
		pr.SendRate = (float64(pr.Sent) - perReq) / (float64(last-first) / 1e9)
	}
	lag := s.pub.lag.snapshot()
	pr.LagP99ms, pr.LagMaxMs = lag.Quantile(0.99), float64(lag.Max)/1000

	// Wait for delivery: until everything acknowledged arrived, or nothing
	// more arrives for DrainTimeout.
	lastProgress, lastReceived := time.Now(), uint64(0)
	for {
		if reps, err = s.reports(); err != nil {
			return nil, err
		}
		exp, rec, lost, _ := s.tally(reps)
		if lost <= lost0 && rec >= exp {
			break
		}
		if rec != lastReceived {
			lastReceived, lastProgress = rec, time.Now()
		} else if time.Since(lastProgress) > sc.DrainTimeout {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	pr.Procs = usages(sc.Procs, before, sampleAll(sc.Procs))
	exp, rec, lost, dups := s.tally(reps)
	pr.Expected, pr.Received = exp-exp0, rec-baseReceived
	pr.Lost, pr.Duplicates = max(lost, lost0)-lost0, max(dups, dups0)-dups0
	h := NewHist()
	var last int64
	s.res.Ended = 0
	for _, r := range reps {
		h.Merge(r.Latency)
		last = max(last, r.LastNS)
		pr.LoadgenCPU += r.CPU
		s.res.Ended += r.Ended
	}
	pr.LoadgenCPU -= cpu0
	if self1, err := readProc(os.Getpid()); err == nil {
		pr.LoadgenCPU += self1.CPU - self0.CPU
	}
	if last > 0 {
		pr.DeliverySeconds = float64(last-start.UnixNano()) / 1e9
		pr.DeliveredRate = float64(pr.Received) / pr.DeliverySeconds
	}
	pr.P50ms, pr.P99ms, pr.P999ms, pr.MaxMs = h.Quantile(0.5), h.Quantile(0.99), h.Quantile(0.999), float64(h.Max)/1000
	s.pub.errMu.Lock()
	pr.Errors = append([]string(nil), s.pub.errs...)
	s.pub.errs = nil
	s.pub.errMu.Unlock()
	s.res.Phases = append(s.res.Phases, *pr)
	s.res.LoadgenCPU += pr.LoadgenCPU
	sc.logf("%s: %d stored (%.0f/s), %d received (%.0f/s), lost %d, dup %d; latency p50 %.2f p99 %.2f p99.9 %.2f max %.1f ms",
		ph.Name, pr.Stored, pr.PublishRate, pr.Received, pr.DeliveredRate, pr.Lost, pr.Duplicates, pr.P50ms, pr.P99ms, pr.P999ms, pr.MaxMs)
	if ph.Rate > 0 {
		sc.logf("%s: sent at %.0f/s of %.0f/s; requests' lag behind the schedule p99 %.2f, max %.1f ms", ph.Name, pr.SendRate, ph.Rate, pr.LagP99ms, pr.LagMaxMs)
	}
	return pr, nil
}

// FormatBytes prints n bytes in KiB, MiB or GiB.
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 2, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
}
