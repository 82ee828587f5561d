package presence

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Listing every session of every edge (the operator's console) is paged
// at the edges: each edge answers with at most one page of its own
// sessions in Key order, after the cursor, and how many it has in all, so
// that a query moves at most edges × (limit+1) sessions however many are
// connected. Ingest merges the pages and keeps the first limit.

// Limits of a listing page.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// MaxSearchLen bounds the substring a listing searches for: ids are
	// at most this long (user ids and jtis alike).
	MaxSearchLen = 256
)

// ListQuery asks for one page of every session whose user or jti
// contains Q (every session when Q is empty), of User alone when set, in
// Key order.
type ListQuery struct {
	Q     string `json:"q,omitempty"`
	User  string `json:"user,omitempty"`
	After *Key   `json:"after,omitempty"` // the last Key of the previous page
	Limit int    `json:"limit"`
}

// Key orders sessions in a listing: by user, then jti, then edge, then the
// edge's own connection number, which makes it total (a jti may be open
// several times, on several edges).
type Key struct {
	User string `json:"u"`
	JTI  string `json:"j"`
	Edge string `json:"e"`
	Conn uint64 `json:"c"`
}

// Key returns s's place in a listing.
func (s *Session) Key() Key { return Key{User: s.User, JTI: s.SessionID, Edge: s.Edge, Conn: s.Conn} }

// Compare orders keys.
func (k Key) Compare(o Key) int {
	return cmp.Or(strings.Compare(k.User, o.User), strings.Compare(k.JTI, o.JTI),
		strings.Compare(k.Edge, o.Edge), cmp.Compare(k.Conn, o.Conn))
}

// Cursor is how a Key travels in a URL: opaque to callers, who pass back
// the one they were given.
func (k Key) Cursor() string {
	b, _ := json.Marshal(k)
	return base64.RawURLEncoding.EncodeToString(b)
}

// maxCursorLen bounds a cursor before decoding: a Key of ids within
// their limits is far shorter.
const maxCursorLen = 4096

// ErrBadCursor is the error of a cursor that is not one a listing gave.
var ErrBadCursor = errors.New("not a cursor returned by a previous page")

// ParseCursor reads a cursor that Cursor made.
func ParseCursor(s string) (Key, error) {
	var k Key
	if len(s) > maxCursorLen {
		return k, fmt.Errorf("%w: %d bytes, at most %d", ErrBadCursor, len(s), maxCursorLen)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return k, fmt.Errorf("%w: %v", ErrBadCursor, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&k); err != nil || dec.More() {
		return k, fmt.Errorf("%w: not a cursor's JSON", ErrBadCursor)
	}
	if k.User == "" {
		return k, fmt.Errorf("%w: no user", ErrBadCursor)
	}
	return k, nil
}

// Matches reports whether s is one q searches for: of q.User if set, and
// with q.Q in its user or jti (case-sensitive, as ids are).
func (q *ListQuery) Matches(s *Session) bool {
	if q.User != "" && s.User != q.User {
		return false
	}
	return q.Q == "" || strings.Contains(s.User, q.Q) || strings.Contains(s.SessionID, q.Q)
}

// Page selects, from every session each yields, those q matches: the
// first q.Limit+1 after q.After in Key order (one more than asked, so the
// caller knows whether a next page exists), and how many match in all.
func Page(q ListQuery, each func(yield func(Session))) ([]Session, int) {
	limit := min(max(q.Limit, 1), MaxListLimit) + 1
	var page []Session
	total := 0
	// The page is kept sorted and cut at limit as it fills, so a listing
	// of 100,000 sessions sorts 100,000 keys only in the worst order.
	worst := func() Key { return page[len(page)-1].Key() }
	each(func(s Session) {
		if !q.Matches(&s) {
			return
		}
		total++
		k := s.Key()
		if q.After != nil && k.Compare(*q.After) <= 0 {
			return
		}
		if len(page) == limit && k.Compare(worst()) >= 0 {
			return
		}
		i, _ := slices.BinarySearchFunc(page, k, func(e Session, k Key) int { return e.Key().Compare(k) })
		page = slices.Insert(page, i, s)
		if len(page) > limit {
			page = page[:limit]
		}
	})
	if page == nil {
		page = []Session{}
	}
	return page, total
}

// Listing is one page of every edge's sessions.
type Listing struct {
	Sessions []Session
	// Total is how many sessions match, on the edges that answered.
	Total int
	// Next is the last Key of this page when another page follows.
	Next *Key
	Result
}

// List returns one page of the sessions q matches, across every edge.
func (g *Gatherer) List(ctx context.Context, q ListQuery) (Listing, error) {
	q.Limit = min(max(q.Limit, 1), MaxListLimit)
	replies, res, err := g.gather(ctx, Query{List: &q})
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Sessions: []Session{}, Result: res}
	totals := map[string]int{}
	older := map[string]bool{}
	for _, r := range replies {
		if !r.Listed {
			older[r.Edge] = true
			continue
		}
		l.Sessions = append(l.Sessions, r.Sessions...)
		totals[r.Edge] = r.Total // every part carries its edge's total
	}
	if len(older) > 0 {
		// Edges from before listings (a rolling upgrade): their sessions
		// are not in the page, which says so.
		l.Edges = slices.DeleteFunc(l.Edges, func(e string) bool { return older[e] })
		l.Complete = false
	}
	for _, n := range totals {
		l.Total += n
	}
	slices.SortFunc(l.Sessions, func(a, b Session) int { return a.Key().Compare(b.Key()) })
	if len(l.Sessions) > q.Limit {
		l.Sessions = l.Sessions[:q.Limit]
		k := l.Sessions[q.Limit-1].Key()
		l.Next = &k
	}
	return l, nil
}

// Status is an edge's view of itself, carried by its announcements.
type Status struct {
	Ready       bool   `json:"ready"`
	Detail      string `json:"detail,omitempty"` // why not ready
	Connections int    `json:"connections"`
}

// StatusSource is a Source that also says how the edge is.
type StatusSource interface {
	Status() Status
}

// Edge is an edge as ingest last heard of it.
type Edge struct {
	ID       string    `json:"edge"`
	LastSeen time.Time `json:"lastSeen"`
	// Status is nil when the edge's announcements carry none (an edge
	// from before they did).
	Status *Status `json:"status,omitempty"`
}

// Edges returns the edges alive now, by id.
func (g *Gatherer) Edges() []Edge {
	alive, _ := g.expected(time.Now())
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []Edge{}
	for id := range alive {
		e := g.edges[id]
		out = append(out, Edge{ID: id, LastSeen: e.seen.UTC(), Status: e.status})
	}
	slices.SortFunc(out, func(a, b Edge) int { return strings.Compare(a.ID, b.ID) })
	return out
}
