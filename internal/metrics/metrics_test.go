package metrics

import (
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestEdgeMetrics(t *testing.T) {
	delivered := uint64(7)
	m := NewEdge(func() bool { return true }, ClientCounters{
		Delivered:  func() uint64 { return delivered },
		Dropped:    func() uint64 { return 0 },
		SlowClosed: func() uint64 { return 1 },
	})
	for _, tr := range Transports {
		if m.Transport(tr) == nil {
			t.Fatalf("no metrics for transport %s", tr)
		}
	}
	m.Transport("websocket").Open.Inc()
	m.MessagesReceived.Add(3)
	body := get(t, m.Registry)
	for _, want := range []string{
		`rig_edge_connections{transport="websocket"} 1`,
		`rig_edge_connections{transport="sse"} 0`,
		"rig_edge_messages_received_total 3",
		"rig_edge_messages_delivered_total 7",
		"rig_edge_slow_clients_closed_total 1",
		"rig_nats_connected 1",
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestIngestMetrics(t *testing.T) {
	m := NewIngest(func() bool { return false }, func() int { return 5 })
	m.Stored.Add(2)
	m.PublishSeconds.Observe(0.0003)
	body := get(t, m.Registry)
	for _, want := range []string{
		`rig_ingest_messages_total{result="stored"} 2`,
		`rig_ingest_publish_seconds_bucket{le="0.0005"} 1`,
		`rig_ingest_publish_seconds_bucket{le="0.00025"} 0`,
		"rig_ingest_publish_in_flight 5",
		"rig_nats_connected 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func get(t *testing.T, r *prometheus.Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler(r).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, err := io.ReadAll(rec.Body)
	if err != nil || rec.Code != 200 {
		t.Fatalf("GET /metrics: %d %v", rec.Code, err)
	}
	return string(b)
}

func TestEdgeConnectionLimitMetrics(t *testing.T) {
	m := NewEdge(func() bool { return true }, ClientCounters{
		Delivered: func() uint64 { return 0 }, Dropped: func() uint64 { return 0 }, SlowClosed: func() uint64 { return 0 },
	})
	m.TCP(func() int64 { return 42 }, 18000)
	m.Refused.Capacity.Add(3)
	m.Refused.Session.Inc()
	m.AcceptErrors.Add(2)
	body := get(t, m.Registry)
	for _, want := range []string{
		"rig_edge_tcp_connections 42",
		"rig_edge_max_connections 18000",
		`rig_edge_connections_refused_total{reason="capacity"} 3`,
		`rig_edge_connections_refused_total{reason="session"} 1`,
		`rig_edge_connections_refused_total{reason="ip_rate"} 0`,
		"rig_edge_accept_errors_total 2",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
