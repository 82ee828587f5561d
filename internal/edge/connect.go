package edge

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/blacklist"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/hub"
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
}

// admit applies the rules every transport shares: a token from the query
// or the Authorization header, a valid signature and expiry, valid user ids,
// and no one else's messages without a privileged role.
func (s *Server) admit(c *fiber.Ctx) (*admission, error) {
	token, err := requestToken(c)
	if err != nil {
		return nil, err
	}
	users, err := requestUsers(c)
	if err != nil {
		return nil, err
	}
	sess, err := s.verifier.Verify(token)
	if err != nil {
		return nil, api.Errorf(fiber.StatusUnauthorized, err.Error())
	}
	if len(sess.ID) > blacklist.MaxSessionIDLen {
		// Every session let in must be one the blacklist can revoke.
		return nil, api.Errorf(fiber.StatusUnauthorized, "jti longer than "+itoa(blacklist.MaxSessionIDLen)+" bytes")
	}
	if s.blacklist.Listed(sess.ID) {
		return nil, api.Errorf(fiber.StatusUnauthorized, "session "+quote(sess.ID)+" is blacklisted")
	}
	if len(users) == 0 {
		users = []string{sess.User}
	}
	for _, u := range users {
		if !sess.MaySubscribe(u) {
			return nil, api.Errorf(fiber.StatusForbidden, "token of user "+quote(sess.User)+" may not subscribe to user "+quote(u))
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
	return &admission{session: sess, users: users, remote: strings.Clone(c.IP())}, nil
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
			return "", api.Errorf(fiber.StatusBadRequest, "empty token= parameter")
		}
		return t, nil
	}
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		scheme, t, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(t) == "" {
			return "", api.Errorf(fiber.StatusBadRequest, "Authorization header must be \"Bearer <JWT>\"")
		}
		return strings.TrimSpace(t), nil
	}
	return "", api.Errorf(fiber.StatusBadRequest, "missing token: pass ?token=<JWT> or an Authorization: Bearer header")
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
				return nil, api.Errorf(fiber.StatusBadRequest, key+": "+err.Error())
			}
			if !seen[u] {
				seen[u] = true
				users = append(users, u)
			}
		}
	}
	if len(users) > MaxUsersPerConnection {
		return nil, api.Errorf(fiber.StatusBadRequest, "too many users[]: at most 100 per connection")
	}
	return users, nil
}

// conn is one live connection as the edge tracks it.
type conn struct {
	*client.Client
	handle *hub.Handle
	expiry *time.Timer
}

var errNotConnected = errors.New("NATS is unreachable")

// open registers a client for an admitted request and queues its
// connected event. The transport starts it and calls close when done.
func (s *Server) open(a *admission, transport string) (*conn, error) {
	if !s.broker.Connected() {
		return nil, errNotConnected
	}
	cl := client.New(a.session, a.users, transport, s.cfg.QueueSize)
	hd, err := s.hub.Register(cl, a.session.ID, a.users)
	if err != nil {
		return nil, err
	}
	cn := &conn{Client: cl, handle: hd}
	data, _ := json.Marshal(struct {
		Users []string `json:"users"`
	}{a.users})
	_ = cl.Send(&rig.Event{Kind: rig.KindConnected, Data: data})
	cn.expiry = time.AfterFunc(time.Until(a.session.Expires), func() {
		cl.Finish(&rig.Event{Kind: rig.KindTokenExpired, Data: []byte(`{"reason":"token expired"}`)}, client.ReasonTokenExpired)
	})
	// Blacklisted between admission and registration: the set's kill
	// looked for the session in the hub before it was there.
	if s.blacklist.Listed(a.session.ID) {
		cl.Finish(sessionKilled, client.ReasonSessionKilled)
	}
	s.log.Info("connection opened", "transport", transport, "user", a.session.User, "users", a.users,
		"session", a.session.ID, "remote", a.remote)
	return cn, nil
}

// close ends a connection: closes the wire, leaves the hub, logs once.
func (s *Server) close(cn *conn, reason string) {
	cn.Close(reason)
	cn.expiry.Stop()
	s.hub.Unregister(cn.handle)
	s.log.Info("connection closed", "transport", cn.Transport, "user", cn.Session.User,
		"session", cn.Session.ID, "reason", cn.Reason(), "duration", time.Since(cn.Since).Round(time.Millisecond).String())
}
