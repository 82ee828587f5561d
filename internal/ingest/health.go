package ingest

import (
	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
)

type health struct {
	Status string `json:"status"`
	NATS   string `json:"nats"`
	Detail string `json:"detail,omitempty"`
}

func (s *Server) health() (health, bool) {
	h := health{Status: "ok", NATS: s.broker.NC.Status().String()}
	err := s.broker.Ready()
	if err == nil {
		err = s.bucket.Ready()
	}
	if err == nil {
		err = s.quorum.Ready()
	}
	if err != nil {
		h.Status, h.Detail = "unavailable", err.Error()
		return h, false
	}
	return h, true
}

// handleHealth is liveness: the process serves HTTP. It says what it knows.
func (s *Server) handleHealth(c *fiber.Ctx) error {
	h, _ := s.health()
	return api.JSON(c, fiber.StatusOK, h)
}

// handleReady is readiness: 200 only when messages can be accepted and
// sessions blacklisted.
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
