package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/check"
)

// The tests in this file run the topology of `task run:cluster` (three
// NATS nodes, two edges behind nginx, ingest on a third node) and break it:
// clients connect through nginx, as browsers do.

// clusterJS connects to every node of the cluster for the test's own
// look-ups (stream and bucket state), as ingest's user, which may read
// them.
func clusterJS(t testing.TB, top *Topology) jetstream.JetStream {
	t.Helper()
	var urls []string
	for _, n := range top.NATS {
		urls = append(urls, n.URL)
	}
	nc, _ := top.Secure.Connect(t, strings.Join(urls, ","), "ingest", nats.Name("e2e"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.CustomInboxPrefix("_RIG_INGEST_INBOX"))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// streamInfo returns a stream's state as its leader reports it.
func streamInfo(js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.CachedInfo(), nil
}

// replicated waits until the stream has want replicas, a leader, and every
// replica current, and returns its state.
func replicated(t testing.TB, js jetstream.JetStream, name string, want int, timeout time.Duration) *jetstream.StreamInfo {
	t.Helper()
	var info *jetstream.StreamInfo
	check.For(t, timeout, 100*time.Millisecond, func() error {
		i, err := streamInfo(js, name)
		switch {
		case err != nil:
			return fmt.Errorf("stream %s: %w", name, err)
		case i.Config.Replicas != want || i.Cluster == nil || i.Cluster.Leader == "" || len(i.Cluster.Replicas) != want-1:
			return fmt.Errorf("stream %s not replicated %d times: replicas %d, cluster %+v", name, want, i.Config.Replicas, i.Cluster)
		}
		for _, r := range i.Cluster.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("stream %s: replica %s current=%v offline=%v lag=%d", name, r.Name, r.Current, r.Offline, r.Lag)
			}
		}
		info = i
		return nil
	})
	return info
}

// peers returns the names of the servers holding a stream.
func peers(i *jetstream.StreamInfo) []string {
	out := []string{i.Cluster.Leader}
	for _, r := range i.Cluster.Replicas {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

// clientsThroughLB opens one EventSource per user through nginx and checks
// that both edges got some.
func clientsThroughLB(t testing.TB, top *Topology, users []string) map[string]*EventSource {
	t.Helper()
	clients := map[string]*EventSource{}
	for _, u := range users {
		clients[u] = OpenEventSource(t, sseURL(top.LB.URL, Token(t, u)))
	}
	// A stream counts on its edge once it is set up (its user subscribed,
	// its start read from history): poll, not one look.
	for _, e := range top.Edges {
		check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
			if c, _ := edgeHealth(t, e.URL); c == 0 {
				return fmt.Errorf("nginx sent no client of %d to %s: the test would not cover both edges", len(users), e.Name)
			}
			return nil
		})
	}
	return clients
}

func usersNamed(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// TestClusterDelivery: on the cluster, the history stream and the
// blacklist and routes buckets have three replicas; ingest and the edges
// are on different NATS nodes; messages posted to ingest reach users
// connected through nginx on both edges, over SSE and WebSocket.
func TestClusterDelivery(t *testing.T) {
	top := StartTopology(t, nil, nil)
	js := clusterJS(t, top)
	for _, name := range []string{"RIG_HISTORY", "KV_RIG_BLACKLIST", "KV_RIG_APIS"} {
		i := replicated(t, js, name, 3, 60*time.Second)
		t.Logf("stream %s: %d replicas on %v, leader %s", name, i.Config.Replicas, peers(i), i.Cluster.Leader)
	}
	for i, want := range []string{"edge-1", "edge-2", "ingest"} {
		check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
			if !slices.Contains(top.NATS[i].ClientNames(t), want) {
				return fmt.Errorf("%s not connected to %s", want, top.NATS[i].Name)
			}
			return nil
		})
	}
	for _, other := range top.NATS[:2] {
		if slices.Contains(other.ClientNames(t), "ingest") {
			t.Fatalf("ingest is connected to %s, an edge's node", other.Name)
		}
	}

	users := usersNamed("deliver", 6)
	clients := clientsThroughLB(t, top, users)
	// A WebSocket through nginx: the upgrade headers reach the edge.
	wsTok := Token(t, "ws-user")
	ws := MustWS(t, wsURL(top.LB.URL, plainQuery(wsTok)))
	if ev := ws.Next(t, 5*time.Second); ev.Event != "connected" {
		t.Fatalf("first WebSocket frame %+v, want connected", ev)
	}

	pub := StartPublisher(t, top.Ingest.URL, append(users, "ws-user"), time.Millisecond)
	pub.WaitAccepted(t, 210, 60*time.Second)
	pub.Stop()
	tot := Totals(WaitDelivered(t, pub, clients, 30*time.Second))
	wsWant := pub.AcceptedFor("ws-user")
	var wsGot []string
	for len(wsGot) < len(wsWant) {
		ev := ws.Next(t, 10*time.Second)
		if ev.Event == "message" {
			wsGot = append(wsGot, ev.ID)
		}
	}
	if d := Compare(wsWant, wsGot); len(d.Lost)+len(d.Duplicated)+d.OutOfOrder > 0 {
		t.Fatalf("WebSocket: %s", d)
	}
	var perEdge []string
	for _, e := range top.Edges {
		c, _ := edgeHealth(t, e.URL)
		perEdge = append(perEdge, fmt.Sprintf("%s %d", e.Name, c))
	}
	t.Logf("%s; SSE through nginx: %s; WebSocket: %d of %d; connections per edge: %s",
		pub, tot, len(wsGot), len(wsWant), strings.Join(perEdge, ", "))
	if len(tot.Lost) > 0 {
		t.Fatalf("lost %d", len(tot.Lost))
	}
}

