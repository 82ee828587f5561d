package edge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/blacklist"
	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/clientaddr"
	"github.com/rig-go/rig/internal/ready"
	"github.com/rig-go/rig/internal/retry"
	"github.com/rig-go/rig/internal/route"
)

// handleProxy sends every request the edge has no endpoint for to the API
// gateway. The edge's own paths (/health..., /socket/...) never reach a
// route, whatever its pattern.
func (s *Server) handleProxy(c *fiber.Ctx) error {
	if route.Reserved(string(c.Context().URI().Path())) {
		return s.handleNotFound(c)
	}
	return s.gateway.Handle(c)
}

// trustedPeer says whether a request's peer is in TRUSTED_PROXIES: only
// then does the gateway pass on its X-Forwarded-* and Forwarded.
func (s *Server) trustedPeer(c *fiber.Ctx) bool {
	return s.limits.trusted.Contains(clientaddr.Addr(c.Context().RemoteAddr()))
}

// setRoutes builds the gateway's table from the route file's APIs (the
// boot set) and the cluster's. With PROXY_ALLOW_FILE_ROUTE_OVERRIDE, a
// cluster API replaces the file's API of the same id and all compete by
// specificity. Without it (the default) the file's routes are the
// operator's and read-only: a cluster API with a file API's id is left
// out, and the file's table is looked up first, so that whoever reaches
// ingest can neither turn a secured file route into an open one nor
// shadow its paths with a more specific route of another id.
func (s *Server) setRoutes(cluster map[string]*route.API) {
	override := s.cfg.Proxy.AllowFileOverride
	var file, rest []*route.API
	for _, a := range s.cfg.Proxy.APIs {
		if _, replaced := cluster[a.ID]; !replaced || !override {
			file = append(file, a)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(cluster)) {
		a := cluster[id]
		if !override && s.cfg.Proxy.FileRoute(id) {
			continue // applyAPI said so, once
		}
		if _, err := a.Proxy.Base(s.cfg.Proxy.Getenv); err != nil {
			s.log.Warn("route has no upstream on this edge; its requests get 502", "api", a.ID, "err", err)
		}
		rest = append(rest, a)
	}
	var t *route.Table
	if override {
		t = s.table(append(file, rest...))
	} else {
		t = s.table(file).Over(s.table(rest))
	}
	s.gateway.SetRoutes(t)
}

func (s *Server) table(apis []*route.API) *route.Table {
	t, errs := route.NewTable(apis, s.cfg.Proxy.Getenv)
	for _, err := range errs {
		s.log.Warn("route left out", "err", err)
	}
	return t
}

// watchAPIs follows the cluster's routes bucket (ingest's /v1/apis): first
// its current values, then every change, each applied to the gateway at
// once. It retries until ctx ends: without NATS the edge serves the file's
// routes.
func (s *Server) watchAPIs(ctx context.Context) error {
	bucket := broker.NewAPIs(s.broker)
	var backoff retry.Backoff
	var state ready.State // the cluster's routes followed, or why not
	for {
		kv, err := bucket.KV(ctx)
		if err == nil {
			err = s.followAPIs(ctx, kv)
			backoff.Reset()
		}
		if ctx.Err() != nil {
			return nil
		}
		if state.Fail(err) {
			s.log.Warn("cluster routes unavailable, retrying", "bucket", broker.APIsBucket, "err", err)
		}
		if backoff.Wait(ctx) != nil {
			return nil
		}
	}
}

var errWatchEnded = errors.New("watch ended")

func (s *Server) followAPIs(ctx context.Context, kv jetstream.KeyValue) error {
	w, err := broker.WatchAll(ctx, kv)
	if err != nil {
		return err
	}
	defer w.Stop()
	cluster := map[string]*route.API{}
	loaded := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("bucket %s: %w", broker.APIsBucket, errWatchEnded)
			}
			if e == nil { // the current values are all in
				loaded = true
				s.setRoutes(cluster)
				s.log.Info("routes from the cluster loaded", "apis", len(cluster), "endpoints", s.gateway.Routes().Len())
				continue
			}
			id, op := s.applyAPI(cluster, e)
			if loaded && id != "" {
				s.setRoutes(cluster)
				s.log.Info("route changed", "api", id, "op", op, "endpoints", s.gateway.Routes().Len())
			}
		}
	}
}

// applyAPI applies one bucket entry to cluster and returns the API's id.
func (s *Server) applyAPI(cluster map[string]*route.API, e jetstream.KeyValueEntry) (string, string) {
	id, err := broker.APIID(e.Key())
	if err != nil {
		s.log.Warn("bucket entry ignored", "key", e.Key(), "err", err)
		return "", ""
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(cluster, id)
		return id, "deleted"
	}
	a, err := route.ParseAPI(e.Value())
	if err == nil && a.ID != id {
		err = fmt.Errorf("holds API %q", a.ID)
	}
	if err == nil {
		// Ingest checked it too, but the bucket may have been written
		// around ingest, or by one with other rules. Host names are left
		// to the dial check: it sees what they resolve to then.
		guard := *s.gateway.Guard()
		guard.Resolve = nil
		err = guard.Check(a, s.cfg.Proxy.Getenv)
	}
	if err == nil && !s.cfg.Proxy.AllowFileOverride && s.cfg.Proxy.FileRoute(id) {
		s.log.Warn("route from the cluster ignored: the route file defines this id and its routes are read-only (PROXY_ALLOW_FILE_ROUTE_OVERRIDE=false)", "api", id, "revision", e.Revision())
		cluster[id] = a // kept, so that a later delete is reported; setRoutes skips it
		return id, "ignored"
	}
	if err != nil {
		// Written around ingest's checks; serve nothing rather than guess.
		s.log.Warn("invalid route in the cluster ignored", "api", id, "revision", e.Revision(), "err", err)
		delete(cluster, id)
		return id, "invalid"
	}
	cluster[id] = a
	return id, "put"
}

// listenerPort is a TCP listener's port; 0 for none.
func listenerPort(l net.Listener) int {
	if l == nil {
		return 0
	}
	if a, ok := l.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// revocations adapts the edge's blacklist copy to the gateway. Until the
// blacklist is loaded every session counts as revoked: fail closed.
type revocations struct{ set *blacklist.Set }

func (r revocations) Revoked(jti string) bool {
	return r.set.Ready() != nil || r.set.Listed(jti)
}
