package edge

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/blacklist"
	"github.com/rig-go/rig/internal/rig"
)

// MaxUsersPerConnection bounds users[] so one request cannot open
// subscriptions without limit.
const MaxUsersPerConnection = 100

// admission is a connection request that passed authentication and the
// subscription rules, with everything copied out of the request buffers.
type admission struct {
	session *rig.Session
	users   []string
	remote  string
	// addr is the client's address (behind a trusted proxy, the one it
	// forwarded); limited says whether per-address limits apply to it,
	// proxied whether it came through a trusted proxy.
	addr             netip.Addr
	limited, proxied bool
	// held is what the connection counts against the limits, from hold
	// until the connection ends.
	held *held
	// resume is the id of the last event the client saw (Last-Event-ID
	// or last_event_id=); empty for a fresh start.
	resume string
}

// admit applies the rules every transport shares: a token from the query
// or the Authorization header, a valid signature and expiry, valid user ids,
// and no one else's messages without a privileged role.
func (s *Server) admit(c *fiber.Ctx) (*admission, error) {
	return s.admitWith(c, requestToken)
}

// admitWith is admit with the JWT read by tokenOf: phoenix.js's long-poll
// sends another token= beside it (see admitPoll).
func (s *Server) admitWith(c *fiber.Ctx, tokenOf func(*fiber.Ctx) (string, error)) (*admission, error) {
	// Refuse a client over its rate before anything costs: a reconnect
	// storm, or a script guessing tokens.
	addr, limited, proxied := s.limits.client(c)
	if err := s.limits.checkRate(addr, limited); err != nil {
		return nil, err
	}
	token, err := tokenOf(c)
	if err != nil {
		return nil, err
	}
	users, err := requestUsers(c)
	if err != nil {
		return nil, err
	}
	resume, err := requestResume(c)
	if err != nil {
		return nil, err
	}
	sess, err := s.verifier.Verify(token)
	if err != nil {
		return nil, api.NewError(fiber.StatusUnauthorized, err.Error())
	}
	if len(sess.ID) > blacklist.MaxSessionIDLen {
		// Every session let in must be one the blacklist can revoke.
		return nil, api.NewError(fiber.StatusUnauthorized, "jti longer than "+strconv.Itoa(blacklist.MaxSessionIDLen)+" bytes")
	}
	if s.blacklist.Listed(sess.ID) {
		return nil, api.NewError(fiber.StatusUnauthorized, "session "+quote(sess.ID)+" is blacklisted")
	}
	if len(users) == 0 {
		users = []string{sess.User}
	}
	for _, u := range users {
		if !sess.MaySubscribe(u) {
			return nil, api.NewError(fiber.StatusForbidden, "token of user "+quote(sess.User)+" may not subscribe to user "+quote(u))
		}
	}
	if s.draining.Load() {
		return nil, api.Unavailable("edge is shutting down; connect to another edge", 1)
	}
	if !s.broker.Connected() {
		return nil, api.Unavailable("NATS is unreachable", 1)
	}
	// Fail closed: without the blacklist this edge cannot tell a revoked
	// session from a good one.
	if s.blacklist.Ready() != nil {
		return nil, api.Unavailable("session blacklist not loaded; connect to another edge", 1)
	}
	return &admission{session: sess, users: users, remote: remoteString(addr), resume: resume,
		addr: addr, limited: limited, proxied: proxied}, nil
}

// hold counts an admitted connection against the per-address, per-user
// and per-session limits (or refuses it with 429) before its stream
// starts. What it holds is released when the connection ends (unregister),
// or by a.held.release() on the way out of a connection that never opens.
// Streams call it on the connection taken over from fasthttp, so that no
// path between admission and the stream can lose what it holds.
func (s *Server) hold(a *admission) *api.Error {
	h, err := s.limits.hold(a)
	if err != nil {
		return err
	}
	a.held = h
	return nil
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func requestToken(c *fiber.Ctx) (string, error) {
	args := c.Context().QueryArgs()
	if args.Has("token") {
		t := string(args.Peek("token"))
		if t == "" {
			return "", api.NewError(fiber.StatusBadRequest, "empty token= parameter")
		}
		return t, nil
	}
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		t, ok := auth.BearerToken(h)
		if !ok {
			return "", api.NewError(fiber.StatusBadRequest, "Authorization header must be \"Bearer <JWT>\"")
		}
		return t, nil
	}
	return "", api.NewError(fiber.StatusBadRequest, "missing token: pass ?token=<JWT> or an Authorization: Bearer header")
}

// requestResume reads the id to resume after: the Last-Event-ID header a
// browser's EventSource sends when it reconnects, else last_event_id=.
func requestResume(c *fiber.Ctx) (string, error) {
	id := c.Get("Last-Event-ID")
	if id == "" {
		id = string(c.Context().QueryArgs().Peek("last_event_id"))
	}
	if id != "" && !rig.ValidEventID(id) {
		return "", api.NewError(fiber.StatusBadRequest, "last_event_id: not a valid event id (1 to 256 bytes, no control characters)")
	}
	return strings.Clone(id), nil
}

// requestUsers reads users[] (RIG's spelling) or users, in order, without
// duplicates.
func requestUsers(c *fiber.Ctx) ([]string, error) {
	args := c.Context().QueryArgs()
	var users []string
	seen := map[string]bool{}
	for _, key := range []string{"users[]", "users"} {
		for _, v := range args.PeekMulti(key) {
			u := string(v)
			if err := rig.ValidateUser(u); err != nil {
				return nil, api.NewError(fiber.StatusBadRequest, key+": "+err.Error())
			}
			if !seen[u] {
				seen[u] = true
				users = append(users, u)
			}
		}
	}
	if len(users) > MaxUsersPerConnection {
		return nil, api.NewError(fiber.StatusBadRequest, "too many users[]: at most 100 per connection")
	}
	return users, nil
}
