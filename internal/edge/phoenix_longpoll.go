package edge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/singleflight"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/phoenix"
	"github.com/rig-go/rig/internal/rig"
)

// phoenix.js's LongPoll transport on /socket/longpoll?vsn=: the Phoenix
// channels of phoenix.go, over GET polls and POSTed batches instead of a
// WebSocket (as Phoenix.Transports.LongPoll serves them, and RIG 1.x did).
//
// A session lives on one edge, its home, as a client of the hub like any
// socket; its outbox holds the frames a poll has not taken yet. Every
// answer carries a token (package phoenix, PollToken) that names the
// session and says which topics the client has joined and the position of
// the last message of each it was answered with. The edge a request lands
// on serves it when it is the home; else it passes it to the home over
// NATS (rig.longpoll.<session id>), as Phoenix passes it over PubSub. When
// no edge answers for the session (its home restarted), the edge takes
// the session over from the token: it joins the token's topics from
// history after their positions, so the client gets what it was not
// answered with, once. A home whose token is passed by (an answer from
// another edge, newer than its own) rebuilds the session from the newer
// token in the same way.

// Bounds of a POST: as many messages as phoenix.js batches (its
// MAX_LONGPOLL_BATCH_SIZE), each no larger than a WebSocket frame may be.
const (
	lpMaxBatch = 100
	// lpMaxAnswer bounds the frames of one answer (the rest wait for the
	// next poll): an answer relayed over NATS, its frames quoted as JSON
	// strings, must fit a NATS message (1 MiB by default).
	lpMaxAnswer = 256 << 10
	// lpRelayMargin is how much longer than a poll a relayed one may take.
	lpRelayMargin = 5 * time.Second
)

// lpLastWordsWait bounds how long a poll whose JWT was just refused
// waits for its session to end with the push that says why.
const lpLastWordsWait = 2 * time.Second

// lpNoRespondersRetries are the waits before asking a session's home
// again when no edge answered for it: about 0.4 s in all, far longer than
// a subscription takes to cross a NATS cluster's routes.
var lpNoRespondersRetries = []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}

// The NATS side: the home of a session subscribes to its subject; a
// request's Rig-Longpoll header says what it is.
const (
	lpSubjectPrefix = "rig.longpoll."
	lpHeaderOp      = "Rig-Longpoll"
	lpHeaderGen     = "Rig-Longpoll-Gen"
	lpHeaderEdge    = "Rig-Longpoll-Edge"
	lpHeaderStatus  = "Rig-Longpoll-Status"
	lpHeaderToken   = "Rig-Longpoll-Token"
	lpOpGet         = "get"
	lpOpPost        = "post"
	lpOpTaken       = "taken"
	lpStale         = "stale" // a get whose token is newer than the home's
)

// The op of a frame in the outbox, applied to the session's token when a
// poll takes the frame.
const (
	opNone uint8 = iota
	opJoined
	opLeft
	opMessage
)

type lpFrame struct {
	data []byte
	user string
	pos  uint64 // opJoined: the join's start; opMessage: the message's position
	op   uint8
	// confirm is a message that asks for a delivery receipt, sent once a
	// poll's answer carries the frame (see confirmPoll).
	confirm *rig.Event
}

// lpSessions are the sessions this edge is the home of.
type lpSessions struct {
	key []byte // signs tokens
	mu  sync.Mutex
	m   map[string]*lpSession
	// adopting makes the requests that take a session over at once (a
	// poll and a POST) take it over once, together.
	adopting singleflight.Group
}

func newLPSessions(secret []byte) *lpSessions {
	return &lpSessions{key: phoenix.TokenKey(secret), m: make(map[string]*lpSession)}
}

func (l *lpSessions) get(id string) *lpSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[id]
}

func (l *lpSessions) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// lpSession is one phoenix.js LongPoll session at its home.
type lpSession struct {
	s    *Server
	id   string
	auth string
	v    phoenix.Version
	p    *phoenixSocket
	cn   *conn
	sub  *nats.Subscription

	handling sync.Mutex // one POSTed batch (or the take-over's rejoins) at a time
	closing  sync.Once  // of the client

	mu      sync.Mutex
	out     []lpFrame
	gen     uint64
	topics  map[string]uint64 // as the last token issued says
	waiter  *lpWaiter         // the poll waiting, if any
	ended   bool              // the client closed: answer what is left, then go
	idle    *time.Timer
	removed bool
}

