package e2e

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// TestBlacklist runs the blacklist checks of issue 4 on two edges and one
// ingest sharing one NATS: both API spellings kill the session on both
// edges within a second, spare the user's other session, refuse the
// session while it is listed and let it back afterwards.
func TestBlacklist(t *testing.T) {
	st := StartTwoEdges(t, nil, nil)

	// session opens jti on both edges, and another session of the same
	// user on both, and returns them.
	session := func(t *testing.T, user, jti string) (killed, spared []*SSE) {
		t.Helper()
		for _, e := range st.Edges() {
			killed = append(killed, MustSSE(t, sseURL(e.URL, Token(t, user, TokenOpts{JTI: jti}))))
			spared = append(spared, MustSSE(t, sseURL(e.URL, Token(t, user, TokenOpts{JTI: jti + "-other"}))))
		}
		return killed, spared
	}
	// checkKilled: killed streams end with session_killed within a second
	// of start, the spared ones still get the user's messages, and the
	// session is refused on both edges.
	checkKilled := func(t *testing.T, start time.Time, user, jti string, killed, spared []*SSE) {
		t.Helper()
		for i, s := range killed {
			s.WaitKilled(t, start.Add(time.Second))
			t.Logf("edge %d: session killed %s after the blacklist call", i, time.Since(start).Round(time.Millisecond))
		}
		id := Post(t, st.Ingest.URL, map[string]any{"user": user, "after": "kill"})
		for _, s := range spared {
			if ev := s.NextMessage(t, 5*time.Second); ev.ID != id {
				t.Fatalf("spared session got %+v, want %s", ev, id)
			}
		}
		for _, e := range st.Edges() {
			status, r := SSEStatus(t, sseURL(e.URL, Token(t, user, TokenOpts{JTI: jti})))
			if status != 401 || !strings.Contains(r.ErrorMessage(t), "blacklisted") {
				t.Fatalf("%s: blacklisted session connecting: %d %s", e.Name, status, r.Body)
			}
		}
		if code, got := BlacklistLookup(t, st.Ingest.URL, jti); code != 200 || !got.IsBlacklisted || got.SessionID != jti {
			t.Fatalf("GET blacklist status: %d %+v", code, got)
		}
	}
	// checkBack: once the entry expires, the session's (valid) token
	// connects again on both edges and the status is 404.
	checkBack := func(t *testing.T, user, jti string, expires time.Time) {
		t.Helper()
		check.For(t, 15*time.Second, 10*time.Millisecond, func() error {
			code, _ := BlacklistLookup(t, st.Ingest.URL, jti)
			if code != 404 {
				return fmt.Errorf("session %q still blacklisted: got %v", jti, code)
			}
			return nil
		})
		if time.Now().Before(expires) {
			t.Fatalf("blacklisting ended before %s", expires)
		}
		for _, e := range st.Edges() {
			check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
				status, _ := SSEStatus(t, sseURL(e.URL, Token(t, user, TokenOpts{JTI: jti})))
				if status != 200 {
					return fmt.Errorf("%s still refuses session %q after its blacklisting ended: got %v", e.Name, jti, status)
				}
				return nil
			})
		}
	}

	t.Run("POST /v1/session-blacklist", func(t *testing.T) {
		user, jti := "post-user", "post-session-1"
		killed, spared := session(t, user, jti)
		start := time.Now()
		entry := Blacklist(t, st.Ingest.URL, jti, 2)
		if entry.SessionID != jti || !entry.IsBlacklisted || entry.ValidityInSeconds != 2 {
			t.Fatalf("201 body %+v", entry)
		}
		checkKilled(t, start, user, jti, killed, spared)
		checkBack(t, user, jti, entry.ExpiresAt)
	})

	t.Run("DELETE /v1/users/<user>/sessions/<jti> with the session's token", func(t *testing.T) {
		user, jti := "delete-user", "delete-session-1"
		killed, spared := session(t, user, jti)
		// The validity comes from the exp of the session's token...
		short := Token(t, user, TokenOpts{JTI: jti, TTL: 3 * time.Second})
		start := time.Now()
		KillSession(t, st.Ingest.URL, user, jti, short)
		checkKilled(t, start, user, jti, killed, spared)
		_, got := BlacklistLookup(t, st.Ingest.URL, jti)
		// exp is in whole seconds: 2 to 3s away when minted; rounded up.
		if d := got.ExpiresAt.Sub(start); d < 2*time.Second || d > 5*time.Second {
			t.Fatalf("expires %s after the call, want about the token's 3s", d)
		}
		// ...so another token of that session, valid longer, is back then.
		checkBack(t, user, jti, got.ExpiresAt)
	})

	t.Run("DELETE without a token uses JWT_BLACKLIST_DEFAULT_EXPIRY_HOURS", func(t *testing.T) {
		user, jti := "delete-user-2", "delete-session-2"
		killed, spared := session(t, user, jti)
		start := time.Now()
		KillSession(t, st.Ingest.URL, user, jti, "")
		checkKilled(t, start, user, jti, killed, spared)
		_, got := BlacklistLookup(t, st.Ingest.URL, jti)
		if got.ValidityInSeconds < 3590 || got.ValidityInSeconds > 3600 {
			t.Fatalf("validity %ds, want the default hour", got.ValidityInSeconds)
		}
		// Another session's token does not set the validity either.
		KillSession(t, st.Ingest.URL, user, "delete-session-3", Token(t, user, TokenOpts{JTI: "unrelated", TTL: 5 * time.Second}))
		if _, got := BlacklistLookup(t, st.Ingest.URL, "delete-session-3"); got.ValidityInSeconds < 3590 {
			t.Fatalf("validity %ds from an unrelated token, want the default hour", got.ValidityInSeconds)
		}
	})

	t.Run("blacklisting again never shortens", func(t *testing.T) {
		first := Blacklist(t, st.Ingest.URL, "twice", 600)
		second := Blacklist(t, st.Ingest.URL, "twice", 5)
		if !second.ExpiresAt.Equal(first.ExpiresAt) {
			t.Fatalf("second, shorter blacklisting moved the expiry from %s to %s", first.ExpiresAt, second.ExpiresAt)
		}
		third := Blacklist(t, st.Ingest.URL, "twice", 1200)
		if !third.ExpiresAt.After(first.ExpiresAt) {
			t.Fatalf("longer blacklisting did not extend: %s", third.ExpiresAt)
		}
	})

	t.Run("any jti works", func(t *testing.T) {
		jti := "a/b c?d%25.*>é\u0000"
		killed := MustSSE(t, sseURL(st.B.URL, Token(t, "odd", TokenOpts{JTI: jti})))
		start := time.Now()
		Blacklist(t, st.Ingest.URL, jti, 60)
		killed.WaitKilled(t, start.Add(time.Second))
		if code, got := BlacklistLookup(t, st.Ingest.URL, jti); code != 200 || got.SessionID != jti {
			t.Fatalf("GET: %d %+v", code, got)
		}
	})

	t.Run("the bucket survives an edge restart", func(t *testing.T) {
		jti := "restart-session"
		Blacklist(t, st.Ingest.URL, jti, 120)
		st.A.Stop()
		st.A.Restart()
		st.A.WaitReady(t)
		if status, r := SSEStatus(t, sseURL(st.A.URL, Token(t, "restart-user", TokenOpts{JTI: jti}))); status != 401 {
			t.Fatalf("after restart: %d %s", status, r.Body)
		}
		// The restarted edge follows new entries too.
		live := MustSSE(t, sseURL(st.A.URL, Token(t, "restart-user", TokenOpts{JTI: "restart-live"})))
		start := time.Now()
		Blacklist(t, st.Ingest.URL, "restart-live", 120)
		live.WaitKilled(t, start.Add(time.Second))
	})
}

