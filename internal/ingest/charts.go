package ingest

import (
	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/metrics"
	"github.com/rig-go/rig/internal/stats"
)

// handleAdminMetrics is GET /v1/admin/metrics: the last 15 minutes of
// the console's charts, sampled every ADMIN_METRICS_INTERVAL.
func (s *Server) handleAdminMetrics(c *fiber.Ctx) error {
	return api.JSON(c, fiber.StatusOK, s.stats.History.Series())
}

// edgeIDs are the edges alive now, whose stats a sampling round waits for.
func (s *Server) edgeIDs() []string {
	var ids []string
	for _, e := range s.presence.Edges() {
		ids = append(ids, e.ID)
	}
	return ids
}

// statsReading reads ingest's own figures for the console's charts.
func (s *Server) statsReading() stats.Ingest {
	bounds, counts, count := metrics.Buckets(s.metrics.PublishSeconds)
	return stats.Ingest{
		Stored:  uint64(metrics.Value(s.metrics.Stored)),
		Latency: stats.Histogram{Bounds: bounds, Counts: counts, Count: count},
	}
}