// lpWaiter is a poll waiting for frames. A newer poll of the same session
// takes over: the older one answers with nothing.
type lpWaiter struct {
	wake, over chan struct{}
}

func (s *Server) lpIdle() time.Duration { return 3 * s.cfg.PhoenixLongPoll.Timeout }

// handlePhoenixLongPoll serves GET /socket/longpoll?vsn=.
func (s *Server) handlePhoenixLongPoll(c *fiber.Ctx, v phoenix.Version) error {
	s.setCORS(c)
	a, jwt, pt, err := s.admitPoll(c)
	if err != nil {
		if tok := s.endedPollToken(err, jwt, pt, v); tok != nil {
			if body, ok := s.lastWords(c.Context(), tok); ok {
				return s.pollAnswer(c, fiber.StatusOK, body)
			}
			s.holdRefusal(c.Context())
		}
		return s.pollRefused(c, err)
	}
	if pt == "" {
		return s.newPollSession(c, a, jwt, v)
	}
	tok, ok := s.pollToken(a, jwt, pt, v)
	if !ok {
		return s.pollAnswer(c, fiber.StatusOK, phoenix.PollAnswer(410, "", nil, ""))
	}
	ctx := c.Context()
	if ls := s.lp.get(tok.ID); ls != nil {
		if body, ok := ls.poll(ctx, tok.Gen); ok {
			return s.pollAnswer(c, fiber.StatusOK, body)
		}
		ls.end(client.DisconnectClientGone) // passed by: rebuilt below
	} else if body, ok := s.relay(tok, lpOpGet, nil, ""); ok {
		return s.pollAnswer(c, fiber.StatusOK, body)
	}
	ls, err := s.adopt(a, tok)
	if err != nil {
		return s.pollRefused(c, err)
	}
	body, ok := ls.poll(ctx, tok.Gen)
	if !ok {
		// Taken over by another edge in the meantime, or ended: the
		// client opens a new session.
		body = phoenix.PollAnswer(410, "", nil, "")
	}
	return s.pollAnswer(c, fiber.StatusOK, body)
}

// handlePhoenixLongPollPost serves POST /socket/longpoll?vsn=&token=: the
// messages phoenix.js sends (joins, leaves), answered through the polls.
func (s *Server) handlePhoenixLongPollPost(c *fiber.Ctx) error {
	s.setCORS(c)
	if err := s.checkOrigin(c); err != nil {
		return s.pollRefused(c, err)
	}
	v, err := socketProtocol(c)
	if err != nil {
		return s.pollRefused(c, err)
	}
	if v == 0 {
		return s.pollRefused(c, api.NewError(fiber.StatusBadRequest, "POST /socket/longpoll is phoenix.js's LongPoll transport: vsn= (1.0.0 or 2.0.0) is required"))
	}
	a, jwt, pt, err := s.admitPoll(c)
	if err != nil {
		return s.pollRefused(c, err)
	}
	tok, ok := s.pollToken(a, jwt, pt, v)
	if !ok {
		return s.pollAnswer(c, fiber.StatusOK, phoenix.PollAnswer(410, "", nil, ""))
	}
	ndjson := strings.HasPrefix(strings.ToLower(c.Get(fiber.HeaderContentType)), "application/x-ndjson")
	body := c.Body()
	maxLine := s.cfg.WSMaxFrameSize
	if len(body) > lpMaxBatch*maxLine {
		return s.pollRefused(c, api.NewError(fiber.StatusRequestEntityTooLarge,
			"long-poll body of "+strconv.Itoa(len(body))+" bytes, more than "+strconv.Itoa(lpMaxBatch)+" messages of WS_MAX_FRAME_SIZE"))
	}
	msgs, err := phoenix.SplitBatch(body, ndjson, maxLine, lpMaxBatch)
	if err != nil { // a line too long, or too many
		return s.pollRefused(c, api.NewError(fiber.StatusRequestEntityTooLarge, err.Error()))
	}
	ls := s.lp.get(tok.ID)
	if ls == nil {
		if answer, ok := s.relay(tok, lpOpPost, joinLines(msgs), pt); ok {
			return s.pollAnswer(c, fiber.StatusOK, answer)
		}
		if ls, err = s.adopt(a, tok); err != nil {
			return s.pollRefused(c, err)
		}
	}
	status, answer := ls.post(msgs, pt)
	return s.pollAnswer(c, status, answer)
}

