package edge

import (
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/presence"
)

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
		if c.Session.User != user {
			return
		}
		out = append(out, presence.Session{
			SessionID: c.Session.ID, User: c.Session.User, Users: c.Users(),
			Transport: c.Transport, Edge: p.s.cfg.EdgeID, ConnectedSince: c.Since.UTC(),
		})
	})
	return out
}
