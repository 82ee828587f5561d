package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// Scrape reads a Prometheus text page and returns each sample's value by
// its name and labels as printed (`rig_edge_connections{transport="sse"}`).
func Scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	r := Do(t, "GET", url, "", nil)
	if r.Status != 200 {
		t.Fatalf("GET %s: %d %s", url, r.Status, r.Body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%s: bad sample line %q", url, line)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetrics scrapes both binaries and checks that the counters of
// connections, messages in and out, slow clients, blacklist kills, NATS
// state and publish latency move, and that the edge's metrics are on the
// operations port only.
func TestMetrics(t *testing.T) {
	st := StartStack(t, map[string]string{"CLIENT_QUEUE_SIZE": "8", "PPROF": "true"}, map[string]string{"PPROF": "true"})
	edgeMetrics := st.Edge.OpsURL + "/metrics"
	ingestMetrics := st.Ingest.URL + "/metrics"

	before := Scrape(t, edgeMetrics)
	if before["rig_nats_connected"] != 1 {
		t.Errorf("edge rig_nats_connected = %v, want 1", before["rig_nats_connected"])
	}
	if r := Do(t, "GET", st.Edge.URL+"/metrics", "", nil); r.Status == 200 && bytes.Contains(r.Body, []byte("rig_edge_")) {
		t.Errorf("the public port serves metrics")
	}

	sse := MustSSE(t, st.Edge.URL+"/socket/sse?token="+Token(t, "metrics-alice"))
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		m := Scrape(t, edgeMetrics)
		if !(m[`rig_edge_connections{transport="sse"}`] == 1 && m[`rig_edge_connections_opened_total{transport="sse"}`] == 1) {
			return fmt.Errorf("rig_edge_connections{transport=\"sse\"} %v and opened_total %v, want 1 and 1", m[`rig_edge_connections{transport="sse"}`], m[`rig_edge_connections_opened_total{transport="sse"}`])
		}
		return nil
	})

	Post(t, st.Ingest.URL, map[string]any{"user": "metrics-alice", "n": 1})
	r := Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json", []byte(`[{"user":"metrics-alice","n":2},{"user":"metrics-alice","n":3}]`))
	if r.Status != 202 {
		t.Fatalf("batch: %d %s", r.Status, r.Body)
	}
	for range 3 {
		sse.NextMessage(t, 5*time.Second)
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		m := Scrape(t, edgeMetrics)
		if !(m["rig_edge_messages_received_total"] == 3 && m["rig_edge_messages_delivered_total"] == 3) {
			return fmt.Errorf("edge messages received %v, delivered %v, want 3 and 3", m["rig_edge_messages_received_total"], m["rig_edge_messages_delivered_total"])
		}
		return nil
	})
	im := Scrape(t, ingestMetrics)
	for name, want := range map[string]float64{
		`rig_ingest_messages_total{result="stored"}`: 3,
		"rig_ingest_batches_total":                   1,
		"rig_ingest_publish_seconds_count":           3,
		"rig_nats_connected":                         1,
	} {
		if im[name] != want {
			t.Errorf("ingest %s = %v, want %v", name, im[name], want)
		}
	}
	if im["rig_ingest_publish_seconds_sum"] <= 0 {
		t.Errorf("ingest rig_ingest_publish_seconds_sum = %v, want > 0", im["rig_ingest_publish_seconds_sum"])
	}
	Do(t, "POST", st.Ingest.URL+"/v1/messages", "application/json", []byte(`{"text":"no user"}`))
	if m := Scrape(t, ingestMetrics); m[`rig_ingest_messages_total{result="rejected"}`] != 1 {
		t.Errorf(`rig_ingest_messages_total{result="rejected"} = %v, want 1`, m[`rig_ingest_messages_total{result="rejected"}`])
	}

	// A client that stops reading is closed as slow: its queue (8) fills.
	slow := openRawSSE(t, st.Edge.URL, Token(t, "metrics-bob"))
	defer slow.Close()
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := Scrape(t, edgeMetrics)[`rig_edge_connections{transport="sse"}`]; got != 2 {
			return fmt.Errorf("second SSE connection not counted: got %v", got)
		}
		return nil
	})
	big := strings.Repeat("x", 60<<10)
	deadline := time.Now().Add(20 * time.Second)
	for Scrape(t, edgeMetrics)["rig_edge_slow_clients_closed_total"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a client that does not read was never closed as slow")
		}
		Post(t, st.Ingest.URL, map[string]any{"user": "metrics-bob", "pad": big})
	}
	if m := Scrape(t, edgeMetrics); m["rig_edge_events_dropped_total"] < 1 {
		t.Errorf("rig_edge_events_dropped_total = %v, want ≥ 1", m["rig_edge_events_dropped_total"])
	}

	// A blacklisted session's connection is counted as killed.
	jti := "metrics-carol-session"
	carol := MustSSE(t, st.Edge.URL+"/socket/sse?token="+Token(t, "metrics-carol", TokenOpts{JTI: jti}))
	r = Do(t, "POST", st.Ingest.URL+"/v1/session-blacklist", "application/json", []byte(fmt.Sprintf(`{"sessionId":%q,"validityInSeconds":60}`, jti)))
	if r.Status != 201 {
		t.Fatalf("blacklist: %d %s", r.Status, r.Body)
	}
	if !carol.Ended(5 * time.Second) {
		t.Fatal("blacklisted stream did not end")
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := Scrape(t, edgeMetrics)["rig_edge_sessions_killed_total"]; got != 1 {
			return fmt.Errorf("rig_edge_sessions_killed_total did not reach 1: got %v", got)
		}
		return nil
	})
	if m := Scrape(t, ingestMetrics); m["rig_ingest_blacklist_calls_total"] != 1 {
		t.Errorf("rig_ingest_blacklist_calls_total = %v, want 1", m["rig_ingest_blacklist_calls_total"])
	}

	// PPROF=true: the profiler answers on the operations port and on ingest.
	for _, u := range []string{st.Edge.OpsURL + "/debug/pprof/", st.Ingest.URL + "/debug/pprof/"} {
		if r := Do(t, "GET", u, "", nil); r.Status != http.StatusOK {
			t.Errorf("GET %s: %d", u, r.Status)
		}
	}
}

// TestPprofOffByDefault: without PPROF the profiler is not served.
func TestPprofOffByDefault(t *testing.T) {
	st := StartStack(t, nil, nil)
	for _, u := range []string{st.Edge.OpsURL + "/debug/pprof/", st.Ingest.URL + "/debug/pprof/"} {
		if r := Do(t, "GET", u, "", nil); r.Status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", u, r.Status)
		}
	}
}

// openRawSSE sends an SSE request on a raw connection and never reads:
// a client that stopped reading.
func openRawSSE(t testing.TB, edgeURL, token string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(edgeURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /socket/sse?token=%s HTTP/1.1\r\nHost: x\r\n\r\n", token)
	return c
}