func joinLines(msgs [][]byte) []byte { return bytes.Join(msgs, []byte("\n")) }

// admitPoll admits a long-poll request: the JWT (phoenix.js sends it in
// its socket params as token=, as the WebSocket does; or in the
// X-Phoenix-AuthToken header of its authToken option) passes the rules of
// every transport. The poll token, also sent as token=, is told apart by
// its prefix.
func (s *Server) admitPoll(c *fiber.Ctx) (a *admission, jwt, pollToken string, err error) {
	for _, raw := range c.Context().QueryArgs().PeekMulti("token") {
		v := string(raw)
		switch {
		case phoenix.IsPollToken(v) && pollToken == "":
			pollToken = v
		case !phoenix.IsPollToken(v) && jwt == "":
			jwt = v
		default:
			return nil, "", "", api.NewError(fiber.StatusBadRequest, "token= given more than twice: expected one JWT and at most one long-poll token")
		}
	}
	if jwt == "" {
		if h := c.Get("X-Phoenix-AuthToken"); h != "" {
			jwt = h
		} else if h := c.Get(fiber.HeaderAuthorization); h != "" {
			t, ok := auth.BearerToken(h)
			if !ok {
				return nil, "", "", api.NewError(fiber.StatusBadRequest, "Authorization header must be \"Bearer <JWT>\"")
			}
			jwt = t
		}
	}
	if jwt == "" {
		return nil, "", "", api.NewError(fiber.StatusBadRequest, "missing token: pass the JWT as the socket's token param")
	}
	a, err = s.admitWith(c, func(*fiber.Ctx) (string, error) { return jwt, nil })
	if err != nil {
		// The tokens too: a session that ended for this JWT still owes
		// its client the push that says why (lastWords).
		return nil, strings.Clone(jwt), strings.Clone(pollToken), err
	}
	// A Phoenix session subscribes, and resumes, per joined topic.
	a.users, a.resume = nil, ""
	return a, strings.Clone(jwt), strings.Clone(pollToken), nil
}

// pollToken reads a poll token for the admitted session. A token that is
// not good (forged, expired, another JWT's, another serializer's) is an
// unknown session: 410, and phoenix.js opens a new one.
func (s *Server) pollToken(a *admission, jwt, pt string, v phoenix.Version) (*phoenix.PollToken, bool) {
	if pt == "" {
		return nil, false
	}
	tok, err := phoenix.DecodeToken(s.lp.key, pt)
	switch {
	case err != nil:
		s.log.Info("long-poll token refused: 410", "user", a.session.User, "err", err)
		return nil, false
	case tok.Auth != phoenix.AuthOf(jwt):
		s.log.Info("long-poll token of another JWT: 410", "user", a.session.User, "session", tok.ID)
		return nil, false
	case tok.Vsn != v:
		s.log.Info("long-poll token of another vsn: 410", "user", a.session.User, "session", tok.ID)
		return nil, false
	case tok.Expired(time.Now(), s.lpIdle()):
		s.log.Debug("long-poll session expired: 410", "user", a.session.User, "session", tok.ID)
		return nil, false
	}
	return tok, true
}

// endedPollToken returns the poll token of a poll refused because its
// session ended for its JWT: 401, the JWT expired or its session is
// blacklisted since the session was opened (it was good then: the poll
// token, still good, is bound to it). Any other refusal is nil.
func (s *Server) endedPollToken(refused error, jwt, pt string, v phoenix.Version) *phoenix.PollToken {
	var ae *api.Error
	if jwt == "" || pt == "" || !errors.As(refused, &ae) || ae.Status != fiber.StatusUnauthorized {
		return nil
	}
	tok, err := phoenix.DecodeToken(s.lp.key, pt)
	if err != nil || tok.Auth != phoenix.AuthOf(jwt) || tok.Vsn != v || tok.Expired(time.Now(), s.lpIdle()) {
		return nil
	}
	return tok
}

