package edge

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/blacklist"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/history"
	"github.com/rig-go/rig/internal/hub"
	"github.com/rig-go/rig/internal/metrics"
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
	// Refuse a client over its rate before anything costs: a reconnect
	// storm, or a script guessing tokens.
	addr, limited, proxied := s.limits.client(c)
	if err := s.limits.checkRate(addr, limited); err != nil {
		return nil, err
	}
	token, err := requestToken(c)
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
		scheme, t, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(t) == "" {
			return "", api.NewError(fiber.StatusBadRequest, "Authorization header must be \"Bearer <JWT>\"")
		}
		return strings.TrimSpace(t), nil
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

// conn is one live connection as the edge tracks it.
type conn struct {
	*client.Client
	handle  *hub.Handle
	expiry  *time.Timer
	metrics *metrics.Transport
	held    *held // released when the connection ends
}

var errNotConnected = errors.New("NATS is unreachable")

// open registers a client for an admitted request and logs the connection.
// Live events wait (the client holds them) until start queues the
// connection's first events. The transport starts the client, calls start,
// and calls close when done.
func (s *Server) open(a *admission, transport string) (*conn, error) {
	cn, err := s.register(a, transport)
	if err != nil {
		return nil, err
	}
	s.log.Info("connection opened", "transport", transport, "user", a.session.User, "users", a.users,
		"session", a.session.ID, "remote", a.remote)
	return cn, nil
}

// register is open without the log line: a long-poll request registers a
// client for its own short life.
func (s *Server) register(a *admission, transport string) (*conn, error) {
	if !s.broker.Connected() {
		a.held.release()
		return nil, errNotConnected
	}
	cl := client.New(a.session, a.users, transport, s.cfg.QueueSize)
	cl.Counters = &s.counters
	cl.Hold()
	hd, err := s.hub.Register(cl, a.session.ID, a.users)
	if err != nil {
		a.held.release()
		return nil, err
	}
	cl.Handle = hd
	cn := &conn{Client: cl, handle: hd, metrics: s.metrics.Transport(transport), held: a.held}
	cn.metrics.Opened.Inc()
	cn.metrics.Open.Inc()
	cn.expiry = time.AfterFunc(time.Until(a.session.Expires), func() {
		cl.Finish(tokenExpired, client.ReasonTokenExpired)
	})
	// Blacklisted between admission and registration: the set's kill
	// looked for the session in the hub before it was there.
	if s.blacklist.Listed(a.session.ID) {
		s.metrics.SessionsKilled.Inc()
		cl.Finish(sessionKilled, client.ReasonSessionKilled)
	}
	return cn, nil
}

// start queues a connection's first events and releases the live ones held
// since open: the connected event, then, for a client that resumes, what
// history holds after its last event id. When history cannot be read the
// connection ends instead (see failStart), before any event with an id.
func (s *Server) start(cn *conn, users []string, from string) {
	connected := connectedEvent(users)
	if from != "" {
		rp, err := s.readHistory(users, from)
		if err != nil {
			s.failStart(cn, from, err)
			return
		}
		s.replayed(cn, users, from, rp, connected)
		return
	}
	// A fresh connection starts at the users' latest message: its
	// connected event carries that position as its id, so a client that
	// loses the connection before any message arrives still resumes
	// exactly (EventSource sends it back as Last-Event-ID).
	floor, err := s.position(users)
	if err != nil {
		s.failStart(cn, from, err)
		return
	}
	connected.ID = rig.SeqID(floor)
	cn.Resume(users, floor, connected)
}

// historyUnavailable ends a connection whose start could not be read from
// history. Being a reconnect event, it carries no id: an SSE client keeps
// its Last-Event-ID, a plain socket (closed with 1012) reconnects with its
// last_event_id, and both get exactly what they missed once history
// answers. Sending the connection on without its replay, or with a gap
// for messages history still holds, would be the silent loss.
var historyUnavailable = &rig.Event{Kind: rig.KindReconnect, Data: []byte(`{"reason":"history unavailable; reconnect with the same last event id"}`)}

