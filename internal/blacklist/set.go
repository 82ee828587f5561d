package blacklist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/ready"
	"github.com/rig-go/rig/internal/retry"
)

// initialLoadTimeout bounds reading the bucket's current entries; past it
// the watch is started over.
const initialLoadTimeout = 15 * time.Second

// sweepInterval is how often expired entries leave the local set. Listed
// checks the expiry itself, so sweeping only frees memory.
const sweepInterval = 30 * time.Second

// Set is an edge's local copy of the blacklist, kept by watching the bucket:
// its current entries first, then every change. Checking a session is a map
// lookup. An entry stops counting at its stored expiry even if the marker
// JetStream writes when the entry's TTL ends never arrives.
type Set struct {
	bucket   *Bucket
	nc       *nats.Conn
	log      *slog.Logger
	onListed func(jti string)

	mu sync.RWMutex
	m  map[string]time.Time // jti -> expiry

	state *ready.State // loaded, or why not
	loads atomic.Int64 // times the set was loaded
}

// NewSet returns an empty Set of bucket's entries over nc, which Run keeps.
// onListed is called (outside any lock) for every jti that becomes listed,
// including each one found when the set is (re)loaded; the edge closes
// that session's connections there.
func NewSet(bucket *Bucket, nc *nats.Conn, log *slog.Logger, onListed func(jti string)) *Set {
	return &Set{bucket: bucket, nc: nc, log: log, onListed: onListed, m: map[string]time.Time{},
		state: ready.New("blacklist not loaded yet")}
}

// Ready returns nil while the set mirrors the bucket, else why not: it was
// never loaded, or the watch was lost (NATS away) and is being re-synced.
// A caller must not trust Listed while Ready fails.
func (s *Set) Ready() error { return s.state.Err() }

// Listed reports whether session jti is blacklisted now.
func (s *Set) Listed(jti string) bool {
	if jti == "" {
		return false
	}
	s.mu.RLock()
	exp, ok := s.m[jti]
	s.mu.RUnlock()
	return ok && time.Now().Before(exp)
}

// Len returns the number of entries held, expired ones not yet swept included.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// Run loads the set and follows the bucket until ctx ends, loading it
// again after each loss.
func (s *Set) Run(ctx context.Context) error {
	// Losing the connection means missing changes: the watch starts over
	// from the bucket's current state once NATS is back.
	status := s.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	defer s.nc.RemoveStatusListener(status)
	sweep := time.NewTicker(sweepInterval)
	defer sweep.Stop()
	backoff := retry.Backoff{First: 50 * time.Millisecond, Max: time.Second}
	for {
		loads := s.loads.Load()
		err := s.watch(ctx, status, sweep.C)
		if ctx.Err() != nil {
			return nil
		}
		s.lose(err)
		if s.loads.Load() != loads {
			backoff.Reset() // it was loaded: retry at once
		}
		if backoff.Wait(ctx) != nil {
			return nil
		}
	}
}

// lose marks the set as not loaded because of err, logging each new reason once.
func (s *Set) lose(err error) {
	if s.state.Fail(fmt.Errorf("blacklist not loaded: %w", err)) {
		s.log.Warn("blacklist not loaded: refusing connections until it is", "bucket", BucketName, "err", err)
	}
}

var errWatchEnded = errors.New("bucket watch ended")

// watch loads the bucket's entries into a fresh set, swaps it in, then
// applies changes until the watch or the connection is lost.
func (s *Set) watch(ctx context.Context, status <-chan nats.Status, sweep <-chan time.Time) (err error) {
	for len(status) > 0 {
		<-status // from before this attempt
	}
	if !s.nc.IsConnected() {
		return fmt.Errorf("NATS not connected (%s)", s.nc.Status())
	}
	kv, err := s.bucket.KV()
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w, err := broker.WatchAll(wctx, kv)
	if err != nil {
		return s.bucket.failed(err)
	}
	// Stopping deletes the consumer with a request that, NATS being away,
	// waits for its timeout: never let it delay refusing connections or
	// the next attempt.
	defer func() { go w.Stop() }()
	defer func() {
		if ctx.Err() == nil {
			s.lose(err)
		}
	}()

	fresh := map[string]time.Time{}
	deadline := time.NewTimer(initialLoadTimeout)
	defer deadline.Stop()
	for loaded := false; !loaded; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case st := <-status:
			return fmt.Errorf("NATS %s", st)
		case <-deadline.C:
			return fmt.Errorf("reading bucket %s took over %s", BucketName, initialLoadTimeout)
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				s.bucket.Lost(errWatchEnded)
				return errWatchEnded
			case e == nil: // the current entries are all in
				loaded = true
			default:
				s.apply(fresh, e)
			}
		}
	}
	s.mu.Lock()
	s.m = fresh
	s.mu.Unlock()
	s.state.Ready()
	s.loads.Add(1)
	s.log.Info("blacklist loaded", "bucket", BucketName, "entries", len(fresh))
	// Sessions blacklisted while this edge was not watching may still be
	// connected here.
	now := time.Now()
	for jti, exp := range fresh {
		if now.Before(exp) {
			s.onListed(jti)
		}
	}

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case st := <-status:
			return fmt.Errorf("NATS %s", st)
		case <-sweep:
			s.sweep()
		case e, ok := <-w.Updates():
			if !ok {
				s.bucket.Lost(errWatchEnded)
				return errWatchEnded
			}
			if e == nil {
				continue
			}
			s.mu.Lock()
			jti, listed := s.apply(s.m, e)
			s.mu.Unlock()
			if listed {
				s.onListed(jti)
			}
		}
	}
}

// apply records one bucket change in m and reports whether it lists jti.
func (s *Set) apply(m map[string]time.Time, e jetstream.KeyValueEntry) (jti string, listed bool) {
	jti, err := SessionID(e.Key())
	if err != nil {
		s.log.Warn("ignored blacklist key not written by RIG-Go", "key", e.Key(), "err", err)
		return "", false
	}
	if e.Operation() != jetstream.KeyValuePut {
		// Deleted, purged, or its TTL ended (JetStream's marker).
		delete(m, jti)
		return jti, false
	}
	entry, err := decodeEntry(e.Value())
	if err != nil {
		s.log.Warn("ignored malformed blacklist entry", "session", jti, "err", err)
		return jti, false
	}
	if !entry.Listed(time.Now()) {
		delete(m, jti)
		return jti, false
	}
	m[jti] = entry.Expires
	return jti, true
}

func (s *Set) sweep() {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for jti, exp := range s.m {
		if !now.Before(exp) {
			delete(s.m, jti)
		}
	}
}