// lastWords answers the poll of a session whose JWT is refused now
// (blacklisted, expired; see endedPollToken) with what its end left in
// the outbox: the session_killed or token_expired pushes. Between two
// polls the session ends at once, so without this the next poll would get
// only a 403 and phoenix.js would never say why. Only the client holding
// the JWT the session was opened with gets them, and only from the
// session's home.
func (s *Server) lastWords(ctx context.Context, tok *phoenix.PollToken) ([]byte, bool) {
	ls := s.lp.get(tok.ID)
	if ls == nil {
		// Not relayed: a home that has not yet seen the blacklisting or
		// the expiry would answer with messages for a refused JWT.
		return nil, false
	}
	// The poll may come a moment before the session's own end: its expiry
	// timer, or the blacklist watcher, closes it with the push that says
	// why. Wait for that, briefly.
	deadline := time.Now().Add(lpLastWordsWait)
	for {
		ls.mu.Lock()
		ended, owed := ls.ended, ls.ended && len(ls.out) > 0
		ls.mu.Unlock()
		if ended {
			if !owed {
				return nil, false
			}
			return ls.poll(ctx, tok.Gen)
		}
		if time.Now().After(deadline) {
			return nil, false
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// holdRefusal makes the refusal of a poll whose session ended (see
// endedPollToken) wait the poll timeout, as a poll with nothing to
// answer does. Such a poll follows the answer that carried the session's
// last words (lastWords', or that of the poll its end met), and
// phoenix.js hands an answer's messages to its channels on a timer
// (setTimeout 0) while it polls again at once: a refusal that came back
// first would cancel those timers (LongPoll.stop, on a 403), and the
// session_killed or token_expired push would never reach the channel.
// The hold costs what a poll costs, and only until the poll token
// expires: the refused client gets no newer one.
func (s *Server) holdRefusal(ctx context.Context) {
	t := time.NewTimer(s.cfg.PhoenixLongPoll.Timeout)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// pollRefused answers a refused request as phoenix.js reads it: the status
// in the body, 403 for what the client's credentials cause (it then
// reconnects with backoff) and 500 for what the edge's state causes (it
// retries). The HTTP status says the same to everyone else.
func (s *Server) pollRefused(c *fiber.Ctx, err error) error {
	var e *api.Error
	if !errors.As(err, &e) {
		e = &api.Error{Status: fiber.StatusInternalServerError, Message: "internal error"}
	}
	phx := 500
	if e.Status < 500 && e.Status != fiber.StatusTooManyRequests {
		phx = 403
	}
	switch {
	case e.Quiet:
		s.log.Debug("long-poll refused", "method", c.Method(), "status", e.Status, "err", e.Message)
	case e.Status >= 500:
		s.log.Warn("long-poll refused", "method", c.Method(), "status", e.Status, "err", e.Message)
	default:
		s.log.Info("long-poll refused", "method", c.Method(), "status", e.Status, "err", e.Message)
	}
	if e.RetryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(e.RetryAfter))
	}
	return s.pollAnswer(c, e.Status, phoenix.PollAnswer(phx, "", nil, e.Message))
}

func (s *Server) pollAnswer(c *fiber.Ctx, status int, body []byte) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(status).Send(body)
}

// newPollSession opens a session here and answers the handshake: status
// 410 with the session's first token.
func (s *Server) newPollSession(c *fiber.Ctx, a *admission, jwt string, v phoenix.Version) error {
	tok := &phoenix.PollToken{ID: newSessionID(), Auth: phoenix.AuthOf(jwt), Vsn: v}
	ls, err := s.openPollSession(a, tok)
	if err != nil {
		return s.pollRefused(c, err)
	}
	ls.mu.Lock()
	t := ls.tokenLocked()
	ls.mu.Unlock()
	s.log.Info("connection opened", "transport", "phoenix-longpoll", "user", a.session.User, "session", a.session.ID,
		"longpoll_session", tok.ID, "remote", a.remote)
	return s.pollAnswer(c, fiber.StatusOK, phoenix.PollAnswer(410, t, nil, ""))
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func randomGen() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// openPollSession makes this edge the home of tok's session, with no
// topics joined yet.
func (s *Server) openPollSession(a *admission, tok *phoenix.PollToken) (*lpSession, error) {
	if s.lp.len() >= s.cfg.PhoenixLongPoll.MaxSessions {
		return nil, api.Unavailable("this edge serves "+strconv.Itoa(s.cfg.PhoenixLongPoll.MaxSessions)+" long-poll sessions, the most allowed (PHOENIX_LONGPOLL_MAX_SESSIONS)", 5)
	}
	if err := s.hold(a); err != nil {
		return nil, err
	}
	cn, err := s.register(a, "phoenix-longpoll")
	if err != nil {
		return nil, unavailable(err)
	}
	ls := &lpSession{s: s, id: tok.ID, auth: tok.Auth, v: tok.Vsn, cn: cn, gen: tok.Gen, topics: map[string]uint64{}}
	// The token's topics are the client's from the start: a poll answered
	// while they are joined again must not drop them from its token.
	for _, tp := range tok.Topics {
		ls.topics[tp.User] = tp.Pos
	}
	ls.p = s.newPhoenixSocket(cn, tok.Vsn)
	ls.p.w = ls
	ls.p.room = ls.room
	// Other edges learn that the session moved here: one that served it
	// before ends its copy, and passes its requests here.
	if err := s.broker.NC.PublishMsg(&nats.Msg{Subject: lpSubjectPrefix + tok.ID,
		Header: nats.Header{lpHeaderOp: {lpOpTaken}, lpHeaderEdge: {s.cfg.EdgeID}}}); err != nil {
		s.log.Warn("long-poll session: cannot tell other edges it moved here", "longpoll_session", tok.ID, "err", err)
	}
	sub, err := s.broker.NC.Subscribe(lpSubjectPrefix+tok.ID, ls.serveRemote)
	if err != nil {
		s.unregister(cn, client.DisconnectClientGone)
		return nil, unavailable(err)
	}
	ls.sub = sub
	s.lp.mu.Lock()
	s.lp.m[tok.ID] = ls
	s.lp.mu.Unlock()
	ls.mu.Lock()
	ls.idle = time.AfterFunc(s.lpIdle(), ls.expire)
	ls.mu.Unlock()
	cn.Attach(ls)
	cn.Release(nil, 0) // channels hold and release their user on each join
	return ls, nil
}

// adopt takes over the session of tok, whose home is gone or was passed
// by: it joins the token's topics again from their positions.
func (s *Server) adopt(a *admission, tok *phoenix.PollToken) (*lpSession, error) {
	v, err, _ := s.lp.adopting.Do(tok.ID, func() (any, error) {
		if ls := s.lp.get(tok.ID); ls != nil {
			return ls, nil // taken over by the request before
		}
		return s.takeOver(a, tok)
	})
	if err != nil {
		return nil, err
	}
	return v.(*lpSession), nil
}

func (s *Server) takeOver(a *admission, tok *phoenix.PollToken) (*lpSession, error) {
	ls, err := s.openPollSession(a, tok)
	if err != nil {
		return nil, err
	}
	ls.handling.Lock()
	defer ls.handling.Unlock()
	for _, tp := range tok.Topics {
		if err := ls.p.rejoin(tp.User, tp.Pos); err != nil {
			s.log.Warn("long-poll session not taken over", "user", a.session.User, "longpoll_session", tok.ID, "topic", phoenix.Topic(tp.User), "err", err)
			ls.end(client.DisconnectHistoryUnavailable)
			return nil, api.Unavailable("history unavailable; poll again", 1)
		}
	}
	s.log.Info("long-poll session taken over", "user", a.session.User, "session", a.session.ID,
		"longpoll_session", tok.ID, "topics", len(tok.Topics), "remote", a.remote)
	return ls, nil
}

// room says whether one more topic fits the session's token.
func (ls *lpSession) room(user string) bool {
	size := len(user)
	for _, u := range ls.cn.Users() {
		size += len(u)
	}
	return size <= phoenix.MaxTopicBytes
}

// tokenLocked issues the token of what the client has now.
func (ls *lpSession) tokenLocked() string {
	t := &phoenix.PollToken{ID: ls.id, Gen: ls.gen, Issued: time.Now().Unix(), Auth: ls.auth, Vsn: ls.v}
	users := make([]string, 0, len(ls.topics))
	for u := range ls.topics {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		t.Topics = append(t.Topics, phoenix.TopicPosition{User: u, Pos: ls.topics[u]})
	}
	return phoenix.EncodeToken(ls.s.lp.key, t)
}

// Write implements client.Transport: the client's events become the
// pushes of its topics, waiting in the outbox for a poll.
func (ls *lpSession) Write(evs []*rig.Event) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, ev := range evs {
		for i, data := range ls.p.frames(nil, ev) {
			f := lpFrame{data: data}
			if ev.Kind == rig.KindMessage {
				f.op, f.user, f.pos = opMessage, ev.User, ev.Seq
				if ev.Receipt != "" && i == 0 {
					f.confirm = ev
				}
			}
			if err := ls.pushLocked(f); err != nil {
				return err
			}
		}
	}
	return nil
}

var (
	errOutboxFull  = errors.New("long-poll outbox full: the client does not poll")
	errSessionGone = errors.New("long-poll session ended")
)

// pushLocked adds a frame to the outbox. A client that does not poll is a
// slow client: the outbox holds at most CLIENT_QUEUE_SIZE frames, then the
// session ends, and its next poll resumes from its token.
func (ls *lpSession) pushLocked(f lpFrame) error {
	if ls.ended {
		return errSessionGone
	}
	if len(ls.out) >= ls.s.cfg.QueueSize {
		return errOutboxFull
	}
	ls.out = append(ls.out, f)
	ls.wakeLocked()
	return nil
}

func (ls *lpSession) wakeLocked() {
	if ls.waiter != nil {
		select {
		case ls.waiter.wake <- struct{}{}:
		default:
		}
	}
}

func (ls *lpSession) push(f lpFrame) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.pushLocked(f)
}

