// Command loadgen is RIG-Go's load generator. It opens many SSE, WebSocket
// or long-poll connections to one or more edges (or Centrifugo's
// unidirectional SSE connections, to compare with it), from several worker
// processes (a process here may hold at most 20,000 open files) and
// several loopback source addresses (one address has about 28,000
// ephemeral ports); publishes through ingest (one message per request, or
// batched), straight to NATS or through Centrifugo's HTTP API, closed loop or at a set rate; and measures
// connect rate, publish-to-receipt latency, delivered messages per second,
// messages lost, and each server process's memory and CPU from /proc.
//
//	loadgen run   [flags]   one scenario against servers already running
//	loadgen bench [flags]   the standard set: starts NATS, edges and ingest (and the peers), writes docs/BENCHMARKS.md
//	loadgen worker          (internal) one worker process, driven over stdin/stdout
//
// Loopback only; every run is bounded in connections, messages and time.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: loadgen run|bench [flags] (see -h)")
	}
	switch args[0] {
	case "worker":
		return runWorker()
	case "run":
		return runOne(args[1:])
	case "bench":
		return runBench(args[1:])
	}
	return fmt.Errorf("unknown command %q: expected run or bench", args[0])
}

// loopback reports whether host:port is on this machine's loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// runOne is `loadgen run`: one scenario with one publishing phase against
// servers already running; prints the result as JSON.
func runOne(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var sc Scenario
	var ph Publish
	var edges, procs string
	fs.StringVar(&sc.Transport, "transport", "sse", "sse, websocket, longpoll, or centrifugo-sse (Centrifugo's /connection/uni_sse)")
	fs.StringVar(&edges, "edges", "127.0.0.1:4000", "comma-separated edge host:port list; connections are spread over them")
	fs.StringVar(&sc.Ingest, "ingest", "127.0.0.1:4010", "ingest host:port (-via http)")
	fs.StringVar(&sc.NATSURL, "nats", "nats://127.0.0.1:4222", "NATS URL (-via nats)")
	fs.IntVar(&sc.Users, "users", 1000, "distinct users")
	fs.IntVar(&sc.Devices, "devices", 1, "connections per user")
	fs.IntVar(&sc.PerWorker, "per-worker", 15000, "most connections per worker process (a process may have at most 20,000 open files)")
	fs.IntVar(&sc.SourceIPs, "source-ips", 8, "loopback source addresses to spread connections over (127.0.0.2, ...)")
	fs.StringVar(&sc.Secret, "secret", os.Getenv("JWT_SECRET_KEY"), "JWT secret the edges check (default $JWT_SECRET_KEY; Centrifugo's client.token.hmac_secret_key)")
	fs.StringVar(&sc.APIKey, "api-key", "", "Centrifugo's http_api.key (-via centrifugo)")
	fs.IntVar(&sc.ConnectConcurrency, "connect-concurrency", 100, "connects in flight per worker")
	fs.DurationVar(&sc.ConnectTimeout, "connect-timeout", 30*time.Second, "bound of one connect")
	fs.DurationVar(&sc.Settle, "settle", 0, "idle time after connecting, before memory is read")
	fs.DurationVar(&sc.DrainTimeout, "drain-timeout", 5*time.Second, "after publishing, how long delivery may stall before what is missing counts as lost")
	fs.StringVar(&ph.Via, "via", "http", "publish through ingest (http), straight to JetStream (nats), or through Centrifugo's POST /api/publish (centrifugo; -ingest is its address)")
	fs.IntVar(&ph.Batch, "batch", 1, "messages per request (http: a JSON array when > 1)")
	fs.IntVar(&ph.Concurrency, "concurrency", 64, "requests in flight")
	fs.Float64Var(&ph.Rate, "rate", 0, "messages per second (open loop); 0: as fast as possible (closed loop)")
	fs.IntVar(&ph.Messages, "messages", 10000, "messages to publish (0: only connect)")
	fs.DurationVar(&ph.Duration, "duration", time.Minute, "stop publishing after this")
	fs.IntVar(&ph.Pad, "pad", 0, "payload padding in bytes")
	fs.StringVar(&procs, "procs", "", "server processes to measure, as name=pid,name=pid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sc.Secret == "" {
		return fmt.Errorf("-secret (or JWT_SECRET_KEY) is required")
	}
	if sc.Users < 1 || sc.Users*max(sc.Devices, 1) > 200_000 {
		return fmt.Errorf("-users × -devices must be from 1 to 200,000")
	}
	if ph.Via == "centrifugo" && ph.Batch > 1 {
		return fmt.Errorf("-batch %d: -via centrifugo publishes one message per request", ph.Batch)
	}
	sc.Name, ph.Name = "run", "publish"
	sc.Edges = strings.Split(edges, ",")
	for _, a := range append([]string{sc.Ingest, strings.TrimPrefix(sc.NATSURL, "nats://")}, sc.Edges...) {
		if !loopback(a) {
			return fmt.Errorf("%q: loopback addresses only (127.x.x.x or localhost)", a)
		}
	}
	for _, p := range strings.Split(procs, ",") {
		if name, pid, ok := strings.Cut(p, "="); ok {
			n, err := strconv.Atoi(pid)
			if err != nil {
				return fmt.Errorf("-procs %q: %w", p, err)
			}
			sc.Procs = append(sc.Procs, Proc{Name: name, PID: n})
		}
	}
	if ph.Messages > 0 {
		sc.Phases = []Publish{ph}
	}
	sc.Log = os.Stderr
	res, err := Run(sc)
	if res != nil {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	}
	return err
}
