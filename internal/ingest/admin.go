package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/blacklist"
	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/presence"
	"github.com/rig-go/rig/internal/rig"
)

// The operator's API (/v1/admin/*): what the console and `ingest admin`
// read. Acting goes through the API's own calls (the blacklist, messages,
// /v1/apis), so that there is one way to do each thing.

// sessionsPage is GET /v1/admin/sessions.
type sessionsPage struct {
	Sessions []presence.Session `json:"sessions"`
	// Total is how many sessions match, on the edges that answered.
	Total int `json:"total"`
	// Next, when set, is the cursor of the next page.
	Next string `json:"next,omitempty"`
	// Edges answered; Complete is false when an edge alive did not.
	Edges    int  `json:"edges"`
	Complete bool `json:"complete"`
}

// handleAdminSessions is GET /v1/admin/sessions?q=&user=&limit=&cursor=:
// one page of the sessions of every edge, by user then jti.
func (s *Server) handleAdminSessions(c *fiber.Ctx) error {
	q, err := listQuery(c)
	if err != nil {
		return err
	}
	l, err := s.presence.List(c.UserContext(), q)
	if err != nil {
		return presenceError(err)
	}
	presenceHeaders(c, l.Result)
	p := sessionsPage{Sessions: l.Sessions, Total: l.Total, Edges: len(l.Edges), Complete: l.Complete}
	if l.Next != nil {
		p.Next = l.Next.Cursor()
	}
	return api.JSON(c, fiber.StatusOK, p)
}

// listQuery reads a listing's parameters, refusing what no page answers.
func listQuery(c *fiber.Ctx) (presence.ListQuery, error) {
	q := presence.ListQuery{Limit: presence.DefaultListLimit}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > presence.MaxListLimit {
			return q, api.NewError(fiber.StatusBadRequest, fmt.Sprintf("limit=%.40q: expected a whole number from 1 to %d", v, presence.MaxListLimit))
		}
		q.Limit = n
	}
	q.Q = strings.Clone(c.Query("q"))
	if len(q.Q) > presence.MaxSearchLen || !utf8.ValidString(q.Q) {
		return q, api.NewError(fiber.StatusBadRequest, fmt.Sprintf("q: expected valid UTF-8 of at most %d bytes, got %d bytes", presence.MaxSearchLen, len(q.Q)))
	}
	if u := c.Query("user"); u != "" {
		if err := rig.ValidateUser(u); err != nil {
			return q, api.NewError(fiber.StatusBadRequest, "user: "+err.Error())
		}
		q.User = strings.Clone(u)
	}
	if v := c.Query("cursor"); v != "" {
		k, err := presence.ParseCursor(v)
		if err != nil {
			return q, api.NewError(fiber.StatusBadRequest, "cursor: "+err.Error())
		}
		q.After = &k
	}
	return q, nil
}

// adminHealth is GET /v1/admin/health: everything an operator checks
// first, in one answer.
type adminHealth struct {
	// Status is ok when ingest and every edge are ready and every stream
	// has its leader and current replicas; degraded otherwise.
	Status  string          `json:"status"`
	Ingest  health          `json:"ingest"`
	NATS    natsHealth      `json:"nats"`
	Streams []streamHealth  `json:"streams"`
	Edges   []presence.Edge `json:"edges"`
}

type natsHealth struct {
	Status     string    `json:"status"`
	Connected  string    `json:"connected,omitempty"` // the server's URL
	ServerID   string    `json:"serverId,omitempty"`
	ServerName string    `json:"serverName,omitempty"`
	Cluster    string    `json:"cluster,omitempty"`
	RTT        string    `json:"rtt,omitempty"`
	Servers    []string  `json:"servers"`    // every server the connection knows
	Discovered []string  `json:"discovered"` // those it learnt from the cluster
	JetStream  *jsHealth `json:"jetstream,omitempty"`
	Error      string    `json:"error,omitempty"`
}

type jsHealth struct {
	Domain    string `json:"domain,omitempty"`
	Streams   int    `json:"streams"`
	Consumers int    `json:"consumers"`
	Memory    uint64 `json:"memory"`
	Storage   uint64 `json:"storage"`
}

