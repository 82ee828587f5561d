package edge

import (
	"encoding/json"
	"errors"
	"slices"

	"github.com/fasthttp/websocket"
	"golang.org/x/time/rate"

	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/phoenix"
	"github.com/rig-go/rig/internal/rig"
	"github.com/rig-go/rig/internal/ws"
)

// A socket may join joinBurst topics at once, then joinRate a second, so a
// client cannot churn NATS subscriptions; MaxUsersPerConnection bounds how
// many it holds.
const (
	joinRate  = 5
	joinBurst = MaxUsersPerConnection
)

// The reasons of Phoenix error replies. Phoenix's own where it has one.
const (
	reasonUnmatchedTopic = "unmatched topic"
	reasonUnknownEvent   = "unknown event"
	reasonUnauthorized   = "unauthorized"
	reasonTooManyTopics  = "too many topics"
	reasonTooManyJoins   = "too many joins"
	reasonBadParams      = "invalid last_event_id"
	reasonNotSubscribed  = "subscription failed; try again"
	// reasonHistoryUnavailable: the join could not read where it starts;
	// phoenix.js joins again with the same params.
	reasonHistoryUnavailable = "history unavailable"
)

// phoenixSocket is the server side of one phoenix.js Socket, the Phoenix
// channels protocol on top of a plain WebSocket (package ws): it reads
// frames, answers them, and encodes the client's events as pushes. Its
// channels are joins of user:<id> topics, each adding that user to the
// client's user set (through the hub), so the hub and the client queue
// stay those of any connection, and the client's users are its joined
// topics.
type phoenixSocket struct {
	s      *Server
	cn     *conn
	wc     *ws.Conn    // the WebSocket it reads; nil for a long-poll session
	w      phoenixWire // where replies go; set before the socket is read
	v      phoenix.Version
	joinsL *rate.Limiter
	// room, if set, says whether one more topic fits: a long-poll
	// session's topics ride in its token.
	room func(user string) bool
}

// phoenixWire is where a socket's replies go: the WebSocket, or a
// long-poll session's outbox, which must know which replies start and end
// a channel, because its token lists the channels the client has.
type phoenixWire interface {
	WriteText(frame []byte) error
	// Joined writes the ok reply of a join of user's topic, whose client
	// has every message up to position upTo and then what follows it.
	Joined(frame []byte, user string, upTo uint64) error
	// Left writes the reply of a leave.
	Left(frame []byte, user string) error
}

// wsReplies is a WebSocket as a phoenixWire: every reply is a frame.
type wsReplies struct{ *ws.Conn }

func (w wsReplies) Joined(f []byte, _ string, _ uint64) error { return w.WriteText(f) }
func (w wsReplies) Left(f []byte, _ string) error             { return w.WriteText(f) }

func (s *Server) newPhoenixSocket(cn *conn, v phoenix.Version) *phoenixSocket {
	return &phoenixSocket{s: s, cn: cn, v: v, joinsL: rate.NewLimiter(joinRate, joinBurst)}
}

// invalidFrame is the close frame for a frame that cannot be decoded.
var invalidFrame = client.Disconnect{Code: websocket.CloseInvalidFramePayloadData, Reason: "invalid phoenix frame"}

// serve reads and answers frames until the socket ends, and says why.
// ws.Conn.Read holds the client to its frame budget, text and UTF-8.
func (p *phoenixSocket) serve() (client.Disconnect, error) {
	for {
		data, err := p.wc.Read()
		if err != nil {
			return readFailed(p.wc, err), err
		}
		f, err := phoenix.Decode(p.v, data)
		if err != nil {
			// Phoenix closes a socket whose frame it cannot decode; with no
			// readable ref there is nothing to reply to.
			p.wc.CloseWith(invalidFrame)
			return client.Disconnect{Code: invalidFrame.Code, Reason: err.Error()}, err
		}
		if err := p.handle(f); err != nil {
			return client.DisconnectWriteFailed, err
		}
	}
}

