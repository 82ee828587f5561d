package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// adminSeries is GET /v1/admin/metrics as the tests read it.
type adminSeries struct {
	IntervalSeconds float64     `json:"intervalSeconds"`
	T               []float64   `json:"t"`
	Edges           []string    `json:"edges"`
	Answered        []chartLine `json:"answered"`
	Connections     []chartLine `json:"connections"`
	MessagesIn      []*float64  `json:"messagesIn"`
	MessagesOut     []chartLine `json:"messagesOut"`
	PublishLatency  struct {
		P50, P95, P99 []*float64
	} `json:"publishLatency"`
	SlowClientsClosed []chartLine `json:"slowClientsClosed"`
	SessionsKilled    []chartLine `json:"sessionsKilled"`
}

type chartLine struct {
	Edge, Transport string
	Values          []*float64
}

// line returns the line of edge (and transport, when given) in lines.
func line(lines []chartLine, edge, transport string) (chartLine, bool) {
	for _, l := range lines {
		if l.Edge == edge && l.Transport == transport {
			return l, true
		}
	}
	return chartLine{}, false
}

// last returns the last value of vs, or nil.
func last(vs []*float64) *float64 {
	if len(vs) == 0 {
		return nil
	}
	return vs[len(vs)-1]
}

func show(v *float64) string {
	if v == nil {
		return "null"
	}
	return strconv.FormatFloat(*v, 'g', 4, 64)
}

// postWithToken posts one message to an ingest that wants token.
func postWithToken(t testing.TB, ingestURL, token, msg string) {
	t.Helper()
	r := Do(t, "POST", ingestURL+"/v1/messages", "application/json", []byte(msg), http.Header{"Authorization": {"Bearer " + token}})
	if r.Status != 202 {
		t.Fatalf("POST /v1/messages: %d %s", r.Status, r.Body)
	}
}

// rowWith says whether a line of table starts with first and has every
// one of has.
func rowWith(table, first string, has ...string) bool {
	for _, l := range strings.Split(table, "\n") {
		if !strings.HasPrefix(l, first+" ") {
			continue
		}
		ok := true
		for _, h := range has {
			ok = ok && strings.Contains(l, "  "+h)
		}
		if ok {
			return true
		}
	}
	return false
}

// getAdminSeries reads GET /v1/admin/metrics with token.
func getAdminSeries(t testing.TB, ingestURL, token string) adminSeries {
	t.Helper()
	r := Do(t, "GET", ingestURL+"/v1/admin/metrics", "", nil, http.Header{"Authorization": {"Bearer " + token}})
	if r.Status != 200 {
		t.Fatalf("GET /v1/admin/metrics: %d %s", r.Status, r.Body)
	}
	var s adminSeries
	r.JSON(t, &s)
	return s
}

