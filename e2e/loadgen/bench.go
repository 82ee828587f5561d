package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// benchSecret signs the bench's tokens; the servers run on loopback only.
const benchSecret = "loadgen-bench-secret-0123456789"

// latConc is how many requests an open-loop phase may have in flight. It
// must never be what limits the rate: with 32, one stall of the server
// longer than 16 ms at 2,000/s held back every request due meanwhile (the
// schedule lag then measures the server, and the latencies miss the
// requests that would have left during the stall).
const latConc = 256

// sizes are a bench's scenario sizes: the standard set, or the smoke test's.
type sizes struct {
	memConns             int           // memory: connections on one edge
	heartbeat            time.Duration // HEARTBEAT_INTERVAL of the memory edges
	settle               time.Duration // idle time before memory is read
	scaleEdges, scaleCon int
	tputUsers            int
	latRate              float64
	latFor               time.Duration
	phaseFor             time.Duration // bound of a closed-loop phase
	maxMessages          int           // bound of a closed-loop phase's messages
	singleConc           int
	batch, batchConc     int
	lpUsers              int
	lpRate               float64
	lpFor                time.Duration
	ingestUsers          int // ingest: SSE users the messages go to
}

var standard = sizes{
	memConns: 15000, heartbeat: 5 * time.Second, settle: 16 * time.Second,
	scaleEdges: 6, scaleCon: 100_000,
	tputUsers: 10_000, latRate: 2000, latFor: 15 * time.Second,
	phaseFor: 10 * time.Second, maxMessages: 3_000_000, singleConc: 64, batch: 100, batchConc: 16,
	lpUsers: 1000, lpRate: 1000, lpFor: 5 * time.Second,
	ingestUsers: 1000,
}

var smoke = sizes{
	memConns: 300, heartbeat: 500 * time.Millisecond, settle: 1200 * time.Millisecond,
	scaleEdges: 2, scaleCon: 400,
	tputUsers: 200, latRate: 500, latFor: time.Second,
	phaseFor: time.Second, maxMessages: 5000, singleConc: 8, batch: 20, batchConc: 4,
	lpUsers: 20, lpRate: 100, lpFor: time.Second,
	ingestUsers: 20,
}

// Run is one run of one scenario of the bench.
type benchRun struct {
	Group  string  `json:"group"`
	Result *Result `json:"result"`
	Err    string  `json:"error,omitempty"`
}

type bench struct {
	bin, dir string
	sz       sizes
	runs     int
	profile  bool
	log      io.Writer
	out      []benchRun
	profiles map[string]string // "group/phase/process" → top of the CPU profile
	notes    []string          // groups skipped, and why
	peerCols map[string]string // peers/<key> → the column's heading
}

