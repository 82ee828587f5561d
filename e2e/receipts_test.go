package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/check"
)

// nextWSMessage returns the next message event of a plain socket,
// skipping connected and heartbeats.
func nextWSMessage(t *testing.T, w *WS, timeout time.Duration) WSEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev := w.Next(t, time.Until(deadline))
		if ev.Event == "message" {
			return ev
		}
	}
}

// receiptsStack is a nats-server, an ingest wanting adminToken, and two
// edges, edge-r1 and edge-r2; alice is connected to both, by SSE to the
// first and by WebSocket to the second, and listed by presence.
func receiptsStack(t *testing.T) (n *NATSServer, ingest *Server, sse *SSE, ws *WS) {
	n = StartNATS(t)
	ingest = StartIngest(t, with(IngestEnv(FreePort(t), n.URL), "API_TOKENS", adminToken))
	e1 := StartEdge(t, with(EdgeEnv(FreePort(t), n.URL), "EDGE_ID", "edge-r1"))
	e2 := StartEdge(t, with(EdgeEnv(FreePort(t), n.URL), "EDGE_ID", "edge-r2"))
	sse = MustSSE(t, sseURL(e1.URL, Token(t, "alice", TokenOpts{JTI: "alice-sse"})))
	ws = MustWS(t, wsURL(e2.URL, plainQuery(Token(t, "alice", TokenOpts{JTI: "alice-ws"}))))
	check.For(t, 15*time.Second, 50*time.Millisecond, func() error {
		if out := mustAdmin(t, ingest.URL, "sessions", "--user", "alice"); !strings.Contains(out, "2 of 2 sessions, from 2 edges") {
			return fmt.Errorf("alice's sessions not listed yet:\n%s", out)
		}
		return nil
	})
	return n, ingest, sse, ws
}

// TestAdminSendReceipts: `ingest admin send` to a user connected by SSE to
// one edge and by WebSocket to another prints both edges' receipts (edge,
// transport, jti) and "delivered to 2 of 2", as a table and as JSON, with
// the id both connections got; a user with no connection is said to have
// none, exit 0; bad waits are refused before anything is sent.
func TestAdminSendReceipts(t *testing.T) {
	_, ingest, sse, ws := receiptsStack(t)

	start := time.Now()
	out := mustAdmin(t, ingest.URL, "send", "alice", `{"text": "are you there?"}`)
	took := time.Since(start)
	got := sse.NextMessage(t, 5*time.Second)
	wev := nextWSMessage(t, ws, 5*time.Second)
	if got.ID != wev.ID || !strings.Contains(out, "id "+got.ID) {
		t.Fatalf("SSE got %s, WebSocket %s, send printed:\n%s", got.ID, wev.ID, out)
	}
	if !strings.Contains(out, "delivered to 2 of 2 connections, confirmed by their edges in ") {
		t.Fatalf("send:\n%s", out)
	}
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 5 && f[0] == "confirmed" {
			rows[f[1]] = f
		}
	}
	if r := rows["edge-r1"]; len(r) < 5 || r[2] != "sse" || r[3] != "alice-sse" || r[4] != "alice" {
		t.Fatalf("edge-r1's receipt row %q in:\n%s", r, out)
	}
	if r := rows["edge-r2"]; len(r) < 5 || r[2] != "websocket" || r[3] != "alice-ws" || r[4] != "alice" {
		t.Fatalf("edge-r2's receipt row %q in:\n%s", r, out)
	}
	t.Logf("ingest admin send (%s):\n%s", took.Round(time.Millisecond), out)

	var a struct {
		ID                string
		Online, Confirmed int
		Complete          bool
		Receipts          []struct{ Edge, JTI, Transport, User, ID string }
		Unconfirmed       []any
	}
	if err := json.Unmarshal([]byte(mustAdmin(t, ingest.URL, "send", "alice", `{"n": 2}`, "--json", "--wait", "3s")), &a); err != nil {
		t.Fatal(err)
	}
	got = sse.NextMessage(t, 5*time.Second)
	var edges []string
	for _, r := range a.Receipts {
		if r.ID != a.ID {
			t.Errorf("receipt %+v is not of %s", r, a.ID)
		}
		edges = append(edges, r.Edge+" "+r.Transport+" "+r.JTI)
	}
	slices.Sort(edges)
	if a.ID != got.ID || a.Online != 2 || a.Confirmed != 2 || !a.Complete || len(a.Unconfirmed) != 0 ||
		strings.Join(edges, ",") != "edge-r1 sse alice-sse,edge-r2 websocket alice-ws" {
		t.Fatalf("send --json: %+v (alice got %s)", a, got.ID)
	}
	nextWSMessage(t, ws, 5*time.Second)

	// Nobody online: said so, at once, and not a failure.
	start = time.Now()
	out = mustAdmin(t, ingest.URL, "send", "nobody-online", `{}`)
	if !strings.Contains(out, "no connection of nobody-online is online") || time.Since(start) > 3*time.Second {
		t.Fatalf("send to nobody (%s):\n%s", time.Since(start), out)
	}
	for _, w := range []string{"-1s", "31s"} {
		if r := runAdmin(t, ingest.URL, adminToken, "send", "alice", `{}`, "--wait", w); r.Code != 1 || !strings.Contains(r.Stderr, "invalid --wait="+w) {
			t.Fatalf("--wait %s: %+v", w, r)
		}
	}
	// The API refuses a bad wait with its one line, and sends nothing.
	auth := http.Header{"Authorization": {"Bearer " + adminToken}}
	r := Do(t, "POST", ingest.URL+"/v1/admin/messages?wait=forever", "application/json", []byte(`{"user": "alice"}`), auth)
	if r.Status != 400 || !strings.Contains(r.ErrorMessage(t), `wait="forever": expected a duration`) {
		t.Fatalf("wait=forever: %d %s", r.Status, r.Body)
	}
	if r := Do(t, "POST", ingest.URL+"/v1/admin/messages", "application/json", []byte(`[{"user": "alice"}]`), auth); r.Status != 400 {
		t.Fatalf("a batch: %d %s", r.Status, r.Body)
	}
	if r := Do(t, "POST", ingest.URL+"/v1/admin/messages", "application/json", []byte(`{"user": "alice"}`)); r.Status != 401 {
		t.Fatalf("without a token: %d %s", r.Status, r.Body)
	}
	// The next message alice gets is the one sent now: nothing was sent
	// by the refused calls.
	var stored struct{ ID string }
	Do(t, "POST", ingest.URL+"/v1/messages", "application/json", []byte(`{"user": "alice", "after": "refusals"}`), auth).JSON(t, &stored)
	if got, id := sse.NextMessage(t, 5*time.Second), stored.ID; got.ID != id {
		t.Fatalf("after the refusals alice got %+v, want %s", got, id)
	}
}

