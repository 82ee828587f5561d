package edge

import (
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/hub"
	"github.com/rig-go/rig/internal/presence"
)

// presenceSource answers presence queries from the hub. A user is online
// here when a connection authenticated as that user is open (a privileged
// connection watching others does not make them online).
type presenceSource struct{ s *Server }

func (p presenceSource) Users() []string {
	seen := map[string]bool{}
	users := []string{}
	p.s.hub.Each(func(c hub.Client) {
		u := c.(*client.Client).Session.User
		if !seen[u] {
			seen[u] = true
			users = append(users, u)
		}
	})
	return users
}

func (p presenceSource) Sessions(user string) []presence.Session {
	var out []presence.Session
	p.s.hub.Each(func(c hub.Client) {
		cl := c.(*client.Client)
		if cl.Session.User != user {
			return
		}
		users := cl.Users
		if hd, ok := cl.Handle.(*hub.Handle); ok {
			users = hd.Users() // Phoenix joins change them
		}
		out = append(out, presence.Session{
			SessionID: cl.Session.ID, User: cl.Session.User, Users: users,
			Transport: cl.Transport, Edge: p.s.cfg.EdgeID, ConnectedSince: cl.Since.UTC(),
		})
	})
	return out
}
