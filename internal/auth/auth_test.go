package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rig-go/rig/internal/config"
)

const secret = "test-secret-0123456789"

// hmacConfig is JWT_SECRET_KEY=secret with the default claims settings.
func hmacConfig() config.JWT {
	return config.JWT{SecretKey: secret, UserField: "user", RolesField: "roles", PrivilegedRoles: []string{"support"}, RequireJTI: true}
}

func verifier(t testing.TB) *Verifier { return newFrom(t, hmacConfig()) }

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func future() int64 { return time.Now().Add(time.Hour).Unix() }

func TestVerifyAccepts(t *testing.T) {
	v := verifier(t)
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
		tok := sign(t, m, []byte(secret), jwt.MapClaims{"user": "alice", "exp": future(), "jti": "s1", "roles": []string{"support", "x"}})
		s, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("%s: %v", m.Alg(), err)
		}
		if s.User != "alice" || s.ID != "s1" || !s.Privileged || len(s.Roles) != 2 {
			t.Fatalf("%s: session %+v", m.Alg(), s)
		}
	}
	s, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "bob", "exp": future(), "jti": "s2"}))
	if err != nil || s.User != "bob" || s.Privileged {
		t.Fatalf("sub fallback: %+v %v", s, err)
	}
	if !s.MaySubscribe("bob") || s.MaySubscribe("alice") {
		t.Fatal("non-privileged session may subscribe to others")
	}
	// JWT_REQUIRE_JTI=false lets tokens without a session id in.
	c := hmacConfig()
	c.RequireJTI = false
	lax := newFrom(t, c)
	if s, err := lax.Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": "alice", "exp": future()})); err != nil || s.User != "alice" || s.ID != "" {
		t.Fatalf("no jti, not required: %+v %v", s, err)
	}
	// JWT_USER_FIELD=sub: the fallback is the claim itself.
	c = hmacConfig()
	c.UserField = "sub"
	subOnly := newFrom(t, c)
	if s, err := subOnly.Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"sub": "carol", "exp": future(), "jti": "s3"})); err != nil || s.User != "carol" {
		t.Fatalf("user field sub: %+v %v", s, err)
	}
}

// signWithHeader signs claims with extra JOSE header fields.
func signWithHeader(t *testing.T, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestWeakTokenShapes: issue 12's tokens that connected as someone they
// did not name, could never be blacklisted, or asked for extensions the
// verifier ignored. Each is refused, with a reason, by Verify (and the
// crit one by Expiry, which ingest uses).
func TestWeakTokenShapes(t *testing.T) {
	v := verifier(t)
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(secret), c) }
	for _, c := range []struct {
		name, token, reason string
	}{
		{"number user, sub bob", hs(jwt.MapClaims{"user": 42, "sub": "bob", "exp": future(), "jti": "j"}), `claim "user" is not a string`},
		{"empty user, sub bob", hs(jwt.MapClaims{"user": "", "sub": "bob", "exp": future(), "jti": "j"}), `claim "user"`},
		{"null user, sub bob", hs(jwt.MapClaims{"user": nil, "sub": "bob", "exp": future(), "jti": "j"}), `claim "user" is not a string`},
		{"list user, sub bob", hs(jwt.MapClaims{"user": []string{"bob"}, "sub": "bob", "exp": future(), "jti": "j"}), `claim "user" is not a string`},
		{"number sub", hs(jwt.MapClaims{"sub": 42, "exp": future(), "jti": "j"}), `claim "sub" is not a string`},
		{"no jti", hs(jwt.MapClaims{"user": "bob", "exp": future()}), `no "jti" claim`},
		{"empty jti", hs(jwt.MapClaims{"user": "bob", "exp": future(), "jti": ""}), `no "jti" claim`},
		{"crit exp", signWithHeader(t, map[string]any{"crit": []string{"exp"}, "exp": 1}, jwt.MapClaims{"user": "bob", "exp": future(), "jti": "j"}), `"crit"`},
		{"crit b64", signWithHeader(t, map[string]any{"crit": []string{"b64"}, "b64": false}, jwt.MapClaims{"user": "bob", "exp": future(), "jti": "j"}), `"crit"`},
		{"empty crit", signWithHeader(t, map[string]any{"crit": []string{}}, jwt.MapClaims{"user": "bob", "exp": future(), "jti": "j"}), `"crit"`},
	} {
		s, err := v.Verify(c.token)
		if err == nil || !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: Verify = %+v, %v; want ErrInvalidToken saying %s", c.name, s, err, c.reason)
		}
	}
	crit := signWithHeader(t, map[string]any{"crit": []string{"exp"}, "exp": 1}, jwt.MapClaims{"user": "bob", "exp": future(), "jti": "j"})
	if jti, _, err := v.Expiry(crit); err == nil || !errors.Is(err, ErrInvalidToken) {
		t.Errorf("Expiry of a crit token: %q, %v; want ErrInvalidToken", jti, err)
	}
}