// WriteText, Joined and Left make the session the phoenixSocket's wire.
func (ls *lpSession) WriteText(f []byte) error { return ls.push(lpFrame{data: f}) }

func (ls *lpSession) Joined(f []byte, user string, upTo uint64) error {
	return ls.push(lpFrame{data: f, user: user, pos: upTo, op: opJoined})
}

func (ls *lpSession) Left(f []byte, user string) error {
	return ls.push(lpFrame{data: f, user: user, op: opLeft})
}

// Close implements client.Transport: the client ended (blacklisted,
// expired, slow, the edge draining). What the outbox holds is still
// answered to the next poll.
func (ls *lpSession) Close(d client.Disconnect) error {
	ls.mu.Lock()
	ls.ended = true
	ls.wakeLocked()
	// Out of the hub now (not here: the hub may be delivering to it);
	// what the outbox holds waits for the next poll.
	go ls.release(d)
	if ls.waiter == nil && len(ls.out) == 0 {
		// Nothing left to answer with: gone now, not at the idle timeout
		// (a draining edge waits for its clients to go).
		ls.removeLocked(d)
	}
	ls.mu.Unlock()
	return nil
}

// poll waits for frames, up to PHOENIX_LONGPOLL_TIMEOUT, and returns the
// answer: 200 with them, or 204. ok is false when the token's gen is not
// the session's: another edge answered the client since.
func (ls *lpSession) poll(ctx context.Context, gen uint64) (answer []byte, ok bool) {
	w := &lpWaiter{wake: make(chan struct{}, 1), over: make(chan struct{})}
	ls.mu.Lock()
	if gen != ls.gen || ls.removed || ls.ended && len(ls.out) == 0 {
		ls.mu.Unlock()
		return nil, false
	}
	if ls.waiter != nil {
		close(ls.waiter.over)
	}
	ls.waiter = w
	ls.mu.Unlock()

	timer := time.NewTimer(ls.s.cfg.PhoenixLongPoll.Timeout)
	defer timer.Stop()
	for {
		ls.mu.Lock()
		ready := len(ls.out) > 0 || ls.ended
		ls.mu.Unlock()
		if ready {
			break
		}
		select {
		case <-w.wake:
			continue
		case <-w.over:
		case <-timer.C:
		case <-ctx.Done():
		case <-ls.cn.Done():
		}
		break
	}
	answer, confirm := ls.answer(w)
	ls.s.confirmPoll(ls.cn.Client, confirm)
	return answer, true
}

