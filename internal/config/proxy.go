package config

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rig-go/rig/internal/route"
)

// Proxy is the edge's API gateway: its routes, its timeout and RIG's
// rate limit.
type Proxy struct {
	Routes
	RecvTimeout time.Duration // PROXY_RECV_TIMEOUT
	RateLimit   RateLimit
}

// Routes is what both binaries know of the gateway's routes: the route
// file, and the rules a route must follow, which ingest applies when a
// route is posted and the edge when it applies one and when it connects.
type Routes struct {
	File string       // PROXY_CONFIG_FILE: a path, or the JSON itself
	APIs []*route.API // the routes File defines, validated
	// AllowFileOverride (PROXY_ALLOW_FILE_ROUTE_OVERRIDE) lets a runtime
	// route (/v1/apis) replace the file's route of the same id; off, the
	// file's routes are read-only.
	AllowFileOverride bool
	Guard             route.Guard
	// Getenv resolves use_env targets: only the variables of
	// PROXY_USE_ENV_ALLOWLIST, read once at start; nil on ingest, which
	// does not resolve another process's variables.
	Getenv func(string) string
}

// FileRoute reports whether id is the id of one of the route file's APIs.
func (r *Routes) FileRoute(id string) bool {
	for _, a := range r.APIs {
		if a.ID == id {
			return true
		}
	}
	return false
}

// RateLimit is RIG's token bucket per upstream, and per client IP.
type RateLimit struct {
	Enabled       bool          // RATE_LIMIT_ENABLED
	PerIP         bool          // RATE_LIMIT_PER_IP
	AvgRatePerSec int           // RATE_LIMIT_AVG_RATE_PER_SEC
	BurstSize     int           // RATE_LIMIT_BURST_SIZE
	SweepInterval time.Duration // RATE_LIMIT_SWEEP_INTERVAL_MS; 0: never
}

func (s *Set) proxy(p *Proxy, getenv func(string) string, own ...*int) {
	s.routes(&p.Routes, getenv, true, own...)
	s.Millis(&p.RecvTimeout, "PROXY_RECV_TIMEOUT", 5*time.Second, time.Millisecond,
		"How long the gateway waits for an upstream to accept the connection, to answer, and for each next piece of a streamed answer (502/504 after it); milliseconds as in RIG, or a duration such as 5s.")
	s.Bool(&p.RateLimit.Enabled, "RATE_LIMIT_ENABLED", false, "Rate-limit proxied requests (429 when exceeded).")
	s.Bool(&p.RateLimit.PerIP, "RATE_LIMIT_PER_IP", true, "Limit each client IP separately per upstream; false: one limit per upstream.")
	s.Int(&p.RateLimit.AvgRatePerSec, "RATE_LIMIT_AVG_RATE_PER_SEC", 10_000, 1, 1_000_000_000, "Requests per second a bucket allows on average.")
	s.Int(&p.RateLimit.BurstSize, "RATE_LIMIT_BURST_SIZE", 5_000, 1, 1_000_000_000, "Requests a bucket allows at once (its size).")
	s.Millis(&p.RateLimit.SweepInterval, "RATE_LIMIT_SWEEP_INTERVAL_MS", 5*time.Second, 0,
		"How often buckets that have been idle long enough to refill are dropped (milliseconds, or a duration); 0 never drops them.")
}

// defaultStackPorts are the default ports of the stack's servers: the
// edge's INBOUND_PORT and METRICS_PORT, ingest's API_PORT, and NATS's
// client, cluster and monitoring ports (monitoring lists every client
// connection and subscription, so every connected user).
const defaultStackPorts = "4000,4001,4010,4222,6222,8222"