// frames is the socket's ws.Encoder: each event becomes a push on its
// user's topic, if that topic is joined (it may have been left while the
// event waited in the queue).
func (p *phoenixSocket) frames(dst [][]byte, ev *rig.Event) [][]byte {
	switch {
	case ev.Kind == rig.KindConnected:
		return dst // a channel starts with its join reply instead
	case ev.Kind == rig.KindReconnect:
		return dst // the close frame (1012) says it
	case client.Final(ev.Kind):
		// Tell each channel, so channel.on("session_killed") sees it; these
		// events are rare and per socket, so they are not cached.
		for _, u := range p.cn.Users() {
			dst = append(dst, phoenix.Push(p.v, &rig.Event{Kind: ev.Kind, User: u, Data: ev.Data}))
		}
		return dst
	case !p.joined(ev.User):
		return dst
	}
	return append(dst, phoenix.Encoded(p.v, ev))
}

func (p *phoenixSocket) joined(user string) bool { return slices.Contains(p.cn.Users(), user) }

func (p *phoenixSocket) handle(f phoenix.Frame) error {
	switch {
	case f.Topic == phoenix.TopicPhoenix && f.Event == phoenix.EventHeartbeat:
		return p.w.WriteText(phoenix.Reply(p.v, f, "ok", nil))
	case f.Event == phoenix.EventJoin:
		return p.join(f)
	case f.Event == phoenix.EventLeave:
		return p.leave(f)
	}
	reason := reasonUnmatchedTopic
	if user, ok := phoenix.User(f.Topic); ok && p.joined(user) {
		reason = reasonUnknownEvent
	}
	return p.refuse(f, reason)
}

func (p *phoenixSocket) refuse(f phoenix.Frame, reason string) error {
	p.s.log.Debug("phoenix frame refused", "user", p.cn.Session.User, "session", p.cn.Session.ID,
		"topic", f.Topic, "event", f.Event, "reason", reason)
	return p.w.WriteText(phoenix.ErrorReply(p.v, f, reason))
}

// join applies the rules of users[] to a user:<id> topic.
func (p *phoenixSocket) join(f phoenix.Frame) error {
	user, ok := phoenix.User(f.Topic)
	if !ok || rig.ValidateUser(user) != nil {
		return p.refuse(f, reasonUnmatchedTopic)
	}
	sess := p.cn.Session
	if !sess.MaySubscribe(user) {
		p.s.log.Info("phoenix join refused", "user", sess.User, "session", sess.ID, "topic", f.Topic, "reason", reasonUnauthorized)
		return p.w.WriteText(phoenix.ErrorReply(p.v, f, reasonUnauthorized))
	}
	lastEventID, ok := joinParams(f.Payload)
	if !ok {
		return p.refuse(f, reasonBadParams)
	}
	if p.joined(user) {
		// phoenix.js leaves a duplicate channel before joining again; a
		// client that does not still gets one subscription.
		return p.w.WriteText(phoenix.Reply(p.v, f, "ok", nil))
	}
	if len(p.cn.Users()) >= MaxUsersPerConnection || p.room != nil && !p.room(user) {
		return p.refuse(f, reasonTooManyTopics)
	}
	if !p.joinsL.Allow() {
		return p.refuse(f, reasonTooManyJoins)
	}
	// The user's live messages wait until what the join starts with is
	// queued: the replay after last_event_id, or nothing older than its
	// position. Both are read before the join is answered: a join whose
	// history cannot be read gets an error reply, and phoenix.js joins
	// again with the same params, so the client's cursor never moves past
	// what it has. Only this user's messages wait, and no lock is held:
	// the socket's other channels and its pings go on meanwhile.
	p.cn.HoldUser(user)
	first, upTo, reply, err := p.begin(f, user, lastEventID)
	if err != nil {
		p.s.hub.RemoveUser(p.cn.Client, user)
		p.cn.ReleaseUser(user, 0) // what was held is for a topic not joined: dropped
		p.s.log.Warn("phoenix join failed", "user", sess.User, "topic", f.Topic, "last_event_id", lastEventID, "err", err)
		return p.w.WriteText(reply)
	}
	p.s.log.Debug("phoenix join", "user", sess.User, "session", sess.ID, "topic", f.Topic, "last_event_id", lastEventID)
	// The reply goes first: the client sees it before the channel's first
	// message, which waits until ReleaseUser.
	werr := p.w.Joined(reply, user, upTo)
	p.cn.ReleaseUser(user, upTo, first...)
	return werr
}

