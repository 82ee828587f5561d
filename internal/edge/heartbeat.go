package edge

import (
	"context"
	"time"

	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/hub"
	"github.com/rig-go/rig/internal/rig"
)

// heartbeat is shared by every connection: its encodings are computed once.
var heartbeat = &rig.Event{Kind: rig.KindHeartbeat, Data: []byte("{}")}

const (
	// heartbeatWriters write the heartbeats of idle clients whose transport
	// writes only on a goroutine of its own (WebSocket, Phoenix; SSE is
	// written by the round itself, see client.Client.Direct). A client's
	// own writer would be a new goroutine per client per round: at 15,000
	// clients that is 15,000 stacks at once, a few KiB of memory each that
	// the process keeps.
	heartbeatWriters = 8
	// heartbeatWait is how long a round waits for a free writer (all may
	// be stuck on clients that stopped reading, each for up to
	// CLIENT_WRITE_TIMEOUT) before handing the rest of the round to the
	// clients' own writers.
	heartbeatWait = 100 * time.Millisecond
)

// heartbeatChunk is how many heartbeats a round writes at once. A part of
// the hub is written a chunk at a time, the chunks spread over the part's
// share of the interval: a part is 1/64 of the clients (156 of 10,000), and
// written at once it kept the lanes and the clients' readers busy for
// milliseconds, every interval/64, which is what the messages arriving
// meanwhile waited for (p99 publish-to-receipt at 2,000/s: 2.4 to 3.7 ms
// with the part at once, 0.8 to 2.1 ms with no heartbeats).
const heartbeatChunk = 8

// heartbeatGap is the pause between the chunks of a part of n clients
// written over period; 0 when the part is one chunk, or the pause would
// be too short for a timer to keep.
func heartbeatGap(period time.Duration, n int) time.Duration {
	chunks := (n + heartbeatChunk - 1) / heartbeatChunk
	if chunks <= 1 {
		return 0
	}
	gap := period / time.Duration(chunks)
	if gap < 200*time.Microsecond {
		return 0
	}
	return gap
}

// heartbeats sends the heartbeat event to every client each interval, which
// keeps proxies from timing idle streams out and lets transports probe the
// client (WebSocket pings). The round is spread over the interval, a part
// of the hub at a time and a chunk of a part at a time, rather than
// written in one burst: 10,000 writes at once would delay the messages
// that arrive meanwhile.
func (s *Server) heartbeats(ctx context.Context) {
	work := make(chan *client.Client)
	for range heartbeatWriters {
		go func() {
			for c := range work {
				c.DeliverHere(heartbeat)
			}
		}()
	}
	defer close(work)
	period := s.cfg.HeartbeatInterval / hub.Shards
	t := time.NewTicker(period)
	defer t.Stop()
	wait := time.NewTimer(0)
	pause := time.NewTimer(0)
	stuck := false // this round found every writer stuck
	var part []*client.Client
	send := func(c *client.Client) {
		if stuck || c.Direct() {
			// A direct transport (SSE) is written here without
			// waiting, at the cost of no writer's wake-up.
			c.Deliver(heartbeat)
			return
		}
		select {
		case work <- c:
			return
		default:
		}
		wait.Reset(heartbeatWait)
		select {
		case work <- c:
		case <-wait.C:
			stuck = true
			c.Deliver(heartbeat)
		}
	}
	for i := 0; ; i = (i + 1) % hub.Shards {
		if i == 0 {
			stuck = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		part = s.hub.AppendIn(i, part[:0])
		gap := heartbeatGap(period, len(part))
		for from := 0; from < len(part); from += heartbeatChunk {
			if from > 0 && gap > 0 {
				pause.Reset(gap)
				select {
				case <-ctx.Done():
					return
				case <-pause.C:
				}
			}
			for _, c := range part[from:min(from+heartbeatChunk, len(part))] {
				send(c)
			}
		}
		clear(part) // no closed client kept until the next part
	}
}