// TestAdminMetricsSeries: with NATS and two real edges, GET
// /v1/admin/metrics (behind API_TOKENS) shows each edge's connections by
// transport as clients connect, messages in and out per second and the
// publish latency as messages are posted; when one edge stops its lines
// go on as gaps (null), not zeros, while the other's go on.
func TestAdminMetricsSeries(t *testing.T) {
	n := StartNATS(t)
	ie := IngestEnv(FreePort(t), n.URL)
	ie["API_TOKENS"] = adminToken
	ie["ADMIN_METRICS_INTERVAL"] = "500ms"
	ing := StartIngest(t, ie)
	ea := EdgeEnv(FreePort(t), n.URL)
	ea["EDGE_ID"] = "edge-a"
	a := StartEdge(t, ea)
	eb := EdgeEnv(FreePort(t), n.URL)
	eb["EDGE_ID"] = "edge-b"
	b := StartEdge(t, eb)

	if r := Do(t, "GET", ing.URL+"/v1/admin/metrics", "", nil); r.Status != 401 {
		t.Fatalf("GET /v1/admin/metrics without a token: %d %s", r.Status, r.Body)
	}
	if r := Do(t, "GET", ing.URL+"/v1/admin/metrics", "", nil, http.Header{"Authorization": {"Bearer not-the-admin-token"}}); r.Status != 403 {
		t.Fatalf("GET /v1/admin/metrics with a wrong token: %d %s", r.Status, r.Body)
	}

	MustSSE(t, sseURL(a.URL, Token(t, "alice")))
	MustSSE(t, sseURL(a.URL, Token(t, "alice")))
	MustWS(t, wsURL(b.URL, plainQuery(Token(t, "bob"))))
	var s adminSeries
	sent := 0
	check.For(t, 20*time.Second, 100*time.Millisecond, func() error {
		postWithToken(t, ing.URL, adminToken, fmt.Sprintf(`{"user": "alice", "n": %d}`, sent))
		postWithToken(t, ing.URL, adminToken, fmt.Sprintf(`{"user": "bob", "n": %d}`, sent))
		sent++
		s = getAdminSeries(t, ing.URL, adminToken)
		sa, _ := line(s.Connections, "edge-a", "sse")
		wb, _ := line(s.Connections, "edge-b", "websocket")
		oa, _ := line(s.MessagesOut, "edge-a", "")
		ob, _ := line(s.MessagesOut, "edge-b", "")
		if show(last(sa.Values)) != "2" || show(last(wb.Values)) != "1" {
			return fmt.Errorf("connections: edge-a sse %s, edge-b websocket %s (want 2 and 1); edges %v", show(last(sa.Values)), show(last(wb.Values)), s.Edges)
		}
		if v := last(oa.Values); v == nil || *v <= 0 {
			return fmt.Errorf("edge-a's messages out %s", show(v))
		}
		if v := last(ob.Values); v == nil || *v <= 0 {
			return fmt.Errorf("edge-b's messages out %s", show(v))
		}
		if v := last(s.MessagesIn); v == nil || *v <= 0 {
			return fmt.Errorf("messages in %s", show(v))
		}
		if v := last(s.PublishLatency.P99); v == nil || *v <= 0 || *v > 5 {
			return fmt.Errorf("p99 publish latency %s", show(v))
		}
		return nil
	})
	if s.IntervalSeconds != 0.5 || len(s.T) != len(s.MessagesIn) || len(s.Connections[0].Values) != len(s.T) {
		t.Fatalf("interval %g, %d times, %d in, %d connections", s.IntervalSeconds, len(s.T), len(s.MessagesIn), len(s.Connections[0].Values))
	}
	t.Logf("%d samples; last: in %s/s, out a %s/s, p50 %ss, p99 %ss", len(s.T), show(last(s.MessagesIn)),
		show(last(s.MessagesOut[0].Values)), show(last(s.PublishLatency.P50)), show(last(s.PublishLatency.P99)))

	out := mustAdmin(t, ing.URL, "metrics")
	if !rowWith(out, "edge-a", "answering", "sse 2") || !rowWith(out, "edge-b", "answering", "websocket 1") || !strings.Contains(out, "publish latency p50 ") {
		t.Fatalf("ingest admin metrics:\n%s", out)
	}
	var js adminSeries
	if err := json.Unmarshal([]byte(mustAdmin(t, ing.URL, "metrics", "--json")), &js); err != nil || len(js.Edges) != 2 {
		t.Fatalf("ingest admin metrics --json: %v %+v", err, js)
	}

	b.Stop()
	check.For(t, 20*time.Second, 100*time.Millisecond, func() error {
		s = getAdminSeries(t, ing.URL, adminToken)
		wb, ok := line(s.Connections, "edge-b", "websocket")
		ob, _ := line(s.MessagesOut, "edge-b", "")
		sa, _ := line(s.Connections, "edge-a", "sse")
		if !ok || len(wb.Values) < 3 {
			return fmt.Errorf("edge-b's connections line gone (%v) or short", ok)
		}
		// Two samples in a row without edge-b: it is gone, not flapping.
		n := len(wb.Values)
		if wb.Values[n-1] != nil || wb.Values[n-2] != nil || last(ob.Values) != nil {
			return fmt.Errorf("stopped edge-b still shows connections %s, %s, out %s", show(wb.Values[n-2]), show(wb.Values[n-1]), show(last(ob.Values)))
		}
		if show(last(sa.Values)) != "2" {
			return fmt.Errorf("edge-a's sse connections %s, want 2", show(last(sa.Values)))
		}
		if ab, _ := line(s.Answered, "edge-b", ""); last(ab.Values) != nil {
			return fmt.Errorf("edge-b answered the last sample")
		}
		if aa, _ := line(s.Answered, "edge-a", ""); show(last(aa.Values)) != "1" {
			return fmt.Errorf("edge-a did not answer the last sample")
		}
		return nil
	})
	if out := mustAdmin(t, ing.URL, "metrics"); !rowWith(out, "edge-b", "not answering") || !rowWith(out, "edge-a", "answering", "sse 2") {
		t.Fatalf("ingest admin metrics after edge-b stopped:\n%s", out)
	} else {
		t.Logf("ingest admin metrics:\n%s", out)
	}
}
