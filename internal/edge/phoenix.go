package edge

import (
	"encoding/json"
	"slices"

	"github.com/fasthttp/websocket"
	"golang.org/x/time/rate"

	"github.com/rig-go/rig/internal/history"
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
)

// phoenixSocket is the server side of one phoenix.js Socket: its channels
// are joins of user:<id> topics, each adding that user to the socket's one
// hub registration, so the hub and the client queue stay those of any
// connection.
type phoenixSocket struct {
	s      *Server
	cn     *conn
	wc     *ws.Conn
	v      phoenix.Version
	joins  []phoenixJoin
	joinsL *rate.Limiter
}

// phoenixJoin is one joined topic.
type phoenixJoin struct {
	user    string
	joinRef phoenix.Ref
	// lastEventID is the join payload's last_event_id: the last message the
	// client saw, where resuming will start.
	lastEventID string
}

func (s *Server) newPhoenixSocket(cn *conn, wc *ws.Conn, v phoenix.Version) *phoenixSocket {
	return &phoenixSocket{s: s, cn: cn, wc: wc, v: v, joinsL: rate.NewLimiter(joinRate, joinBurst)}
}

// serve reads and answers frames until the socket ends, and says why.
// ws.Conn.Read holds the client to its frame budget, text and UTF-8.
func (p *phoenixSocket) serve() (string, error) {
	for {
		data, err := p.wc.Read()
		if err != nil {
			return readFailed(p.wc, err), err
		}
		f, err := phoenix.Decode(p.v, data)
		if err != nil {
			// Phoenix closes a socket whose frame it cannot decode; with no
			// readable ref there is nothing to reply to.
			p.wc.CloseWith(websocket.CloseInvalidFramePayloadData, "invalid phoenix frame")
			return err.Error(), err
		}
		if err := p.handle(f); err != nil {
			return "write failed", err
		}
	}
}

func (p *phoenixSocket) handle(f phoenix.Frame) error {
	switch {
	case f.Topic == phoenix.TopicPhoenix && f.Event == phoenix.EventHeartbeat:
		return p.wc.Reply(phoenix.Reply(p.v, f, "ok", nil))
	case f.Event == phoenix.EventJoin:
		return p.join(f)
	case f.Event == phoenix.EventLeave:
		return p.leave(f)
	}
	reason := reasonUnmatchedTopic
	if user, ok := phoenix.User(f.Topic); ok && p.index(user) >= 0 {
		reason = reasonUnknownEvent
	}
	return p.refuse(f, reason)
}

func (p *phoenixSocket) refuse(f phoenix.Frame, reason string) error {
	p.s.log.Debug("phoenix frame refused", "user", p.cn.Session.User, "session", p.cn.Session.ID,
		"topic", f.Topic, "event", f.Event, "reason", reason)
	return p.wc.Reply(phoenix.ErrorReply(p.v, f, reason))
}

func (p *phoenixSocket) index(user string) int {
	return slices.IndexFunc(p.joins, func(j phoenixJoin) bool { return j.user == user })
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
		return p.wc.Reply(phoenix.ErrorReply(p.v, f, reasonUnauthorized))
	}
	lastEventID, ok := joinParams(f.Payload)
	if !ok {
		return p.refuse(f, reasonBadParams)
	}
	if i := p.index(user); i >= 0 {
		// phoenix.js leaves a duplicate channel before joining again; a
		// client that does not still gets one subscription, under the
		// latest join.
		p.joins[i].joinRef, p.joins[i].lastEventID = f.JoinRef, lastEventID
		return p.wc.Reply(phoenix.Reply(p.v, f, "ok", nil))
	}
	if len(p.joins) >= MaxUsersPerConnection {
		return p.refuse(f, reasonTooManyTopics)
	}
	if !p.joinsL.Allow() {
		return p.refuse(f, reasonTooManyJoins)
	}
	// Live messages wait until what the join starts with is queued: the
	// replay after last_event_id, or nothing older than its position.
	// Both are read before the join is answered: a join whose history
	// cannot be read gets an error reply, and phoenix.js joins again with
	// the same params, so the client's cursor never moves past what it has.
	p.cn.Hold()
	var subErr error
	var floor uint64
	var rp *history.Replay
	reason := reasonNotSubscribed
	err := p.wc.Join(user, func() error {
		if subErr = p.s.hub.AddUser(p.cn.Client, user); subErr != nil {
			return subErr
		}
		if lastEventID == "" {
			floor, subErr = p.s.position([]string{user})
		} else {
			rp, subErr = p.s.readHistory([]string{user}, lastEventID)
		}
		if subErr != nil {
			reason = reasonHistoryUnavailable
		}
		return subErr
	}, func(err error) []byte {
		if err != nil {
			return phoenix.ErrorReply(p.v, f, reason)
		}
		if lastEventID == "" {
			// The channel's position, for a later join's last_event_id.
			return phoenix.Reply(p.v, f, "ok", json.RawMessage(`{"last_event_id":`+quote(rig.SeqID(floor))+`}`))
		}
		return phoenix.Reply(p.v, f, "ok", nil)
	})
	if subErr != nil {
		p.cn.Resume(nil, 0)
		p.s.hub.RemoveUser(p.cn.Client, user)
		p.s.log.Warn("phoenix join failed", "user", sess.User, "topic", f.Topic, "last_event_id", lastEventID, "reason", reason, "err", subErr)
		return err
	}
	p.joins = append(p.joins, phoenixJoin{user: user, joinRef: f.JoinRef, lastEventID: lastEventID})
	p.s.log.Debug("phoenix join", "user", sess.User, "session", sess.ID, "topic", f.Topic, "last_event_id", lastEventID)
	if lastEventID != "" {
		p.s.replayed(p.cn, []string{user}, lastEventID, rp)
	} else {
		p.cn.Resume([]string{user}, floor)
	}
	return err
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

func (p *phoenixSocket) leave(f phoenix.Frame) error {
	user, ok := phoenix.User(f.Topic)
	i := p.index(user)
	if !ok || i < 0 {
		return p.refuse(f, reasonUnmatchedTopic)
	}
	p.joins = slices.Delete(p.joins, i, i+1)
	p.s.log.Debug("phoenix leave", "user", p.cn.Session.User, "session", p.cn.Session.ID, "topic", f.Topic)
	return p.wc.Leave(user, func() { p.s.hub.RemoveUser(p.cn.Client, user) }, phoenix.Reply(p.v, f, "ok", nil))
}