// TestClusterNATSNodeKilled: SIGKILL the node leading the history stream
// while messages flow. Delivery goes on, every message ingest accepted
// reaches its user exactly once and in order (clients that lose their
// stream resume with Last-Event-ID), blacklisting works on two nodes, and
// the node restarts and catches up.
func TestClusterNATSNodeKilled(t *testing.T) {
	top := StartTopology(t, nil, nil)
	js := clusterJS(t, top)
	info := replicated(t, js, "RIG_HISTORY", 3, 60*time.Second)
	replicated(t, js, "KV_RIG_BLACKLIST", 3, 60*time.Second)
	users := usersNamed("nodekill", 6)
	clients := clientsThroughLB(t, top, users)
	// A session to blacklist while the node is down.
	jti := fmt.Sprintf("victim-%d", time.Now().UnixNano())
	victimTok := Token(t, "victim", TokenOpts{JTI: jti})
	victim := MustSSE(t, sseURL(top.LB.URL, victimTok))

	pub := StartPublisher(t, top.Ingest.URL, users, 5*time.Millisecond)
	pub.WaitAccepted(t, 60, 60*time.Second)

	killed := top.Node(t, info.Cluster.Leader)
	var on []string
	for _, c := range killed.ClientNames(t) {
		if c == "edge-1" || c == "edge-2" || c == "ingest" {
			on = append(on, c)
		}
	}
	before := pub.Accepted()
	killedAt := time.Now()
	killed.Kill()
	t.Logf("killed %s (leader of RIG_HISTORY; clients on it: %v) after %d accepted", killed.Name, on, before)

	// Delivery goes on without the node: more messages are accepted, and
	// all of them arrive before it comes back.
	pub.WaitAccepted(t, 150, 90*time.Second)
	firstAfter := time.Since(killedAt)
	mid := Totals(waitDelivered(t, pub, clients, 60*time.Second, false))
	t.Logf("without %s: %d more accepted, and every accepted message delivered (%s) %s after the kill",
		killed.Name, pub.Accepted()-before, mid, time.Since(killedAt).Round(time.Millisecond))

	// Blacklisting works on the two nodes left.
	deadline := time.Now().Add(60 * time.Second)
	body, _ := json.Marshal(map[string]any{"sessionId": jti, "validityInSeconds": 120})
	for {
		r := Do(t, "POST", top.Ingest.URL+"/v1/session-blacklist", "application/json", body)
		if r.Status == 201 {
			break
		}
		if r.Status != 503 || time.Now().After(deadline) {
			t.Fatalf("blacklisting without %s: %d %s", killed.Name, r.Status, r.Body)
		}
		time.Sleep(200 * time.Millisecond) // ingest asked to retry (Retry-After)
	}
	victim.WaitKilled(t, time.Now().Add(15*time.Second))
	// Each edge applies the blacklisting when its watch of the bucket sees
	// it. A watch whose consumer lived on the killed node is re-created by
	// the client library after missed heartbeats (about 10 s), so an edge
	// may refuse the session a few seconds after the other one does.
	blacklistedAt := time.Now()
	refusals := 0
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		if st, _ := SSEStatus(t, sseURL(top.LB.URL, victimTok)); st == 401 {
			refusals++
		} else {
			refusals = 0
		}
		// several requests, spread by nginx over both edges
		if refusals < 4 {
			return fmt.Errorf("blacklisted session still accepted through nginx: %d refusals in a row, want 4", refusals)
		}
		return nil
	})
	t.Logf("blacklisted session refused through nginx %s after the session was killed", time.Since(blacklistedAt).Round(time.Millisecond))

	// The node comes back, rejoins the cluster and catches up.
	killed.Restart()
	restartedAt := time.Now()
	killed.WaitHealthy(t, 90*time.Second)
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		r := killed.Routes(t)
		if !(r["nats-1"] || r["nats-2"] || r["nats-3"]) {
			return fmt.Errorf("%s has no routes after its restart", killed.Name)
		}
		return nil
	})
	for _, name := range []string{"RIG_HISTORY", "KV_RIG_BLACKLIST"} {
		i := replicated(t, js, name, 3, 90*time.Second)
		if !slices.Contains(peers(i), killed.Name) {
			t.Fatalf("%s is not a replica of %s after its restart: %v", killed.Name, name, peers(i))
		}
	}
	t.Logf("%s rejoined: routes to %v, current in RIG_HISTORY and KV_RIG_BLACKLIST %s after its restart",
		killed.Name, killed.Routes(t), time.Since(restartedAt).Round(time.Millisecond))

	pub.WaitAccepted(t, 60, 60*time.Second)
	pub.Stop()
	tot := Totals(WaitDelivered(t, pub, clients, 60*time.Second))
	t.Logf("%s; first 150 accepted without the node within %s; delivered: %s", pub, firstAfter.Round(time.Millisecond), tot)
	if len(tot.Lost) > 0 {
		t.Fatalf("lost %d", len(tot.Lost))
	}
}