func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	bin := fs.String("bin", "bin", "directory with edge, ingest and nats-server")
	out := fs.String("out", "docs/BENCHMARKS.md", "Markdown file whose generated section is replaced (\"\": none)")
	jsonOut := fs.String("json", "", "also write every result as JSON to this file")
	runs := fs.Int("runs", 2, "runs of each scenario")
	only := fs.String("only", "", "comma-separated groups to run (memory-sse, memory-ws, throughput, ingest, longpoll, scale, peers, or one system: peers/rig-single, peers/rig, peers/centrifugo, peers/centrifugo-redis); default all")
	isSmoke := fs.Bool("smoke", false, "tiny scenarios, seconds in all: checks the harness, measures nothing")
	profile := fs.Bool("profile", true, "take CPU profiles of the servers during the throughput phases (first run)")
	keep := fs.Bool("keep", false, "keep the servers' logs and data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rig-bench-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	b := &bench{bin: *bin, dir: dir, sz: standard, runs: *runs, profile: *profile && !*isSmoke, log: os.Stderr, profiles: map[string]string{},
		peerCols: map[string]string{}}
	if *isSmoke {
		b.sz = smoke
	}
	fmt.Fprintf(b.log, "bench: servers' logs in %s\n", dir)
	m := machine(*bin)
	type group struct {
		name string
		fn   func(run int) (*Result, error)
	}
	groups := []group{
		{"memory-sse", func(int) (*Result, error) { return b.memory("sse") }},
		{"memory-ws", func(int) (*Result, error) { return b.memory("websocket") }},
		{"throughput", b.throughput},
		{"ingest", func(int) (*Result, error) { return b.ingest() }},
		{"longpoll", func(int) (*Result, error) { return b.longPoll() }},
		{"scale", func(int) (*Result, error) { return b.scale() }},
	}
	// Each group's runs one after the other; but the peers' runs take
	// turns (RIG-Go, Centrifugo, Centrifugo + Redis, then again), so that
	// a machine whose load drifts weighs on every column alike.
	type step struct {
		g   group
		run int
	}
	var steps []step
	for _, g := range groups {
		if selected(*only, g.name) {
			for r := range b.runs {
				steps = append(steps, step{g, r})
			}
		}
	}
	peers := b.peerGroups(*only, *isSmoke, m)
	for r := range b.runs {
		for _, sys := range peers {
			steps = append(steps, step{group{"peers/" + sys.key, func(int) (*Result, error) { return b.peer(sys) }}, r})
		}
	}
	var failed []string
	for _, st := range steps {
		g, r := st.g, st.run
		fmt.Fprintf(b.log, "bench: %s, run %d of %d (load average %s)\n", g.name, r+1, b.runs, loadAvg())
		res, err := g.fn(r)
		br := benchRun{Group: g.name, Result: res}
		if err != nil {
			br.Err = err.Error()
			failed = append(failed, g.name+": "+err.Error())
			fmt.Fprintf(b.log, "bench: %s failed: %v\n", g.name, err)
		}
		b.out = append(b.out, br)
	}
	if *jsonOut != "" {
		j, _ := json.MarshalIndent(struct {
			Machine Machine    `json:"machine"`
			Runs    []benchRun `json:"runs"`
		}{m, b.out}, "", "  ")
		if err := os.WriteFile(*jsonOut, j, 0o644); err != nil {
			return err
		}
	}
	md := b.markdown(m, *isSmoke)
	fmt.Println(md)
	if t := b.peersTable(); t != "" {
		// Last on stdout too: the side-by-side table is what a reader of
		// the run looks for first.
		fmt.Printf("\nPeers, side by side:\n\n%s", t)
	}
	if *out != "" {
		if err := replaceSection(*out, md); err != nil {
			return err
		}
		fmt.Fprintf(b.log, "bench: wrote %s\n", *out)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d scenario run(s) failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// stack is one group's servers.
type stack struct {
	nats   *server
	edges  []*server
	ingest *server
}

func (st *stack) stop() {
	var wg sync.WaitGroup
	for _, e := range st.edges {
		wg.Add(1)
		go func() { defer wg.Done(); e.stop() }()
	}
	wg.Wait()
	if st.ingest != nil {
		st.ingest.stop()
	}
	if st.nats != nil {
		st.nats.stop()
	}
}

func (st *stack) procs() []Proc {
	var ps []Proc
	for _, e := range st.edges {
		ps = append(ps, e.proc())
	}
	ps = append(ps, st.ingest.proc())
	if st.nats != nil {
		ps = append(ps, st.nats.proc())
	}
	return ps
}

// servers are the stack's processes, the edges first.
func (st *stack) servers() []*server {
	out := append(append([]*server{}, st.edges...), st.ingest)
	if st.nats != nil {
		out = append(out, st.nats)
	}
	return out
}

func (st *stack) edgeAddrs() []string {
	var out []string
	for _, e := range st.edges {
		out = append(out, e.addr)
	}
	return out
}

// start starts NATS, n edges with edgeEnv and ingest, each group anew so
// that no group inherits another's stream or memory.
func (b *bench) start(group string, n int, edgeEnv map[string]string) (*stack, error) {
	dir := filepath.Join(b.dir, fmt.Sprintf("%s-%d", group, time.Now().UnixNano()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	st := &stack{}
	var natsArgs []string
	profilePort := 0
	if b.profile {
		if p, err := freePort(); err == nil {
			natsArgs = append(natsArgs, "--profile", fmt.Sprint(p))
			profilePort = p
		}
	}
	var err error
	if st.nats, err = startNATS(b.bin, dir, natsArgs...); err != nil {
		return nil, err
	}
	st.nats.profilePort = profilePort
	natsURL := "nats://" + st.nats.addr
	env := b.edgeEnv(edgeEnv)
	errs := make([]error, n)
	st.edges = make([]*server, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.edges[i], errs[i] = startEdge(b.bin, dir, fmt.Sprintf("edge-%d", i+1), natsURL, benchSecret, env)
		}()
	}
	wg.Wait()
	st.edges = slices.DeleteFunc(st.edges, func(s *server) bool { return s == nil })
	if err := errors.Join(errs...); err != nil {
		st.stop()
		return nil, err
	}
	if st.ingest, err = startIngest(b.bin, dir, natsURL, map[string]string{"PPROF": fmt.Sprint(b.profile)}); err != nil {
		st.stop()
		return nil, err
	}
	return st, nil
}

// edgeEnv is the bench's settings for an edge with extra on top.
func (b *bench) edgeEnv(extra map[string]string) map[string]string {
	env := map[string]string{"PPROF": fmt.Sprint(b.profile)}
	maps.Copy(env, extra)
	return env
}

// startSingle starts the single-node stack `go tool task run` starts:
// ingest embedding NATS (JetStream), and one edge with edgeEnv on it.
// There is no nats-server process: st.nats is nil.
func (b *bench) startSingle(group string, edgeEnv map[string]string) (*stack, error) {
	dir := filepath.Join(b.dir, fmt.Sprintf("%s-%d", group, time.Now().UnixNano()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	st := &stack{}
	if st.ingest, err = startIngest(b.bin, dir, "", map[string]string{
		"PPROF": fmt.Sprint(b.profile), "NATS_EMBEDDED": "true", "NATS_LISTEN": listen,
		"NATS_STORE_DIR": filepath.Join(dir, "jetstream"),
	}); err != nil {
		return nil, err
	}
	env := b.edgeEnv(edgeEnv)
	e, err := startEdge(b.bin, dir, "edge-1", "nats://"+listen, benchSecret, env)
	if err != nil {
		st.stop()
		return nil, err
	}
	st.edges = []*server{e}
	return st, nil
}

func (b *bench) scenario(name, transport string, st *stack, users int) Scenario {
	sc := b.scenarioOn(name, transport, st.edgeAddrs(), st.ingest.addr, st.procs(), users)
	sc.NATSURL = "nats://" + st.nats.addr
	return sc
}

// scenarioOn is the bench's scenario against any system: clients connect
// to edges, publishers post to publish, procs are its server processes.
func (b *bench) scenarioOn(name, transport string, edges []string, publish string, procs []Proc, users int) Scenario {
	return Scenario{
		Name: name, Transport: transport, Edges: edges, Ingest: publish,
		Users: users, Devices: 1, PerWorker: 15000, SourceIPs: 16, Secret: benchSecret,
		ConnectConcurrency: 64, ConnectTimeout: 60 * time.Second, DrainTimeout: 5 * time.Second,
		Procs: procs, Log: b.log,
	}
}

// memory: one edge, memConns idle connections; the edge's RSS before and
// after, once heartbeats have run a few times; then each user gets one
// message, so the figure is of connections that work.
func (b *bench) memory(transport string) (*Result, error) {
	group := "memory-" + transport
	st, err := b.start(group, 1, map[string]string{"HEARTBEAT_INTERVAL": b.sz.heartbeat.String()})
	if err != nil {
		return nil, err
	}
	defer st.stop()
	sc := b.scenario(group, transport, st, b.sz.memConns)
	sc.PerWorker = (b.sz.memConns + 1) / 2 // two workers connect at once
	sc.Settle = b.sz.settle
	sc.Phases = []Publish{{Name: "one each", Via: "http", Batch: 100, Concurrency: 4, Messages: b.sz.memConns, Duration: time.Minute}}
	return Run(sc)
}

// throughput: one edge, tputUsers SSE users; publish-to-receipt latency at
// a set rate, then one message per request and batches as fast as possible.
func (b *bench) throughput(run int) (*Result, error) {
	st, err := b.start("throughput", 1, nil)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	sc := b.scenario("throughput", "sse", st, b.sz.tputUsers)
	s, err := Open(sc)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	phases := []Publish{
		{Name: "latency", Via: "http", Batch: 1, Concurrency: latConc, Rate: b.sz.latRate, Messages: int(b.sz.latRate * b.sz.latFor.Seconds()), Duration: 2 * b.sz.latFor},
		{Name: "single", Via: "http", Batch: 1, Concurrency: b.sz.singleConc, Messages: b.sz.maxMessages, Duration: b.sz.phaseFor},
		{Name: "batch", Via: "http", Batch: b.sz.batch, Concurrency: b.sz.batchConc, Messages: b.sz.maxMessages, Duration: b.sz.phaseFor},
	}
	for _, ph := range phases {
		var prof *profiler
		if b.profile && run == 0 && (ph.Name == "single" || ph.Name == "batch") {
			prof = b.startProfiles(st, b.sz.phaseFor/2)
		}
		var allocs *allocProfile
		if b.profile && run == 0 && ph.Name == "latency" {
			allocs = b.startAllocs("http://" + st.edges[0].ops + "/debug/pprof/allocs?gc=1")
		}
		_, err := s.Phase(ph)
		if prof != nil {
			prof.wait(b, "throughput/"+ph.Name)
		}
		if allocs != nil {
			allocs.finish(b, "throughput/"+ph.Name+"/edge (bytes allocated)", "edge")
		}
		if err != nil {
			return s.Result(), err
		}
	}
	return s.Result(), nil
}

// ingest: ingest's own throughput, for choosing its HTTP stack (issue 13):
// one edge with few SSE users, so that delivery takes little of the cores;
// one message per request as fast as singleConc publishers can, then
// batches. The figures are requests/s and ingest's CPU per request.
func (b *bench) ingest() (*Result, error) {
	st, err := b.start("ingest", 1, nil)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	sc := b.scenario("ingest", "sse", st, b.sz.ingestUsers)
	sc.Phases = []Publish{
		{Name: "single", Via: "http", Batch: 1, Concurrency: b.sz.singleConc, Messages: b.sz.maxMessages, Duration: b.sz.phaseFor},
		{Name: "batch", Via: "http", Batch: b.sz.batch, Concurrency: b.sz.batchConc, Messages: b.sz.maxMessages, Duration: b.sz.phaseFor},
	}
	return Run(sc)
}

// longPoll: pollers on one edge, messages at a set rate.
func (b *bench) longPoll() (*Result, error) {
	st, err := b.start("longpoll", 1, map[string]string{"LONGPOLL_TIMEOUT": "2s"})
	if err != nil {
		return nil, err
	}
	defer st.stop()
	sc := b.scenario("longpoll", "longpoll", st, b.sz.lpUsers)
	// A poller counts as connected when its first (empty) poll answers,
	// after LONGPOLL_TIMEOUT: start them all at once.
	sc.ConnectConcurrency = b.sz.lpUsers
	sc.Phases = []Publish{{Name: "rate", Via: "http", Batch: 1, Concurrency: 16, Rate: b.sz.lpRate, Messages: int(b.sz.lpRate * b.sz.lpFor.Seconds()), Duration: 2 * b.sz.lpFor}}
	return Run(sc)
}

// scale: scaleCon SSE connections over scaleEdges edges sharing one NATS;
// then each user receives one message.
func (b *bench) scale() (*Result, error) {
	st, err := b.start("scale", b.sz.scaleEdges, nil)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	sc := b.scenario("scale", "sse", st, b.sz.scaleCon)
	sc.Phases = []Publish{{Name: "one each", Via: "http", Batch: 500, Concurrency: 4, Messages: b.sz.scaleCon, Duration: 5 * time.Minute}}
	return Run(sc)
}

// profiler collects CPU profiles of a stack's servers for a while.
type profiler struct {
	wg    sync.WaitGroup
	files map[string]string // process → profile file
	mu    sync.Mutex
}

func (b *bench) startProfiles(st *stack, d time.Duration) *profiler {
	p := &profiler{files: map[string]string{}}
	targets := map[string]string{
		"edge":   "http://" + st.edges[0].ops + "/debug/pprof/profile",
		"ingest": "http://" + st.ingest.addr + "/debug/pprof/profile",
	}
	if st.nats.profilePort != 0 {
		targets["nats-server"] = fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile", st.nats.profilePort)
	}
	for name, url := range targets {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			time.Sleep(500 * time.Millisecond) // past the phase's start
			resp, err := http.Get(fmt.Sprintf("%s?seconds=%d", url, max(int(d.Seconds()), 1)))
			if err != nil {
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				return
			}
			f := filepath.Join(b.dir, fmt.Sprintf("cpu-%s-%d.pprof", name, time.Now().UnixNano()))
			if os.WriteFile(f, body, 0o644) == nil {
				p.mu.Lock()
				p.files[name] = f
				p.mu.Unlock()
			}
		}()
	}
	return p
}

// wait collects the profiles and keeps the top of each.
func (p *profiler) wait(b *bench, label string) {
	p.wg.Wait()
	for name, f := range p.files { // name is the binary's
		cmd := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", filepath.Join(b.bin, name), f)
		out, err := cmd.CombinedOutput()
		if err != nil {
			fmt.Fprintf(b.log, "bench: pprof %s: %v\n", f, err)
			continue
		}
		b.profiles[label+"/"+name] = string(out)
	}
}

// allocProfile is what one server allocates during a phase: the
// difference between its allocation profiles at the phase's start and end.
// (A single profile holds every allocation since the process started,
// connections included.) Each is fetched twice with gc=1: a profile holds
// the allocations up to the GC cycle before the last, so one forced cycle
// leaves out what came just before it, such as the last connections.
type allocProfile struct {
	url   string
	start string // file
}

func (b *bench) startAllocs(url string) *allocProfile {
	a := &allocProfile{url: url}
	a.start, _ = b.fetchProfile(url, "allocs-start")
	return a
}

func (b *bench) fetchProfile(url, name string) (string, error) {
	if _, err := b.fetchOnce(url, ""); err != nil {
		return "", err
	}
	return b.fetchOnce(url, name)
}

// fetchOnce gets a profile and writes it to a file named after name ("":
// the profile is not kept).
func (b *bench) fetchOnce(url, name string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	if name == "" {
		return "", nil
	}
	f := filepath.Join(b.dir, fmt.Sprintf("%s-%d.pprof", name, time.Now().UnixNano()))
	return f, os.WriteFile(f, body, 0o644)
}

// finish takes the end profile and keeps the top of the difference, by
// bytes allocated.
func (a *allocProfile) finish(b *bench, label, binary string) {
	end, err := b.fetchProfile(a.url, "allocs-end")
	if err != nil || a.start == "" {
		fmt.Fprintf(b.log, "bench: allocation profile %s: %v\n", label, err)
		return
	}
	cmd := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", "-sample_index=alloc_space",
		"-base", a.start, filepath.Join(b.bin, binary), end)
	out, err := cmd.CombinedOutput()
	if err != nil {
		fmt.Fprintf(b.log, "bench: pprof %s: %v\n", end, err)
		return
	}
	b.profiles[label] = string(out)
}

// Machine is where the bench ran.
type Machine struct {
	CPUs   int    `json:"cpus"`
	Model  string `json:"cpu_model"`
	Memory string `json:"memory"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	NATS   string `json:"nats_server"`
	// The peers' versions; "" when not installed.
	Centrifugo string `json:"centrifugo,omitempty"`
	Redis      string `json:"redis,omitempty"`
	LoadAvg    string `json:"load_average"`
	Date       string `json:"date"`
}

func machine(binDir string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadAvg: loadAvg(), Date: time.Now().UTC().Format("2006-01-02 15:04 UTC")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		m.Memory = FormatBytes(kb << 10)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command(filepath.Join(binDir, "nats-server"), "--version").Output(); err == nil {
		m.NATS = strings.TrimSpace(string(out))
	}
	m.Centrifugo, m.Redis = peerVersions(binDir)
	return m
}

const (
	sectionBegin = "<!-- bench:begin (written by `go tool task bench`; edits here are overwritten) -->"
	sectionEnd   = "<!-- bench:end -->"
)

// replaceSection puts md between the markers in path, or appends it.
func replaceSection(path, md string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	block := sectionBegin + "\n" + md + "\n" + sectionEnd
	s := string(old)
	i, j := strings.Index(s, sectionBegin), strings.Index(s, sectionEnd)
	if i >= 0 && j > i {
		s = s[:i] + block + s[j+len(sectionEnd):]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s += "\n"
		}
		s += block + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// markdown renders the machine, the method and the figures.
func (b *bench) markdown(m Machine, isSmoke bool) string {
	var w bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	if isSmoke {
		p("**Smoke run** (tiny scenarios: checks the harness, the figures mean nothing).\n\n")
	}
	p("**Machine.** %d CPUs (`nproc`), %s, %s RAM, Linux %s, %s, %s. Load average at the start: %s. Run on %s.\n\n",
		m.CPUs, m.Model, m.Memory, m.Kernel, m.Go, m.NATS, m.LoadAvg, m.Date)
	if m.Centrifugo != "" || m.Redis != "" {
		p("**Peers.** Centrifugo %s, Redis %s.\n\n", or(m.Centrifugo, "not installed"), or(m.Redis, "not installed"))
	}
	for _, n := range b.notes {
		p("**Skipped:** %s\n\n", n)
	}
	p("**Results** (%d runs of each scenario; a target passes when every run meets it):\n\n", b.runs)
	p("| target | goal | measured, each run | |\n|---|---|---|---|\n")
	for _, t := range b.targets() {
		verdict := "**pass**"
		if !t.pass {
			verdict = "**miss** " + t.gap
		}
		p("| %s | %s | %s | %s |\n", t.name, t.goal, strings.Join(t.runs, " · "), verdict)
	}
	if t := b.peersTable(); t != "" {
		p("\n**Peers, side by side** (group peers, all in this run: one server of each system, %d SSE users, each a distinct user with its own token; the same publishers, payload and measurement; see the method above):\n\n%s", b.sz.tputUsers, t)
	}
	p("\n**Every scenario run:**\n\n")
	p("| scenario | phase | connections | connected/s | sent | delivered | lost | dup | delivered/s | p50 / p99 / p99.9 ms | servers: RSS after, CPU |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range b.out {
		if r.Result == nil {
			p("| %s | failed: %s | | | | | | | | | |\n", r.Group, r.Err)
			continue
		}
		res := r.Result
		conn := fmt.Sprintf("%d of %d", res.Connect.OK, res.Connections)
		if res.Ended > 0 {
			conn += fmt.Sprintf(" (%d ended)", res.Ended)
		}
		p("| %s | connect + idle | %s | %.0f | | | | | | connect p50 %.1f, p99 %.1f | %s |\n", r.Group, conn, res.Connect.Rate,
			res.Connect.P50ms, res.Connect.P99ms, procSummary(res.Idle, true))
		for _, ph := range res.Phases {
			lg := ""
			if ph.DeliverySeconds > 0 {
				lg = fmt.Sprintf("; load generator %.0f%%", 100*ph.LoadgenCPU/ph.DeliverySeconds)
			}
			p("| %s | %s | | | %d | %d | %d | %d | %.0f | %.2f / %.2f / %.2f | %s%s |\n", r.Group, phaseLabel(ph), ph.Stored, ph.Received,
				ph.Lost, ph.Duplicates, ph.DeliveredRate, ph.P50ms, ph.P99ms, ph.P999ms, procSummary(ph.Procs, false), lg)
		}
		if r.Err != "" {
			p("| %s | error: %s | | | | | | | | | |\n", r.Group, r.Err)
		}
	}
	if budget := b.cpuBudget(m.CPUs); budget != "" {
		p("\n**CPU time per delivered message** (each process's CPU seconds over the phase, divided by the messages delivered; the sum bounds what %d cores can deliver):\n\n%s", m.CPUs, budget)
	}
	if t := b.ingestTable(); t != "" {
		p("\n**Ingest alone** (group ingest: requests answered 202 per second, and ingest's CPU seconds over the phase per request; one edge, %d SSE users):\n\n%s", b.sz.ingestUsers, t)
	}
	if len(b.profiles) > 0 {
		p("\n**Profiles** (first run; CPU: half of each closed-loop phase; bytes allocated: the whole latency phase; `go tool pprof -top`, top 25):\n\n")
		keys := make([]string, 0, len(b.profiles))
		for k := range b.profiles {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p("<details><summary>%s</summary>\n\n```\n%s```\n\n</details>\n\n", k, b.profiles[k])
		}
	}
	return strings.TrimRight(w.String(), "\n")
}

// cpuBudget tabulates the CPU each process spent per delivered message in
// the closed-loop throughput phases.
func (b *bench) cpuBudget(cpus int) string {
	var w strings.Builder
	for _, r := range b.out {
		if r.Group != "throughput" || r.Result == nil {
			continue
		}
		for _, ph := range r.Result.Phases {
			if ph.Rate > 0 || ph.Received == 0 {
				continue
			}
			if w.Len() == 0 {
				w.WriteString("| phase | edge | ingest | nats-server | load generator | total | ceiling on all cores | measured |\n|---|---|---|---|---|---|---|---|\n")
			}
			us := func(sec float64) float64 { return sec * 1e6 / float64(ph.Received) }
			total := us(ph.LoadgenCPU)
			cells := map[string]float64{}
			for _, u := range ph.Procs {
				name := strings.TrimSuffix(u.Name, "-1")
				cells[name] += us(u.CPUSeconds)
				total += us(u.CPUSeconds)
			}
			fmt.Fprintf(&w, "| %s | %.1f µs | %.1f µs | %.1f µs | %.1f µs | %.1f µs | %.0f/s | %.0f/s |\n", phaseLabel(ph), cells["edge"], cells["ingest"],
				cells["nats-server"], us(ph.LoadgenCPU), total, float64(cpus)*1e6/total, ph.DeliveredRate)
		}
	}
	return w.String()
}

// ingestTable tabulates the ingest group's runs: requests/s and ingest's
// CPU per request, the figures that choose its HTTP stack.
func (b *bench) ingestTable() string {
	var w strings.Builder
	for _, r := range b.results("ingest") {
		if r == nil {
			continue
		}
		for _, ph := range r.Phases {
			if ph.Stored == 0 || ph.PublishSeconds <= 0 {
				continue
			}
			if w.Len() == 0 {
				w.WriteString("| phase | requests/s | messages/s | ingest CPU per request | ingest CPU | nats-server CPU | edge CPU |\n|---|---|---|---|---|---|---|\n")
			}
			requests := float64(ph.Stored) / float64(max(ph.Batch, 1))
			cpu := map[string]ProcUsage{}
			for _, u := range ph.Procs {
				cpu[strings.TrimSuffix(u.Name, "-1")] = u
			}
			fmt.Fprintf(&w, "| %s | %.0f | %.0f | %.1f µs | %.0f%% | %.0f%% | %.0f%% |\n", phaseLabel(ph), requests/ph.PublishSeconds, ph.PublishRate,
				cpu["ingest"].CPUSeconds*1e6/requests, cpu["ingest"].CPUPercent, cpu["nats-server"].CPUPercent, cpu["edge"].CPUPercent)
		}
	}
	return w.String()
}

func phaseLabel(ph PhaseResult) string {
	s := ph.Name + ": " + ph.Via
	if ph.Batch > 1 {
		s += fmt.Sprintf(", batches of %d", ph.Batch)
	}
	if ph.Rate > 0 {
		s += fmt.Sprintf(", %.0f/s", ph.Rate)
	} else {
		s += fmt.Sprintf(", %d in flight", ph.Concurrency)
	}
	return s
}

func procSummary(us []ProcUsage, withBefore bool) string {
	var parts []string
	for _, u := range us {
		if withBefore {
			parts = append(parts, fmt.Sprintf("%s %s→%s, %.0f%%", u.Name, FormatBytes(u.RSSBefore), FormatBytes(u.RSSAfter), u.CPUPercent))
		} else {
			parts = append(parts, fmt.Sprintf("%s %s, %.0f%%", u.Name, FormatBytes(u.RSSAfter), u.CPUPercent))
		}
	}
	return strings.Join(parts, "; ")
}

type target struct {
	name, goal string
	runs       []string
	pass       bool
	gap        string
}

func (b *bench) results(group string) []*Result {
	var out []*Result
	for _, r := range b.out {
		if r.Group == group {
			out = append(out, r.Result) // nil for a failed run
		}
	}
	return out
}

func phaseOf(r *Result, name string) *PhaseResult {
	if r == nil {
		return nil
	}
	for i := range r.Phases {
		if r.Phases[i].Name == name {
			return &r.Phases[i]
		}
	}
	return nil
}

// targets checks issue 8's targets against the runs.
func (b *bench) targets() []target {
	var ts []target
	perConn := func(r *Result) (float64, bool) {
		if r == nil || len(r.Idle) == 0 || r.Connect.OK == 0 {
			return 0, false
		}
		e := r.Idle[0] // the one edge
		return float64(e.RSSAfter-e.RSSBefore) / float64(r.Connect.OK) / 1024, true
	}
	for _, m := range []struct {
		group, label string
		limit        float64
	}{{"memory-sse", "SSE", 12}, {"memory-ws", "WebSocket", 16}} {
		rs := b.results(m.group)
		if len(rs) == 0 {
			continue
		}
		t := target{name: fmt.Sprintf("memory: edge RSS per idle %s connection, %d on one edge", m.label, b.sz.memConns),
			goal: fmt.Sprintf("≤ %.0f KiB", m.limit), pass: true}
		worst := 0.0
		for _, r := range rs {
			kib, ok := perConn(r)
			ph := phaseOf(r, "one each")
			lost := ph == nil || ph.Lost > 0 || r.Connect.OK < b.sz.memConns
			if !ok {
				t.runs, t.pass = append(t.runs, "failed"), false
				continue
			}
			s := fmt.Sprintf("%.1f KiB", kib)
			if lost {
				s += " (not all connected or delivered)"
				t.pass = false
			}
			t.runs = append(t.runs, s)
			worst = max(worst, kib)
			if kib > m.limit {
				t.pass = false
			}
		}
		if worst > m.limit {
			t.gap = fmt.Sprintf("by %.1f KiB (%.0f%%)", worst-m.limit, 100*(worst-m.limit)/m.limit)
		}
		ts = append(ts, t)
	}
	if rs := b.results("scale"); len(rs) > 0 {
		t := target{name: fmt.Sprintf("scale: SSE connections over %d edges, one NATS; each user then gets a message", b.sz.scaleEdges),
			goal: fmt.Sprintf("%d connected, none lost", b.sz.scaleCon), pass: true}
		for _, r := range rs {
			ph := phaseOf(r, "one each")
			if ph == nil {
				t.runs, t.pass = append(t.runs, "failed"), false
				continue
			}
			t.runs = append(t.runs, fmt.Sprintf("%d connected, %d of %d delivered, %d lost", r.Connect.OK, ph.Received, ph.Expected, ph.Lost))
			if r.Connect.OK < b.sz.scaleCon || ph.Lost > 0 || ph.Expected < uint64(b.sz.scaleCon) {
				t.pass = false
				t.gap = fmt.Sprintf("(%d connected, %d lost)", r.Connect.OK, ph.Lost)
			}
		}
		ts = append(ts, t)
	}
	if rs := b.results("throughput"); len(rs) > 0 {
		for _, x := range []struct {
			phase, name string
			goal        float64
		}{{"single", "one message per HTTP request", 35000}, {"batch", fmt.Sprintf("batches of %d per HTTP request", b.sz.batch), 150000}} {
			t := target{name: fmt.Sprintf("throughput: %d SSE users, %s", b.sz.tputUsers, x.name), goal: fmt.Sprintf("≥ %.0f delivered/s, none lost", x.goal), pass: true}
			worst := -1.0
			for _, r := range rs {
				ph := phaseOf(r, x.phase)
				if ph == nil {
					t.runs, t.pass = append(t.runs, "failed"), false
					continue
				}
				t.runs = append(t.runs, fmt.Sprintf("%.0f/s, %d lost", ph.DeliveredRate, ph.Lost))
				if ph.DeliveredRate < x.goal || ph.Lost > 0 {
					t.pass = false
				}
				if worst < 0 || ph.DeliveredRate < worst {
					worst = ph.DeliveredRate
				}
			}
			if worst >= 0 && worst < x.goal {
				t.gap = fmt.Sprintf("by %.0f/s (%.0f%%)", x.goal-worst, 100*(x.goal-worst)/x.goal)
			}
			ts = append(ts, t)
		}
		t := target{name: fmt.Sprintf("latency: publish-to-receipt through ingest at %.0f messages/s, %d SSE users", b.sz.latRate, b.sz.tputUsers),
			goal: "p99 ≤ 3 ms", pass: true}
		worst := 0.0
		for _, r := range rs {
			ph := phaseOf(r, "latency")
			if ph == nil {
				t.runs, t.pass = append(t.runs, "failed"), false
				continue
			}
			t.runs = append(t.runs, fmt.Sprintf("p50 %.2f, p99 %.2f, p99.9 %.2f ms at %.0f/s, %d lost", ph.P50ms, ph.P99ms, ph.P999ms, ph.PublishRate, ph.Lost))
			worst = max(worst, ph.P99ms)
			if ph.P99ms > 3 || ph.Lost > 0 {
				t.pass = false
			}
		}
		if worst > 3 {
			t.gap = fmt.Sprintf("by %.2f ms", worst-3)
		}
		ts = append(ts, t)
	}
	return append(ts, b.peerTargets()...)
}

// selected reports whether -only names group, or the set it belongs to
// (peers for peers/rig).
func selected(only, group string) bool {
	if only == "" {
		return true
	}
	set, _, _ := strings.Cut(group, "/")
	for _, o := range strings.Split(only, ",") {
		if o == group || o == set {
			return true
		}
	}
	return false
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
