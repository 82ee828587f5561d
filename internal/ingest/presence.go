package ingest

import (
	"errors"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/presence"
	"github.com/rig-go/rig/internal/rig"
)

// Headers saying how complete a presence answer is.
const (
	headerPresenceEdges    = "Rig-Presence-Edges"    // how many edges answered
	headerPresenceComplete = "Rig-Presence-Complete" // false: an edge did not answer in time
)

// handleUsers is GET /v1/users: the ids of every user connected to any
// edge, as a JSON array (RIG's shape).
func (s *Server) handleUsers(c *fiber.Ctx) error {
	users, res, err := s.presence.Users(c.UserContext())
	if err != nil {
		return presenceError(err)
	}
	presenceHeaders(c, res)
	return api.JSON(c, fiber.StatusOK, users)
}

// handleUserSessions is GET /v1/users/<user>/sessions: that user's
// connections on every edge.
func (s *Server) handleUserSessions(c *fiber.Ctx) error {
	user, err := pathParam(c, "user")
	if err != nil {
		return err
	}
	if err := rig.ValidateUser(user); err != nil {
		return api.NewError(fiber.StatusBadRequest, "user: "+err.Error())
	}
	sessions, res, err := s.presence.Sessions(c.UserContext(), user)
	if err != nil {
		return presenceError(err)
	}
	presenceHeaders(c, res)
	return api.JSON(c, fiber.StatusOK, sessions)
}

func presenceHeaders(c *fiber.Ctx, res presence.Result) {
	c.Set(headerPresenceEdges, strconv.Itoa(len(res.Edges)))
	c.Set(headerPresenceComplete, strconv.FormatBool(res.Complete))
}

func presenceError(err error) error {
	if errors.Is(err, presence.ErrNotConnected) {
		return api.Unavailable("presence unavailable: "+err.Error(), 1)
	}
	return api.Unavailable("presence query failed: "+err.Error(), 1)
}
