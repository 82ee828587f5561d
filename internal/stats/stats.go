// Package stats keeps the last 15 minutes of the figures the operator's
// console charts: every few seconds ingest asks every edge for its counters
// over NATS (as presence asks who is online), adds its own, and keeps the
// rates and percentiles in a fixed ring, so no Prometheus is needed to see
// what the stack is doing now.
package stats

import (
	"encoding/json"
	"time"
)

// Subject carries ingest's request for a Snapshot; every edge answers on
// the request's reply subject. Not under user.>, which carries messages.
const Subject = "rig.admin.stats"

// Window is how far back the history goes.
const Window = 15 * time.Minute

// DefaultInterval is how often ingest samples (ADMIN_METRICS_INTERVAL).
const DefaultInterval = 5 * time.Second

// Snapshot is one edge's counters at one moment, read from its metrics.
// Counters count since the edge started; ingest turns them into rates.
type Snapshot struct {
	Edge string    `json:"edge"`
	At   time.Time `json:"at"`
	// Connections are the client connections open now, by transport.
	Connections map[string]int64 `json:"connections"`
	// Delivered counts message events written to client connections.
	Delivered uint64 `json:"delivered"`
	// SlowClosed counts clients closed because their queue was full.
	SlowClosed uint64 `json:"slowClosed"`
	// Killed counts connections closed because their session was
	// blacklisted.
	Killed uint64 `json:"killed"`
}

// Ingest is ingest's own counters at one moment.
type Ingest struct {
	// Stored counts messages stored in history (answered 202).
	Stored uint64
	// Latency is the publish-latency histogram (rig_ingest_publish_seconds).
	Latency Histogram
}

// Histogram is a cumulative histogram as Prometheus keeps it: Counts[i]
// observations were at most Bounds[i]; Count is every observation (the
// +Inf bucket).
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
}

func encode(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
