package stats

import "math"

// Sub returns the observations of h that are not in prev: the histogram of
// one interval. ok is false when h does not follow prev (other buckets, or
// fewer observations: the process restarted).
func (h Histogram) Sub(prev Histogram) (Histogram, bool) {
	if len(h.Bounds) != len(prev.Bounds) || len(h.Counts) != len(prev.Counts) || h.Count < prev.Count {
		return Histogram{}, false
	}
	d := Histogram{Bounds: h.Bounds, Counts: make([]uint64, len(h.Counts)), Count: h.Count - prev.Count}
	for i := range h.Counts {
		if h.Bounds[i] != prev.Bounds[i] || h.Counts[i] < prev.Counts[i] {
			return Histogram{}, false
		}
		d.Counts[i] = h.Counts[i] - prev.Counts[i]
	}
	return d, true
}

// Quantile estimates the q-quantile (0 < q < 1) of h as Prometheus'
// histogram_quantile does, so the console and the Grafana dashboard agree:
// linear interpolation inside the bucket the rank falls in, from 0 for the
// first bucket; a rank past the last finite bound is that bound. NaN when
// h has no observations.
//
// Written here rather than taken from Prometheus: its implementation lives
// in the server's promql package, far too large a dependency for 20 lines.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.Bounds) == 0 {
		return math.NaN()
	}
	rank := q * float64(h.Count)
	lower, below := 0.0, uint64(0)
	for i, upper := range h.Bounds {
		c := h.Counts[i]
		if float64(c) >= rank && c > below {
			return lower + (upper-lower)*(rank-float64(below))/float64(c-below)
		}
		lower, below = upper, c
	}
	return h.Bounds[len(h.Bounds)-1]
}
