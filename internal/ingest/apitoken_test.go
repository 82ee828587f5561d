package ingest

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/config"
)

func TestAPITokensValid(t *testing.T) {
	tokens := newAPITokens([]string{"old-token-0123456789", "new-token-0123456789"})
	for tok, want := range map[string]bool{
		"old-token-0123456789":  true,
		"new-token-0123456789":  true,
		"old-token-012345678":   false, // a prefix
		"old-token-01234567890": false, // longer
		"":                      false,
		"OLD-TOKEN-0123456789":  false,
	} {
		if got := tokens.valid(tok); got != want {
			t.Errorf("valid(%q) = %v, want %v", tok, got, want)
		}
	}
}

// tokenApp is requireToken in front of a /v1 route and the probes, on a
// fiber app with ingest's error handler.
func tokenApp(tokens []string, protectOps bool) *fiber.App {
	s := &Server{cfg: &config.Ingest{APITokens: tokens, APITokensProtectOps: protectOps}}
	if len(tokens) > 0 {
		s.tokens = newAPITokens(tokens)
	}
	app := fiber.New(fiber.Config{ErrorHandler: api.ErrorHandler(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	app.Use(s.requireToken)
	ok := func(c *fiber.Ctx) error { return c.SendString("ok") }
	app.Get("/v1/users", ok)
	app.Get("/health", ok)
	app.Get("/metrics", ok)
	return app
}

func TestRequireToken(t *testing.T) {
	const tok = "a-token-of-24-bytes-long"
	cases := []struct {
		name          string
		tokens        []string
		protectOps    bool
		path, authz   string
		want          int
		wwwAuthHeader bool
	}{
		{"no tokens: open", nil, false, "/v1/users", "", 200, false},
		{"no header", []string{tok}, false, "/v1/users", "", 401, true},
		{"not bearer", []string{tok}, false, "/v1/users", "Basic " + tok, 401, true},
		{"wrong token", []string{tok}, false, "/v1/users", "Bearer wrong-token-0123456789", 403, true},
		{"right token", []string{tok}, false, "/v1/users", "Bearer " + tok, 200, false},
		{"scheme case", []string{tok}, false, "/v1/users", "bearer " + tok, 200, false},
		{"health open", []string{tok}, false, "/health", "", 200, false},
		{"metrics open", []string{tok}, false, "/metrics", "", 200, false},
		{"health protected", []string{tok}, true, "/health", "", 401, true},
		{"metrics protected", []string{tok}, true, "/metrics", "Bearer " + tok, 200, false},
		{"unknown path protected", []string{tok}, false, "/v2/x", "", 401, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", c.path, nil)
			if c.authz != "" {
				req.Header.Set("Authorization", c.authz)
			}
			resp, err := tokenApp(c.tokens, c.protectOps).Test(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, c.want)
			}
			if got := resp.Header.Get("WWW-Authenticate"); (got != "") != c.wwwAuthHeader || (got != "" && !strings.HasPrefix(got, "Bearer")) {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if c.want >= 400 && !strings.Contains(string(body), `"error"`) {
				t.Errorf("body %q is not a JSON error", body)
			}
			if strings.Contains(string(body), tok) {
				t.Errorf("body %q quotes the token", body)
			}
		})
	}
}