// reasonHistoryUnavailable is why such a connection was closed, as logged.
const reasonHistoryUnavailable = "history unavailable"

func (s *Server) failStart(cn *conn, from string, err error) {
	s.log.Warn("history unavailable: closing the connection so that the client comes back with its cursor",
		"transport", cn.Transport, "user", cn.Session.User, "last_event_id", from, "err", err)
	cn.Fail(historyUnavailable, reasonHistoryUnavailable)
}

// position returns the stream position a fresh subscription to users starts
// at: every message of theirs up to it was stored before it, every later
// one reaches the connection live. Called after subscribing.
func (s *Server) position(users []string) (uint64, error) {
	var floor uint64
	for _, u := range users {
		// The user's live subscription was already here: everything
		// stored before ours was published up to its last sequence or is
		// on its way, to this connection too.
		if last := s.hub.LastSeq(u); last > 0 {
			floor = max(floor, last)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), replayTimeout)
		last, err := s.history.LastSeq(ctx, u)
		cancel()
		if err != nil {
			s.metrics.HistoryReadFailures.Inc()
			return 0, err
		}
		s.hub.NoteBase(u, last)
		floor = max(floor, last)
	}
	return floor, nil
}

// noteBases records where users' subscriptions start from a replay: the
// position it read up to (see hub.NoteBase).
func (s *Server) noteBases(users []string, rp *history.Replay) {
	if pos, ok := rig.ParseSeqID(rp.Last); ok {
		for _, u := range users {
			s.hub.NoteBase(u, pos)
		}
	}
}

func connectedEvent(users []string) *rig.Event {
	data, _ := json.Marshal(struct {
		Users []string `json:"users"`
	}{users})
	return &rig.Event{Kind: rig.KindConnected, Data: data}
}

// readHistory reads what history holds for users after from (an empty
// from reads only where history stands), waiting for its turn among the
// edge's reads; the whole wait and read must end within replayTimeout.
func (s *Server) readHistory(users []string, from string) (*history.Replay, error) {
	ctx, cancel := context.WithTimeout(context.Background(), replayTimeout)
	defer cancel()
	rp, err := s.history.Since(ctx, users, from)
	if err != nil {
		s.metrics.HistoryReadFailures.Inc()
		return nil, err
	}
	return rp, nil
}

// replayed queues first, a gap event if the replay says messages may be
// missing, and the replayed messages, then releases the held live events.
// Subscribing first and replaying second means nothing falls between the
// two; the client drops live copies of replayed messages.
func (s *Server) replayed(cn *conn, users []string, from string, rp *history.Replay, first ...*rig.Event) {
	if from != "" {
		s.metrics.Replays.Inc()
		s.metrics.ReplayedMessages.Add(float64(len(rp.Events)))
	}
	if rp.Gap {
		s.metrics.Gaps.Inc()
		first = append(first, gapEvent(from, users...))
	}
	s.noteBases(users, rp)
	cn.Resume(users, rp.Floor, append(first, rp.Events...)...)
	s.log.Debug("replayed", "user", cn.Session.User, "last_event_id", from, "replayed", len(rp.Events), "gap", rp.Gap)
}

// gapEvent tells a client that messages after from may be missing. Its
// User names the Phoenix topic when a join resumed.
func gapEvent(from string, users ...string) *rig.Event {
	ev := &rig.Event{Kind: rig.KindGap, ID: from}
	if len(users) > 0 {
		ev.User = users[0]
	}
	return ev
}

// close ends a connection: closes the wire, leaves the hub, logs once.
func (s *Server) close(cn *conn, reason string) {
	s.unregister(cn, reason)
	s.log.Info("connection closed", "transport", cn.Transport, "user", cn.Session.User,
		"session", cn.Session.ID, "reason", cn.Reason(), "duration", time.Since(cn.Since).Round(time.Millisecond).String())
}

// unregister is close without the log line (see register).
func (s *Server) unregister(cn *conn, reason string) {
	cn.Close(reason)
	cn.expiry.Stop()
	s.hub.Unregister(cn.handle)
	cn.metrics.Open.Dec()
	cn.held.release()
}