// TestClusterEdgeKilled: SIGKILL an edge while messages flow. Its clients,
// reconnecting like a browser's EventSource, reach the other edge through
// nginx and resume with Last-Event-ID: nothing lost, nothing twice.
func TestClusterEdgeKilled(t *testing.T) {
	top := StartTopology(t, nil, nil)
	users := usersNamed("edgekill", 8)
	clients := clientsThroughLB(t, top, users)
	dead, alive := top.Edges[0], top.Edges[1]
	onDead, _ := edgeHealth(t, dead.URL)

	pub := StartPublisher(t, top.Ingest.URL, users, 5*time.Millisecond)
	pub.WaitAccepted(t, 80, 60*time.Second)
	killedAt := time.Now()
	dead.Kill()
	t.Logf("killed %s with %d of %d clients, after %d accepted", dead.Name, onDead, len(users), pub.Accepted())

	// Every client is on the surviving edge again, and each of those that
	// were on the dead one has seen its new stream open.
	moved := 0
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		moved = 0
		for _, es := range clients {
			if es.Opens() > 1 {
				moved++
			}
		}
		c, _ := edgeHealth(t, alive.URL)
		if !(c == len(users) && moved == onDead) {
			return fmt.Errorf("the clients of %s did not all reconnect to %s (%d of %d moved)", dead.Name, alive.Name, moved, onDead)
		}
		return nil
	})
	reconnected := time.Since(killedAt)
	pub.WaitAccepted(t, 120, 60*time.Second)
	pub.Stop()
	tot := Totals(WaitDelivered(t, pub, clients, 60*time.Second))
	t.Logf("%s; %d clients moved to %s within %s; delivered: %s", pub, moved, alive.Name, reconnected.Round(time.Millisecond), tot)
	if len(tot.Lost) > 0 {
		t.Fatalf("lost %d", len(tot.Lost))
	}
}