func TestVerifyRejects(t *testing.T) {
	v := verifier(t)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := jwt.MapClaims{"user": "alice", "exp": future(), "jti": "j"}
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good)
	cases := map[string]string{
		"empty":                  "",
		"garbage":                "not-a-jwt",
		"three dots":             "a.b.c",
		"alg none":               none,
		"alg none, no signature": strings.TrimSuffix(none, "."),
		"RS256":                  sign(t, jwt.SigningMethodRS256, rsaKey, good),
		"ES256":                  sign(t, jwt.SigningMethodES256, ecKey, good),
		"wrong key":              sign(t, jwt.SigningMethodHS256, []byte("another-secret"), good),
		"no exp":                 sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": "alice"}),
		"past exp":               sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": "alice", "exp": time.Now().Add(-time.Second).Unix()}),
		"no user":                sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"exp": future()}),
		"empty user":             sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": "", "exp": future()}),
		"long user":              sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": strings.Repeat("a", 257), "exp": future()}),
		"number user":            sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": 42, "exp": future()}),
		"bad roles":              sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": "a", "roles": 7, "exp": future()}),
		"bad jti":                sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": "a", "jti": 7, "exp": future()}),
	}
	for name, tok := range cases {
		if s, err := v.Verify(tok); err == nil || !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: Verify = %+v, %v; want ErrInvalidToken", name, s, err)
		} else if tok != "" && strings.Contains(err.Error(), tok) {
			t.Errorf("%s: error message leaks the token", name)
		}
	}
}

func TestMintRoundTrip(t *testing.T) {
	tok, err := Mint(secret, Claims{User: "alice@example.com", Roles: []string{"support"}, ID: "j1", TTL: time.Minute, Algorithm: "HS512"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := verifier(t).Verify(tok)
	if err != nil || s.User != "alice@example.com" || !s.Privileged || s.ID != "j1" {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := Mint(secret, Claims{User: "a", TTL: time.Minute, Algorithm: "none"}, time.Now()); err == nil {
		t.Fatal("Mint accepted alg none")
	}
}

// FuzzVerify feeds arbitrary strings to a verifier that holds an HMAC
// secret and RSA, EC and Ed25519 public keys at once: it must never panic
// and never accept a token none of those keys signed.
func FuzzVerify(f *testing.F) {
	genKeys(f)
	c := jwtConfig(f, pemOf(f, rsaA.Public(), ec256.Public(), edKey.Public()))
	c.SecretKey = secret
	v, err := New(f.Context(), c, discard())
	if err != nil {
		f.Fatal(err)
	}
	tok, _ := Mint(secret, Claims{User: "alice", ID: "j1", TTL: time.Hour}, time.Now())
	seeds := []string{tok}
	for _, k := range []crypto.Signer{rsaA, ec256, edKey} {
		s, err := MintWithKey(k, "", Claims{User: "alice", ID: "j1", TTL: time.Hour}, time.Now())
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, s)
	}
	for _, s := range seeds {
		if _, err := v.Verify(s); err != nil {
			f.Fatalf("the seed token %s is refused: %v", s, err)
		}
		f.Add(s)
	}
	pemText := pemOf(f, rsaA.Public())
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"user": "mallory", "exp": future(), "jti": "j"}).SignedString([]byte(pemText))
	f.Add(forged)
	f.Add("eyJhbGciOiJub25lIn0.eyJ1c2VyIjoiYSJ9.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		sess, err := v.Verify(s)
		if err == nil {
			// Only the seeds, or re-encodings of their signed content,
			// can pass; anything else must carry a valid signature,
			// which the fuzzer cannot forge.
			if sess.User != "alice" {
				t.Fatalf("accepted forged token %q as %+v", s, sess)
			}
		}
	})
}
