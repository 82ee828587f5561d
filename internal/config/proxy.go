package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rig-go/rig/internal/route"
)

// Proxy is the edge's API gateway: its routes at start, its timeout and
// RIG's rate limit.
type Proxy struct {
	File        string        // PROXY_CONFIG_FILE: a path, or the JSON itself
	APIs        []*route.API  // the routes File defines, validated
	RecvTimeout time.Duration // PROXY_RECV_TIMEOUT
	RateLimit   RateLimit
	// Getenv resolves the use_env targets of routes that arrive from the
	// cluster while the edge runs (those of File are checked at start).
	Getenv func(string) string
}

// RateLimit is RIG's token bucket per upstream, and per client IP.
type RateLimit struct {
	Enabled       bool          // RATE_LIMIT_ENABLED
	PerIP         bool          // RATE_LIMIT_PER_IP
	AvgRatePerSec int           // RATE_LIMIT_AVG_RATE_PER_SEC
	BurstSize     int           // RATE_LIMIT_BURST_SIZE
	SweepInterval time.Duration // RATE_LIMIT_SWEEP_INTERVAL_MS; 0: never
}

func (s *Set) proxy(p *Proxy, getenv func(string) string) {
	s.String(&p.File, "PROXY_CONFIG_FILE", "", "API gateway routes at start: the path of a JSON file with a list of RIG API definitions, or that JSON itself.")
	s.Millis(&p.RecvTimeout, "PROXY_RECV_TIMEOUT", 5*time.Second, time.Millisecond,
		"How long the gateway waits for an upstream to accept the connection, to answer, and for each next piece of a streamed answer (502/504 after it); milliseconds as in RIG, or a duration such as 5s.")
	s.Bool(&p.RateLimit.Enabled, "RATE_LIMIT_ENABLED", false, "Rate-limit proxied requests (429 when exceeded).")
	s.Bool(&p.RateLimit.PerIP, "RATE_LIMIT_PER_IP", true, "Limit each client IP separately per upstream; false: one limit per upstream.")
	s.Int(&p.RateLimit.AvgRatePerSec, "RATE_LIMIT_AVG_RATE_PER_SEC", 10_000, 1, 1_000_000_000, "Requests per second a bucket allows on average.")
	s.Int(&p.RateLimit.BurstSize, "RATE_LIMIT_BURST_SIZE", 5_000, 1, 1_000_000_000, "Requests a bucket allows at once (its size).")
	s.Millis(&p.RateLimit.SweepInterval, "RATE_LIMIT_SWEEP_INTERVAL_MS", 5*time.Second, 0,
		"How often buckets that have been idle long enough to refill are dropped (milliseconds, or a duration); 0 never drops them.")
	p.Getenv = getenv
	s.Check(p.load)
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

// load reads and validates the route file, so that a bad one stops the edge
// at start with one line naming the API, the field and the problem.
func (p *Proxy) load() error {
	text := strings.TrimSpace(p.File)
	if text == "" {
		return nil
	}
	shown := strconv.Quote(p.File)
	data := []byte(text)
	// RIG took the JSON itself as well as a path.
	if text[0] == '[' || text[0] == '{' {
		shown = "(JSON)"
	} else {
		b, err := os.ReadFile(p.File)
		if err != nil {
			return fmt.Errorf("invalid PROXY_CONFIG_FILE=%s: %w", shown, err)
		}
		data = b
	}
	apis, err := route.ParseList(data)
	if err != nil {
		return fmt.Errorf("invalid PROXY_CONFIG_FILE=%s: %w", shown, err)
	}
	for _, a := range apis {
		if _, err := a.Proxy.Base(p.Getenv); err != nil {
			return fmt.Errorf("invalid PROXY_CONFIG_FILE=%s: %w", shown, &route.Error{API: a.ID, Field: "proxy.target_url", Problem: err.Error()})
		}
	}
	p.APIs = apis
	return nil
}
