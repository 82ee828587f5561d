package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/rig-go/rig/internal/blacklist"
	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/publish"
)

// Secure is what nats/gen writes (as `task certs` does) into a test's
// directory: a CA, server and client certificates, an NKey per role.
type Secure struct {
	Dir   string
	NKeys map[string]string // NATS_EDGE_NKEY=U..., from nkeys.env
}

var gen struct {
	once sync.Once
	path string
	err  error
}

// GenSecure runs nats/gen into a fresh directory.
func GenSecure(t testing.TB) *Secure {
	t.Helper()
	gen.once.Do(func() {
		gen.path = filepath.Join(bin.dir, "natsgen")
		out, err := exec.Command("go", "build", "-o", gen.path, "../nats/gen").CombinedOutput()
		if err != nil {
			gen.err = fmt.Errorf("build nats/gen: %v\n%s", err, out)
		}
	})
	if gen.err != nil {
		t.Fatal(gen.err)
	}
	dir := t.TempDir()
	if out, err := exec.Command(gen.path, "-dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("nats/gen: %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(dir, "nkeys.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := &Secure{Dir: dir, NKeys: map[string]string{}}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			s.NKeys[k] = v
		}
	}
	if len(s.NKeys) != 3 {
		t.Fatalf("nkeys.env holds %d keys, want 3 (edge, ingest, publisher): %v", len(s.NKeys), s.NKeys)
	}
	return s
}

// Path is a file nats/gen wrote.
func (s *Secure) Path(name string) string { return filepath.Join(s.Dir, name) }

// ServerEnv is what nats/secured/cluster.conf reads besides the node's
// addresses: its TLS files and the roles' public keys.
func (s *Secure) ServerEnv() map[string]string {
	env := map[string]string{
		"NATS_TLS_CERT": strconv.Quote(s.Path("server.pem")),
		"NATS_TLS_KEY":  strconv.Quote(s.Path("server-key.pem")),
		"NATS_TLS_CA":   strconv.Quote(s.Path("ca.pem")),
	}
	for k, v := range s.NKeys {
		env[k] = v
	}
	return env
}

// ClientEnv is the NATS settings of a binary in role (edge, ingest).
func (s *Secure) ClientEnv(role string) map[string]string {
	return map[string]string{
		"NATS_NKEY_SEED_FILE": s.Path(role + ".nk"),
		"NATS_TLS_CA_FILE":    s.Path("ca.pem"),
		"NATS_TLS_CERT_FILE":  s.Path("client.pem"),
		"NATS_TLS_KEY_FILE":   s.Path("client-key.pem"),
	}
}

// Connect connects a Go client as role, over TLS with the client
// certificate; its permission errors go to the returned channel.
func (s *Secure) Connect(t testing.TB, url, role string, opts ...nats.Option) (*nats.Conn, <-chan error) {
	t.Helper()
	seed, err := nats.NkeyOptionFromSeed(s.Path(role + ".nk"))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 64)
	all := append([]nats.Option{seed, nats.RootCAs(s.Path("ca.pem")), nats.ClientCert(s.Path("client.pem"), s.Path("client-key.pem")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		})}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// wantViolation waits for NATS's permissions violation naming what
// (`Publish to "user.alice"`, `Subscription to "user.>"`).
func wantViolation(t testing.TB, errs <-chan error, what string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), what) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation for %s within 5s", what)
		}
	}
}

