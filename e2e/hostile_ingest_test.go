package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/publish"
)

// historyMsgs returns how many messages the history stream holds.
func historyMsgs(t *testing.T, natsURL string) uint64 {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "RIG_HISTORY")
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// postKeyed posts body with an Idempotency-Key and returns the status and
// the id of a 202 (or the error of anything else).
func postKeyed(t *testing.T, ingestURL, key, body string) (int, string) {
	t.Helper()
	h := http.Header{}
	if key != "" {
		h.Set("Idempotency-Key", key)
	}
	r := Do(t, "POST", ingestURL+"/v1/messages", "application/json", []byte(body), h)
	if r.Status != 202 {
		return r.Status, r.ErrorMessage(t)
	}
	var a struct{ ID string }
	r.JSON(t, &a)
	return r.Status, a.ID
}

// TestHostileIdempotencyKey (issue 12, point 4): Idempotency-Keys are
// scoped per user and never collide with another message's id; the same
// key with another body is a 409 that stores nothing; a retry with the same
// body answers the first's id and is delivered once.
func TestHostileIdempotencyKey(t *testing.T) {
	st := StartStack(t, nil, nil)
	alice := MustSSE(t, sseURL(st.Edge.URL, Token(t, "alice")))
	bob := MustSSE(t, sseURL(st.Edge.URL, Token(t, "bob")))

	// Two users, one key: two messages, each stored and delivered.
	sa, idA := postKeyed(t, st.Ingest.URL, "order-42", `{"user":"alice","text":"alice's order"}`)
	sb, idB := postKeyed(t, st.Ingest.URL, "order-42", `{"user":"bob","text":"bob's order"}`)
	t.Logf("alice: %d %s; bob: %d %s", sa, idA, sb, idB)
	if sa != 202 || sb != 202 || idA == idB {
		t.Fatalf("same key for two users: alice %d %q, bob %d %q; want two 202s with distinct ids", sa, idA, sb, idB)
	}
	if ev := alice.NextMessage(t, 5*time.Second); ev.ID != idA || !strings.Contains(ev.Data, "alice's order") {
		t.Fatalf("alice got %+v, want %s", ev, idA)
	}
	if ev := bob.NextMessage(t, 5*time.Second); ev.ID != idB || !strings.Contains(ev.Data, "bob's order") {
		t.Fatalf("bob got %+v, want %s", ev, idB)
	}

	// A key equal to another message's id is still a new message.
	plain := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "plain"})
	if ev := alice.NextMessage(t, 5*time.Second); ev.ID != plain {
		t.Fatalf("alice got %+v, want %s", ev, plain)
	}
	sk, idK := postKeyed(t, st.Ingest.URL, plain, `{"user":"bob","text":"keyed with alice's id"}`)
	if sk != 202 || idK == plain {
		t.Fatalf("key = another message's id: %d %q", sk, idK)
	}
	if ev := bob.NextMessage(t, 5*time.Second); ev.ID != idK || !strings.Contains(ev.Data, "keyed with alice's id") {
		t.Fatalf("bob got %+v, want %s", ev, idK)
	}
	before := historyMsgs(t, st.NATSURL)
	if before != 4 {
		t.Fatalf("history holds %d messages, want 4", before)
	}

	// The same key, another body: 409, nothing stored.
	sc, errText := postKeyed(t, st.Ingest.URL, "order-42", `{"user":"alice","text":"a different order"}`)
	t.Logf("same key, other body: %d %s", sc, errText)
	if sc != 409 {
		t.Fatalf("same key, other body: %d %q, want 409", sc, errText)
	}
	// A retry, same body: the first's id, not stored again.
	for range 3 {
		if s, id := postKeyed(t, st.Ingest.URL, "order-42", `{"user":"alice","text":"alice's order"}`); s != 202 || id != idA {
			t.Fatalf("retry: %d %q, want 202 %s", s, id, idA)
		}
	}
	if n := historyMsgs(t, st.NATSURL); n != before {
		t.Fatalf("history holds %d messages after a conflict and retries, want %d", n, before)
	}
	// Delivered once: alice's next message is the sentinel.
	sentinel := Post(t, st.Ingest.URL, map[string]any{"user": "alice", "text": "sentinel"})
	if ev := alice.NextMessage(t, 5*time.Second); ev.ID != sentinel {
		t.Fatalf("after the conflict and the retries alice got %+v, want only the sentinel %s", ev, sentinel)
	}
	// The keyed message's event id is a resume point like any other: from
	// it, alice gets exactly what followed it.
	resumed := MustSSE(t, sseURL(st.Edge.URL, Token(t, "alice")), http.Header{"Last-Event-ID": {idA}})
	for _, want := range []string{plain, sentinel} {
		if ev := resumed.NextMessage(t, 5*time.Second); ev.ID != want {
			t.Fatalf("resume from the keyed id %s: got %+v, want %s", idA, ev, want)
		}
	}
	// A batch cannot carry a key (it would be silently ignored).
	if s, e := postKeyed(t, st.Ingest.URL, "batch-1", `[{"user":"alice"}]`); s != 400 {
		t.Fatalf("batch with a key: %d %s", s, e)
	}
}