// answer takes what the outbox holds (up to lpMaxAnswer bytes) for the
// poll w, and issues the token of what the client then has; confirm are
// the messages it carries that ask for a delivery receipt.
func (ls *lpSession) answer(w *lpWaiter) (answer []byte, confirm []*rig.Event) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.waiter == w {
		ls.waiter = nil
	}
	var frames [][]byte
	select {
	case <-w.over: // a newer poll takes what there is
	default:
		n, size := 0, 0
		for n < len(ls.out) && (n == 0 || size+len(ls.out[n].data) <= lpMaxAnswer) {
			f := ls.out[n]
			size += len(f.data)
			frames = append(frames, f.data)
			if f.confirm != nil {
				confirm = append(confirm, f.confirm)
			}
			switch f.op {
			case opJoined:
				ls.topics[f.user] = f.pos
			case opLeft:
				delete(ls.topics, f.user)
			case opMessage:
				if p, ok := ls.topics[f.user]; ok && f.pos > p {
					ls.topics[f.user] = f.pos
				}
			}
			n++
		}
		ls.out = slices.Delete(ls.out, 0, n)
	}
	if len(frames) > 0 {
		ls.gen = randomGen()
	}
	token := ls.tokenLocked()
	if ls.idle != nil {
		ls.idle.Reset(ls.s.lpIdle())
	}
	if ls.ended && len(ls.out) == 0 {
		ls.removeLocked(client.DisconnectClientGone)
	}
	if len(frames) == 0 {
		return phoenix.PollAnswer(204, token, nil, ""), nil
	}
	return phoenix.PollAnswer(200, token, frames, ""), confirm
}