// TestBlacklistBadInput: malformed blacklist calls get 400 with a JSON
// error and list nothing.
func TestBlacklistBadInput(t *testing.T) {
	st := StartStack(t, nil, nil)
	long := strings.Repeat("j", 1025)
	for _, body := range []string{
		``, `not json`, `[1]`, `"x"`, `{}`,
		`{"validityInSeconds":60}`,
		`{"sessionId":"","validityInSeconds":60}`,
		`{"sessionId":7,"validityInSeconds":60}`,
		`{"sessionId":"` + long + `","validityInSeconds":60}`,
		`{"sessionId":"bad-1"}`,
		`{"sessionId":"bad-1","validityInSeconds":0}`,
		`{"sessionId":"bad-1","validityInSeconds":-60}`,
		`{"sessionId":"bad-1","validityInSeconds":2.5}`,
		`{"sessionId":"bad-1","validityInSeconds":"soon"}`,
		`{"sessionId":"bad-1","validityInSeconds":1e12}`,
		`{"sessionId":"bad-1","validityInSeconds":999999999999}`,
	} {
		r := Do(t, "POST", st.Ingest.URL+"/v1/session-blacklist", "application/json", []byte(body))
		if r.Status != 400 {
			t.Fatalf("%.60q: %d %s, want 400", body, r.Status, r.Body)
		}
		r.ErrorMessage(t)
	}
	if code, _ := BlacklistLookup(t, st.Ingest.URL, "bad-1"); code != 404 {
		t.Fatalf("a refused call listed bad-1: %d", code)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/session-blacklist/" + long},
		{"GET", "/v1/session-blacklist/%zz"},
		{"DELETE", "/v1/users/" + strings.Repeat("u", 257) + "/sessions/j1"},
		{"DELETE", "/v1/users/alice/sessions/" + long},
		{"DELETE", "/v1/users/%zz/sessions/j1"},
	} {
		r := RawRequest(t, st.Ingest.URL, c.method, c.path)
		if r.Status != 400 {
			t.Fatalf("%s %.60s: %d %s, want 400", c.method, c.path, r.Status, r.Body)
		}
		r.ErrorMessage(t)
	}
	// A session the blacklist could not hold is not let in at all.
	if status, r := SSEStatus(t, sseURL(st.Edge.URL, Token(t, "alice", TokenOpts{JTI: long}))); status != 401 {
		t.Fatalf("jti of %d bytes: %d %s", len(long), status, r.Body)
	}
	// A session never listed is 404, with a JSON body.
	r := Do(t, "GET", st.Ingest.URL+"/v1/session-blacklist/"+url.PathEscape("never listed"), "", nil)
	if r.Status != 404 || !strings.Contains(string(r.Body), `"isBlacklisted":false`) {
		t.Fatalf("unknown session: %d %s", r.Status, r.Body)
	}
	r.ErrorMessage(t)
}

