package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/blacklist"
	"github.com/rig-go/rig/internal/rig"
)

// blacklistStatus is the JSON shape of a blacklisted session, as RIG
// answered it, plus when the blacklisting ends.
type blacklistStatus struct {
	SessionID         string     `json:"sessionId"`
	IsBlacklisted     bool       `json:"isBlacklisted"`
	ValidityInSeconds int64      `json:"validityInSeconds,omitempty"` // seconds left, rounded up
	ExpiresAt         *time.Time `json:"expiresAt,omitempty"`
}

func statusOf(e blacklist.Entry) blacklistStatus {
	exp := e.Expires.UTC()
	left := int64(math.Ceil(time.Until(exp).Seconds()))
	return blacklistStatus{SessionID: e.SessionID, IsBlacklisted: true, ValidityInSeconds: max(left, 0), ExpiresAt: &exp}
}

// blacklistLocation is the URL of a blacklisted session's status.
func blacklistLocation(jti string) string {
	return "/v1/session-blacklist/" + url.PathEscape(jti)
}

// handleBlacklist is POST /v1/session-blacklist, RIG's body
// {"sessionId":"<jti>","validityInSeconds":60}. Every edge closes the
// session's connections and refuses it until the validity ends.
func (s *Server) handleBlacklist(c *fiber.Ctx) error {
	jti, validity, err := parseBlacklistRequest(c.Body())
	if err != nil {
		return api.NewError(fiber.StatusBadRequest, err.Error())
	}
	e, err := s.addToBlacklist(c, jti, validity)
	if err != nil {
		return err
	}
	c.Location(blacklistLocation(jti))
	return api.JSON(c, fiber.StatusCreated, statusOf(e))
}

// handleBlacklistStatus is GET /v1/session-blacklist/<jti>: 200 while the
// session is blacklisted, 404 once it is not (or never was).
func (s *Server) handleBlacklistStatus(c *fiber.Ctx) error {
	jti, err := pathParam(c, "jti")
	if err != nil {
		return err
	}
	if err := blacklist.ValidateSessionID(jti); err != nil {
		return api.NewError(fiber.StatusBadRequest, "session id: "+err.Error())
	}
	if err := s.bucket.Ready(); err != nil {
		return api.Unavailable("blacklist unavailable: "+err.Error(), 1)
	}
	e, listed, err := s.bucket.Lookup(c.UserContext(), jti)
	if err != nil {
		s.log.Warn("blacklist lookup failed", "session", jti, "err", err)
		return api.Unavailable("blacklist unavailable: "+err.Error(), 1)
	}
	if !listed {
		return api.JSON(c, fiber.StatusNotFound, struct {
			Error string `json:"error"`
			blacklistStatus
		}{Error: "session is not blacklisted", blacklistStatus: blacklistStatus{SessionID: jti}})
	}
	return api.JSON(c, fiber.StatusOK, statusOf(e))
}

// handleKillSession is RIG 1.x's DELETE /v1/users/<user>/sessions/<jti>:
// blacklist the session for as long as its token is valid. That is the exp
// of the token in the Authorization header when it verifies with
// the JWT settings (the edge's verifier) and carries this jti; else
// JWT_BLACKLIST_DEFAULT_EXPIRY_HOURS.
func (s *Server) handleKillSession(c *fiber.Ctx) error {
	user, err := pathParam(c, "user")
	if err != nil {
		return err
	}
	if err := rig.ValidateUser(user); err != nil {
		return api.NewError(fiber.StatusBadRequest, "user: "+err.Error())
	}
	jti, err := pathParam(c, "jti")
	if err != nil {
		return err
	}
	if err := blacklist.ValidateSessionID(jti); err != nil {
		return api.NewError(fiber.StatusBadRequest, "session id: "+err.Error())
	}
	validity, source := s.killValidity(c.Get(fiber.HeaderAuthorization), jti)
	if _, err := s.addToBlacklist(c, jti, validity); err != nil {
		return err
	}
	s.log.Info("session killed", "user", user, "session", jti, "validity", validity.String(), "validity_from", source)
	return c.SendStatus(fiber.StatusNoContent)
}