// post handles a POSTed batch, in order, as a socket handles its frames,
// and answers with the token it came with.
func (ls *lpSession) post(msgs [][]byte, token string) (int, []byte) {
	ls.handling.Lock()
	defer ls.handling.Unlock()
	ls.mu.Lock()
	gone := ls.removed || ls.ended
	if ls.idle != nil && !gone {
		ls.idle.Reset(ls.s.lpIdle())
	}
	ls.mu.Unlock()
	if gone {
		return fiber.StatusOK, phoenix.PollAnswer(410, "", nil, "")
	}
	for i, m := range msgs {
		f, err := phoenix.Decode(ls.v, m)
		if err != nil {
			return fiber.StatusBadRequest, phoenix.PollAnswer(400, "", nil, "message "+strconv.Itoa(i+1)+": "+err.Error())
		}
		if err := ls.p.handle(f); err != nil {
			ls.s.log.Info("long-poll session ends", "user", ls.cn.Session.User, "longpoll_session", ls.id, "err", err)
			ls.end(client.DisconnectWriteFailed)
			return fiber.StatusOK, phoenix.PollAnswer(410, "", nil, "")
		}
	}
	return fiber.StatusOK, phoenix.PollAnswer(200, token, nil, "")
}

// expire ends a session that no request came for in 3 poll timeouts.
func (ls *lpSession) expire() {
	ls.mu.Lock()
	waiting := ls.waiter != nil
	if waiting {
		ls.idle.Reset(ls.s.lpIdle())
	}
	ls.mu.Unlock()
	if !waiting {
		ls.s.log.Debug("long-poll session idle: ended", "user", ls.cn.Session.User, "longpoll_session", ls.id)
		ls.end(client.DisconnectClientGone)
	}
}

// end ends the session here now, whatever its outbox holds: its token
// still resumes it, here or elsewhere.
func (ls *lpSession) end(d client.Disconnect) {
	ls.mu.Lock()
	ls.ended = true
	if ls.waiter != nil {
		close(ls.waiter.over)
		ls.waiter = nil
	}
	ls.removeLocked(d)
	ls.mu.Unlock()
}

