package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/ready"
	"github.com/rig-go/rig/internal/retry"
	"github.com/rig-go/rig/internal/route"
)

// The API gateway's routes at runtime (RIG's /v1/apis): stored in the
// routes bucket, which every edge watches and applies within moments.
// GET /v1/apis lists them with "source":"runtime", and the route file's
// routes that ingest knows with "source":"file". The file's routes are read-only: a POST, PUT or DELETE
// of one of their ids gets 409 (ingest knows them from its own
// PROXY_CONFIG_FILE, the edges' file), unless
// PROXY_ALLOW_FILE_ROUTE_OVERRIDE lets a route here replace the file's.
// Every route's target passes the guard (route.Guard): 400 naming the
// field otherwise.

// ensureAPIs creates the routes bucket at start rather than at the first
// /v1/apis call: edges whose NATS user may not create it (nats/secured)
// wait for it to exist, and follow it from then on.
func (s *Server) ensureAPIs(ctx context.Context) error {
	var state ready.State
	_ = retry.Do(ctx, func(ctx context.Context) error {
		_, err := s.apis.KV(ctx)
		return err
	}, func(err error) {
		// While the broker is not ready it logs why itself.
		if state.Fail(err) && !broker.NotReady(err) {
			s.log.Warn("routes bucket not ready, retrying", "bucket", broker.APIsBucket, "err", err)
		}
	})
	return nil
}

// routeGuard is the guard of posted routes: the settings' rules, ingest's
// own port refused as it is open, host names looked up.
func routeGuard(g route.Guard, ln net.Listener) route.Guard {
	g.Ports = slices.Clone(g.Ports)
	if ln != nil {
		if a, ok := ln.Addr().(*net.TCPAddr); ok {
			g.Ports = append(g.Ports, a.Port)
		}
	}
	return g
}

// fileRoute refuses a change to one of the route file's APIs (409).
func (s *Server) fileRoute(id string) error {
	if s.cfg.Routes.AllowFileOverride || !s.cfg.Routes.FileRoute(id) {
		return nil
	}
	return api.NewError(fiber.StatusConflict, "API "+strconv.Quote(id)+" is defined by the route file (PROXY_CONFIG_FILE) and is read-only at runtime; change the file, or set PROXY_ALLOW_FILE_ROUTE_OVERRIDE=true to let a runtime route replace it")
}

// checkTarget applies the guard to a definition about to be stored.
func (s *Server) checkTarget(a *route.API) error {
	if err := s.guard.Check(a, nil); err != nil {
		return api.NewError(fiber.StatusBadRequest, err.Error())
	}
	return nil
}

// apisBucket returns the routes bucket, or a 503 when JetStream is unavailable.
// Creating it is retried while ctx lasts: on a fresh cluster, one of the
// processes creating it at once may get no answer to its first attempt.
func (s *Server) apisBucket(ctx context.Context) (jetstream.KeyValue, error) {
	if err := s.broker.Ready(); err != nil {
		return nil, api.Unavailable("routes unavailable: "+err.Error(), 1)
	}
	var kv jetstream.KeyValue
	var last error // what the last attempt said: more than "deadline exceeded"
	err := retry.Do(ctx, func(ctx context.Context) error {
		kv, last = s.apis.KV(ctx)
		return last
	}, func(error) {})
	if err != nil {
		if last != nil {
			err = last
		}
		s.log.Warn("routes bucket unavailable", "bucket", broker.APIsBucket, "err", err)
		return nil, api.Unavailable("routes unavailable: "+err.Error(), 1)
	}
	return kv, nil
}

func (s *Server) apiContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
}

// unavailable turns a failed bucket operation into a 503, logged once.
func (s *Server) unavailable(op, id string, err error) error {
	s.log.Warn("routes bucket operation failed", "op", op, "api", id, "err", err)
	return api.Unavailable(fmt.Sprintf("routes: %s failed: %v", op, err), 1)
}

// handleListAPIs is GET /v1/apis: every route definition, by id.
func (s *Server) handleListAPIs(c *fiber.Ctx) error {
	ctx, cancel := s.apiContext()
	defer cancel()
	kv, err := s.apisBucket(ctx)
	if err != nil {
		return err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return s.unavailable("list", "", err)
	}
	type item struct {
		id   string
		data []byte
	}
	var items []item
	for key := range lister.Keys() {
		id, err := broker.APIID(key)
		if err != nil {
			continue
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			_ = lister.Stop()
			return s.unavailable("get", id, err)
		}
		items = append(items, item{id, e.Value()})
	}
	if ctx.Err() != nil {
		return s.unavailable("list", "", ctx.Err())
	}
	// The route file's routes that ingest knows (PROXY_CONFIG_FILE) are
	// listed too, marked, unless a runtime route of the same id replaces
	// them on the edges (PROXY_ALLOW_FILE_ROUTE_OVERRIDE).
	runtime := len(items)
	for _, a := range s.cfg.Routes.APIs {
		if !slices.ContainsFunc(items[:runtime], func(it item) bool { return it.id == a.ID }) {
			data, err := json.Marshal(a)
			if err != nil {
				return err
			}
			items = append(items, item{a.ID, withSource(data, sourceFile)})
		}
	}
	for i := range runtime {
		items[i].data = withSource(items[i].data, sourceRuntime)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].id < items[j].id })
	var b bytes.Buffer
	b.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(it.data)
	}
	b.WriteByte(']')
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	return c.Send(b.Bytes())
}

