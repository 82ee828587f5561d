package edge

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/client"
	"github.com/rig-go/rig/internal/history"
	"github.com/rig-go/rig/internal/metrics"
	"github.com/rig-go/rig/internal/rig"
)

// conn is one live connection as the edge tracks it.
type conn struct {
	*client.Client
	expiry  *time.Timer
	metrics *metrics.Transport
	held    *held // released when the connection ends
}

// errNotConnected is why register refuses while the edge is cut off from
// NATS; otherwise it fails with the subscription's own error.
var errNotConnected = errors.New("NATS is unreachable")

// unavailable is the answer to a request whose connection could not be
// registered: 503, with the cause.
func unavailable(err error) *api.Error { return api.Unavailable(err.Error(), 1) }

// open registers a client for an admitted request and logs the connection.
// Live events wait (the client holds them) until begin queues the
// connection's first events. The transport attaches itself to the client,
// calls begin, and calls close when done.
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
	cl := client.New(a.session, transport, s.cfg.QueueSize)
	cl.Counters = &s.counters
	cl.Remote, cl.Conn = a.remote, connNumbers.Add(1)
	if transport != "longpoll" && transport != "phoenix-longpoll" {
		cl.Written = s.written // a poll's receipts follow its answer (confirmPoll)
	}
	cl.Hold()
	if err := s.hub.Register(cl, a.session.ID, a.users); err != nil {
		a.held.release()
		return nil, err
	}
	cn := &conn{Client: cl, metrics: s.metrics.Transport(transport), held: a.held}
	cn.metrics.Opened.Inc()
	cn.metrics.Open.Inc()
	cn.expiry = time.AfterFunc(time.Until(a.session.Expires), func() {
		cl.SendFinal(tokenExpired, client.DisconnectTokenExpired)
	})
	// Blacklisted between admission and registration: the set's kill
	// looked for the session in the hub before it was there.
	if s.blacklist.Listed(a.session.ID) {
		s.metrics.SessionsKilled.Inc()
		cl.SendFinal(sessionKilled, client.DisconnectSessionKilled)
	}
	return cn, nil
}

// begin queues a connection's first events and releases the live ones held
// since open: the connected event, then, for a client that resumes, what
// history holds after its last event id. When history cannot be read the
// connection ends instead (see failBegin), before any event with an id.
func (s *Server) begin(cn *conn, users []string, from string) {
	connected := connectedEvent(users)
	if from != "" {
		rp, err := s.readHistory(users, from)
		if err != nil {
			s.failBegin(cn, from, err)
			return
		}
		first, upTo := s.replayed(cn, users, from, rp, connected)
		cn.Release(users, upTo, first...)
		return
	}
	// A fresh connection starts at the users' latest message: its
	// connected event carries that position as its id, so a client that
	// loses the connection before any message arrives still resumes
	// exactly (EventSource sends it back as Last-Event-ID).
	floor, err := s.position(users)
	if err != nil {
		s.failBegin(cn, from, err)
		return
	}
	connected.ID = rig.SeqID(floor)
	cn.Release(users, floor, connected)
}

// historyUnavailable ends a connection whose start could not be read from
// history. Being a reconnect event, it carries no id: an SSE client keeps
// its Last-Event-ID, a plain socket (closed with 1012) reconnects with its
// last_event_id, and both get exactly what they missed once history
// answers. Sending the connection on without its replay, or with a gap
// for messages history still holds, would be the silent loss.
var historyUnavailable = &rig.Event{Kind: rig.KindReconnect, Data: []byte(`{"reason":"history unavailable; reconnect with the same last event id"}`)}

func (s *Server) failBegin(cn *conn, from string, err error) {
	s.log.Warn("history unavailable: closing the connection so that the client comes back with its cursor",
		"transport", cn.Transport, "user", cn.Session.User, "last_event_id", from, "err", err)
	cn.Fail(historyUnavailable, client.DisconnectHistoryUnavailable)
}

// position returns the stream position a fresh connection to users starts
// at (see positions.Table.Fresh).
func (s *Server) position(users []string) (uint64, error) {
	return s.subs.positions.Fresh(users)
}

func connectedEvent(users []string) *rig.Event {
	data, _ := json.Marshal(struct {
		Users []string `json:"users"`
	}{users})
	return &rig.Event{Kind: rig.KindConnected, Data: data}
}

// readHistory reads what history holds for users after from (an empty
// from reads only where history stands), waiting for its turn among the
// edge's reads (see positions.Table.Since).
func (s *Server) readHistory(users []string, from string) (*history.Replay, error) {
	return s.subs.positions.Since(users, from)
}

// replayed returns what a connection (or a Phoenix join) that read rp
// starts with: first, a gap event if the replay says messages may be
// missing, and the replayed messages; and the position the client has
// every message of users up to. The caller queues them as it releases the
// live events held meanwhile. Subscribing first and replaying second means
// nothing falls between the two; the client drops live copies of
// replayed messages.
func (s *Server) replayed(cn *conn, users []string, from string, rp *history.Replay, first ...*rig.Event) ([]*rig.Event, uint64) {
	if from != "" {
		s.metrics.Replays.Inc()
		s.metrics.ReplayedMessages.Add(float64(len(rp.Events)))
	}
	if rp.Gap {
		s.metrics.Gaps.Inc()
		first = append(first, gapEvent(from, users...))
	}
	s.log.Debug("replayed", "user", cn.Session.User, "last_event_id", from, "replayed", len(rp.Events), "gap", rp.Gap)
	return append(first, rp.Events...), rp.Floor
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
func (s *Server) close(cn *conn, d client.Disconnect) {
	s.unregister(cn, d)
	s.log.Info("connection closed", "transport", cn.Transport, "user", cn.Session.User,
		"session", cn.Session.ID, "reason", cn.Reason().Reason, "duration", time.Since(cn.Since).Round(time.Millisecond).String())
}

// unregister is close without the log line (see register).
func (s *Server) unregister(cn *conn, d client.Disconnect) {
	cn.Close(d)
	cn.expiry.Stop()
	s.hub.Unregister(cn.Client)
	cn.metrics.Open.Dec()
	cn.held.release()
}
