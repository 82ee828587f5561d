package edge

import (
	"fmt"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/hub"
	"github.com/rig-go/rig/internal/rig"
)

// TestHeartbeatGap: a part of the hub is written in chunks spread over its
// share of the interval, never past it; a part of one chunk, or a share
// too short for a timer, is written at once.
func TestHeartbeatGap(t *testing.T) {
	period := 5 * time.Second / hub.Shards // 78 ms: the bench's HEARTBEAT_INTERVAL=5s
	for _, c := range []struct {
		period time.Duration
		n      int
		want   time.Duration
	}{
		{period, 156, period / 20}, // 10,000 clients: 20 chunks of 8, 3.9 ms apart
		{period, 9, period / 2},
		{period, heartbeatChunk, 0},
		{period, 1, 0},
		{period, 0, 0},
		{time.Millisecond, 156, 0}, // 64 ms interval: 50 µs apart is too short
	} {
		gap := heartbeatGap(c.period, c.n)
		if gap != c.want {
			t.Errorf("heartbeatGap(%v, %d) = %v, want %v", c.period, c.n, gap, c.want)
		}
		if chunks := (c.n + heartbeatChunk - 1) / heartbeatChunk; chunks > 1 && time.Duration(chunks-1)*gap >= c.period {
			t.Errorf("%d clients: %d pauses of %v outlast the part's %v", c.n, chunks-1, gap, c.period)
		}
	}
}

// TestHeartbeatRound: every client gets a heartbeat each interval, its
// part written a chunk at a time.
func TestHeartbeatRound(t *testing.T) {
	const interval = 1280 * time.Millisecond // 20 ms a part: chunks 2.5 ms apart at 64 clients a part
	s, _ := newTestEdgeWith(t, func(c *config.Edge) { c.HeartbeatInterval = interval })
	recs := registerRecorders(t, s, 2000, "hb-%d")
	beats := func(r *recorder) int {
		r.tr.mu.Lock()
		defer r.tr.mu.Unlock()
		n := 0
		for _, ev := range r.tr.evs {
			if ev.Kind == rig.KindHeartbeat {
				n++
			}
		}
		return n
	}
	// Two rounds, and one more for a slow machine.
	deadline := time.Now().Add(3*interval + 5*time.Second)
	for i, r := range recs {
		check.For(t, time.Until(deadline), 10*time.Millisecond, func() error {
			if n := beats(r); n < 2 {
				return fmt.Errorf("client %d of %d: %d heartbeats", i, len(recs), n)
			}
			return nil
		})
	}
}
