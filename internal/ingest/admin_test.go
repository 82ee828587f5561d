package ingest

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/broker/brokertest"
	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/presence"
	"github.com/rig-go/rig/internal/route"
)

// edgeSource is an edge's registry of n sessions, for a Responder.
type edgeSource struct {
	id string
	n  int
}

func (e edgeSource) Users() []string                    { return nil }
func (e edgeSource) Sessions(string) []presence.Session { return nil }
func (e edgeSource) Status() presence.Status            { return presence.Status{Ready: true, Connections: e.n} }
func (e edgeSource) Each(yield func(presence.Session)) {
	for i := range e.n {
		u := fmt.Sprintf("user-%03d", i)
		yield(presence.Session{SessionID: "jti-" + u, User: u, Users: []string{u}, Transport: "sse", Edge: e.id,
			ConnectedSince: time.Now().UTC(), Remote: "192.0.2.1", Expires: time.Now().Add(time.Hour).UTC(), Conn: uint64(i)})
	}
}

// TestAdminSessions: GET /v1/admin/sessions pages through an edge's
// sessions with an opaque cursor, and refuses parameters no page answers
// with a 400 naming them.
func TestAdminSessions(t *testing.T) {
	s := routesServer(t, config.Routes{})
	r, err := presence.NewResponder(s.broker.NC, "edge-x", 50*time.Millisecond, edgeSource{"edge-x", 250}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Go(t, r.Run)
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		if es := s.presence.Edges(); len(es) != 1 || es[0].Status == nil || !es[0].Status.Ready {
			return fmt.Errorf("edges %+v", es)
		}
		return nil
	})
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		code, body := call(t, s, "GET", "/v1/admin/sessions?limit=100&cursor="+url.QueryEscape(cursor), "")
		var p sessionsPage
		if err := json.Unmarshal([]byte(body), &p); code != 200 || err != nil {
			t.Fatalf("page %d: %d %s", pages, code, body)
		}
		if p.Total != 250 || p.Edges != 1 || len(p.Sessions) > 100 {
			t.Fatalf("page %d: total %d, edges %d, %d sessions", pages, p.Total, p.Edges, len(p.Sessions))
		}
		for _, x := range p.Sessions {
			if seen[x.SessionID] || x.Remote != "192.0.2.1" || x.Expires.IsZero() || x.Edge != "edge-x" {
				t.Fatalf("session %+v (listed before: %v)", x, seen[x.SessionID])
			}
			seen[x.SessionID] = true
		}
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	if len(seen) != 250 {
		t.Fatalf("paged %d sessions, want 250", len(seen))
	}
	code, body := call(t, s, "GET", "/v1/admin/sessions?q=user-12", "")
	if code != 200 || !strings.Contains(body, `"total":10,`) { // user-120..129
		t.Fatalf("q=user-12: %d %s", code, body)
	}
	code, body = call(t, s, "GET", "/v1/admin/sessions?user=user-007", "")
	if code != 200 || !strings.Contains(body, `"total":1,`) || !strings.Contains(body, `"jti":"jti-user-007"`) {
		t.Fatalf("user=user-007: %d %s", code, body)
	}
	for q, want := range map[string]string{
		"limit=0":                           `limit="0": expected a whole number from 1 to 1000`,
		"limit=1001":                        `limit="1001"`,
		"limit=ten":                         `limit="ten"`,
		"cursor=xyz":                        "cursor: not a cursor returned by a previous page",
		"cursor=" + presence.Key{}.Cursor(): "cursor: not a cursor returned by a previous page: no user",
		"q=" + strings.Repeat("a", 257):     "q: expected valid UTF-8 of at most 256 bytes, got 257 bytes",
		"q=%FF":                             "q: expected valid UTF-8",
		"user=" + strings.Repeat("u", 1000): "user: ",
	} {
		if code, msg := call(t, s, "GET", "/v1/admin/sessions?"+q, ""); code != 400 || !strings.Contains(msg, want) {
			t.Errorf("?%.60s: %d %q, want 400 %q", q, code, msg, want)
		}
	}
}