type streamHealth struct {
	Name     string          `json:"name"`
	Role     string          `json:"role"` // history, blacklist or routes
	Replicas int             `json:"replicas"`
	Cluster  string          `json:"cluster,omitempty"`
	Leader   string          `json:"leader,omitempty"`
	Peers    []replicaHealth `json:"peers"` // the replicas other than the leader
	Messages uint64          `json:"messages"`
	Bytes    uint64          `json:"bytes"`
	OK       bool            `json:"ok"`
	Error    string          `json:"error,omitempty"`
}

type replicaHealth struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	// Lag is how many operations the replica is behind the leader.
	Lag    uint64 `json:"lag"`
	Active string `json:"active"` // since it was last heard of
}

// adminStreams are the streams ingest and the edges depend on.
var adminStreams = []struct{ name, role string }{
	{broker.StreamName, "history"},
	{"KV_" + blacklist.BucketName, "blacklist"},
	{"KV_" + broker.APIsBucket, "routes"},
}

// healthTimeout bounds each JetStream request of GET /v1/admin/health.
const healthTimeout = 2 * time.Second

func (s *Server) handleAdminHealth(c *fiber.Ctx) error {
	h := adminHealth{Status: "ok", NATS: s.natsHealth(c.UserContext()), Edges: s.presence.Edges()}
	var ready bool
	h.Ingest, ready = s.health()
	ok := ready && h.NATS.Error == ""
	for _, st := range adminStreams {
		sh := s.streamHealth(c.UserContext(), st.name, st.role)
		ok = ok && sh.OK
		h.Streams = append(h.Streams, sh)
	}
	for _, e := range h.Edges {
		ok = ok && e.Status != nil && e.Status.Ready
	}
	if !ok {
		h.Status = "degraded"
	}
	return api.JSON(c, fiber.StatusOK, h)
}

func (s *Server) natsHealth(ctx context.Context) natsHealth {
	nc := s.broker.NC
	n := natsHealth{Status: nc.Status().String(), Servers: withoutUserinfo(nc.Servers()), Discovered: withoutUserinfo(nc.DiscoveredServers())}
	if !nc.IsConnected() {
		n.Error = "not connected"
		return n
	}
	if u := withoutUserinfo([]string{nc.ConnectedUrl()}); len(u) == 1 {
		n.Connected = u[0]
	}
	n.ServerID, n.ServerName, n.Cluster = nc.ConnectedServerId(), nc.ConnectedServerName(), nc.ConnectedClusterName()
	if rtt, err := nc.RTT(); err == nil {
		n.RTT = rtt.Round(time.Microsecond).String()
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	ai, err := s.js.AccountInfo(ctx)
	if err != nil {
		n.Error = "JetStream account info: " + err.Error()
		return n
	}
	n.JetStream = &jsHealth{Domain: ai.Domain, Streams: ai.Streams, Consumers: ai.Consumers, Memory: ai.Memory, Storage: ai.Store}
	return n
}

// withoutUserinfo returns the server URLs without the user and password
// that NATS_URL may carry: the answer is for operators' screens.
func withoutUserinfo(urls []string) []string {
	out := []string{}
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			continue // not shown rather than shown with what it may hold
		}
		u.User = nil
		out = append(out, u.String())
	}
	return out
}

func (s *Server) streamHealth(ctx context.Context, name, role string) streamHealth {
	sh := streamHealth{Name: name, Role: role, Peers: []replicaHealth{}}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			sh.Error = "not created yet"
		} else {
			sh.Error = err.Error()
		}
		return sh
	}
	info := st.CachedInfo()
	sh.Replicas, sh.Messages, sh.Bytes = info.Config.Replicas, info.State.Msgs, info.State.Bytes
	sh.OK = true
	if ci := info.Cluster; ci != nil {
		sh.Cluster, sh.Leader = ci.Name, ci.Leader
		for _, p := range ci.Replicas {
			sh.Peers = append(sh.Peers, replicaHealth{Name: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag,
				Active: p.Active.Round(time.Millisecond).String()})
			sh.OK = sh.OK && p.Current && !p.Offline
		}
	}
	if sh.Leader == "" && sh.Replicas > 1 {
		sh.OK, sh.Error = false, "no leader"
	}
	return sh
}
