package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Sampler takes a reading every interval into a History (ingest's side).
type Sampler struct {
	nc       *nats.Conn
	interval time.Duration
	timeout  time.Duration
	// edges returns the ids of the edges alive now (presence knows them
	// from their announcements): a round ends as soon as all answered.
	edges  func() []string
	ingest func() Ingest
	log    *slog.Logger

	History *History
	prev    reading
}

// NewSampler samples every interval (DefaultInterval when not positive);
// each round waits at most timeout (and less than the interval) for the
// edges' answers.
func NewSampler(nc *nats.Conn, interval, timeout time.Duration, edges func() []string, ingest func() Ingest, log *slog.Logger) *Sampler {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if timeout <= 0 {
		timeout = interval
	}
	return &Sampler{nc: nc, interval: interval, timeout: min(timeout, interval*3/4), edges: edges, ingest: ingest, log: log,
		History: NewHistory(interval)}
}

// Run samples until ctx ends.
func (s *Sampler) Run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	s.prev = s.read(ctx) // the first reading gives no rates: it only starts them
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			cur := s.read(ctx)
			if ctx.Err() != nil {
				return nil
			}
			s.History.Add(next(s.prev, cur))
			s.prev = cur
		}
	}
}

// read takes one reading: ingest's counters, then every edge's answer
// within the timeout. An edge that does not answer is left out (a gap).
func (s *Sampler) read(ctx context.Context) reading {
	r := reading{at: time.Now(), ingest: s.ingest(), edges: map[string]Snapshot{}}
	if !s.nc.IsConnected() {
		return r
	}
	inbox := s.nc.NewInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := s.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		s.log.Warn("stats not gathered", "err", fmt.Errorf("subscribe %s: %w", inbox, err))
		return r
	}
	defer sub.Unsubscribe()
	want := map[string]bool{}
	for _, id := range s.edges() {
		want[id] = true
	}
	if err := s.nc.PublishRequest(Subject, inbox, nil); err != nil {
		s.log.Warn("stats not gathered", "err", fmt.Errorf("publish %s: %w", Subject, err))
		return r
	}
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	for missing := len(want); missing > 0 || len(want) == 0; {
		select {
		case <-ctx.Done():
			return r
		case <-timer.C:
			if missing > 0 {
				s.log.Debug("stats: some edges did not answer", "expected", len(want), "answered", len(r.edges))
			}
			return r
		case m := <-ch:
			var snap Snapshot
			if err := json.Unmarshal(m.Data, &snap); err != nil || snap.Edge == "" {
				s.log.Warn("ignored malformed stats reply", "bytes", len(m.Data))
				continue
			}
			if _, dup := r.edges[snap.Edge]; !dup && want[snap.Edge] {
				missing--
			}
			r.edges[snap.Edge] = snap
		}
	}
	return r
}
