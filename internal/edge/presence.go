package edge

import (
	"sync/atomic"

	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/metrics"
	"github.com/rig-go/rig/internal/presence"
	"github.com/rig-go/rig/internal/stats"
)

// connNumbers numbers the edge's connections (client.Client.Conn), which
// orders presence listings of one jti open several times.
var connNumbers atomic.Uint64

// presenceSource answers presence queries from the hub. A user is online
// here when a connection authenticated as that user is open (a privileged
// connection watching others does not make them online).
type presenceSource struct{ s *Server }

func (p presenceSource) Users() []string {
	seen := map[string]bool{}
	users := []string{}
	p.s.hub.Each(func(c *client.Client) {
		u := c.Session.User
		if !seen[u] {
			seen[u] = true
			users = append(users, u)
		}
	})
	return users
}

func (p presenceSource) Sessions(user string) []presence.Session {
	var out []presence.Session
	p.s.hub.Each(func(c *client.Client) {
		if c.Session.User == user {
			s := p.session(c)
			s.Users = c.Users()
			out = append(out, s)
		}
	})
	return out
}

// Each leaves out Users, which Complete adds to the sessions a listing
// keeps: copying them for all 100,000 connections took half of a page's time.
func (p presenceSource) Each(yield func(presence.Session)) {
	p.s.hub.Each(func(c *client.Client) {
		s := p.session(c)
		s.Ref = c
		yield(s)
	})
}

func (p presenceSource) Complete(s *presence.Session) {
	if c, ok := s.Ref.(*client.Client); ok {
		s.Users = c.Users()
	}
	s.Ref = nil
}

// session is c without Users.
func (p presenceSource) session(c *client.Client) presence.Session {
	return presence.Session{
		SessionID: c.Session.ID, User: c.Session.User,
		Transport: c.Transport, Edge: p.s.cfg.EdgeID, ConnectedSince: c.Since.UTC(),
		Remote: c.Remote, Expires: c.Session.Expires.UTC(), Conn: c.Conn,
	}
}

// Status is what the edge's announcements say of it: its readiness, as
// GET /health/ready answers, for ingest's GET /v1/admin/health.
func (p presenceSource) Status() presence.Status {
	h, ready := p.s.health()
	return presence.Status{Ready: ready, Detail: h.Detail, Connections: h.Connections}
}

// statsSnapshot is the edge's answer to ingest's stats requests (the
// console's charts), read from its own metrics.
func (s *Server) statsSnapshot() stats.Snapshot {
	return stats.Snapshot{
		Edge:        s.cfg.EdgeID,
		Connections: s.metrics.Connections(),
		Delivered:   s.counters.Delivered.Load(),
		SlowClosed:  s.counters.SlowClosed.Load(),
		Killed:      uint64(metrics.Value(s.metrics.SessionsKilled)),
	}
}
