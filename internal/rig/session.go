package rig

import (
	"time"
)

// Session is who a connection belongs to, as its verified JWT says.
type Session struct {
	// User is the token's user id.
	User string
	// Roles are the token's roles.
	Roles []string
	// ID is the token's jti, the handle for blacklisting; may be empty.
	ID string
	// Expires is when the token stops being accepted: its exp plus the
	// verifier's leeway, or sooner when its key is retired before.
	Expires time.Time
	// Privileged is set when Roles intersect the configured privileged roles.
	Privileged bool
}

// MaySubscribe reports whether the session may receive user's messages:
// its own always, anyone's when privileged.
func (s *Session) MaySubscribe(user string) bool {
	return s.Privileged || user == s.User
}