// removeLocked takes the session out of the table and off NATS, and
// closes its client (for reason d, unless it closed already), once.
func (ls *lpSession) removeLocked(d client.Disconnect) {
	if ls.removed {
		return
	}
	ls.removed = true
	if ls.idle != nil {
		ls.idle.Stop()
	}
	if ls.sub != nil {
		_ = ls.sub.Unsubscribe()
	}
	ls.s.lp.mu.Lock()
	if ls.s.lp.m[ls.id] == ls {
		delete(ls.s.lp.m, ls.id)
	}
	ls.s.lp.mu.Unlock()
	// Not here: closing the client closes its transport, this session.
	go ls.release(d)
}

// release closes the session's client and takes it out of the hub, once.
func (ls *lpSession) release(d client.Disconnect) {
	ls.closing.Do(func() { ls.s.close(ls.cn, d) })
}

// relay passes a request for a session this edge is not the home of to
// its home, and returns the home's answer; ok is false when no home
// answers (or the home's copy is older than tok), and this edge takes the
// session over.
func (s *Server) relay(tok *phoenix.PollToken, op string, body []byte, token string) (answer []byte, ok bool) {
	msg := &nats.Msg{Subject: lpSubjectPrefix + tok.ID, Data: body, Header: nats.Header{
		lpHeaderOp: {op}, lpHeaderGen: {strconv.FormatUint(tok.Gen, 10)}, lpHeaderEdge: {s.cfg.EdgeID}}}
	if token != "" {
		msg.Header.Set(lpHeaderToken, token)
	}
	resp, err := s.broker.NC.RequestMsg(msg, s.cfg.PhoenixLongPoll.Timeout+lpRelayMargin)
	// A home's subscription reaches the other NATS servers of a cluster a
	// moment after the home answered the handshake, and phoenix.js POSTs
	// its join right then: "no responders" is only final once that moment
	// has passed, else two edges would each take the session over.
	for _, wait := range lpNoRespondersRetries {
		if !errors.Is(err, nats.ErrNoResponders) {
			break
		}
		time.Sleep(wait)
		resp, err = s.broker.NC.RequestMsg(msg, s.cfg.PhoenixLongPoll.Timeout+lpRelayMargin)
	}
	if err != nil {
		if !errors.Is(err, nats.ErrNoResponders) {
			s.log.Warn("long-poll home did not answer: taking the session over", "longpoll_session", tok.ID, "op", op, "err", err)
		}
		return nil, false
	}
	if resp.Header.Get(lpHeaderStatus) == lpStale {
		return nil, false
	}
	return resp.Data, true
}

// serveRemote answers a request another edge relayed, or ends the session
// when another edge took it over.
func (ls *lpSession) serveRemote(m *nats.Msg) {
	if m.Header.Get(lpHeaderEdge) == ls.s.cfg.EdgeID && m.Header.Get(lpHeaderOp) == lpOpTaken {
		return
	}
	switch m.Header.Get(lpHeaderOp) {
	case lpOpTaken:
		ls.s.log.Debug("long-poll session taken over by another edge", "longpoll_session", ls.id, "edge", m.Header.Get(lpHeaderEdge))
		go ls.end(client.DisconnectClientGone)
	case lpOpGet:
		gen, _ := strconv.ParseUint(m.Header.Get(lpHeaderGen), 10, 64)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), ls.s.cfg.PhoenixLongPoll.Timeout+lpRelayMargin)
			defer cancel()
			body, ok := ls.poll(ctx, gen)
			reply := &nats.Msg{Data: body, Header: nats.Header{}}
			if !ok {
				reply.Header.Set(lpHeaderStatus, lpStale)
				go ls.end(client.DisconnectClientGone)
			}
			_ = m.RespondMsg(reply)
		}()
	case lpOpPost:
		go func() {
			msgs, _ := phoenix.SplitBatch(m.Data, true, ls.s.cfg.WSMaxFrameSize, lpMaxBatch)
			_, body := ls.post(msgs, m.Header.Get(lpHeaderToken))
			_ = m.Respond(body)
		}()
	}
}
