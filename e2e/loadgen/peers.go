package main

import (
	"bufio"
	"debug/buildinfo"
	_ "embed"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The peers group (issue 17) runs one scenario against RIG-Go and its
// peers, side by side: each system is started fresh, gets the same
// connections (distinct users, each with its own token, over SSE), the
// same publishers and rates and the same payload, and is measured the
// same way. A system differs only in what peerSystem says: how it starts,
// what its clients' stream looks like, and how a message is published.

// Installing the peers: what the bench prints when one is missing.
const (
	centrifugoModule  = "github.com/centrifugal/centrifugo/v6@v6.9.1"
	centrifugoInstall = "GOBIN=$PWD/bin go install " + centrifugoModule + " (or `go tool task bench:install-peers`)"
	redisInstall      = "apt-get install -y redis-server"
	// benchAPIKey is Centrifugo's http_api.key in the bench (loopback only).
	benchAPIKey = "loadgen-bench-api-key"
)

// centrifugoConfig is the configuration every Centrifugo of the bench
// starts with; the per-run values (ports, keys, engine, ping interval)
// are set through its environment, see startCentrifugo.
//
//go:embed peers/centrifugo.json
var centrifugoConfig []byte

// peerSystem is one system the peers group measures.
type peerSystem struct {
	key  string // the group is peers/<key>
	name string // its column's heading
	// missing says why the system cannot run here and how to install
	// what it lacks; "" when it can.
	missing func(b *bench) string
	start   func(b *bench) (*peerStack, error)
}

// peerStack is a started system: its server processes, the first holding
// the clients' connections, and how the load generator talks to it.
type peerStack struct {
	servers   []*server
	transport string // the workers' stream: sse or centrifugo-sse
	conn      string // host:port the clients connect to
	publish   string // host:port the publishers post to
	via       string // http (ingest) or centrifugo (its HTTP API)
	secret    string // what the clients' tokens are signed with
	stop      func()
}

func (ps *peerStack) procs() []Proc {
	var out []Proc
	for _, s := range ps.servers {
		out = append(out, s.proc())
	}
	return out
}

// peerSystems are the peers group's columns, in order.
func peerSystems() []peerSystem {
	return []peerSystem{
		{key: "rig-single", name: "RIG-Go single node (edge + ingest embedding NATS, as `task run`)", missing: func(*bench) string { return "" }, start: startRIGSingle},
		{key: "rig", name: "RIG-Go (edge + ingest + nats-server, as in throughput)", missing: func(*bench) string { return "" }, start: startRIGPeer},
		{key: "centrifugo", name: "Centrifugo {centrifugo}, memory engine", missing: missingCentrifugo, start: func(b *bench) (*peerStack, error) {
			return startCentrifugoPeer(b, "centrifugo", false)
		}},
		{key: "centrifugo-redis", name: "Centrifugo {centrifugo} + Redis {redis} (its engine for several nodes)", missing: func(b *bench) string {
			if m := missingCentrifugo(b); m != "" {
				return m
			}
			if _, err := exec.LookPath("redis-server"); err != nil {
				return "redis-server not found: " + redisInstall
			}
			return ""
		}, start: func(b *bench) (*peerStack, error) { return startCentrifugoPeer(b, "centrifugo-redis", true) }},
	}
}

func missingCentrifugo(b *bench) string {
	if _, err := os.Stat(filepath.Join(b.bin, "centrifugo")); err != nil {
		return fmt.Sprintf("%s not found: %s", filepath.Join(b.bin, "centrifugo"), centrifugoInstall)
	}
	return ""
}

// startRIGPeer starts the throughput group's stack (a separate
// nats-server, one edge, ingest), with the memory groups' heartbeat.
func startRIGPeer(b *bench) (*peerStack, error) {
	st, err := b.start("peers-rig", 1, map[string]string{"HEARTBEAT_INTERVAL": b.sz.heartbeat.String()})
	if err != nil {
		return nil, err
	}
	return rigPeer(st), nil
}

// startRIGSingle starts the single-node stack (`go tool task run`'s: the
// edge on NATS embedded in ingest), with the memory groups' heartbeat.
func startRIGSingle(b *bench) (*peerStack, error) {
	st, err := b.startSingle("peers-rig-single", map[string]string{"HEARTBEAT_INTERVAL": b.sz.heartbeat.String()})
	if err != nil {
		return nil, err
	}
	return rigPeer(st), nil
}

func rigPeer(st *stack) *peerStack {
	return &peerStack{servers: st.servers(), transport: "sse",
		conn: st.edges[0].addr, publish: st.ingest.addr, via: "http", secret: benchSecret, stop: st.stop}
}

// startCentrifugoPeer starts Centrifugo, single node, with the memory
// engine or, withRedis, a redis-server of its own and the Redis engine.
func startCentrifugoPeer(b *bench, group string, withRedis bool) (*peerStack, error) {
	dir := filepath.Join(b.dir, fmt.Sprintf("peers-%s-%d", group, time.Now().UnixNano()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	env := map[string]string{"CENTRIFUGO_ENGINE_TYPE": "memory"}
	var rs *server
	if withRedis {
		var err error
		if rs, err = startRedis(dir); err != nil {
			return nil, err
		}
		env["CENTRIFUGO_ENGINE_TYPE"] = "redis"
		env["CENTRIFUGO_ENGINE_REDIS_ADDRESS"] = "redis://" + rs.addr
	}
	cf, err := startCentrifugo(b.bin, dir, b.sz.heartbeat, env)
	if err != nil {
		if rs != nil {
			rs.stop()
		}
		return nil, err
	}
	ps := &peerStack{servers: []*server{cf}, transport: "centrifugo-sse", conn: cf.addr, publish: cf.addr, via: "centrifugo", secret: benchSecret}
	if rs != nil {
		ps.servers = append(ps.servers, rs)
	}
	ps.stop = func() {
		for _, s := range ps.servers {
			s.stop()
		}
	}
	return ps, nil
}

// startCentrifugo starts binDir/centrifugo with centrifugoConfig (written
// to dir, so a kept run shows it) and, through its environment, a free
// port, the bench's token secret and API key, the ping interval
// (heartbeat, as the RIG edges') and env on top.
func startCentrifugo(binDir, dir string, heartbeat time.Duration, env map[string]string) (*server, error) {
	cfg := filepath.Join(dir, "centrifugo.json")
	if err := os.WriteFile(cfg, centrifugoConfig, 0o644); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	e := map[string]string{
		"CENTRIFUGO_HTTP_SERVER_PORT":             strconv.Itoa(port),
		"CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY": benchSecret,
		"CENTRIFUGO_HTTP_API_KEY":                 benchAPIKey,
		"CENTRIFUGO_CLIENT_PING_INTERVAL":         heartbeat.String(),
		// Below the ping interval, as Centrifugo requires; unidirectional
		// clients send no pongs, so it changes nothing else.
		"CENTRIFUGO_CLIENT_PONG_TIMEOUT": (heartbeat / 2).String(),
	}
	for k, v := range env {
		e[k] = v
	}
	s, err := startServer(dir, "centrifugo", filepath.Join(binDir, "centrifugo"), []string{"-c", cfg}, e)
	if err != nil {
		return nil, err
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	if !waitFor(30*time.Second, func() bool { return httpOK("http://" + s.addr + "/health") }) {
		s.stop()
		return nil, fmt.Errorf("centrifugo not ready (log: %s)", s.log.Name())
	}
	return s, nil
}

// startRedis starts redis-server on a free loopback port, without
// persistence, and waits until it answers PING.
func startRedis(dir string) (*server, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server: %w (%s)", err, redisInstall)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", dir}
	s, err := startServer(dir, "redis-server", path, args, nil)
	if err != nil {
		return nil, err
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	if !waitFor(15*time.Second, func() bool { return redisPing(s.addr) }) {
		s.stop()
		return nil, fmt.Errorf("redis-server did not answer PING on %s (log: %s)", s.addr, s.log.Name())
	}
	return s, nil
}

func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// peer runs the peers scenario against one system: tputUsers SSE users
// held idle over a few heartbeats (memory per connection); publish-to-
// receipt latency at latRate, open loop; then one message per request as
// fast as singleConc publishers can.
func (b *bench) peer(sys peerSystem) (*Result, error) {
	ps, err := sys.start(b)
	if err != nil {
		return nil, err
	}
	defer ps.stop()
	sc := b.scenarioOn("peers/"+sys.key, ps.transport, []string{ps.conn}, ps.publish, ps.procs(), b.sz.tputUsers)
	sc.Secret, sc.APIKey = ps.secret, benchAPIKey
	sc.Settle = b.sz.settle
	sc.Phases = []Publish{
		{Name: "latency", Via: ps.via, Batch: 1, Concurrency: latConc, Rate: b.sz.latRate, Messages: int(b.sz.latRate * b.sz.latFor.Seconds()), Duration: 2 * b.sz.latFor},
		{Name: "single", Via: ps.via, Batch: 1, Concurrency: b.sz.singleConc, Messages: b.sz.maxMessages, Duration: b.sz.phaseFor},
	}
	return Run(sc)
}

// peerVersions names the peers' versions for the columns: Centrifugo's
// module version from its build information (a go-installed binary
// reports 0.0.0 itself), Redis's from redis-server --version.
func peerVersions(binDir string) (centrifugo, redis string) {
	if bi, err := buildinfo.ReadFile(filepath.Join(binDir, "centrifugo")); err == nil {
		centrifugo = bi.Main.Version
	}
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				redis = v
			}
		}
	}
	return centrifugo, redis
}

// peerGroups returns the peers group's systems that can run here (and are
// selected by only), noting each one skipped and how to install what it
// lacks. RIG-Go's columns run only beside a peer, except in the smoke
// run, which checks the harness without needing the peers, or when -only
// names one.
func (b *bench) peerGroups(only string, isSmoke bool, m Machine) []peerSystem {
	var rig, peers []peerSystem
	for _, sys := range peerSystems() {
		if !selected(only, "peers/"+sys.key) {
			continue
		}
		b.peerCols[sys.key] = strings.NewReplacer("{centrifugo}", or(m.Centrifugo, "?"), "{redis}", or(m.Redis, "?")).Replace(sys.name)
		if isRIG(sys.key) {
			rig = append(rig, sys)
			continue
		}
		if why := sys.missing(b); why != "" {
			b.note(fmt.Sprintf("peers/%s: %s", sys.key, why))
			continue
		}
		peers = append(peers, sys)
	}
	named := strings.Split(only, ",")
	var out []peerSystem
	for _, sys := range rig {
		if len(peers) > 0 || isSmoke || slices.Contains(named, "peers/"+sys.key) {
			out = append(out, sys)
		} else {
			b.note("peers/" + sys.key + ": no peer to compare with")
		}
	}
	return append(out, peers...)
}

// isRIG says whether a peers column is one of RIG-Go's.
func isRIG(key string) bool { return key == "rig" || strings.HasPrefix(key, "rig-") }

func (b *bench) note(s string) {
	b.notes = append(b.notes, s)
	fmt.Fprintf(b.log, "bench: skipped %s\n", s)
}

// peerRun is one run of one system in the peers group, with its phases.
type peerRun struct {
	res             *Result
	latency, single *PhaseResult
}

func (b *bench) peerRuns(key string) []peerRun {
	var out []peerRun
	for _, r := range b.results("peers/" + key) {
		out = append(out, peerRun{res: r, latency: phaseOf(r, "latency"), single: phaseOf(r, "single")})
	}
	return out
}

// memPerConn is the RSS growth per connection of the process holding the
// connections, and of all server processes, in KiB.
func (pr peerRun) memPerConn() (holder, all float64, ok bool) {
	r := pr.res
	if r == nil || len(r.Idle) == 0 || r.Connect.OK == 0 {
		return 0, 0, false
	}
	var sum int64
	for _, u := range r.Idle {
		sum += u.RSSAfter - u.RSSBefore
	}
	n := float64(r.Connect.OK) * 1024
	return float64(r.Idle[0].RSSAfter-r.Idle[0].RSSBefore) / n, float64(sum) / n, true
}

// cpuPerMessage is the single phase's server CPU per delivered message in
// µs, over all server processes and per process.
func (pr peerRun) cpuPerMessage() (total float64, each []string, ok bool) {
	ph := pr.single
	if ph == nil || ph.Received == 0 {
		return 0, nil, false
	}
	for _, u := range ph.Procs {
		us := u.CPUSeconds * 1e6 / float64(ph.Received)
		total += us
		each = append(each, fmt.Sprintf("%s %.0f µs", u.Name, us))
	}
	return total, each, true
}

// lateMs is the schedule lag (p99) past which an open-loop phase did not
// offer a steady rate, whatever its average: the publishers (or the
// machine) could not keep up, and the latencies measured are of bursts.
const lateMs = 1.0

// peersTable renders the peers group side by side: a column per system,
// each cell every run's figure.
func (b *bench) peersTable() string {
	var keys []string
	for _, sys := range peerSystems() {
		if len(b.results("peers/"+sys.key)) > 0 {
			keys = append(keys, sys.key)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	var w strings.Builder
	w.WriteString("| |")
	for _, k := range keys {
		w.WriteString(" " + b.peerCols[k] + " |")
	}
	w.WriteString("\n|---|" + strings.Repeat("---|", len(keys)) + "\n")
	row := func(label string, cell func(peerRun) string) {
		w.WriteString("| " + label + " |")
		for _, k := range keys {
			var runs []string
			for _, pr := range b.peerRuns(k) {
				c := "failed"
				if pr.res != nil {
					c = cell(pr)
				}
				runs = append(runs, c)
			}
			w.WriteString(" " + strings.Join(runs, " · ") + " |")
		}
		w.WriteString("\n")
	}
	row(fmt.Sprintf("idle memory per SSE connection (RSS growth of the process holding them ÷ connections, after %s idle with a heartbeat every %s; of all server processes in brackets)",
		b.sz.settle, b.sz.heartbeat), func(pr peerRun) string {
		h, all, ok := pr.memPerConn()
		if !ok {
			return "failed"
		}
		s := fmt.Sprintf("%.1f KiB (%.1f)", h, all)
		if pr.res.Connect.OK < pr.res.Connections {
			s += fmt.Sprintf(", %d of %d connected", pr.res.Connect.OK, pr.res.Connections)
		}
		return s
	})
	row(fmt.Sprintf("delivered/s, %d publishers, one message per request, closed loop, %s", b.sz.singleConc, b.sz.phaseFor), func(pr peerRun) string {
		if pr.single == nil {
			return "failed"
		}
		return fmt.Sprintf("%.0f", pr.single.DeliveredRate)
	})
	row("server CPU per delivered message, all server processes (that phase)", func(pr peerRun) string {
		t, _, ok := pr.cpuPerMessage()
		if !ok {
			return "failed"
		}
		return fmt.Sprintf("%.0f µs", t)
	})
	row("… per server process", func(pr peerRun) string {
		_, each, ok := pr.cpuPerMessage()
		if !ok {
			return "failed"
		}
		return strings.Join(each, ", ")
	})
	row("load generator CPU per delivered message (publishers and clients; that phase): the client work compared", func(pr peerRun) string {
		if pr.single == nil || pr.single.Received == 0 {
			return "failed"
		}
		return fmt.Sprintf("%.0f µs", pr.single.LoadgenCPU*1e6/float64(pr.single.Received))
	})
	row(fmt.Sprintf("publish-to-receipt p50 / p99 / p99.9, open loop at %.0f/s for %s", b.sz.latRate, b.sz.latFor), func(pr peerRun) string {
		if pr.latency == nil {
			return "failed"
		}
		return fmt.Sprintf("%.2f / %.2f / %.2f ms", pr.latency.P50ms, pr.latency.P99ms, pr.latency.P999ms)
	})
	row("… send rate achieved (requests' lag behind the schedule: p99 / max)", func(pr peerRun) string {
		if pr.latency == nil {
			return "failed"
		}
		s := fmt.Sprintf("%.0f/s (%.2f / %.1f ms)", pr.latency.SendRate, pr.latency.LagP99ms, pr.latency.LagMaxMs)
		if pr.latency.LagP99ms > lateMs {
			s += " **behind schedule**"
		}
		return s
	})
	row("lost / duplicated, both phases", func(pr peerRun) string {
		var lost, dup uint64
		for _, ph := range pr.res.Phases {
			lost, dup = lost+ph.Lost, dup+ph.Duplicates
		}
		return fmt.Sprintf("%d / %d", lost, dup)
	})
	return w.String()
}

// peerTargets checks issue 17's targets: RIG-Go's p99 at the open-loop
// rate against Centrifugo + Redis's (same run) and 2.5 ms, and its CPU
// per delivered message against Centrifugo's memory engine's.
func (b *bench) peerTargets() []target {
	var ts []target
	for _, sys := range peerSystems() {
		if isRIG(sys.key) {
			ts = append(ts, b.rigTargets(sys.key)...)
		}
	}
	return ts
}

// rigTargets checks the targets for one of RIG-Go's columns.
func (b *bench) rigTargets(key string) []target {
	rig := b.peerRuns(key)
	if len(rig) == 0 {
		return nil
	}
	name := "RIG-Go (" + key + ")"
	var ts []target
	redis, mem := b.peerRuns("centrifugo-redis"), b.peerRuns("centrifugo")
	t := target{name: fmt.Sprintf("peers: p99 publish-to-receipt at %.0f/s, %d SSE users, %s against Centrifugo + Redis", b.sz.latRate, b.sz.tputUsers, name),
		goal: "≤ 1.5 × Centrifugo + Redis's and ≤ 2.5 ms", pass: true}
	worst := 0.0
	for i, r := range rig {
		limit, against := 2.5, "Centrifugo + Redis not run"
		if i < len(redis) && redis[i].latency != nil {
			limit = min(limit, 1.5*redis[i].latency.P99ms)
			against = fmt.Sprintf("Centrifugo + Redis %.2f ms", redis[i].latency.P99ms)
		} else {
			t.pass = false
		}
		if r.latency == nil {
			t.runs, t.pass = append(t.runs, "failed"), false
			continue
		}
		late := ""
		if r.latency.LagP99ms > lateMs {
			late = fmt.Sprintf(" (behind schedule: lag p99 %.1f ms)", r.latency.LagP99ms)
		}
		t.runs = append(t.runs, fmt.Sprintf("RIG-Go %.2f ms at %.0f/s%s, %s: limit %.2f ms", r.latency.P99ms, r.latency.SendRate, late, against, limit))
		if r.latency.P99ms > limit {
			t.pass = false
			if over := r.latency.P99ms - limit; over > worst {
				worst = over
				t.gap = fmt.Sprintf("by %.2f ms (%.0f%%)", over, 100*over/limit)
			}
		}
	}
	ts = append(ts, t)
	t = target{name: fmt.Sprintf("peers: server CPU per delivered message, %d publishers, %s against Centrifugo's memory engine", b.sz.singleConc, name),
		goal: "≤ Centrifugo memory engine's", pass: true}
	worst = 0
	for i, r := range rig {
		us, _, ok := r.cpuPerMessage()
		if !ok {
			t.runs, t.pass = append(t.runs, "failed"), false
			continue
		}
		peer, pok := 0.0, false
		if i < len(mem) {
			peer, _, pok = mem[i].cpuPerMessage()
		}
		if !pok {
			t.runs, t.pass = append(t.runs, fmt.Sprintf("RIG-Go %.0f µs, Centrifugo not run", us)), false
			continue
		}
		t.runs = append(t.runs, fmt.Sprintf("RIG-Go %.0f µs, Centrifugo %.0f µs", us, peer))
		if us > peer {
			t.pass = false
			if over := us - peer; over > worst {
				worst = over
				t.gap = fmt.Sprintf("by %.0f µs (%.0f%%)", over, 100*over/peer)
			}
		}
	}
	return append(ts, t)
}
