package stats

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/rig-go/rig/internal/metrics"
)

// Sample is the figures of one interval. NaN stands for "not known" (an
// edge that did not answer, a rate without a previous reading): the
// console draws it as a gap, never as zero, since an edge falling silent
// is exactly what an operator must not mistake for a quiet one.
type Sample struct {
	At time.Time
	// In is the messages ingest stored per second.
	In float64
	// P50, P95 and P99 are the publish latency in seconds over the
	// interval (NaN: nothing published).
	P50, P95, P99 float64
	// Edges are the edges that answered, by id.
	Edges map[string]EdgeSample
}

// EdgeSample is one edge's figures in a Sample.
type EdgeSample struct {
	Connections map[string]int64 // open now, by transport
	Out         float64          // messages delivered per second
	SlowClosed  float64          // slow clients closed in the interval
	Killed      float64          // blacklisted connections closed in the interval
}

// reading is what one round of sampling got: ingest's counters and each
// answering edge's.
type reading struct {
	at     time.Time
	ingest Ingest
	edges  map[string]Snapshot
}

// next turns two consecutive readings into the sample of the interval
// between them. A rate needs both readings of the same edge: an edge
// missing from prev (it did not answer, or is new) gets its connections
// but NaN rates; a counter that went down (the edge restarted under the
// same id) gives NaN too, as no rate can be told from it.
func next(prev, cur reading) Sample {
	s := Sample{At: cur.at, In: math.NaN(), P50: math.NaN(), P95: math.NaN(), P99: math.NaN(), Edges: map[string]EdgeSample{}}
	if !prev.at.IsZero() {
		dt := cur.at.Sub(prev.at).Seconds()
		if cur.ingest.Stored >= prev.ingest.Stored && dt > 0 {
			s.In = float64(cur.ingest.Stored-prev.ingest.Stored) / dt
		}
		if d, ok := cur.ingest.Latency.Sub(prev.ingest.Latency); ok {
			s.P50, s.P95, s.P99 = d.Quantile(0.5), d.Quantile(0.95), d.Quantile(0.99)
		}
	}
	for id, c := range cur.edges {
		e := EdgeSample{Connections: c.Connections, Out: math.NaN(), SlowClosed: math.NaN(), Killed: math.NaN()}
		if p, ok := prev.edges[id]; ok {
			if dt := c.At.Sub(p.At).Seconds(); dt > 0 && c.Delivered >= p.Delivered {
				e.Out = float64(c.Delivered-p.Delivered) / dt
			}
			e.SlowClosed = delta(p.SlowClosed, c.SlowClosed)
			e.Killed = delta(p.Killed, c.Killed)
		}
		s.Edges[id] = e
	}
	return s
}

func delta(prev, cur uint64) float64 {
	if cur < prev {
		return math.NaN()
	}
	return float64(cur - prev)
}

// History is a ring of the last samples, safe for concurrent use.
type History struct {
	interval time.Duration
	mu       sync.Mutex
	ring     []Sample
	start    int // index of the oldest sample once the ring is full
}

// NewHistory keeps Window's worth of samples taken every interval
// (DefaultInterval when not positive).
func NewHistory(interval time.Duration) *History {
	if interval <= 0 {
		interval = DefaultInterval
	}
	n := int((Window + interval - 1) / interval)
	return &History{interval: interval, ring: make([]Sample, 0, n)}
}

// Add appends s, dropping the oldest sample when the ring is full.
func (h *History) Add(s Sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ring) < cap(h.ring) {
		h.ring = append(h.ring, s)
		return
	}
	h.ring[h.start] = s
	h.start = (h.start + 1) % len(h.ring)
}

// Samples returns the samples held, oldest first.
func (h *History) Samples() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Sample, 0, len(h.ring))
	out = append(out, h.ring[h.start:]...)
	return append(out, h.ring[:h.start]...)
}

