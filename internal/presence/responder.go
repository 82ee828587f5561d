package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Source is what an edge knows about its own connections.
type Source interface {
	// Users returns the ids of the users with a connection here.
	Users() []string
	// Sessions returns the connections of user here.
	Sessions(user string) []Session
	// Each calls yield with every connection here, for listings. It may
	// leave out Users, the one field that costs a copy: a listing keeps a
	// page of the sessions and asks Completer for theirs alone.
	Each(yield func(Session))
}

// Completer is a Source whose Each leaves out Users: Complete fills them
// in (from s.Ref).
type Completer interface {
	Complete(s *Session)
}

// Responder answers presence queries for one edge and announces it.
type Responder struct {
	nc       *nats.Conn
	edge     string
	interval time.Duration
	src      Source
	log      *slog.Logger
	sub      *nats.Subscription
}

// NewResponder answers queries on nc for edge from src; Run announces it.
// The subscription is a single one for the whole edge.
func NewResponder(nc *nats.Conn, edge string, interval time.Duration, src Source, log *slog.Logger) (*Responder, error) {
	r := &Responder{nc: nc, edge: edge, interval: interval, src: src, log: log}
	sub, err := nc.Subscribe(QuerySubject, r.answer)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", QuerySubject, err)
	}
	r.sub = sub
	_ = nc.FlushTimeout(time.Second) // answering before the first announcement, when NATS is up
	return r, nil
}

// Run announces the edge every interval until ctx ends; then it stops
// answering and says goodbye, so ingest stops waiting for this edge.
func (r *Responder) Run(ctx context.Context) error {
	r.announce(false)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = r.sub.Unsubscribe()
			r.announce(true)
			_ = r.nc.FlushTimeout(time.Second)
			return nil
		case <-t.C:
			r.announce(false)
		}
	}
}

func (r *Responder) announce(gone bool) {
	// Publishing while NATS is away fails or is buffered; the next tick
	// announces again either way.
	a := Announcement{Edge: r.edge, IntervalMS: r.interval.Milliseconds(), Gone: gone}
	if st, ok := r.src.(StatusSource); ok && !gone {
		s := st.Status()
		a.Status = &s
	}
	_ = r.nc.Publish(AnnounceSubject, encode(a))
}

func (r *Responder) answer(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	var q Query
	if err := json.Unmarshal(m.Data, &q); err != nil {
		r.log.Warn("ignored malformed presence query", "data", string(m.Data), "err", err)
		return
	}
	var parts []Reply
	switch {
	case q.List != nil:
		page, total := Page(*q.List, r.src.Each)
		if c, ok := r.src.(Completer); ok {
			for i := range page {
				c.Complete(&page[i])
			}
		}
		parts = splitSessions(r.edge, page, r.limit())
		for i := range parts {
			parts[i].Total, parts[i].Listed = total, true
		}
	case q.User == "":
		parts = splitUsers(r.edge, r.src.Users(), r.limit())
	default:
		parts = splitSessions(r.edge, r.src.Sessions(q.User), r.limit())
	}
	for _, p := range parts {
		if err := r.nc.Publish(m.Reply, encode(p)); err != nil {
			r.log.Warn("presence reply not sent", "err", err)
			return
		}
	}
}

// limit is the payload size a reply part aims to stay under.
func (r *Responder) limit() int {
	return max(int(r.nc.MaxPayload())-4096, 4096)
}

// replyOverhead bounds the JSON of a Reply around its items.
const replyOverhead = 512

// splitUsers packs users into as few replies as fit limit bytes each.
func splitUsers(edge string, users []string, limit int) []Reply {
	return split(edge, users, limit, func(r *Reply, u string) { r.Users = append(r.Users, u) })
}

func splitSessions(edge string, sessions []Session, limit int) []Reply {
	return split(edge, sessions, limit, func(r *Reply, s Session) { r.Sessions = append(r.Sessions, s) })
}

func split[T any](edge string, items []T, limit int, add func(*Reply, T)) []Reply {
	replies := []Reply{{Edge: edge}}
	size := replyOverhead + len(edge)
	for _, it := range items {
		n := len(encode(it)) + 1
		cur := &replies[len(replies)-1]
		if size+n > limit && (len(cur.Users) > 0 || len(cur.Sessions) > 0) {
			replies = append(replies, Reply{Edge: edge})
			cur = &replies[len(replies)-1]
			size = replyOverhead + len(edge)
		}
		add(cur, it)
		size += n
	}
	for i := range replies {
		replies[i].Part, replies[i].Parts = i+1, len(replies)
	}
	return replies
}