// TestNATSSecuredCluster runs what `task run:cluster` runs, secured: three
// nodes with nats/secured/cluster.conf (TLS with client certificates,
// routes over TLS, an NKey user per role), the edges and ingest on their
// own least-privilege users, nginx in front. A message and a blacklisting
// go through end to end; each role is refused what it may not do.
func TestNATSSecuredCluster(t *testing.T) {
	top := StartTopology(t, nil, nil)
	sec, nodes := top.Secure, top.NATS
	for _, e := range top.Edges {
		// The edge may not create the stream or the buckets: it found them.
		if !strings.Contains(e.Logs(), "using the history stream as it is") {
			t.Errorf("%s did not report using the history stream as ingest made it:\n%s", e.Name, e.Logs())
		}
	}

	alice := MustSSE(t, sseURL(top.LB.URL, Token(t, "alice", TokenOpts{JTI: "alice-1"})))
	t.Run("end to end", func(t *testing.T) {
		id := Post(t, top.Ingest.URL, map[string]any{"user": "alice", "via": "ingest"})
		if ev := alice.NextMessage(t, 10*time.Second); ev.ID != id {
			t.Fatalf("alice got %s, want ingest's %s", ev.ID, id)
		}
		// A back-end publishing straight to NATS with the publisher user.
		nc, _ := sec.Connect(t, nodes[1].URL, "publisher")
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ack, err := publish.ToUser(ctx, js, "alice", []byte(`{"via":"publisher"}`))
		if err != nil {
			t.Fatalf("the publisher user publishes to user.alice: %v", err)
		}
		if ev := alice.NextMessage(t, 10*time.Second); ev.ID != ack.ID {
			t.Fatalf("alice got %s, want the publisher's %s", ev.ID, ack.ID)
		}
		// Resume on the other edge reads history (the leader's and direct
		// gets) with the edge's read-only user.
		resumed := MustSSE(t, sseURL(top.Edges[1].URL, Token(t, "alice")), http.Header{"Last-Event-ID": {id}})
		if ev := resumed.NextMessage(t, 10*time.Second); ev.ID != ack.ID {
			t.Fatalf("resume after %s got %s, want %s", id, ev.ID, ack.ID)
		}
		// Presence: ingest asks, the edges answer.
		var users []string
		check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
			Do(t, "GET", top.Ingest.URL+"/v1/users", "", nil).JSON(t, &users)
			if !slices.Contains(users, "alice") {
				return fmt.Errorf("GET /v1/users: %v, want alice", users)
			}
			return nil
		})
		resumed.Close()
		t.Logf("delivered over the secured cluster: ingest's %s and the publisher's %s; resumed; presence %v", id, ack.ID, users)
	})

	t.Run("publisher may not read or write anything else", func(t *testing.T) {
		nc, errs := sec.Connect(t, nodes[0].URL, "publisher")
		for _, subject := range []string{"user.>", "rig.live.>", "rig.live.user.alice"} {
			sub, err := nc.SubscribeSync(subject)
			if err != nil {
				t.Fatal(err)
			}
			wantViolation(t, errs, fmt.Sprintf("Subscription to %q", subject))
			_ = sub.Unsubscribe()
		}
		// Writing the blacklist: the bucket's subject, and its API.
		key, err := blacklist.Key("forged-by-publisher")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("$KV.RIG_BLACKLIST."+key, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, errs, `Publish to "$KV.RIG_BLACKLIST.`+key+`"`)
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := js.KeyValue(ctx, blacklist.BucketName); err == nil {
			t.Fatal("the publisher looked up the blacklist bucket")
		}
		wantViolation(t, errs, `Publish to "$JS.API.STREAM.INFO.KV_RIG_BLACKLIST"`)
		if code, _ := BlacklistLookup(t, top.Ingest.URL, "forged-by-publisher"); code != 404 {
			t.Fatalf("the publisher's forged blacklisting is there: GET answered %d", code)
		}
		// Reading history by hand.
		if err := nc.Publish("$JS.API.DIRECT.GET.RIG_HISTORY.user.alice", nil); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, errs, `Publish to "$JS.API.DIRECT.GET.RIG_HISTORY.user.alice"`)
	})

	t.Run("edge may not publish to users or write the blacklist", func(t *testing.T) {
		bob := MustSSE(t, sseURL(top.LB.URL, Token(t, "bob")))
		nc, errs := sec.Connect(t, nodes[0].URL, "edge", nats.CustomInboxPrefix("_RIG_EDGE_INBOX"))
		if err := nc.Publish("user.bob", []byte(`{"forged":"by an edge"}`)); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, errs, `Publish to "user.bob"`)
		if err := nc.Publish("rig.live.user.bob", []byte(`{"forged":"live"}`)); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, errs, `Publish to "rig.live.user.bob"`)
		key, _ := blacklist.Key("forged-by-edge")
		if err := nc.Publish("$KV.RIG_BLACKLIST."+key, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, errs, `Publish to "$KV.RIG_BLACKLIST.`+key+`"`)
		if err := nc.Publish("$JS.API.STREAM.DELETE.RIG_HISTORY", nil); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, errs, `Publish to "$JS.API.STREAM.DELETE.RIG_HISTORY"`)
		// A push consumer of the history stream delivering alice's stored
		// messages to bob's live subject: JetStream publishes those, not
		// the edge's user, so publish permissions do not stop it (the edge
		// may create consumers to read history). The edges drop them: a
		// live message without the stream's sequence header is not one
		// the stream republished.
		cons := `{"stream_name":"RIG_HISTORY","config":{"deliver_subject":"rig.live.user.bob","filter_subject":"user.alice","deliver_policy":"all","ack_policy":"none"}}`
		if resp, err := nc.Request("$JS.API.CONSUMER.CREATE.RIG_HISTORY", []byte(cons), 5*time.Second); err == nil {
			t.Logf("an edge user's push consumer to rig.live.user.bob: %.120s", resp.Data)
		} else {
			t.Logf("an edge user's push consumer to rig.live.user.bob: %v", err)
		}
		// What bob gets next is ingest's message: nothing forged, nothing
		// of alice's came first.
		id := Post(t, top.Ingest.URL, map[string]any{"user": "bob"})
		if ev := bob.NextMessage(t, 10*time.Second); ev.ID != id {
			t.Fatalf("bob got %s %s, want ingest's %s", ev.ID, ev.Data, id)
		}
	})

	t.Run("ingest may not read users' messages", func(t *testing.T) {
		nc, errs := sec.Connect(t, nodes[2].URL, "ingest")
		for _, subject := range []string{"user.>", "rig.live.>", "_RIG_EDGE_INBOX.>"} {
			sub, err := nc.SubscribeSync(subject)
			if err != nil {
				t.Fatal(err)
			}
			wantViolation(t, errs, fmt.Sprintf("Subscription to %q", subject))
			_ = sub.Unsubscribe()
		}
	})

	t.Run("no client certificate, or no credentials", func(t *testing.T) {
		seed, _ := nats.NkeyOptionFromSeed(sec.Path("publisher.nk"))
		_, err := nats.Connect(nodes[0].URL, seed, nats.RootCAs(sec.Path("ca.pem")))
		// The server's alert (certificate required) or its closing the
		// connection right after the handshake, whichever the client sees.
		if err == nil || !strings.Contains(err.Error(), "tls") {
			t.Fatalf("connected without a client certificate: %v", err)
		}
		_, err = nats.Connect(nodes[0].URL, nats.RootCAs(sec.Path("ca.pem")), nats.ClientCert(sec.Path("client.pem"), sec.Path("client-key.pem")))
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("connected without credentials: %v", err)
		}
		_, err = nats.Connect(nodes[0].URL)
		if err == nil {
			t.Fatal("connected without TLS")
		}
		t.Logf("refused: no client certificate, no credentials, no TLS (%v)", err)
	})

	t.Run("idempotency and cluster routes", func(t *testing.T) {
		// A retry with the same Idempotency-Key: ingest reads the first
		// message back from the stream's leader.
		key := http.Header{"Idempotency-Key": {"secured-order-1"}}
		body := []byte(`{"user":"carol"}`)
		first := ""
		for range 2 {
			r := Do(t, "POST", top.Ingest.URL+"/v1/messages", "application/json", body, key)
			var a struct{ ID string }
			r.JSON(t, &a)
			if r.Status != 202 || a.ID == "" || first != "" && a.ID != first {
				t.Fatalf("POST with Idempotency-Key: %d %s (first %q)", r.Status, r.Body, first)
			}
			first = a.ID
		}
		// A route: ingest creates the routes bucket, the edges find it.
		route := []byte(`{"id": "secured-route", "version_data": {"default": {"endpoints": [{"id": "e", "path": "/secured-route", "method": "GET"}]}},
		  "proxy": {"target_url": "http://upstream.invalid", "port": 80}}`)
		if r := Do(t, "POST", top.Ingest.URL+"/v1/apis", "application/json", route); r.Status != 201 {
			t.Fatalf("POST /v1/apis: %d %s", r.Status, r.Body)
		}
		for _, e := range top.Edges {
			check.For(t, 30*time.Second, 50*time.Millisecond, func() error {
				if !strings.Contains(e.Logs(), `msg="routes from the cluster loaded"`) {
					return fmt.Errorf("%s has not loaded the cluster's routes", e.Name)
				}
				return nil
			})
		}
	})

	t.Run("phoenix long-poll relayed between edges", func(t *testing.T) {
		a, b, jwt := top.Edges[0].URL, top.Edges[1].URL, Token(t, "dave")
		hs := lpDo(t, a, "GET", jwt, "", "", nil)
		if hs.Status != 410 {
			t.Fatalf("handshake on edge-1: %+v", hs)
		}
		// The join lands on edge-2, which relays it over NATS to the
		// session's home, edge-1.
		if p := lpDo(t, b, "POST", jwt, hs.Token, "application/json", []byte(`["1","1","user:dave","phx_join",{}]`)); p.Status != 200 {
			t.Fatalf("POST join on edge-2: %+v", p)
		}
		// Polled on edge-1 (a poll may end empty: poll again with the
		// token it gave).
		tok := hs.Token
		var got []string
		check.For(t, 15*time.Second, 10*time.Millisecond, func() error {
			r := lpDo(t, a, "GET", jwt, tok, "", nil)
			if r.Status != 200 && r.Status != 204 {
				t.Fatalf("poll on edge-1: %+v", r)
			}
			if r.Token != "" {
				tok = r.Token
			}
			got = append(got, r.Messages...)
			if len(got) == 0 {
				return fmt.Errorf("no reply to the join yet")
			}
			return nil
		})
		if len(got) != 1 || !strings.Contains(got[0], `"status":"ok"`) {
			t.Fatalf("poll on edge-1 after the join on edge-2: %v", got)
		}
	})

	t.Run("blacklist", func(t *testing.T) {
		Blacklist(t, top.Ingest.URL, "alice-1", 60)
		alice.WaitKilled(t, time.Now().Add(10*time.Second))
		// Each edge applies the blacklisting when its watch of the bucket
		// delivers it: refused by both (several requests in a row through
		// nginx, which spreads them) within a deadline.
		tok := Token(t, "alice", TokenOpts{JTI: "alice-1"})
		refusals := 0
		check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
			if code, _ := SSEStatus(t, sseURL(top.LB.URL, tok)); code == 401 {
				refusals++
			} else {
				refusals = 0
			}
			if refusals < 4 {
				return fmt.Errorf("blacklisted session still accepted through nginx: %d refusals in a row, want 4", refusals)
			}
			return nil
		})
	})

	// Nothing the binaries did needs more than their role allows: the only
	// refusals NATS logged for them (by connection name; the test's own
	// clients have none) are the edges' attempts to create or update the
	// stream and the buckets, which they then used as found.
	expected := regexp.MustCompile(`^\$JS\.API\.STREAM\.(UPDATE|CREATE)\.(RIG_HISTORY|KV_RIG_BLACKLIST|KV_RIG_APIS)$`)
	violation := regexp.MustCompile(`"v[0-9.]+:go:([a-z0-9-]+)" - "[^"]*" - (Publish|Subscription) Violation - Subject "([^"]+)"`)
	seen := 0
	for _, n := range nodes {
		for _, m := range violation.FindAllStringSubmatch(n.Logs(), -1) {
			seen++
			if strings.HasPrefix(m[1], "edge-") && m[2] == "Publish" && expected.MatchString(m[3]) {
				continue
			}
			t.Errorf("%s: %s was refused a %s on %s", n.Name, m[1], m[2], m[3])
		}
	}
	if seen == 0 {
		t.Error("NATS logged no refusal of the edges' create attempts: did the log format change?")
	}
}

