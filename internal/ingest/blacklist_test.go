package ingest

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/blacklist"
	"github.com/rig-go/rig/internal/config"
)

func TestParseBlacklistRequest(t *testing.T) {
	ok := []struct {
		body     string
		jti      string
		validity time.Duration
	}{
		{`{"sessionId":"abc","validityInSeconds":60}`, "abc", time.Minute},
		{`{"sessionId":"abc","validityInSeconds":"60"}`, "abc", time.Minute}, // RIG documented a string
		{`{"validityInSeconds":1,"sessionId":"a/b c.*>","extra":true}`, "a/b c.*>", time.Second},
		{`{"sessionId":"x","validityInSeconds":315360000}`, "x", blacklist.MaxValidity},
	}
	for _, c := range ok {
		jti, v, err := parseBlacklistRequest([]byte(c.body))
		if err != nil || jti != c.jti || v != c.validity {
			t.Errorf("%s: %q %s %v; want %q %s", c.body, jti, v, err, c.jti, c.validity)
		}
	}
	for _, body := range []string{
		``, `not json`, `[]`, `"abc"`, `null`, `{}`,
		`{"validityInSeconds":60}`,
		`{"sessionId":"","validityInSeconds":60}`,
		`{"sessionId":null,"validityInSeconds":60}`,
		`{"sessionId":42,"validityInSeconds":60}`,
		`{"sessionId":"` + strings.Repeat("x", blacklist.MaxSessionIDLen+1) + `","validityInSeconds":60}`,
		`{"sessionId":"abc"}`,
		`{"sessionId":"abc","validityInSeconds":0}`,
		`{"sessionId":"abc","validityInSeconds":-5}`,
		`{"sessionId":"abc","validityInSeconds":1.5}`,
		`{"sessionId":"abc","validityInSeconds":1e3}`,
		`{"sessionId":"abc","validityInSeconds":"soon"}`,
		`{"sessionId":"abc","validityInSeconds":null}`,
		`{"sessionId":"abc","validityInSeconds":true}`,
		`{"sessionId":"abc","validityInSeconds":315360001}`,
		`{"sessionId":"abc","validityInSeconds":99999999999999999999999}`,
		`{"sessionId":"abc","validityInSeconds":60} trailing`,
	} {
		if jti, v, err := parseBlacklistRequest([]byte(body)); err == nil {
			t.Errorf("%.80s: accepted as %q %s", body, jti, v)
		}
	}
}

// FuzzParseBlacklistRequest: no body panics, and whatever is accepted is a
// session id and validity the bucket takes.
func FuzzParseBlacklistRequest(f *testing.F) {
	for _, s := range []string{
		`{"sessionId":"abc","validityInSeconds":60}`, `{"sessionId":"abc","validityInSeconds":"60"}`,
		`{"sessionId":"\u0000","validityInSeconds":" 7 "}`, `{"sessionId":1}`, `[`, `{"validityInSeconds":-1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		jti, v, err := parseBlacklistRequest(body)
		if err != nil {
			return
		}
		if blacklist.ValidateSessionID(jti) != nil {
			t.Fatalf("accepted invalid session id %q", jti)
		}
		if v < time.Second || v > blacklist.MaxValidity || v%time.Second != 0 {
			t.Fatalf("accepted validity %s", v)
		}
		if _, err := blacklist.Key(jti); err != nil {
			t.Fatalf("accepted session id %q without a key: %v", jti, err)
		}
	})
}

func TestKillValidity(t *testing.T) {
	const secret = "ingest-test-secret"
	v, err := auth.New(t.Context(), config.JWT{SecretKey: secret}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: &config.Ingest{BlacklistDefaultExpiry: time.Hour}, verifier: v}
	mint := func(secret, jti string, ttl time.Duration) string {
		tok, err := auth.Mint(secret, auth.Claims{User: "alice", ID: jti, TTL: ttl}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	cases := []struct {
		name, header string
		want         time.Duration
	}{
		{"no header", "", time.Hour},
		{"token of the session", mint(secret, "j1", 10*time.Minute), 10 * time.Minute},
		{"token of another session", mint(secret, "other", 10*time.Minute), time.Hour},
		{"token without jti", mint(secret, "", 10*time.Minute), time.Hour},
		{"wrong key", mint("some-other-secret", "j1", 10*time.Minute), time.Hour},
		{"expired", mint(secret, "j1", -time.Minute), time.Hour},
		{"not Bearer", "Basic YWxpY2U6cHc=", time.Hour},
		{"garbage", "Bearer garbage", time.Hour},
		{"exp beyond the bound", mint(secret, "j1", blacklist.MaxValidity+time.Hour), blacklist.MaxValidity},
	}
	for _, c := range cases {
		got, from := s.killValidity(c.header, "j1")
		// From exp: rounded up to whole seconds, so up to 1s over.
		if got < c.want || got > c.want+time.Second {
			t.Errorf("%s: %s (%s), want %s", c.name, got, from, c.want)
		}
	}
	unverified := &Server{cfg: s.cfg}
	if got, _ := unverified.killValidity(mint(secret, "j1", time.Minute), "j1"); got != time.Hour {
		t.Errorf("without JWT_SECRET_KEY: %s, want the default", got)
	}
}