// rejoin joins user's topic again, without a reply, for a long-poll
// session taken over from another edge (or rebuilt here): as a join with
// last_event_id seq:<pos>, the position of the last message of it the
// client was answered with. The rules of a join hold again: the token was
// issued for this session's JWT, but the rules may have changed since.
func (p *phoenixSocket) rejoin(user string, pos uint64) error {
	if rig.ValidateUser(user) != nil || !p.cn.Session.MaySubscribe(user) {
		return errors.New("topic user:" + user + " not allowed for user " + quote(p.cn.Session.User))
	}
	p.cn.HoldUser(user)
	first, upTo, _, err := p.begin(phoenix.Frame{Topic: phoenix.Topic(user)}, user, rig.SeqID(pos))
	if err != nil {
		p.s.hub.RemoveUser(p.cn.Client, user)
		p.cn.ReleaseUser(user, 0)
		return err
	}
	p.cn.ReleaseUser(user, upTo, first...)
	return nil
}

// begin subscribes the socket to user and reads where the channel starts:
// the events to queue first, the position the client has every message up
// to, and the join's reply (an error reply when err is not nil).
func (p *phoenixSocket) begin(f phoenix.Frame, user, lastEventID string) (first []*rig.Event, upTo uint64, reply []byte, err error) {
	if err := p.s.hub.AddUser(p.cn.Client, user); err != nil {
		return nil, 0, phoenix.ErrorReply(p.v, f, reasonNotSubscribed), err
	}
	users := []string{user}
	if lastEventID == "" {
		upTo, err := p.s.position(users)
		if err != nil {
			return nil, 0, phoenix.ErrorReply(p.v, f, reasonHistoryUnavailable), err
		}
		// The channel's position, for a later join's last_event_id.
		return nil, upTo, phoenix.Reply(p.v, f, "ok", json.RawMessage(`{"last_event_id":`+quote(rig.SeqID(upTo))+`}`)), nil
	}
	rp, err := p.s.readHistory(users, lastEventID)
	if err != nil {
		return nil, 0, phoenix.ErrorReply(p.v, f, reasonHistoryUnavailable), err
	}
	first, upTo = p.s.replayed(p.cn, users, lastEventID, rp)
	return first, upTo, phoenix.Reply(p.v, f, "ok", nil), nil
}

// joinParams reads the join payload phoenix.js sends as the channel's
// params. Only last_event_id means something; it must be an event id.
func joinParams(payload json.RawMessage) (lastEventID string, ok bool) {
	var params struct {
		LastEventID json.RawMessage `json:"last_event_id"`
	}
	if json.Unmarshal(payload, &params) != nil || len(params.LastEventID) == 0 || string(params.LastEventID) == "null" {
		return "", true // not an object, or no last_event_id: no params
	}
	if json.Unmarshal(params.LastEventID, &lastEventID) != nil || !rig.ValidEventID(lastEventID) {
		return "", false
	}
	return lastEventID, true
}

// leave stops the topic's messages before its reply is written: an event
// of the topic still queued is dropped by frames, one written before was
// written before the reply.
func (p *phoenixSocket) leave(f phoenix.Frame) error {
	user, ok := phoenix.User(f.Topic)
	if !ok || !p.joined(user) {
		return p.refuse(f, reasonUnmatchedTopic)
	}
	p.s.hub.RemoveUser(p.cn.Client, user)
	p.s.log.Debug("phoenix leave", "user", p.cn.Session.User, "session", p.cn.Session.ID, "topic", f.Topic)
	return p.w.Left(phoenix.Reply(p.v, f, "ok", nil), user)
}
