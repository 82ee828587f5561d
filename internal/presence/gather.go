package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// replyBuffer bounds the replies of one query waiting to be read.
const replyBuffer = 4096

// Gatherer asks every edge and merges their answers (ingest's side).
type Gatherer struct {
	nc      *nats.Conn
	timeout time.Duration
	log     *slog.Logger
	sub     *nats.Subscription
	since   time.Time // when it started listening to announcements

	mu    sync.Mutex
	edges map[string]edgeState
}

type edgeState struct {
	seen     time.Time
	interval time.Duration
	status   *Status // from the last announcement
}

// Result says how complete an answer is.
type Result struct {
	// Edges are the edges that answered in full.
	Edges []string
	// Complete is false when an edge known to be alive did not answer in
	// time: the answer may lack its connections.
	Complete bool
}

// NewGatherer listens for edge announcements on nc. Queries wait at most
// timeout for replies.
func NewGatherer(nc *nats.Conn, timeout time.Duration, log *slog.Logger) (*Gatherer, error) {
	g := &Gatherer{nc: nc, timeout: timeout, log: log, since: time.Now(), edges: map[string]edgeState{}}
	sub, err := nc.Subscribe(AnnounceSubject, g.onAnnounce)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", AnnounceSubject, err)
	}
	g.sub = sub
	_ = nc.FlushTimeout(time.Second) // listening before returning, when NATS is up
	return g, nil
}

// Close stops listening.
func (g *Gatherer) Close() { _ = g.sub.Unsubscribe() }

func (g *Gatherer) onAnnounce(m *nats.Msg) {
	var a Announcement
	if err := json.Unmarshal(m.Data, &a); err != nil || a.Edge == "" {
		g.log.Warn("ignored malformed presence announcement", "data", string(m.Data))
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if a.Gone {
		delete(g.edges, a.Edge)
		return
	}
	g.edges[a.Edge] = edgeState{seen: time.Now(), interval: time.Duration(max(a.IntervalMS, 1)) * time.Millisecond, status: a.Status}
}

// expected returns the edges alive now, and whether that list can be
// trusted to be whole: only after listening longer than the edges'
// announce interval has every live edge had the chance to announce itself.
func (g *Gatherer) expected(now time.Time) (map[string]bool, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	alive := map[string]bool{}
	longest := DefaultAnnounceInterval
	for id, e := range g.edges {
		if now.Sub(e.seen) < aliveFor*e.interval {
			alive[id] = true
		} else {
			delete(g.edges, id)
		}
		longest = max(longest, e.interval)
	}
	return alive, now.Sub(g.since) > longest+longest/2
}

func (g *Gatherer) saw(edge string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e, ok := g.edges[edge]; ok {
		e.seen = time.Now()
		g.edges[edge] = e
	} else {
		g.edges[edge] = edgeState{seen: time.Now(), interval: DefaultAnnounceInterval}
	}
}

// ErrNotConnected is returned when NATS is unreachable.
var ErrNotConnected = errors.New("NATS is unreachable")

// Users returns the ids of every user connected to any edge, sorted.
func (g *Gatherer) Users(ctx context.Context) ([]string, Result, error) {
	replies, res, err := g.gather(ctx, Query{})
	if err != nil {
		return nil, res, err
	}
	seen := map[string]bool{}
	users := []string{}
	for _, r := range replies {
		for _, u := range r.Users {
			if !seen[u] {
				seen[u] = true
				users = append(users, u)
			}
		}
	}
	slices.Sort(users)
	return users, res, nil
}

// Sessions returns user's connections on every edge, oldest first.
func (g *Gatherer) Sessions(ctx context.Context, user string) ([]Session, Result, error) {
	replies, res, err := g.gather(ctx, Query{User: user})
	if err != nil {
		return nil, res, err
	}
	sessions := []Session{}
	for _, r := range replies {
		sessions = append(sessions, r.Sessions...)
	}
	slices.SortFunc(sessions, func(a, b Session) int {
		if c := a.ConnectedSince.Compare(b.ConnectedSince); c != 0 {
			return c
		}
		return strings.Compare(a.Edge+a.SessionID, b.Edge+b.SessionID)
	})
	return sessions, res, nil
}

// partial is what one edge has sent of its answer so far.
type partial struct {
	parts   int
	got     map[int]Reply
	invalid bool
}

func (p *partial) done() bool { return !p.invalid && p.parts > 0 && len(p.got) == p.parts }

// gather scatters q to every edge and collects replies until every edge
// expected has answered in full, or the timeout passes. Only edges that
// answered in full count.
func (g *Gatherer) gather(ctx context.Context, q Query) ([]Reply, Result, error) {
	if !g.nc.IsConnected() {
		return nil, Result{}, ErrNotConnected
	}
	inbox := g.nc.NewInbox()
	ch := make(chan *nats.Msg, replyBuffer)
	sub, err := g.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, Result{}, fmt.Errorf("subscribe %s: %w", inbox, err)
	}
	defer sub.Unsubscribe()
	if err := g.nc.PublishRequest(QuerySubject, inbox, encode(q)); err != nil {
		return nil, Result{}, fmt.Errorf("publish %s: %w", QuerySubject, err)
	}
	start := time.Now()
	want, whole := g.expected(start)
	timer := time.NewTimer(g.timeout)
	defer timer.Stop()
	answers := map[string]*partial{}
	for !(whole && allDone(want, answers)) {
		select {
		case <-ctx.Done():
			return nil, Result{}, ctx.Err()
		case <-timer.C:
			// Every edge alive had the whole timeout to answer.
			replies, res := collect(answers)
			res.Complete = allDone(want, answers)
			if !res.Complete {
				g.log.Warn("presence query timed out: some edges did not answer", "timeout", g.timeout.String(),
					"expected", len(want), "answered", len(res.Edges))
			}
			return replies, res, nil
		case m := <-ch:
			var r Reply
			if err := json.Unmarshal(m.Data, &r); err != nil || r.Edge == "" || r.Parts < 1 || r.Part < 1 || r.Part > r.Parts {
				g.log.Warn("ignored malformed presence reply", "bytes", len(m.Data))
				continue
			}
			g.saw(r.Edge)
			want[r.Edge] = true
			p := answers[r.Edge]
			if p == nil {
				p = &partial{parts: r.Parts, got: map[int]Reply{}}
				answers[r.Edge] = p
			}
			if r.Parts != p.parts {
				p.invalid = true // two answers from edges sharing an id
			}
			p.got[r.Part] = r
		}
	}
	replies, res := collect(answers)
	res.Complete = true
	return replies, res, nil
}

func allDone(want map[string]bool, answers map[string]*partial) bool {
	for id := range want {
		if p := answers[id]; p == nil || !p.done() {
			return false
		}
	}
	return true
}

func collect(answers map[string]*partial) ([]Reply, Result) {
	var replies []Reply
	res := Result{Edges: []string{}}
	for id, p := range answers {
		if !p.done() {
			continue
		}
		res.Edges = append(res.Edges, id)
		for i := 1; i <= p.parts; i++ {
			replies = append(replies, p.got[i])
		}
	}
	slices.Sort(res.Edges)
	return replies, res
}