// TestAdminHealth: GET /v1/admin/health reports the NATS connection, the
// three streams with their state, and the edges with their readiness.
func TestAdminHealth(t *testing.T) {
	s := routesServer(t, config.Routes{})
	r, err := presence.NewResponder(s.broker.NC, "edge-h", 50*time.Millisecond, edgeSource{"edge-h", 3}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Go(t, r.Run)
	call(t, s, "GET", "/v1/apis", "") // creates the routes bucket
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		code, body := call(t, s, "GET", "/v1/admin/health", "")
		var h adminHealth
		if err := json.Unmarshal([]byte(body), &h); code != 200 || err != nil {
			return fmt.Errorf("%d %s", code, body)
		}
		if h.NATS.Status != "CONNECTED" || h.NATS.JetStream == nil || h.NATS.ServerID == "" || len(h.NATS.Servers) == 0 {
			return fmt.Errorf("nats %+v", h.NATS)
		}
		if len(h.Streams) != 3 || h.Streams[0].Name != "RIG_HISTORY" || h.Streams[1].Name != "KV_RIG_BLACKLIST" || h.Streams[2].Name != "KV_RIG_APIS" {
			return fmt.Errorf("streams %+v", h.Streams)
		}
		for _, st := range h.Streams {
			if !st.OK || st.Replicas != 1 {
				return fmt.Errorf("stream %+v", st)
			}
		}
		if len(h.Edges) != 1 || h.Edges[0].ID != "edge-h" || h.Edges[0].Status.Connections != 3 {
			return fmt.Errorf("edges %+v", h.Edges)
		}
		if h.Status != "ok" || h.Ingest.Status != "ok" {
			return fmt.Errorf("status %s, ingest %+v", h.Status, h.Ingest)
		}
		return nil
	})
}

// TestAPIsListSource: GET /v1/apis marks each route's source, lists the
// file's routes ingest knows, and a runtime route replacing a file route
// (with the override) is listed once, as runtime.
func TestAPIsListSource(t *testing.T) {
	file, err := route.ParseAPI([]byte(apiDef("filed", `{"target_url":"users.internal"}`)))
	if err != nil {
		t.Fatal(err)
	}
	list := func(s *Server) []map[string]any {
		t.Helper()
		code, body := call(t, s, "GET", "/v1/apis", "")
		var l []map[string]any
		if err := json.Unmarshal([]byte(body), &l); code != 200 || err != nil {
			t.Fatalf("GET /v1/apis: %d %s", code, body)
		}
		return l
	}
	s := routesServer(t, config.Routes{APIs: []*route.API{file}})
	if l := list(s); len(l) != 1 || l[0]["id"] != "filed" || l[0]["source"] != "file" {
		t.Fatalf("file route only: %v", l)
	}
	if code, body := call(t, s, "POST", "/v1/apis", apiDef("added", `{"target_url":"users.internal"}`)); code != 201 {
		t.Fatalf("POST: %d %s", code, body)
	}
	if l := list(s); len(l) != 2 || l[0]["id"] != "added" || l[0]["source"] != "runtime" || l[1]["source"] != "file" {
		t.Fatalf("both: %v", l)
	}
	// The field is the list's: a definition posted with it is refused.
	withSource := strings.Replace(apiDef("copy", `{"target_url":"users.internal"}`), `{"id"`, `{"source":"runtime","id"`, 1)
	if code, msg := call(t, s, "POST", "/v1/apis", withSource); code != 400 || !strings.Contains(msg, "source: unknown field") {
		t.Fatalf("POST with source: %d %s", code, msg)
	}

	over := routesServer(t, config.Routes{APIs: []*route.API{file}, AllowFileOverride: true})
	if code, body := call(t, over, "POST", "/v1/apis", apiDef("filed", `{"target_url":"users.example"}`)); code != 201 {
		t.Fatalf("POST override: %d %s", code, body)
	}
	if l := list(over); len(l) != 1 || l[0]["source"] != "runtime" || !strings.Contains(fmt.Sprint(l[0]["proxy"]), "users.example") {
		t.Fatalf("override: %v", l)
	}
}

// TestWithoutUserinfo: server URLs in health carry no credentials.
func TestWithoutUserinfo(t *testing.T) {
	got := withoutUserinfo([]string{"nats://ingest:s3cret@10.0.0.1:4222", "nats://token@n2:4222", "nats://n3:4222", "%zz"})
	if strings.Join(got, " ") != "nats://10.0.0.1:4222 nats://n2:4222 nats://n3:4222" {
		t.Fatalf("withoutUserinfo = %q", got)
	}
}
