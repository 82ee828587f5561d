package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/metrics"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestQuantileMatchesPrometheus: the percentiles of a histogram's delta
// are what histogram_quantile gives for the same buckets (worked by hand
// from its definition), and NaN with no observations.
func TestQuantileMatchesPrometheus(t *testing.T) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Buckets: []float64{.001, .01, .1, 1}})
	for range 50 {
		h.Observe(.0005) // bucket 1
	}
	b0, c0, n0 := metrics.Buckets(h)
	before := Histogram{Bounds: b0, Counts: c0, Count: n0}
	for range 60 {
		h.Observe(.005) // (.001, .01]
	}
	for range 30 {
		h.Observe(.05) // (.01, .1]
	}
	for range 10 {
		h.Observe(5) // +Inf
	}
	b1, c1, n1 := metrics.Buckets(h)
	d, ok := Histogram{Bounds: b1, Counts: c1, Count: n1}.Sub(before)
	if !ok || d.Count != 100 {
		t.Fatalf("delta %+v %v", d, ok)
	}
	for _, c := range []struct{ q, want float64 }{
		{0.5, .001 + (.01-.001)*50/60}, // rank 50 of 60 in the second bucket
		{0.95, 1},                      // rank 95 falls in +Inf: the last finite bound
		{0.9, .1},                      // rank 90 = 60 + 30: where (.01, .1] ends
		{0.75, .01 + (.1-.01)*15/30},
	} {
		if got := d.Quantile(c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("q%.2f = %g, want %g", c.q, got, c.want)
		}
	}
	if q := (Histogram{Bounds: b1, Counts: make([]uint64, len(b1))}).Quantile(.5); !math.IsNaN(q) {
		t.Errorf("empty histogram's median %g, want NaN", q)
	}
	if _, ok := before.Sub(Histogram{Bounds: b1, Counts: c1, Count: n1}); ok {
		t.Error("a histogram with fewer observations (a restart) gave a delta")
	}
}

// TestNextRatesAndGaps: rates come from two readings of the same edge; a
// new or returning edge has connections but no rates yet, a counter that
// went down (a restart) has none, and an edge missing is missing.
func TestNextRatesAndGaps(t *testing.T) {
	t0 := time.Unix(1000, 0)
	snap := func(edge string, at time.Time, conns int64, delivered, slow, killed uint64) Snapshot {
		return Snapshot{Edge: edge, At: at, Connections: map[string]int64{"sse": conns}, Delivered: delivered, SlowClosed: slow, Killed: killed}
	}
	prev := reading{at: t0, ingest: Ingest{Stored: 10}, edges: map[string]Snapshot{
		"a": snap("a", t0, 3, 100, 1, 0),
		"c": snap("c", t0, 1, 500, 0, 0),
	}}
	t1 := t0.Add(5 * time.Second)
	cur := reading{at: t1, ingest: Ingest{Stored: 60}, edges: map[string]Snapshot{
		"a": snap("a", t1, 4, 150, 3, 2),
		"b": snap("b", t1, 2, 7, 0, 0),
		"c": snap("c", t1, 1, 20, 0, 0), // restarted
	}}
	s := next(prev, cur)
	if s.In != 10 || !s.At.Equal(t1) {
		t.Fatalf("in %g at %v, want 10/s at %v", s.In, s.At, t1)
	}
	if !math.IsNaN(s.P50) {
		t.Errorf("p50 %g with no histogram", s.P50)
	}
	if a := s.Edges["a"]; a.Connections["sse"] != 4 || a.Out != 10 || a.SlowClosed != 2 || a.Killed != 2 {
		t.Errorf("edge a %+v", a)
	}
	if b := s.Edges["b"]; b.Connections["sse"] != 2 || !math.IsNaN(b.Out) || !math.IsNaN(b.SlowClosed) {
		t.Errorf("new edge b %+v: want its connections and no rates", b)
	}
	if c := s.Edges["c"]; !math.IsNaN(c.Out) {
		t.Errorf("restarted edge c %+v: want no rate", c)
	}
	if first := next(reading{}, cur); !math.IsNaN(first.In) {
		t.Errorf("the first sample has a rate %g", first.In)
	}
}