// killValidity returns how long DELETE blacklists jti, and where that came from.
func (s *Server) killValidity(authorization, jti string) (time.Duration, string) {
	def := s.cfg.BlacklistDefaultExpiry
	if authorization == "" {
		return def, "JWT_BLACKLIST_DEFAULT_EXPIRY_HOURS (no token)"
	}
	if s.verifier == nil {
		// An unverified exp could end the blacklisting early: not trusted.
		return def, "JWT_BLACKLIST_DEFAULT_EXPIRY_HOURS (no JWT key setting to verify the token)"
	}
	token, ok := auth.BearerToken(authorization)
	if !ok {
		return def, "JWT_BLACKLIST_DEFAULT_EXPIRY_HOURS (Authorization is not Bearer)"
	}
	tokenJTI, exp, err := s.verifier.Expiry(token)
	if err != nil {
		return def, "JWT_BLACKLIST_DEFAULT_EXPIRY_HOURS (" + err.Error() + ")"
	}
	if tokenJTI != jti {
		// Another token's exp (say, the caller's own) says nothing about
		// how long the killed session's token stays usable.
		return def, "JWT_BLACKLIST_DEFAULT_EXPIRY_HOURS (token is for another session)"
	}
	v := time.Until(exp).Truncate(time.Second) + time.Second // whole seconds, never short
	return min(v, blacklist.MaxValidity), "token exp"
}

// addToBlacklist stores the entry, answering 503 when the bucket cannot.
func (s *Server) addToBlacklist(c *fiber.Ctx, jti string, validity time.Duration) (blacklist.Entry, error) {
	if err := s.bucket.Ready(); err != nil {
		return blacklist.Entry{}, api.Unavailable("blacklist unavailable: "+err.Error(), 1)
	}
	e, err := s.bucket.Add(c.UserContext(), jti, validity)
	if err != nil {
		s.log.Warn("blacklisting failed", "session", jti, "err", err)
		return blacklist.Entry{}, api.Unavailable("session not blacklisted: "+err.Error(), 1)
	}
	s.metrics.BlacklistCalls.Inc()
	s.log.Info("session blacklisted", "session", jti, "expires", e.Expires.Format(time.RFC3339))
	return e, nil
}

// maxValiditySeconds is blacklist.MaxValidity in whole seconds.
var maxValiditySeconds = int64(blacklist.MaxValidity / time.Second)

// parseBlacklistRequest reads {"sessionId":"<jti>","validityInSeconds":N}.
// N is a positive whole number, as a JSON number or, as RIG's API
// documented it, a string of digits.
func parseBlacklistRequest(body []byte) (jti string, validity time.Duration, err error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return "", 0, fmt.Errorf(`body must be a JSON object {"sessionId":"<jti>","validityInSeconds":<seconds>}`)
	}
	raw, ok := fields["sessionId"]
	if !ok {
		return "", 0, fmt.Errorf(`missing "sessionId"`)
	}
	if err := json.Unmarshal(raw, &jti); err != nil || bytes.Equal(raw, []byte("null")) {
		return "", 0, fmt.Errorf(`"sessionId" must be a string`)
	}
	if err := blacklist.ValidateSessionID(jti); err != nil {
		return "", 0, fmt.Errorf(`"sessionId": %w`, err)
	}
	raw, ok = fields["validityInSeconds"]
	if !ok {
		return "", 0, fmt.Errorf(`missing "validityInSeconds"`)
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		text = string(raw) // a JSON number, as written
	}
	n, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
	if err != nil || n < 1 || n > maxValiditySeconds {
		return "", 0, fmt.Errorf(`"validityInSeconds" must be a whole number of seconds from 1 to %d, got %s`, maxValiditySeconds, truncate(raw, 40))
	}
	return jti, time.Duration(n) * time.Second, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// pathParam returns a route parameter with its percent-encoding undone:
// ids may hold any byte, '/' included (sent as %2F).
func pathParam(c *fiber.Ctx, name string) (string, error) {
	v, err := url.PathUnescape(c.Params(name))
	if err != nil {
		return "", api.NewError(fiber.StatusBadRequest, name+": invalid percent-encoding in the path")
	}
	return strings.Clone(v), nil // the request buffer is reused
}