// natsConf starts nats-server with a configuration the test writes (the
// listen address and JetStream store are added), and returns its URL.
func natsConf(t testing.TB, conf string) string {
	t.Helper()
	url, _ := natsConfProc(t, conf)
	return url
}

// natsConfProc is natsConf that also returns a function rewriting the
// configuration (the listen address and store kept) and having the server
// reload it.
func natsConfProc(t testing.TB, conf string) (string, func(conf string)) {
	t.Helper()
	port := FreePort(t)
	store := t.TempDir()
	head := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\n", port, store)
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(head+conf), 0o600); err != nil {
		t.Fatal(err)
	}
	n := StartProc(t, "nats-server", bin.natsServer, []string{"-c", path}, nil)
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !n.Running() {
			t.Fatalf("nats-server exited:\n%s", n.Logs())
		}
		if !dialOK(fmt.Sprintf("127.0.0.1:%d", port)) {
			return fmt.Errorf("nats-server did not listen")
		}
		return nil
	})
	reload := func(conf string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(head+conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n.Signal(syscall.SIGHUP)
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", port), reload
}

// wantStartFailure starts binary with env and wants it to exit within 20s,
// not 0, with a line holding want.
func wantStartFailure(t testing.TB, binary string, env map[string]string, want string) string {
	t.Helper()
	p := StartProc(t, filepath.Base(binary), binary, nil, env)
	if !p.Wait(20 * time.Second) {
		t.Fatalf("%s still runs 20s after start; want it to exit with %q\n%s", p.Name, want, p.Logs())
	}
	if code := p.ExitCode(); code == 0 {
		t.Fatalf("%s exited 0, want an error %q", p.Name, want)
	}
	logs := p.Logs()
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, want) {
			return line
		}
	}
	t.Fatalf("%s exited without a line holding %q:\n%s", p.Name, want, logs)
	return ""
}

