package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The operator's console reads some metrics in-process (see the stats
// package), from the same collectors /metrics serves, so the console and
// Prometheus can never disagree.

// Value reads a counter or gauge now (0 for any other metric).
func Value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return 0
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	return 0
}

// Buckets reads a histogram now: counts[i] observations were at most
// bounds[i] (cumulative, as Prometheus keeps them), count is all of them.
func Buckets(h prometheus.Histogram) (bounds []float64, counts []uint64, count uint64) {
	var d dto.Metric
	if err := h.Write(&d); err != nil || d.Histogram == nil {
		return nil, nil, 0
	}
	for _, b := range d.Histogram.Bucket {
		bounds = append(bounds, b.GetUpperBound())
		counts = append(counts, b.GetCumulativeCount())
	}
	return bounds, counts, d.Histogram.GetSampleCount()
}

// Connections returns the client connections open now, by transport.
func (m *Edge) Connections() map[string]int64 {
	out := make(map[string]int64, len(m.transports))
	for name, t := range m.transports {
		out[name] = int64(Value(t.Open))
	}
	return out
}
