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

// heartbeats sends the heartbeat event to every client each interval, which
// keeps proxies from timing idle streams out and lets transports probe the
// client (WebSocket pings). The round is spread over the interval, a part
// of the hub at a time, rather than written in one burst: 10,000 writes at
// once would delay the messages that arrive meanwhile.
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
	t := time.NewTicker(s.cfg.HeartbeatInterval / hub.Shards)
	defer t.Stop()
	wait := time.NewTimer(0)
	stuck := false // this round found every writer stuck
	for part := 0; ; part = (part + 1) % hub.Shards {
		if part == 0 {
			stuck = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.hub.EachIn(part, func(c *client.Client) {
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
			})
		}
	}
}