// handleCreateAPI is POST /v1/apis: 201 with the definition as stored, 409
// when the id is taken.
func (s *Server) handleCreateAPI(c *fiber.Ctx) error {
	if !isJSON(c.Get(fiber.HeaderContentType)) {
		return api.NewError(fiber.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	a, err := route.ParseAPI(c.Body())
	if err != nil {
		return api.NewError(fiber.StatusBadRequest, err.Error())
	}
	if err := s.fileRoute(a.ID); err != nil {
		return err
	}
	if err := s.checkTarget(a); err != nil {
		return err
	}
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	ctx, cancel := s.apiContext()
	defer cancel()
	kv, err := s.apisBucket(ctx)
	if err != nil {
		return err
	}
	if _, err := kv.Create(ctx, broker.APIKey(a.ID), data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return api.NewError(fiber.StatusConflict, "API "+strconv.Quote(a.ID)+" already exists; change it with PUT /v1/apis/"+a.ID)
		}
		return s.unavailable("create", a.ID, err)
	}
	s.log.Info("route created", "api", a.ID, "endpoints", len(a.VersionData.Default.Endpoints))
	c.Location("/v1/apis/" + url.PathEscape(a.ID))
	return sendJSON(c, fiber.StatusCreated, data)
}

// current returns the stored entry of the API named in the path, or 404.
func (s *Server) current(ctx context.Context, kv jetstream.KeyValue, id string) (jetstream.KeyValueEntry, error) {
	if !route.ValidID(id) {
		return nil, api.NewError(fiber.StatusNotFound, "no API "+strconv.Quote(id))
	}
	e, err := kv.Get(ctx, broker.APIKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, api.NewError(fiber.StatusNotFound, "no API "+strconv.Quote(id))
	}
	if err != nil {
		return nil, s.unavailable("get", id, err)
	}
	return e, nil
}

func (s *Server) apiParam(c *fiber.Ctx) string {
	id := c.Params("id")
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	return id
}

// handleGetAPI is GET /v1/apis/<id>.
func (s *Server) handleGetAPI(c *fiber.Ctx) error {
	id := s.apiParam(c)
	ctx, cancel := s.apiContext()
	defer cancel()
	kv, err := s.apisBucket(ctx)
	if err != nil {
		return err
	}
	e, err := s.current(ctx, kv, id)
	if err != nil {
		return err
	}
	return sendJSON(c, fiber.StatusOK, e.Value())
}

// handleUpdateAPI is PUT /v1/apis/<id>. As in RIG, the body's fields
// replace the stored definition's, and fields it leaves out are kept.
func (s *Server) handleUpdateAPI(c *fiber.Ctx) error {
	id := s.apiParam(c)
	if !isJSON(c.Get(fiber.HeaderContentType)) {
		return api.NewError(fiber.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	if err := s.fileRoute(id); err != nil {
		return err
	}
	if err := route.CheckUpdate(c.Body(), id); err != nil {
		return api.NewError(fiber.StatusBadRequest, err.Error())
	}
	ctx, cancel := s.apiContext()
	defer cancel()
	kv, err := s.apisBucket(ctx)
	if err != nil {
		return err
	}
	e, err := s.current(ctx, kv, id)
	if err != nil {
		return err
	}
	a, err := route.ParseUpdate(e.Value(), c.Body(), id)
	if err != nil {
		return api.NewError(fiber.StatusBadRequest, err.Error())
	}
	if err := s.checkTarget(a); err != nil {
		return err
	}
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if _, err := kv.Update(ctx, broker.APIKey(id), data, e.Revision()); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return api.NewError(fiber.StatusConflict, "API "+strconv.Quote(id)+" changed while it was being updated; retry")
		}
		return s.unavailable("update", id, err)
	}
	s.log.Info("route updated", "api", id, "endpoints", len(a.VersionData.Default.Endpoints))
	return sendJSON(c, fiber.StatusOK, data)
}

// handleDeleteAPI is DELETE /v1/apis/<id>: 204; every edge stops serving
// it (an edge whose route file has the id serves the file's again).
func (s *Server) handleDeleteAPI(c *fiber.Ctx) error {
	id := s.apiParam(c)
	if err := s.fileRoute(id); err != nil {
		return err
	}
	ctx, cancel := s.apiContext()
	defer cancel()
	kv, err := s.apisBucket(ctx)
	if err != nil {
		return err
	}
	e, err := s.current(ctx, kv, id)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, broker.APIKey(id), jetstream.LastRevision(e.Revision())); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return api.NewError(fiber.StatusConflict, "API "+strconv.Quote(id)+" changed while it was being deleted; retry")
		}
		return s.unavailable("delete", id, err)
	}
	s.log.Info("route deleted", "api", id)
	return c.SendStatus(fiber.StatusNoContent)
}

// Where a listed route comes from: its "source" in GET /v1/apis, which
// only the list carries (a definition posted with it is refused as having
// an unknown field, so a copy of the list is not mistaken for input).
const (
	sourceFile    = `"file"`
	sourceRuntime = `"runtime"`
)

// withSource adds "source" to a stored definition, a JSON object that
// json.Marshal wrote (so it starts with '{' and has no such field).
func withSource(def []byte, source string) []byte {
	if len(def) < 2 || def[0] != '{' {
		return def
	}
	out := make([]byte, 0, len(def)+len(source)+12)
	out = append(out, `{"source":`...)
	out = append(out, source...)
	if len(def) > 2 {
		out = append(out, ',')
	}
	return append(out, def[1:]...)
}

func sendJSON(c *fiber.Ctx, status int, data []byte) error {
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	return c.Send(data)
}
