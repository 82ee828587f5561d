package ingest

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/broker/brokertest"
	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/presence"
	"github.com/rig-go/rig/internal/rig"
)

// TestAdminSend: POST /v1/admin/messages publishes with a receipt subject
// and answers as soon as every connection presence lists for the user
// confirmed; a connection that does not confirm is named after the wait;
// receipts of other connections are shown and not counted; bad input is
// a 400 naming it.
func TestAdminSend(t *testing.T) {
	s := routesServer(t, config.Routes{})
	r, err := presence.NewResponder(s.broker.NC, "edge-x", 50*time.Millisecond, edgeSource{"edge-x", 5}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Go(t, r.Run)
	check.For(t, 10*time.Second, 20*time.Millisecond, func() error {
		if es := s.presence.Edges(); len(es) != 1 {
			return fmt.Errorf("edges %+v", es)
		}
		return nil
	})
	// An edge as NATS sees it: it gets user-002's live messages, and
	// confirms them for the connection presence lists (edge-x, conn 2),
	// and for one it does not (a privileged watcher on edge-y).
	edge, err := nats.Connect(s.broker.NC.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer edge.Close()
	if _, err := edge.Subscribe(rig.LiveSubjectPrefix+"user.user-002", func(m *nats.Msg) {
		subj, id := m.Header.Get(broker.HeaderReceipt), m.Header.Get(broker.HeaderMsgID)
		if !rig.ValidReceiptSubject(subj) {
			t.Errorf("receipt subject %q", subj)
			return
		}
		for _, rc := range []rig.Receipt{{Edge: "edge-y", Conn: 9, ID: id, Transport: "websocket"}, {Edge: "edge-x", Conn: 2, ID: id, Transport: "sse", JTI: "jti-user-002"}} {
			b, _ := json.Marshal(rc)
			_ = edge.Publish(subj, b)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := edge.Flush(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	code, body := call(t, s, "POST", "/v1/admin/messages?wait=10s", `{"user": "user-002", "text": "hi"}`)
	var a sent
	if err := json.Unmarshal([]byte(body), &a); code != 200 || err != nil {
		t.Fatalf("send: %d %s", code, body)
	}
	if a.Online != 1 || a.Confirmed != 1 || !a.Complete || len(a.Receipts) != 2 || len(a.Unconfirmed) != 0 || time.Since(start) > 5*time.Second {
		t.Fatalf("send to user-002 (%s): %s", time.Since(start), body)
	}

	start = time.Now()
	code, body = call(t, s, "POST", "/v1/admin/messages?wait=300ms", `{"user": "user-001"}`)
	a = sent{}
	if err := json.Unmarshal([]byte(body), &a); code != 200 || err != nil {
		t.Fatalf("send: %d %s", code, body)
	}
	if a.Online != 1 || a.Confirmed != 0 || len(a.Unconfirmed) != 1 || a.Unconfirmed[0].SessionID != "jti-user-001" || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("send to user-001, whose edge does not confirm (%s): %s", time.Since(start), body)
	}

	for _, c := range []struct{ path, body, want string }{
		{"/v1/admin/messages?wait=0s", `{"user": "a"}`, `wait="0s": expected a duration from 1ms to 30s`},
		{"/v1/admin/messages?wait=1m", `{"user": "a"}`, `wait="1m"`},
		{"/v1/admin/messages", `[{"user": "a"}]`, "not a batch"},
		{"/v1/admin/messages", `{"text": "no user"}`, `missing field "user"`},
	} {
		if code, msg := call(t, s, "POST", c.path, c.body); code != 400 || !strings.Contains(msg, c.want) {
			t.Errorf("POST %s %s: %d %q, want 400 %q", c.path, c.body, code, msg, c.want)
		}
	}
	req := httptest.NewRequest("POST", "/v1/admin/messages", strings.NewReader(`{"user": "a"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderIdempotencyKey, "k1")
	if resp, err := s.app.Test(req, 10_000); err != nil || resp.StatusCode != 400 {
		t.Fatalf("with an Idempotency-Key: %v %v", resp, err)
	}
}