// TestEdgeWithoutBlacklist: an edge that cannot load the blacklist (here:
// NATS has no JetStream, so there is no bucket) is not ready, says why, and
// keeps its public port closed rather than let a revoked session in.
func TestEdgeWithoutBlacklist(t *testing.T) {
	n := StartNATSWithoutJetStream(t)
	edge := StartEdgeUnready(t, EdgeEnv(FreePort(t), n.URL))
	var detail string
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		r := Do(t, "GET", edge.OpsURL+"/health/ready", "", nil)
		var h struct{ Detail string }
		r.JSON(t, &h)
		detail = h.Detail
		if !(r.Status == 503 && strings.Contains(h.Detail, "blacklist not loaded")) {
			return fmt.Errorf("edge without a blacklist: /health/ready %d, detail %q", r.Status, detail)
		}
		return nil
	})
	r := Do(t, "GET", edge.OpsURL+"/health", "", nil)
	if r.Status != 200 || !strings.Contains(string(r.Body), "blacklist not loaded") || !strings.Contains(string(r.Body), `"public_port_open":false`) {
		t.Fatalf("/health: %d %s", r.Status, r.Body)
	}
	if dialOK(strings.TrimPrefix(edge.URL, "http://")) {
		t.Fatal("public port open without the blacklist")
	}
	// The detail may be the one the edge starts with ("not loaded yet"),
	// read before the watch's first attempt failed and was logged.
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(edge.Logs(), "blacklist not loaded") {
			return errors.New("edge did not log that the blacklist is not loaded")
		}
		return nil
	})
}

// TestBlacklistAcrossNATSRestart: the edges' watch survives NATS going
// away: they are not ready meanwhile, and afterwards still refuse what was
// listed before and kill what is listed after.
func TestBlacklistAcrossNATSRestart(t *testing.T) {
	st := StartTwoEdges(t, nil, nil)
	Blacklist(t, st.Ingest.URL, "before-restart", 300)
	st.NATS.Kill()
	for _, e := range st.Edges() {
		check.For(t, 15*time.Second, 10*time.Millisecond, func() error {
			if got := Do(t, "GET", e.URL+"/health/ready", "", nil).Status; got != 503 {
				return fmt.Errorf("%s still ready without NATS: got %v", e.Name, got)
			}
			return nil
		})
	}
	st.NATS.Restart()
	for _, e := range st.Edges() {
		e.WaitReady(t)
		if status, _ := SSEStatus(t, sseURL(e.URL, Token(t, "u", TokenOpts{JTI: "before-restart"}))); status != 401 {
			t.Fatalf("%s: session listed before the restart: %d", e.Name, status)
		}
	}
	st.Ingest.WaitReady(t)
	var live []*SSE
	for _, e := range st.Edges() {
		live = append(live, MustSSE(t, sseURL(e.URL, Token(t, "u", TokenOpts{JTI: "after-restart"}))))
	}
	start := time.Now()
	Blacklist(t, st.Ingest.URL, "after-restart", 60)
	for _, s := range live {
		s.WaitKilled(t, start.Add(time.Second))
	}
}

// TestTokenExpiryOnTwoEdges: a token expiring closes its streams with
// token_expired on every edge, with the blacklist watch running.
func TestTokenExpiryOnTwoEdges(t *testing.T) {
	st := StartTwoEdges(t, nil, nil)
	tok := Token(t, "expiring", TokenOpts{TTL: 2 * time.Second})
	var streams []*SSE
	for _, e := range st.Edges() {
		streams = append(streams, MustSSE(t, sseURL(e.URL, tok)))
	}
	for i, s := range streams {
		ev := s.Next(t, 5*time.Second)
		for ev.Event == "heartbeat" {
			ev = s.Next(t, 5*time.Second)
		}
		if ev.Event != "token_expired" {
			t.Fatalf("edge %d: got %+v, want token_expired", i, ev)
		}
		if !s.Ended(2 * time.Second) {
			t.Fatalf("edge %d: stream open after token_expired", i)
		}
	}
	for _, e := range st.Edges() {
		if status, _ := SSEStatus(t, sseURL(e.URL, tok)); status != 401 {
			t.Fatalf("%s: expired token: %d", e.Name, status)
		}
	}
}