// TestHistorySeries: the ring keeps the last Window of samples, oldest
// first, and Series aligns every line with the time axis, null where an
// edge did not answer.
func TestHistorySeries(t *testing.T) {
	h := NewHistory(5 * time.Second)
	if n := cap(h.ring); n != 180 {
		t.Fatalf("15 minutes every 5s holds %d samples, want 180", n)
	}
	t0 := time.Unix(2000, 0)
	for i := range 200 {
		s := Sample{At: t0.Add(time.Duration(i) * 5 * time.Second), In: float64(i), P50: math.NaN(), P95: .01, P99: .02, Edges: map[string]EdgeSample{}}
		if i%2 == 0 { // edge "odd" answers only on odd samples
			s.Edges["even"] = EdgeSample{Connections: map[string]int64{"websocket": 1}, Out: 1, SlowClosed: 0, Killed: math.NaN()}
		} else {
			s.Edges["odd"] = EdgeSample{Connections: map[string]int64{}, Out: 2}
		}
		h.Add(s)
	}
	got := h.Series()
	if len(got.T) != 180 || got.T[0] != float64(t0.Add(20*5*time.Second).Unix()) || got.T[179] != float64(t0.Add(199*5*time.Second).Unix()) {
		t.Fatalf("t: %d samples from %v to %v", len(got.T), got.T[0], got.T[len(got.T)-1])
	}
	if *got.MessagesIn[0] != 20 || *got.MessagesIn[179] != 199 || got.PublishLatency.P50[3] != nil || *got.PublishLatency.P99[3] != .02 {
		t.Fatalf("in %v .. %v, p50 %v", *got.MessagesIn[0], *got.MessagesIn[179], got.PublishLatency.P50[3])
	}
	if strings.Join(got.Edges, ",") != "even,odd" || len(got.MessagesOut) != 2 {
		t.Fatalf("edges %v, %d out lines", got.Edges, len(got.MessagesOut))
	}
	// Sample 20 (the oldest kept) is even: "even" answered, "odd" is a gap.
	if even, odd := got.MessagesOut[0], got.MessagesOut[1]; *even.Values[0] != 1 || odd.Values[0] != nil || *odd.Values[1] != 2 || even.Values[1] != nil {
		t.Fatalf("out lines %+v", got.MessagesOut)
	}
	if a := got.Answered; len(a) != 2 || *a[0].Values[0] != 1 || a[0].Values[1] != nil || a[1].Values[0] != nil || *a[1].Values[1] != 1 {
		t.Fatalf("answered %+v", a)
	}
	// Only the transport used gets a line; a NaN count is null.
	if len(got.Connections) != 1 || got.Connections[0].Edge != "even" || got.Connections[0].Transport != "websocket" || got.SessionsKilled[0].Values[0] != nil {
		t.Fatalf("connections %+v, killed %+v", got.Connections, got.SessionsKilled[0])
	}
	b, err := json.Marshal(got)
	if err != nil || !strings.Contains(string(b), `"values":[1,null,1,`) {
		t.Fatalf("JSON %v: %.300s", err, b)
	}
}

func runNATS(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func connect(t *testing.T, ns *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func goRun(t *testing.T, fn func(context.Context) error) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = fn(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

// TestSamplerOverNATS: over a real NATS server, two edges' counters
// become rates in the history; when one stops answering its lines go on
// as gaps (null), not zeros, while the other's go on.
func TestSamplerOverNATS(t *testing.T) {
	ns := runNATS(t)
	var delivered atomic.Uint64
	edge := func(id string) func() Snapshot {
		return func() Snapshot {
			return Snapshot{Edge: id, Connections: map[string]int64{"sse": 2}, Delivered: delivered.Add(10)}
		}
	}
	ra, err := NewResponder(connect(t, ns), edge("a"), discard)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := NewResponder(connect(t, ns), edge("b"), discard)
	if err != nil {
		t.Fatal(err)
	}
	goRun(t, ra.Run)
	stopB := goRun(t, rb.Run)
	var stored atomic.Uint64
	s := NewSampler(connect(t, ns), 100*time.Millisecond, time.Second, func() []string { return []string{"a", "b"} },
		func() Ingest { return Ingest{Stored: stored.Add(1)} }, discard)
	goRun(t, s.Run)

	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		got := s.History.Series()
		if len(got.Connections) != 2 || len(got.MessagesOut) != 2 || len(got.T) < 2 {
			return fmt.Errorf("series %+v", got)
		}
		last := len(got.T) - 1
		if got.MessagesOut[1].Values[last] == nil || *got.MessagesOut[1].Values[last] <= 0 || *got.Connections[1].Values[last] != 2 {
			return fmt.Errorf("edge b's last out %v, connections %v", got.MessagesOut[1].Values[last], got.Connections[1].Values[last])
		}
		if v := got.MessagesIn[last]; v == nil || *v <= 0 {
			return fmt.Errorf("messages in %v", v)
		}
		return nil
	})
	stopB()
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		got := s.History.Series()
		last := len(got.T) - 1
		if got.Connections[1].Values[last] != nil || got.MessagesOut[1].Values[last] != nil {
			return fmt.Errorf("stopped edge b still has values: %v", *got.Connections[1].Values[last])
		}
		if v := got.Connections[0].Values[last]; v == nil || *v != 2 {
			return fmt.Errorf("edge a's connections %v", v)
		}
		return nil
	})
}