// routes registers the settings of Routes. The edge resolves use_env
// (resolveEnv); own are the process's own ports, refused as targets.
func (s *Set) routes(r *Routes, getenv func(string) string, resolveEnv bool, own ...*int) {
	s.String(&r.File, "PROXY_CONFIG_FILE", "", "API gateway routes at start: the path of a JSON file with a list of RIG API definitions, or that JSON itself. Give ingest the edges' file too, so that it refuses (409) runtime changes to these routes.")
	s.Bool(&r.AllowFileOverride, "PROXY_ALLOW_FILE_ROUTE_OVERRIDE", false, "Let a route added at runtime (/v1/apis) replace the route file's route of the same id, and compete with the file's by specificity; off, the file's routes are read-only (409) and matched first.")
	s.List(&r.Guard.UseEnv, "PROXY_USE_ENV_ALLOWLIST", "", "Environment variables a route's use_env may name (comma-separated); others are refused (400). Empty: use_env is refused.")
	s.Bool(&r.Guard.AllowLocal, "PROXY_ALLOW_LOCAL_TARGETS", false, "Accept route targets on loopback, link-local and unspecified addresses (127.0.0.0/8, ::1, 169.254.0.0/16, fe80::/10, 0.0.0.0), also host names that resolve to one; refused (400) by default.")
	var allowed, ports []string
	s.List(&allowed, "PROXY_ALLOWED_TARGETS", "", "Route targets (host:port, comma-separated) accepted although they are local addresses or on PROXY_STACK_PORTS.")
	s.List(&ports, "PROXY_STACK_PORTS", defaultStackPorts, "Ports of the stack's own servers (edges' INBOUND_PORT and METRICS_PORT, ingest's API_PORT, NATS's client, cluster and monitoring ports), refused as route targets on any host unless in PROXY_ALLOWED_TARGETS; this process's own ports are always refused.")
	s.Check(func() error {
		for _, a := range allowed {
			host, p, err := net.SplitHostPort(a)
			n, perr := strconv.Atoi(p)
			if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
				return &Error{Setting: "PROXY_ALLOWED_TARGETS", Value: strings.Join(allowed, ","), Expected: fmt.Sprintf("a comma-separated list of host:port, such as localhost:8080 or [::1]:8080; %q is not one", a)}
			}
			r.Guard.Allowed = append(r.Guard.Allowed, route.HostPort(host, n))
		}
		for _, p := range ports {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return &Error{Setting: "PROXY_STACK_PORTS", Value: strings.Join(ports, ","), Expected: fmt.Sprintf("a comma-separated list of port numbers from 1 to 65535; %q is not one", p)}
			}
			r.Guard.Ports = append(r.Guard.Ports, n)
		}
		for _, p := range own {
			if *p != 0 {
				r.Guard.Ports = append(r.Guard.Ports, *p)
			}
		}
		for _, name := range r.Guard.UseEnv {
			if !route.EnvName(name) {
				return &Error{Setting: "PROXY_USE_ENV_ALLOWLIST", Value: strings.Join(r.Guard.UseEnv, ","), Expected: fmt.Sprintf("a comma-separated list of environment variable names; %q is not one", name)}
			}
		}
		if resolveEnv {
			// Read once, now: nothing reads the environment later, and no
			// other variable can be reached through a route.
			env := make(map[string]string, len(r.Guard.UseEnv))
			for _, name := range r.Guard.UseEnv {
				env[name] = getenv(name)
			}
			r.Getenv = func(name string) string { return env[name] }
		}
		r.Guard.Resolve = route.LookupHost
		return r.load()
	})
}

// Millis registers a duration given in milliseconds as RIG did (5000), or as
// a Go duration (5s), at least min.
func (s *Set) Millis(p *time.Duration, env string, def, min time.Duration, usage string) {
	exp := fmt.Sprintf("milliseconds (5000) or a duration (5s) of at least %s", min)
	s.add(env, strconv.FormatInt(def.Milliseconds(), 10), usage, exp, func(v string) (string, bool) {
		v = strings.TrimSpace(v)
		d, err := time.ParseDuration(v)
		if n, nerr := strconv.ParseInt(v, 10, 64); nerr == nil && n >= 0 && n <= 1<<40 {
			d, err = time.Duration(n)*time.Millisecond, nil
		}
		if err != nil || d < min {
			return exp, false
		}
		*p = d
		return "", true
	})
}

// load reads and validates the route file, so that a bad one stops the
// binary at start with one line naming the API, the field and the
// problem.
func (r *Routes) load() error {
	text := strings.TrimSpace(r.File)
	if text == "" {
		return nil
	}
	shown := strconv.Quote(r.File)
	data := []byte(text)
	// RIG took the JSON itself as well as a path.
	if text[0] == '[' || text[0] == '{' {
		shown = "(JSON)"
	} else {
		b, err := os.ReadFile(r.File)
		if err != nil {
			return fmt.Errorf("invalid PROXY_CONFIG_FILE=%s: %w", shown, err)
		}
		data = b
	}
	apis, err := route.ParseList(data)
	if err != nil {
		return fmt.Errorf("invalid PROXY_CONFIG_FILE=%s: %w", shown, err)
	}
	guard := r.Guard.Preload(apis, r.Getenv)
	for _, a := range apis {
		if err := guard.Check(a, r.Getenv); err != nil {
			return fmt.Errorf("invalid PROXY_CONFIG_FILE=%s: %w", shown, err)
		}
		if r.Getenv == nil {
			continue
		}
		if _, err := a.Proxy.Base(r.Getenv); err != nil {
			return fmt.Errorf("invalid PROXY_CONFIG_FILE=%s: %w", shown, &route.Error{API: a.ID, Field: "proxy.target_url", Problem: err.Error()})
		}
	}
	r.APIs = apis
	return nil
}
