package edge

import (
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
)

// originAllowed reports whether a page from origin may connect
// (ALLOWED_ORIGINS). A request without an Origin header is not from a
// browser page (or is same-origin navigation): the check exists to stop
// other sites' pages from using a visitor's browser, so it is allowed.
func (s *Server) originAllowed(origin string) bool {
	if origin == "" {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// checkOrigin refuses a request from a page whose origin is not allowed,
// before any token is looked at or any stream starts.
func (s *Server) checkOrigin(c *fiber.Ctx) error {
	if origin := c.Get(fiber.HeaderOrigin); !s.originAllowed(origin) {
		return api.NewError(fiber.StatusForbidden, "origin "+quote(origin)+" is not allowed (ALLOWED_ORIGINS)")
	}
	return nil
}

// corsHeaders returns the CORS response header lines for a request from an
// allowed origin (checkOrigin ran first), each ending in "\r\n". The origin
// is echoed rather than "*" so that EventSource's withCredentials works.
func (s *Server) corsHeaders(c *fiber.Ctx) string {
	origin := c.Get(fiber.HeaderOrigin)
	if origin == "" || !s.originAllowed(origin) {
		return ""
	}
	return "Access-Control-Allow-Origin: " + sanitizeHeader(origin) + "\r\nVary: Origin\r\nAccess-Control-Allow-Credentials: true\r\n"
}

// setCORS sets the CORS headers of an allowed origin on a regular response.
func (s *Server) setCORS(c *fiber.Ctx) {
	if origin := c.Get(fiber.HeaderOrigin); origin != "" && s.originAllowed(origin) {
		c.Set(fiber.HeaderAccessControlAllowOrigin, sanitizeHeader(origin))
		c.Set(fiber.HeaderVary, "Origin")
		c.Set(fiber.HeaderAccessControlAllowCredentials, "true")
	}
}

// handlePreflight answers a browser's CORS preflight for a stream request
// (needed when a page sends Authorization or Last-Event-ID itself).
func (s *Server) handlePreflight(c *fiber.Ctx) error {
	if err := s.checkOrigin(c); err != nil {
		return err
	}
	if origin := c.Get(fiber.HeaderOrigin); origin != "" {
		s.setCORS(c)
		// POST and Content-Type: phoenix.js's LongPoll sends its messages
		// as application/x-ndjson.
		c.Set(fiber.HeaderAccessControlAllowMethods, "GET, POST, OPTIONS")
		c.Set(fiber.HeaderAccessControlAllowHeaders, "Authorization, Last-Event-ID, Cache-Control, Content-Type, X-Phoenix-AuthToken")
		c.Set(fiber.HeaderAccessControlMaxAge, "600")
	}
	return c.SendStatus(fiber.StatusNoContent)
}