// TestReceiptHeaderGuard: a back-end publishing straight to NATS cannot
// make edges publish receipts anywhere but a single literal
// _RIG_RECEIPT.<token> subject: messages whose Rig-Receipt names a user's
// subject, a live subject, a wildcard, two tokens or white space are
// delivered as usual and confirmed nowhere; a Rig-Receipt HTTP header on
// POST /v1/messages is not passed on. A valid receipt subject sent last
// shows the edges have written everything before it.
func TestReceiptHeaderGuard(t *testing.T) {
	n, ingest, sse, ws := receiptsStack(t)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	watched := make(chan *nats.Msg, 64)
	for _, subj := range []string{"user.bob", "rig.live.user.bob", "_RIG_RECEIPT.>", "hijack.>"} {
		if _, err := nc.ChanSubscribe(subj, watched); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	hostile := []string{"user.bob", "rig.live.user.bob", "_RIG_RECEIPT.*", "_RIG_RECEIPT.>", "_RIG_RECEIPT.a.b", "_RIG_RECEIPT.a b",
		"_RIG_RECEIPT.", "_RIG_RECEIPT." + strings.Repeat("x", 65), "hijack.x", "_RIG_RECEIPT.%2A"}
	for i, h := range hostile {
		m := nats.NewMsg("user.alice")
		m.Data = []byte(fmt.Sprintf(`{"hostile": %d}`, i))
		m.Header.Set("Nats-Msg-Id", fmt.Sprintf("hostile-%d-%d", i, time.Now().UnixNano()))
		m.Header["Rig-Receipt"] = []string{h}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	// A plain POST with the header as an HTTP header: ingest sets its own.
	plain := Do(t, "POST", ingest.URL+"/v1/messages", "application/json", []byte(`{"user": "alice", "plain": true}`),
		http.Header{"Authorization": {"Bearer " + adminToken}, "Rig-Receipt": {"_RIG_RECEIPT.plain"}})
	if plain.Status != 202 {
		t.Fatalf("POST /v1/messages: %d %s", plain.Status, plain.Body)
	}
	probe := nats.NewMsg("user.alice")
	probe.Data = []byte(`{"probe": true}`)
	probe.Header.Set("Nats-Msg-Id", fmt.Sprintf("probe-%d", time.Now().UnixNano()))
	probe.Header.Set("Rig-Receipt", "_RIG_RECEIPT.probe")
	if err := nc.PublishMsg(probe); err != nil {
		t.Fatal(err)
	}
	// Both connections get all of them, in order.
	for i := range len(hostile) + 2 {
		s, w := sse.NextMessage(t, 5*time.Second), nextWSMessage(t, ws, 5*time.Second)
		if s.ID != w.ID {
			t.Fatalf("message %d: SSE %s, WebSocket %s", i, s.ID, w.ID)
		}
	}
	// The only receipts are the probe's, one from each edge; anything the
	// hostile headers made an edge publish would have come before them.
	var probes []string
	timeout := time.After(5 * time.Second)
	for len(probes) < 2 {
		select {
		case m := <-watched:
			if m.Subject != "_RIG_RECEIPT.probe" {
				t.Fatalf("an edge published to %s: %s", m.Subject, m.Data)
			}
			var r struct{ Edge, Transport string }
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatal(err)
			}
			probes = append(probes, r.Edge+" "+r.Transport)
		case <-timeout:
			t.Fatalf("the probe's receipts did not come: %q", probes)
		}
	}
	slices.Sort(probes)
	if strings.Join(probes, ",") != "edge-r1 sse,edge-r2 websocket" {
		t.Fatalf("probe receipts %q", probes)
	}
}

// TestAdminSendReceiptsLongPoll: on both long-poll transports the receipt
// follows the poll's answer that carries the message: a plain long-poll
// waiting for its next event, and phoenix.js's LongPoll (in node) joined
// to user:alice. A Phoenix long-poll session whose client stopped polling
// holds the message but has not delivered it: `send` says it is not
// confirmed, names it, and exits 1; the next poll gets the message.
func TestAdminSendReceiptsLongPoll(t *testing.T) {
	st := StartStack(t, map[string]string{"EDGE_ID": "edge-lp", "LONGPOLL_TIMEOUT": "20s", "PHOENIX_LONGPOLL_TIMEOUT": "5s"},
		map[string]string{"API_TOKENS": adminToken})
	listed := func(user, transport string) {
		t.Helper()
		check.For(t, 15*time.Second, 50*time.Millisecond, func() error {
			if out := mustAdmin(t, st.Ingest.URL, "sessions", "--user", user); !strings.Contains(out, transport) || !strings.Contains(out, "1 of 1 sessions") {
				return fmt.Errorf("%s's %s session not listed yet:\n%s", user, transport, out)
			}
			return nil
		})
	}

	t.Run("longpoll", func(t *testing.T) {
		// A first poll waits for the next message.
		answer := make(chan LongPoll, 1)
		go func() { answer <- Poll(t, pollURL(st.Edge.URL, Token(t, "dora", TokenOpts{JTI: "dora-lp"}), "")) }()
		listed("dora", "longpoll")
		out := mustAdmin(t, st.Ingest.URL, "send", "dora", `{"poll": 1}`)
		lp := <-answer
		if len(lp.Events) != 1 || !strings.Contains(out, "id "+lp.Events[0].ID) || !strings.Contains(out, "delivered to 1 of 1 connections") ||
			!strings.Contains(out, "edge-lp  longpoll   dora-lp") {
			t.Fatalf("poll answered %+v; send printed:\n%s", lp, out)
		}
	})

	t.Run("phoenix-longpoll", func(t *testing.T) {
		n := startNodeLongPoll(t, st.Edge.URL, Token(t, "alice", TokenOpts{JTI: "alice-phx-lp"}), "alice", "bob", "longpoll")
		n.next(20*time.Second, "open", func(l jsLine) bool { return l.Event == "open" })
		n.joinedAliceRefusedBob()
		listed("alice", "phoenix-longpoll")
		out := mustAdmin(t, st.Ingest.URL, "send", "alice", `{"poll": 2}`)
		got := n.messages(10*time.Second, 1)
		if !strings.Contains(out, "id "+got[0]) || !strings.Contains(out, "delivered to 1 of 1 connections") ||
			!strings.Contains(out, "edge-lp  phoenix-longpoll  alice-phx-lp") {
			t.Fatalf("phoenix.js got %v; send printed:\n%s", got, out)
		}
	})

	t.Run("a session that stopped polling", func(t *testing.T) {
		jwt := Token(t, "carol", TokenOpts{JTI: "carol-stalled"})
		hs := lpDo(t, st.Edge.URL, "GET", jwt, "", "", nil)
		if p := lpDo(t, st.Edge.URL, "POST", jwt, hs.Token, "application/json", []byte(`["1","1","user:carol","phx_join",{}]`)); p.Status != 200 {
			t.Fatalf("POST join: %+v", p)
		}
		joined := lpDo(t, st.Edge.URL, "GET", jwt, hs.Token, "", nil)
		if joined.Status != 200 || len(joined.Messages) != 1 {
			t.Fatalf("poll after the join: %+v", joined)
		}
		listed("carol", "phoenix-longpoll")
		r := runAdmin(t, st.Ingest.URL, adminToken, "send", "carol", `{"stalled": true}`, "--wait", "1s")
		if r.Code != 1 || !strings.Contains(r.Stdout, "NOT CONFIRMED  edge-lp  phoenix-longpoll  carol-stalled") ||
			!regexp.MustCompile(`0 of 1 connections confirmed after 1(\.\d+)?s`).MatchString(r.Stdout) ||
			!strings.Contains(r.Stderr, "stored, but only 0 of 1 connections of carol confirmed it within 1s") {
			t.Fatalf("send to a session that does not poll: %+v", r)
		}
		// The message waited in the session's outbox for the next poll.
		if m := lpDo(t, st.Edge.URL, "GET", jwt, joined.Token, "", nil); m.Status != 200 || len(m.Messages) != 1 || !strings.Contains(m.Messages[0], `"stalled":true`) ||
			!strings.Contains(r.Stdout, "id ") {
			t.Fatalf("the next poll: %+v", m)
		}
	})
}
