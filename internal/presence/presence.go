// Package presence answers "who is online" across every edge without
// writing to NATS per connection: ingest scatters a query on QuerySubject,
// every edge answers from its own registry, and ingest gathers the replies
// for a bounded time. Edges announce themselves every few seconds, so ingest
// knows how many replies to expect and usually answers as soon as all are in.
package presence

import (
	"encoding/json"
	"time"
)

// Subjects of the protocol. Not under user.>, which carries messages.
const (
	// QuerySubject carries a Query; its reply subject gathers the Replies.
	QuerySubject = "rig.presence.query"
	// AnnounceSubject carries each edge's Announcement.
	AnnounceSubject = "rig.presence.edges"
)

// DefaultAnnounceInterval is how often an edge announces itself.
const DefaultAnnounceInterval = 2 * time.Second

// aliveFor is how many announce intervals an edge counts as alive after
// its last announcement or reply.
const aliveFor = 3

// Query asks every edge for its users, or for one user's sessions.
type Query struct {
	// User, when set, asks for that user's sessions; else for the ids of
	// every user connected.
	User string `json:"user,omitempty"`
	// List, when set, asks for one page of every session (see List).
	List *ListQuery `json:"list,omitempty"`
}

// Session is one connection as presence shows it.
type Session struct {
	// SessionID is the token's jti (empty for tokens without one).
	SessionID string `json:"jti"`
	// User is the token's user.
	User string `json:"user"`
	// Users are the users whose messages the connection receives.
	Users []string `json:"users"`
	// Transport is sse, websocket, phoenix, longpoll or phoenix-longpoll.
	Transport string `json:"transport"`
	// Edge is the EDGE_ID of the edge holding the connection.
	Edge string `json:"edge"`
	// ConnectedSince is when the connection opened.
	ConnectedSince time.Time `json:"connectedSince"`
	// Remote is the client's address (behind a trusted proxy, the one it
	// forwarded).
	Remote string `json:"remote,omitempty"`
	// Expires is when the token stops being accepted, and the edge ends
	// the connection.
	Expires time.Time `json:"expires,omitzero"`
	// Conn numbers the connection on its edge, so that listings have a
	// total order (see Key).
	Conn uint64 `json:"conn,omitempty"`
	// Ref is the Source's own handle on the connection, for Complete;
	// it never leaves the edge.
	Ref any `json:"-"`
}

// Reply is one edge's answer, or one part of it: an edge splits an answer
// that would exceed the NATS payload limit into Parts messages.
type Reply struct {
	Edge     string    `json:"edge"`
	Part     int       `json:"part"`  // 1..Parts
	Parts    int       `json:"parts"` // at least 1
	Users    []string  `json:"users,omitempty"`
	Sessions []Session `json:"sessions,omitempty"`
	// Total is, in the answer to a listing, how many of the edge's
	// sessions match; every part carries it.
	Total int `json:"total,omitempty"`
	// Listed marks the answer to a listing: an edge from before listings
	// answers one with its users instead, which must not pass for none.
	Listed bool `json:"listed,omitempty"`
}

// Announcement says an edge exists (or, with Gone, no longer does).
type Announcement struct {
	Edge string `json:"edge"`
	// IntervalMS is how often the edge announces itself, in milliseconds.
	IntervalMS int64 `json:"intervalMs"`
	Gone       bool  `json:"gone,omitempty"`
	// Status is how the edge is, when its Source says (StatusSource).
	Status *Status `json:"status,omitempty"`
}

func encode(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