// TestHostileInvalidUTF8Ingest (issue 12, point 5, ingest side): a body
// that is not valid UTF-8 gets a JSON 400 and publishes nothing: single
// messages, every message of a batch, and the other JSON endpoints.
func TestHostileInvalidUTF8Ingest(t *testing.T) {
	st := StartStack(t, nil, nil)
	nc, err := nats.Connect(st.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	seen := make(chan *nats.Msg, 100)
	if _, err := nc.ChanSubscribe("user.>", seen); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	carol := MustSSE(t, sseURL(st.Edge.URL, Token(t, "carol")))
	for _, c := range []struct{ name, path, body string }{
		{"message", "/v1/messages", "{\"user\":\"carol\",\"t\":\"bad \xff\"}"},
		{"overlong encoding", "/v1/messages", "{\"user\":\"carol\",\"t\":\"\xc0\xaf\"}"},
		{"surrogate", "/v1/messages", "{\"user\":\"carol\",\"t\":\"\xed\xa0\x80\"}"},
		{"in the user", "/v1/messages", "{\"user\":\"car\xffol\"}"},
		{"last message of a batch", "/v1/messages", "[{\"user\":\"carol\",\"t\":\"ok\"},{\"user\":\"carol\",\"t\":\"\xfe\"}]"},
		{"session id", "/v1/session-blacklist", "{\"sessionId\":\"s\xff\",\"validityInSeconds\":60}"},
	} {
		r := Do(t, "POST", st.Ingest.URL+c.path, "application/json", []byte(c.body))
		if r.Status != 400 {
			t.Errorf("%s: %d %s, want 400", c.name, r.Status, r.Body)
			continue
		}
		t.Logf("%s: %d %s", c.name, r.Status, r.ErrorMessage(t))
	}
	sentinel := Post(t, st.Ingest.URL, map[string]any{"user": "carol", "t": "sentinel ü"})
	select {
	case m := <-seen:
		if !strings.Contains(string(m.Data), "sentinel") {
			t.Fatalf("a refused body was published: %s %q", m.Subject, m.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sentinel not published")
	}
	if ev := carol.NextMessage(t, 5*time.Second); ev.ID != sentinel {
		t.Fatalf("carol got %+v, want only the sentinel", ev)
	}
	if n := historyMsgs(t, st.NATSURL); n != 1 {
		t.Fatalf("history holds %d messages, want only the sentinel", n)
	}
}

// TestHostileWrongSubject (issue 12, point 7): the history stream takes
// one token after user., so a JetStream publish to user.a.b (a user id
// written without encoding) gets an error and nothing is stored; the
// publish package encodes the same user id into one token, and that
// user's client gets the message.
func TestHostileWrongSubject(t *testing.T) {
	st := StartStack(t, nil, nil)
	nc, err := nats.Connect(st.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, subject := range []string{"user.a.b", "user.alice.x", "user.a.b.c"} {
		_, err := js.Publish(ctx, subject, []byte(`{"lost":true}`))
		t.Logf("JetStream publish to %s: %v", subject, err)
		if err == nil {
			t.Errorf("JetStream publish to %s was accepted", subject)
		} else if !errors.Is(err, jetstream.ErrNoStreamResponse) {
			t.Errorf("publish to %s: %v, want %v", subject, err, jetstream.ErrNoStreamResponse)
		}
	}
	if n := historyMsgs(t, st.NATSURL); n != 0 {
		t.Fatalf("history holds %d messages for subjects no client reads", n)
	}
	s, err := js.Stream(ctx, "RIG_HISTORY")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Subjects; len(got) != 1 || got[0] != "user.*" {
		t.Fatalf("history stream subjects %q, want [user.*]", got)
	}

	// The right way: the user "a.b" is user.a%2Eb, one token.
	ab := MustSSE(t, sseURL(st.Edge.URL, Token(t, "a.b")))
	ack, err := publish.ToUser(ctx, js, "a.b", []byte(`{"text":"for a.b"}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev := ab.NextMessage(t, 5*time.Second); ev.ID != ack.ID || ev.Data != `{"text":"for a.b"}` {
		t.Fatalf("user a.b got %+v, want %s", ev, ack.ID)
	}
	if _, err := publish.ToUser(ctx, js, "a.b", []byte(`{}`), publish.WithID("seq:999")); !errors.Is(err, publish.ErrInvalidID) {
		t.Fatalf("publish with a position id: %v", err)
	}
}

// TestClusterIdempotencyKey: on a 3-node JetStream cluster (the history
// stream on three replicas), concurrent retries of one keyed message
// through three ingests, each on another node, all answer 202 with one id,
// and one message is stored: a retry that JetStream sees while the first
// is still being stored ("in process") is asked again, and the first is
// read back from the stream's leader.
func TestClusterIdempotencyKey(t *testing.T) {
	nodes := StartNATSCluster(t, 3)
	var ingests []*Server
	for _, n := range nodes {
		env := IngestEnv(FreePort(t), n.URL)
		env["NATS_CLIENT_NAME"] = "ingest-" + n.Name
		ingests = append(ingests, startServer(t, env["NATS_CLIENT_NAME"], bin.ingest, env, "API_PORT"))
	}
	for _, s := range ingests {
		waitReady(t, s, 90*time.Second)
	}
	nc, err := nats.Connect(nodes[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	i := replicated(t, js, "RIG_HISTORY", 3, 60*time.Second)
	t.Logf("history stream on %v, leader %s", peers(i), i.Cluster.Leader)

	const n = 30
	body := `{"user":"alice","text":"keyed, in a cluster"}`
	type result struct {
		status int
		id     string
	}
	results := make(chan result, n)
	for k := range n {
		go func() {
			req, _ := http.NewRequest("POST", ingests[k%3].URL+"/v1/messages", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "cluster-order-1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				results <- result{status: -1, id: err.Error()}
				return
			}
			defer resp.Body.Close()
			var a struct{ ID, Error string }
			_ = json.NewDecoder(resp.Body).Decode(&a)
			results <- result{resp.StatusCode, a.ID + a.Error}
		}()
	}
	first := ""
	for range n {
		r := <-results
		if r.status != 202 || first != "" && r.id != first {
			t.Fatalf("concurrent retry: %d %q (others %q)", r.status, r.id, first)
		}
		first = r.id
	}
	for _, s := range ingests {
		if st, id := postKeyed(t, s.URL, "cluster-order-1", body); st != 202 || id != first {
			t.Fatalf("retry through %s: %d %q, want 202 %s", s.Name, st, id, first)
		}
		if st, e := postKeyed(t, s.URL, "cluster-order-1", `{"user":"alice","text":"another"}`); st != 409 {
			t.Fatalf("other body through %s: %d %s, want 409", s.Name, st, e)
		}
	}
	if got := historyMsgs(t, nodes[1].URL); got != 1 {
		t.Fatalf("history holds %d messages, want 1", got)
	}
	asked := 0
	for _, s := range ingests {
		asked += strings.Count(s.Logs(), "is being stored; asking again")
	}
	t.Logf("%d concurrent posts through 3 ingests on 3 nodes: one message stored, every answer 202 %s; %d publishes met the first still in process",
		n, first, asked)
}
