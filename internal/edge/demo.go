package edge

import (
	"errors"
	"io/fs"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/blacklist"
	"github.com/rig-go/rig/internal/demo"
)

// demoRoutes adds the demo page (DEMO_ENABLED): GET /demo/ and its files,
// and POST /demo/messages. Without the setting none of it exists: /demo/
// is the API gateway's, like any other path.
func (s *Server) demoRoutes() {
	if !s.cfg.Demo.Enabled {
		return
	}
	s.log.Warn("DEMO_ENABLED: /demo/ serves a page, and POST /demo/messages sends a message to any user for anyone with a valid token; for the local stack only",
		"ingest", s.cfg.Demo.IngestURL)
	fwd := demo.NewForwarder(s.cfg.Demo.IngestURL, s.cfg.Demo.IngestToken)
	s.app.Post("/demo/messages", s.handleDemoSend(fwd))
	s.app.Get("/demo/*", s.handleDemoFile)
}

// demoCSP keeps the page to its own scripts and its own edge: a message's
// text is only ever set as text, and nothing else may run.
const demoCSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// handleDemoFile serves the page's files. fiber's filesystem middleware
// would hand a missing file on to the API gateway; SendFile answers 404.
func (s *Server) handleDemoFile(c *fiber.Ctx) error {
	if c.Path() == "/demo" {
		// The page imports ./client/index.js: relative to /demo/.
		return c.Redirect("/demo/", fiber.StatusMovedPermanently)
	}
	name := c.Params("*")
	if name == "" {
		name = "index.html"
	}
	if !fs.ValidPath(name) {
		return api.NewError(fiber.StatusNotFound, "no demo file "+quote(name))
	}
	c.Set(fiber.HeaderContentSecurityPolicy, demoCSP)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	err := filesystem.SendFile(c, demo.Files, "/"+name)
	if errors.Is(err, fiber.ErrNotFound) || errors.Is(err, fiber.ErrForbidden) {
		return api.NewError(fiber.StatusNotFound, "no demo file "+quote(name))
	}
	return err
}

// handleDemoSend forwards the page's message to ingest, for the holder of
// a valid token (in Authorization, so that no URL carries it): the sender
// is the token's user, and the message says so ("from").
func (s *Server) handleDemoSend(fwd *demo.Forwarder) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := s.checkOrigin(c); err != nil {
			return err
		}
		addr, limited, _ := s.limits.client(c)
		if err := s.limits.checkRate(addr, limited); err != nil {
			return err
		}
		if ct := c.Get(fiber.HeaderContentType); !strings.HasPrefix(strings.ToLower(ct), fiber.MIMEApplicationJSON) {
			return api.NewError(fiber.StatusUnsupportedMediaType, "Content-Type "+quote(ct)+": expected application/json")
		}
		token, ok := auth.BearerToken(c.Get(fiber.HeaderAuthorization))
		if !ok {
			return api.NewError(fiber.StatusUnauthorized, "missing or malformed Authorization header: expected \"Bearer <JWT>\"")
		}
		sess, err := s.verifier.Verify(token)
		if err != nil {
			return api.NewError(fiber.StatusUnauthorized, err.Error())
		}
		if len(sess.ID) > blacklist.MaxSessionIDLen || s.blacklist.Listed(sess.ID) {
			return api.NewError(fiber.StatusUnauthorized, "session "+quote(sess.ID)+" is blacklisted or cannot be checked")
		}
		msg, err := demo.Parse(c.Body())
		var pe *demo.Error
		if errors.As(err, &pe) {
			return api.NewError(pe.Status, pe.Msg)
		}
		a, err := fwd.Send(c.Context(), sess.User, msg)
		switch {
		case errors.Is(err, demo.ErrBusy):
			return &api.Error{Status: fiber.StatusTooManyRequests, Message: err.Error(), RetryAfter: 1}
		case err != nil:
			return api.NewError(fiber.StatusBadGateway, err.Error())
		}
		s.log.Info("demo message forwarded to ingest", "from", sess.User, "to", msg.To, "status", a.Status)
		// Ingest's answer as it is: 202 {"id": ...}, or its JSON error.
		c.Status(a.Status)
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
		if a.RetryAfter != "" {
			c.Set(fiber.HeaderRetryAfter, sanitizeHeader(a.RetryAfter))
		}
		return c.Send(a.Body)
	}
}
