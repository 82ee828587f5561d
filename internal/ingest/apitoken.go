package ingest

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/gofiber/fiber/v2"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/auth"
)

// apiTokens checks the bearer token of a call to the API against
// API_TOKENS. Tokens are kept as SHA-256 digests so that every comparison
// is between equal lengths and takes the same time whatever the token sent:
// neither a token's length nor a matching prefix shows in the timing.
type apiTokens struct {
	digests [][sha256.Size]byte
}

func newAPITokens(tokens []string) *apiTokens {
	t := &apiTokens{}
	for _, tok := range tokens {
		t.digests = append(t.digests, sha256.Sum256([]byte(tok)))
	}
	return t
}

// valid reports whether token is one of API_TOKENS. It compares with every
// token, without stopping at a match, so the answer takes as long for the
// first token as for the last or none.
func (t *apiTokens) valid(token string) bool {
	d := sha256.Sum256([]byte(token))
	ok := 0
	for i := range t.digests {
		ok |= subtle.ConstantTimeCompare(d[:], t.digests[i][:])
	}
	return ok == 1
}

// opsPaths are the probes that API_TOKENS_PROTECT_OPS decides on.
var opsPaths = map[string]bool{"/health": true, "/health/ready": true, "/metrics": true}

// requireToken refuses a call without one of API_TOKENS (401, with
// WWW-Authenticate as RFC 6750 asks) or with a wrong one (403). Without
// API_TOKENS every call passes, as before there were tokens.
func (s *Server) requireToken(c *fiber.Ctx) error {
	if s.tokens == nil || (!s.cfg.APITokensProtectOps && opsPaths[c.Path()]) {
		return c.Next()
	}
	token, ok := auth.BearerToken(c.Get(fiber.HeaderAuthorization))
	if !ok {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="rig-ingest"`)
		return api.NewError(fiber.StatusUnauthorized, "this API needs Authorization: Bearer <one of API_TOKENS>")
	}
	if !s.tokens.valid(token) {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="rig-ingest", error="invalid_token"`)
		return api.NewError(fiber.StatusForbidden, "the bearer token is not one of API_TOKENS")
	}
	return c.Next()
}
