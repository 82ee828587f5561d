package edge

import (
	"context"
	"time"

	"github.com/rig-go/rig/internal/hub"
	"github.com/rig-go/rig/internal/rig"
)

// heartbeat is shared by every connection: its encodings are computed once.
var heartbeat = &rig.Event{Kind: rig.KindHeartbeat, Data: []byte("{}")}

// heartbeats sends the heartbeat event to every client each interval, which
// keeps proxies from timing idle streams out and lets transports probe the
// client (WebSocket pings).
func (s *Server) heartbeats(ctx context.Context) {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.hub.Each(func(c hub.Client) { c.Deliver(heartbeat) })
		}
	}
}
