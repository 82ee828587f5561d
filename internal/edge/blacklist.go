package edge

import (
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/rig"
)

// sessionKilled is the last event of a blacklisted session's connections,
// shared by all of them: its encodings are computed once.
var sessionKilled = &rig.Event{Kind: rig.KindSessionKilled, Data: []byte(`{"reason":"session blacklisted"}`)}

// killSession closes every connection of session jti here after sending it
// session_killed. The blacklist set calls it for each jti that becomes
// listed; other sessions of the same user are not touched.
func (s *Server) killSession(jti string) {
	conns := s.hub.Session(jti)
	s.metrics.SessionsKilled.Add(float64(len(conns)))
	for _, c := range conns {
		c.SendFinal(sessionKilled, client.DisconnectSessionKilled)
	}
	if len(conns) > 0 {
		s.log.Info("session blacklisted: closing its connections", "session", jti, "connections", len(conns))
	}
}