func with(env map[string]string, kv ...string) map[string]string {
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return env
}

// TestNATSSecureStartup: each way of authenticating works against a real
// nats-server that requires it, and each way of getting it wrong stops the
// binary at start with one line that names the problem.
func TestNATSSecureStartup(t *testing.T) {
	t.Run("user and password", func(t *testing.T) {
		url := natsConf(t, `authorization { users: [{user: rig, password: "right-password-123"}] }`)
		line := wantStartFailure(t, bin.edge, with(EdgeEnv(FreePort(t), url), "NATS_USER", "rig", "NATS_PASSWORD", "wrong-password-456"),
			"NATS refused the credentials: authorization violation")
		if strings.Contains(line, "wrong-password-456") {
			t.Fatalf("the password is in the log: %s", line)
		}
		t.Logf("wrong password: %s", line)
		line = wantStartFailure(t, bin.ingest, IngestEnv(FreePort(t), url), "NATS refused the credentials: authorization violation")
		if !strings.Contains(line, "no credentials were sent") {
			t.Fatalf("want the line to say no credentials were sent: %s", line)
		}
		edge := StartEdge(t, with(EdgeEnv(FreePort(t), url), "NATS_USER", "rig", "NATS_PASSWORD", "right-password-123"))
		ingest := StartIngest(t, with(IngestEnv(FreePort(t), url), "NATS_USER", "rig", "NATS_PASSWORD", "right-password-123"))
		s := MustSSE(t, sseURL(edge.URL, Token(t, "alice")))
		id := Post(t, ingest.URL, map[string]any{"user": "alice"})
		if ev := s.NextMessage(t, 5*time.Second); ev.ID != id {
			t.Fatalf("got %s, want %s", ev.ID, id)
		}
		if strings.Contains(edge.Logs()+ingest.Logs(), "right-password-123") {
			t.Fatal("the password is in a log")
		}
		// TLS asked for, and the server has none.
		wantStartFailure(t, bin.edge, with(EdgeEnv(FreePort(t), url), "NATS_USER", "rig", "NATS_PASSWORD", "right-password-123",
			"NATS_TLS_CA_FILE", GenSecure(t).Path("ca.pem")), "does not offer TLS")
	})

	t.Run("password changed while running", func(t *testing.T) {
		url, reload := natsConfProc(t, `authorization { users: [{user: rig, password: "first-password-123"}] }`)
		edge := StartEdge(t, with(EdgeEnv(FreePort(t), url), "NATS_USER", "rig", "NATS_PASSWORD", "first-password-123"))
		// The server drops the connection of a user whose password
		// changed; the edge's reconnects are refused.
		reload(`authorization { users: [{user: rig, password: "second-password-456"}] }`)
		if !edge.Wait(30 * time.Second) {
			t.Fatalf("the edge still runs 30s after NATS stopped taking its password:\n%s", edge.Logs())
		}
		if code := edge.ExitCode(); code == 0 {
			t.Fatal("the edge exited 0")
		}
		logs := edge.Logs()
		if !strings.Contains(logs, "NATS connection closed for good: NATS refused the credentials: authorization violation") {
			t.Fatalf("no line saying why:\n%s", logs)
		}
		if strings.Contains(logs, "first-password-123") {
			t.Fatal("the password is in the log")
		}
	})

	t.Run("token", func(t *testing.T) {
		url := natsConf(t, `authorization { token: "the-right-token-0123" }`)
		wantStartFailure(t, bin.edge, with(EdgeEnv(FreePort(t), url), "NATS_TOKEN", "a-wrong-token-4567"), "NATS refused the credentials: authorization violation")
		StartEdge(t, with(EdgeEnv(FreePort(t), url), "NATS_TOKEN", "the-right-token-0123"))
	})

	t.Run("TLS required", func(t *testing.T) {
		sec := GenSecure(t)
		url := natsConf(t, fmt.Sprintf(`tls { cert_file: %q, key_file: %q, ca_file: %q }`, sec.Path("server.pem"), sec.Path("server-key.pem"), sec.Path("ca.pem")))
		line := wantStartFailure(t, bin.edge, EdgeEnv(FreePort(t), url), "requires TLS")
		t.Logf("no TLS configured: %s", line)
		wantStartFailure(t, bin.ingest, IngestEnv(FreePort(t), url), "requires TLS")
		StartEdge(t, with(EdgeEnv(FreePort(t), url), "NATS_TLS_CA_FILE", sec.Path("ca.pem")))
		// A CA that did not sign the server's certificate.
		other := GenSecure(t)
		wantStartFailure(t, bin.edge, with(EdgeEnv(FreePort(t), url), "NATS_TLS_CA_FILE", other.Path("ca.pem")), "TLS with NATS at")
	})

	t.Run("NKey and client certificate", func(t *testing.T) {
		sec := GenSecure(t)
		url := natsConf(t, fmt.Sprintf(`tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }
authorization { users: [{nkey: %s}] }`, sec.Path("server.pem"), sec.Path("server-key.pem"), sec.Path("ca.pem"), sec.NKeys["NATS_EDGE_NKEY"]))
		StartEdge(t, with(EdgeEnv(FreePort(t), url), maps(sec.ClientEnv("edge"))...))
		// Another role's seed is another user, unknown to this server.
		wantStartFailure(t, bin.edge, with(EdgeEnv(FreePort(t), url), maps(sec.ClientEnv("ingest"))...), "NATS refused the credentials")
		// No client certificate: the server's verify refuses the handshake.
		env := with(EdgeEnv(FreePort(t), url), maps(sec.ClientEnv("edge"))...)
		delete(env, "NATS_TLS_CERT_FILE")
		delete(env, "NATS_TLS_KEY_FILE")
		wantStartFailure(t, bin.edge, env, "TLS with NATS at")
	})

	t.Run("creds file", func(t *testing.T) {
		conf, creds := operatorSetup(t)
		url := natsConf(t, conf)
		edge := StartEdge(t, with(EdgeEnv(FreePort(t), url), "NATS_CREDS_FILE", creds))
		ingest := StartIngest(t, with(IngestEnv(FreePort(t), url), "NATS_CREDS_FILE", creds))
		s := MustSSE(t, sseURL(edge.URL, Token(t, "alice")))
		id := Post(t, ingest.URL, map[string]any{"user": "alice"})
		if ev := s.NextMessage(t, 5*time.Second); ev.ID != id {
			t.Fatalf("got %s, want %s", ev.ID, id)
		}
	})

	t.Run("bad files and settings", func(t *testing.T) {
		sec := GenSecure(t)
		url := "nats://127.0.0.1:1" // never reached: the settings stop it first
		for _, c := range []struct {
			env  []string
			want string
		}{
			{[]string{"NATS_NKEY_SEED_FILE", sec.Path("ca.pem")}, "invalid NATS_NKEY_SEED_FILE="},
			{[]string{"NATS_NKEY_SEED_FILE", filepath.Join(sec.Dir, "missing.nk")}, "invalid NATS_NKEY_SEED_FILE="},
			{[]string{"NATS_CREDS_FILE", sec.Path("edge.nk")}, "invalid NATS_CREDS_FILE="},
			{[]string{"NATS_TLS_CA_FILE", sec.Path("edge.nk")}, "invalid NATS_TLS_CA_FILE="},
			{[]string{"NATS_TLS_CERT_FILE", sec.Path("client.pem"), "NATS_TLS_KEY_FILE", sec.Path("server-key.pem")}, "invalid NATS_TLS_CERT_FILE="},
			{[]string{"NATS_TLS_CERT_FILE", sec.Path("client.pem")}, "invalid NATS_TLS_KEY_FILE="},
			{[]string{"NATS_USER", "rig"}, "invalid NATS_PASSWORD="},
			{[]string{"NATS_TOKEN", "t0123456789", "NATS_NKEY_SEED_FILE", sec.Path("edge.nk")}, "NATS_NKEY_SEED_FILE, NATS_TOKEN are all set"},
		} {
			line := wantStartFailure(t, bin.edge, with(EdgeEnv(FreePort(t), url), c.env...), c.want)
			if strings.Contains(line, "t0123456789") {
				t.Fatalf("the token is in the line: %s", line)
			}
		}
	})
}

