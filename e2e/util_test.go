package e2e

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/auth"
)

func base64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func wrongKeyToken(t testing.TB, user string) string {
	t.Helper()
	tok, err := auth.Mint("some-other-secret-entirely", auth.Claims{User: user, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