// Series is GET /v1/admin/metrics: the samples as one time axis and
// arrays of values aligned with it, ready for a chart; null is a gap.
type Series struct {
	IntervalSeconds float64 `json:"intervalSeconds"`
	WindowSeconds   float64 `json:"windowSeconds"`
	// T is each sample's time, Unix seconds with milliseconds.
	T []float64 `json:"t"`
	// Edges are the edges that answered at least once in the window.
	Edges []string `json:"edges"`
	// Answered has one line per edge: 1 where it answered, null where
	// it did not.
	Answered []Line `json:"answered"`
	// Connections has one line per edge and transport that had a
	// connection in the window.
	Connections []Line `json:"connections"`
	// MessagesIn is the messages ingest stored per second.
	MessagesIn []*float64 `json:"messagesIn"`
	// MessagesOut has one line per edge: messages delivered per second.
	MessagesOut []Line `json:"messagesOut"`
	// PublishLatency is ingest's publish latency in seconds.
	PublishLatency Latency `json:"publishLatency"`
	// SlowClientsClosed and SessionsKilled have one line per edge: how
	// many in each interval.
	SlowClientsClosed []Line `json:"slowClientsClosed"`
	SessionsKilled    []Line `json:"sessionsKilled"`
}

// Line is one series of a chart.
type Line struct {
	Edge      string     `json:"edge"`
	Transport string     `json:"transport,omitempty"`
	Values    []*float64 `json:"values"`
}

// Latency holds the percentiles of the publish latency.
type Latency struct {
	P50 []*float64 `json:"p50"`
	P95 []*float64 `json:"p95"`
	P99 []*float64 `json:"p99"`
}

// Series returns the samples held as Series.
func (h *History) Series() Series {
	samples := h.Samples()
	out := Series{IntervalSeconds: h.interval.Seconds(), WindowSeconds: Window.Seconds(), T: []float64{}, Edges: []string{},
		Answered: []Line{}, Connections: []Line{}, MessagesOut: []Line{}, SlowClientsClosed: []Line{}, SessionsKilled: []Line{}}
	out.MessagesIn = values(samples, func(s Sample) float64 { return s.In })
	out.PublishLatency = Latency{
		P50: values(samples, func(s Sample) float64 { return s.P50 }),
		P95: values(samples, func(s Sample) float64 { return s.P95 }),
		P99: values(samples, func(s Sample) float64 { return s.P99 }),
	}
	seen := map[string]bool{}
	for _, s := range samples {
		out.T = append(out.T, float64(s.At.UnixMilli())/1000)
		for id := range s.Edges {
			if !seen[id] {
				seen[id] = true
				out.Edges = append(out.Edges, id)
			}
		}
	}
	slices.Sort(out.Edges)
	for _, id := range out.Edges {
		edge := func(f func(EdgeSample) float64) []*float64 {
			return values(samples, func(s Sample) float64 {
				if e, ok := s.Edges[id]; ok {
					return f(e)
				}
				return math.NaN()
			})
		}
		out.Answered = append(out.Answered, Line{Edge: id, Values: edge(func(EdgeSample) float64 { return 1 })})
		for _, tr := range metrics.Transports {
			used := false
			for _, s := range samples {
				used = used || s.Edges[id].Connections[tr] > 0
			}
			if used {
				out.Connections = append(out.Connections, Line{Edge: id, Transport: tr, Values: edge(func(e EdgeSample) float64 { return float64(e.Connections[tr]) })})
			}
		}
		out.MessagesOut = append(out.MessagesOut, Line{Edge: id, Values: edge(func(e EdgeSample) float64 { return e.Out })})
		out.SlowClientsClosed = append(out.SlowClientsClosed, Line{Edge: id, Values: edge(func(e EdgeSample) float64 { return e.SlowClosed })})
		out.SessionsKilled = append(out.SessionsKilled, Line{Edge: id, Values: edge(func(e EdgeSample) float64 { return e.Killed })})
	}
	return out
}

// values maps samples to JSON numbers, NaN to null.
func values(samples []Sample, f func(Sample) float64) []*float64 {
	out := make([]*float64, len(samples))
	for i, s := range samples {
		if v := f(s); !math.IsNaN(v) && !math.IsInf(v, 0) {
			out[i] = &v
		}
	}
	return out
}
