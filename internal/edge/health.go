package edge

import (
	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
)

type health struct {
	Status      string `json:"status"`
	Edge        string `json:"edge"`
	NATS        string `json:"nats"`
	Connections int    `json:"connections"`
	Users       int    `json:"users"`
	Detail      string `json:"detail,omitempty"`
}

func (s *Server) health() (health, bool) {
	h := health{Status: "ok", Edge: s.cfg.EdgeID, NATS: s.broker.NC.Status().String(),
		Connections: s.hub.Len(), Users: s.hub.UserCount()}
	ready := true
	switch {
	case s.draining.Load():
		ready, h.Detail = false, "draining"
	case !s.broker.Connected():
		ready, h.Detail = false, "NATS not connected"
	default:
		if err := s.blacklist.Ready(); err != nil {
			ready, h.Detail = false, err.Error()
		}
	}
	if !ready {
		h.Status = "unavailable"
	}
	return h, ready
}

// handleHealth is liveness: the process serves HTTP. It says what it knows.
func (s *Server) handleHealth(c *fiber.Ctx) error {
	h, _ := s.health()
	return api.JSON(c, fiber.StatusOK, h)
}

// handleReady is readiness: 200 only when new connections can be served.
func (s *Server) handleReady(c *fiber.Ctx) error {
	h, ok := s.health()
	if !ok {
		return api.JSON(c, fiber.StatusServiceUnavailable, h)
	}
	return api.JSON(c, fiber.StatusOK, h)
}

func (s *Server) handleNotFound(c *fiber.Ctx) error {
	return api.NewError(fiber.StatusNotFound, "no route for "+c.Method()+" "+c.Path())
}