// TestClusterQuorumLost: with two of three NATS nodes killed, JetStream
// has no quorum: ingest answers 503 (never 202) and reports not ready,
// though its own node is up; when the nodes return it recovers by itself
// and messages flow again.
func TestClusterQuorumLost(t *testing.T) {
	top := StartTopology(t, nil, nil)
	js := clusterJS(t, top)
	replicated(t, js, "RIG_HISTORY", 3, 60*time.Second)
	es := OpenEventSource(t, sseURL(top.LB.URL, Token(t, "quorum")))
	msg, _ := json.Marshal(map[string]any{"user": "quorum", "n": 0})
	c := &http.Client{Timeout: 15 * time.Second}
	first := Post(t, top.Ingest.URL, map[string]any{"user": "quorum", "phase": "before"})
	// Received before the nodes go: the client then resumes from it.
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !slices.Contains(es.IDs(), first) {
			return fmt.Errorf("the first message did not arrive")
		}
		return nil
	})

	// The edges' nodes go; ingest's stays, so ingest is still connected.
	lost := top.NATS[:2]
	for _, n := range lost {
		n.Kill()
	}
	lostAt := time.Now()
	counts := map[int]int{}
	var notReadyAfter time.Duration
	readyAgain := 0 // readiness answers of 200 after the first 503
	for time.Since(lostAt) < 15*time.Second || notReadyAfter == 0 {
		if time.Since(lostAt) > 60*time.Second {
			t.Fatalf("ingest still ready 60s after losing quorum; POST answers %v", counts)
		}
		status, id, why := post(c, top.Ingest.URL, msg)
		counts[status]++
		if status != 503 {
			t.Fatalf("POST without quorum: %s (id %q), want 503", why, id)
		}
		switch ready := readyStatus(top.Ingest); {
		case notReadyAfter == 0 && ready == 503:
			notReadyAfter = time.Since(lostAt)
		case notReadyAfter > 0 && ready != 503:
			readyAgain++
		}
		time.Sleep(20 * time.Millisecond) // a back-end retrying, not a flood
	}
	if readyAgain > 0 {
		t.Errorf("ingest reported ready %d times without quorum, after first reporting not ready", readyAgain)
	}
	// Edges cannot read the blacklist without quorum and refuse new
	// connections; nginx closes them unanswered, so a browser that loses
	// its stream now keeps retrying instead of giving up on a 503.
	es.Drop()
	check.For(t, 30*time.Second, 10*time.Millisecond, func() error {
		if !(es.Errors() >= 2 || es.Opens() > 1 || es.Failed() != "") {
			return fmt.Errorf("the dropped client neither retried nor reconnected")
		}
		return nil
	})
	if f := es.Failed(); f != "" {
		t.Fatalf("the client reconnecting without quorum gave up as a browser would: %s", f)
	}
	h := healthJSON(t, top.Ingest.URL)
	edgeReady := []string{}
	for _, e := range top.Edges {
		edgeReady = append(edgeReady, fmt.Sprintf("%s %d", e.Name, readyStatus(e)))
	}
	t.Logf("without quorum: POST answers %v over %s; ingest not ready after %s (%v); edges' /health/ready: %s",
		counts, time.Since(lostAt).Round(time.Millisecond), notReadyAfter.Round(time.Millisecond), h["detail"], strings.Join(edgeReady, ", "))

	for _, n := range lost {
		n.Restart()
	}
	backAt := time.Now()
	var id string
	refused := 0
	check.For(t, 120*time.Second, 10*time.Millisecond, func() error {
		status, got, _ := post(c, top.Ingest.URL, msg)
		if status == 202 {
			id = got
			return nil
		}
		refused++
		time.Sleep(100 * time.Millisecond) // a back-end honouring Retry-After, sooner
		return fmt.Errorf("ingest did not accept messages again after the nodes returned: the last answer was %d", status)
	})
	firstAccepted := time.Since(backAt)
	waitReady(t, top.Ingest, 30*time.Second)
	check.For(t, 60*time.Second, 10*time.Millisecond, func() error {
		if !slices.Contains(es.IDs(), id) {
			return fmt.Errorf("the first message accepted after the recovery did not arrive: got %v", es.IDs())
		}
		return nil
	})
	// Between the two only messages answered 503 while the cluster was
	// recovering may come (stored, but not acknowledged in time).
	if ids := es.IDs(); ids[0] != first {
		t.Fatalf("received %v, want %s first", ids, first)
	}
	t.Logf("nodes back: first 202 %s after their restart (%d refused meanwhile), delivered through nginx; ingest ready again; "+
		"the client dropped without quorum retried %d times and reopened (%d streams)", firstAccepted.Round(time.Millisecond), refused, es.Errors(), es.Opens())
}