func maps(m map[string]string) []string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k, v)
	}
	return kv
}

// operatorSetup makes an operator, an account with JetStream and a user
// of it with nats-io/jwt, and returns the server configuration that trusts
// them (a memory resolver) and the user's creds file.
func operatorSetup(t testing.TB) (conf, credsFile string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "rig-test"
	ojwt, err := oc.Encode(okp)
	must(err)

	account := func(name string, js bool) (nkeys.KeyPair, string, string) {
		akp, err := nkeys.CreateAccount()
		must(err)
		apub, _ := akp.PublicKey()
		ac := jwt.NewAccountClaims(apub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		ajwt, err := ac.Encode(okp)
		must(err)
		return akp, apub, ajwt
	}
	_, syspub, sysjwt := account("SYS", false)
	akp, apub, ajwt := account("RIG", true)

	ukp, err := nkeys.CreateUser()
	must(err)
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = "rig"
	uc.IssuerAccount = apub
	ujwt, err := uc.Encode(akp)
	must(err)
	seed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	must(err)
	credsFile = filepath.Join(t.TempDir(), "rig.creds")
	must(os.WriteFile(credsFile, creds, 0o600))
	conf = fmt.Sprintf("operator: %q\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n  %s: %q\n}\n",
		ojwt, syspub, syspub, sysjwt, apub, ajwt)
	return conf, credsFile
}

// TestNATSSecuredConfigs: nats-server accepts nats/secured/cluster.conf
// with the environment it documents (what `task certs` writes), and
// refuses it, naming the variable, without a role's key or the CA.
func TestNATSSecuredConfigs(t *testing.T) {
	sec := GenSecure(t)
	conf, _ := filepath.Abs("../nats/secured/cluster.conf")
	env := map[string]string{"NATS_SERVER_NAME": "nats-1", "NATS_LISTEN": "127.0.0.1:4222", "NATS_MONITOR_LISTEN": "127.0.0.1:8222",
		"NATS_CLUSTER_LISTEN": "127.0.0.1:6222", "NATS_ROUTES": "[nats://127.0.0.1:6222, nats://127.0.0.1:6223]",
		"NATS_STORE_DIR": strconv.Quote(t.TempDir())}
	for k, v := range sec.ServerEnv() {
		env[k] = v
	}
	run := func(without string) (string, error) {
		cmd := exec.Command(bin.natsServer, "-c", conf, "-t")
		for k, v := range env {
			if k != without {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(""); err != nil || !strings.Contains(out, "is valid") {
		t.Fatalf("nats-server -t -c nats/secured/cluster.conf: %v\n%s", err, out)
	}
	for _, missing := range []string{"NATS_EDGE_NKEY", "NATS_PUBLISHER_NKEY", "NATS_TLS_CA"} {
		if out, err := run(missing); err == nil || !strings.Contains(out, missing) {
			t.Errorf("nats-server -t without %s: %v\n%s", missing, err, out)
		}
	}
}

// TestNATSSecuredSingleNode: the roles of nats/secured/permissions.conf on
// one server, where the history stream has one replica and the edge reads
// it through short-lived consumers (not the leader's and direct gets of
// the cluster): resume and long-polling work with the edge's user.
func TestNATSSecuredSingleNode(t *testing.T) {
	sec := GenSecure(t)
	url := startSecuredNATS(t, sec)
	ingest := StartIngest(t, with(IngestEnv(FreePort(t), url), append(maps(sec.ClientEnv("ingest")), "ADMIN_METRICS_INTERVAL", "250ms")...))
	edge := StartEdge(t, with(EdgeEnv(FreePort(t), url), maps(sec.ClientEnv("edge"))...))
	first := Post(t, ingest.URL, map[string]any{"user": "alice", "n": 1})
	second := Post(t, ingest.URL, map[string]any{"user": "alice", "n": 2})
	s := MustSSE(t, sseURL(edge.URL, Token(t, "alice")), http.Header{"Last-Event-ID": {first}})
	if ev := s.NextMessage(t, 10*time.Second); ev.ID != second {
		t.Fatalf("resume after %s got %s, want %s", first, ev.ID, second)
	}
	r := Do(t, "GET", edge.URL+"/socket/longpoll?token="+Token(t, "alice")+"&last_event_id="+first, "", nil)
	if r.Status != 200 || !strings.Contains(string(r.Body), second) {
		t.Fatalf("long-poll after %s: %d %s", first, r.Status, r.Body)
	}
	// The console's charts: ingest asks the edges for their counters
	// (rig.admin.stats), the edge answers on ingest's inbox.
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		var m adminSeries
		Do(t, "GET", ingest.URL+"/v1/admin/metrics", "", nil).JSON(t, &m)
		for _, l := range m.Connections {
			if l.Transport == "sse" && show(last(l.Values)) == "1" {
				return nil
			}
		}
		return fmt.Errorf("GET /v1/admin/metrics shows no SSE connection: %+v", m.Connections)
	})
	noViolations(t, edge, ingest)
}

// startSecuredNATS runs one nats-server with the roles of
// nats/secured/permissions.conf, an NKey user each, and TLS with client
// certificates, all from sec; it returns the server's URL.
func startSecuredNATS(t testing.TB, sec *Secure) string {
	t.Helper()
	// Inlined: nats-server includes only paths relative to the file.
	perms, err := os.ReadFile("../nats/secured/permissions.conf")
	if err != nil {
		t.Fatal(err)
	}
	return natsConf(t, fmt.Sprintf(`%s
tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }
authorization { users: [
  {nkey: %s, permissions: $EDGE_PERMISSIONS}
  {nkey: %s, permissions: $INGEST_PERMISSIONS}
  {nkey: %s, permissions: $PUBLISHER_PERMISSIONS}
] }`, perms, sec.Path("server.pem"), sec.Path("server-key.pem"), sec.Path("ca.pem"),
		sec.NKeys["NATS_EDGE_NKEY"], sec.NKeys["NATS_INGEST_NKEY"], sec.NKeys["NATS_PUBLISHER_NKEY"]))
}

// noViolations fails the test for each permissions violation NATS told
// one of the binaries of.
func noViolations(t testing.TB, binaries ...*Server) {
	t.Helper()
	for _, b := range binaries {
		for _, line := range strings.Split(b.Logs(), "\n") {
			if strings.Contains(line, "permissions violation") {
				t.Errorf("%s was refused: %s", b.Name, line)
			}
		}
	}
}
