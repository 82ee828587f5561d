package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rig-go/rig/internal/auth/authtest"
	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/config"
)

// Keys are generated once per test binary: RSA generation is slow.
var (
	keysOnce                    sync.Once
	rsaA, rsaB                  *rsa.PrivateKey
	ec256, ec256b, ec384, ec521 *ecdsa.PrivateKey
	edKey                       ed25519.PrivateKey
)

func genKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		rsaA, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		rsaB, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		ec256b, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		ec521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		must(err)
		_, edKey, err = ed25519.GenerateKey(rand.Reader)
		must(err)
	})
}

func pemOf(t testing.TB, pubs ...crypto.PublicKey) string {
	t.Helper()
	var b strings.Builder
	for _, p := range pubs {
		der, err := x509.MarshalPKIXPublicKey(p)
		if err != nil {
			t.Fatal(err)
		}
		_ = pem.Encode(&b, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	return b.String()
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// jwtConfig is a configuration with public keys from PEM, as config reads it.
func jwtConfig(t testing.TB, pemText string) config.JWT {
	t.Helper()
	c := config.JWT{UserField: "user", RolesField: "roles", RequireJTI: true,
		JWKS: config.JWKS{Refresh: time.Hour, UnknownKIDRefresh: time.Hour, Timeout: 2 * time.Second, MaxSize: 64 << 10}}
	if pemText != "" {
		keys, err := config.ParsePublicKeys([]byte(pemText))
		if err != nil {
			t.Fatal(err)
		}
		c.PublicKeys = keys
	}
	return c
}

func newFrom(t testing.TB, c config.JWT) *Verifier {
	t.Helper()
	v, err := New(t.Context(), c, discard())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func claimsFor(user string) Claims { return Claims{User: user, ID: "jti-" + user, TTL: time.Hour} }

func mintKey(t testing.TB, key crypto.Signer, kid, alg string, c Claims) string {
	t.Helper()
	c.Algorithm = alg
	tok, err := MintWithKey(key, kid, c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// families: every asymmetric algorithm with a key that signs it.
func families() []struct {
	alg string
	key crypto.Signer
} {
	return []struct {
		alg string
		key crypto.Signer
	}{
		{"RS256", rsaA}, {"RS384", rsaA}, {"RS512", rsaA},
		{"PS256", rsaA}, {"PS384", rsaA}, {"PS512", rsaA},
		{"ES256", ec256}, {"ES384", ec384}, {"ES512", ec521},
		{"EdDSA", edKey},
	}
}

// TestPEMKeysEveryAlgorithm: each algorithm family verifies with its PEM
// key, several PEM blocks in one setting, and no other key type.
func TestPEMKeysEveryAlgorithm(t *testing.T) {
	genKeys(t)
	all := newFrom(t, jwtConfig(t, pemOf(t, rsaA.Public(), ec256.Public(), ec384.Public(), ec521.Public(), edKey.Public())))
	for _, f := range families() {
		tok := mintKey(t, f.key, "", f.alg, claimsFor("alice"))
		s, err := all.Verify(tok)
		if err != nil || s.User != "alice" || s.ID != "jti-alice" {
			t.Errorf("%s: %+v, %v", f.alg, s, err)
		}
		// A verifier with only the other key types refuses it.
		var others []crypto.PublicKey
		for _, k := range []crypto.Signer{rsaA, ec256, ec384, ec521, edKey} {
			if !fits(f.alg, k.Public()) {
				others = append(others, k.Public())
			}
		}
		if s, err := newFrom(t, jwtConfig(t, pemOf(t, others...))).Verify(tok); err == nil {
			t.Errorf("%s verified without its key: %+v", f.alg, s)
		}
	}
	// Rotation without JWKS: the new key and the old one, both in the PEM.
	rot := newFrom(t, jwtConfig(t, pemOf(t, rsaB.Public(), rsaA.Public())))
	for _, k := range []*rsa.PrivateKey{rsaA, rsaB} {
		if _, err := rot.Verify(mintKey(t, k, "", "RS256", claimsFor("bob"))); err != nil {
			t.Errorf("rotation: %v", err)
		}
	}
}

func TestFitsPinsAlgorithmToKeyType(t *testing.T) {
	genKeys(t)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, c := range []struct {
		alg  string
		key  any
		want bool
	}{
		{"RS256", rsaA.Public(), true}, {"PS512", rsaA.Public(), true},
		{"ES256", rsaA.Public(), false}, {"EdDSA", rsaA.Public(), false}, {"HS256", rsaA.Public(), false},
		{"RS256", small.Public(), false},
		{"ES256", ec256.Public(), true}, {"ES384", ec256.Public(), false}, {"RS256", ec256.Public(), false},
		{"ES384", ec384.Public(), true}, {"ES512", ec521.Public(), true},
		{"EdDSA", edKey.Public(), true}, {"ES256", edKey.Public(), false},
		{"HS256", []byte("secret"), false}, {"RS256", []byte("secret"), false},
	} {
		if got := fits(c.alg, c.key); got != c.want {
			t.Errorf("fits(%s, %T) = %v, want %v", c.alg, c.key, got, c.want)
		}
	}
}

// TestAlgorithmConfusion: the classic forgeries, with an HMAC secret and a
// public key configured at once.
func TestAlgorithmConfusion(t *testing.T) {
	genKeys(t)
	pemText := pemOf(t, rsaA.Public(), ec256.Public())
	c := jwtConfig(t, pemText)
	c.SecretKey = secret
	v := newFrom(t, c)
	der, _ := x509.MarshalPKIXPublicKey(rsaA.Public())
	good := jwt.MapClaims{"user": "mallory", "exp": future(), "jti": "j"}
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good)
	for name, c := range map[string]struct{ token, reason string }{
		"HS256 with the PEM text as secret": {sign(t, jwt.SigningMethodHS256, []byte(pemText), good), "bad signature"},
		"HS256 with the RSA key's PEM":      {sign(t, jwt.SigningMethodHS256, []byte(pemOf(t, rsaA.Public())), good), "bad signature"},
		"HS512 with the RSA key's DER":      {sign(t, jwt.SigningMethodHS512, der, good), "bad signature"},
		"alg none":                          {none, `algorithm "none" is not accepted`},
		"ES256 by an unknown EC key":        {sign(t, jwt.SigningMethodES256, ec256b, good), "bad signature"},
		"ES384 with no P-384 key":           {sign(t, jwt.SigningMethodES384, ec384, good), `algorithm "ES384" is not accepted`},
		"EdDSA with no Ed25519 key":         {sign(t, jwt.SigningMethodEdDSA, edKey, good), `algorithm "EdDSA" is not accepted`},
		"RS256 by another RSA key":          {sign(t, jwt.SigningMethodRS256, rsaB, good), "bad signature"},
	} {
		s, err := v.Verify(c.token)
		if err == nil || !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: %+v, %v; want a refusal saying %q", name, s, err, c.reason)
		}
	}
	// The real keys still work, so the refusals above are about the forgery.
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), good)); err != nil {
		t.Errorf("HS256 with the secret: %v", err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, rsaA, good)); err != nil {
		t.Errorf("RS256 with the key: %v", err)
	}
	// Only public keys: HMAC is not an accepted algorithm at all.
	pub := newFrom(t, jwtConfig(t, pemText))
	if _, err := pub.Verify(sign(t, jwt.SigningMethodHS256, []byte(pemText), good)); err == nil || !strings.Contains(err.Error(), `algorithm "HS256" is not accepted`) {
		t.Errorf("HS256 with only public keys: %v", err)
	}
}

func TestIssuerAudienceLeeway(t *testing.T) {
	genKeys(t)
	c := jwtConfig(t, pemOf(t, rsaA.Public()))
	c.Issuers = []string{"https://idp.example.com/realms/rig"}
	c.Audiences = []string{"rig", "push"}
	v := newFrom(t, c)
	tok := func(iss string, aud []string) string {
		cl := claimsFor("alice")
		cl.Issuer, cl.Audience = iss, aud
		return mintKey(t, rsaA, "", "RS256", cl)
	}
	if _, err := v.Verify(tok("https://idp.example.com/realms/rig", []string{"other", "push"})); err != nil {
		t.Errorf("right issuer, one right audience: %v", err)
	}
	for name, c := range map[string]struct{ token, reason string }{
		"foreign issuer":   {tok("https://evil.example.com", []string{"rig"}), `claim "iss" is "https://evil.example.com"; expected "https://idp.example.com/realms/rig" (JWT_ISSUER)`},
		"no issuer":        {tok("", []string{"rig"}), `no "iss" claim`},
		"foreign audience": {tok("https://idp.example.com/realms/rig", []string{"billing"}), `claim "aud" is ["billing"]; expected one of "rig", "push" (JWT_AUDIENCE)`},
		"no audience":      {tok("https://idp.example.com/realms/rig", nil), `no "aud" claim`},
		"aud not a string": {sign(t, jwt.SigningMethodRS256, rsaA, jwt.MapClaims{"user": "a", "jti": "j", "exp": future(), "iss": "https://idp.example.com/realms/rig", "aud": 7}), `claim "aud" is not a string`},
	} {
		if _, err := v.Verify(c.token); err == nil || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: %v; want %q", name, err, c.reason)
		}
		if _, _, err := v.Expiry(c.token); err == nil {
			t.Errorf("%s: Expiry accepted it", name)
		}
	}

	// Leeway: 30s of clock skew on exp and nbf, and the session lasts
	// until exp plus the leeway.
	c = jwtConfig(t, "")
	c.SecretKey, c.Leeway = secret, 30*time.Second
	lax := newFrom(t, c)
	strict := newFrom(t, hmacConfig())
	exp := time.Now().Add(-10 * time.Second).Truncate(time.Second)
	late := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": "a", "jti": "j", "exp": exp.Unix()})
	s, err := lax.Verify(late)
	if err != nil || !s.Expires.Equal(exp.Add(30*time.Second)) {
		t.Errorf("10s late with 30s leeway: %+v, %v; want Expires %s", s, err, exp.Add(30*time.Second))
	}
	if _, until, err := lax.Expiry(late); err != nil || !until.Equal(exp.Add(30*time.Second)) {
		t.Errorf("Expiry with leeway: %s, %v", until, err)
	}
	if _, err := strict.Verify(late); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("10s late without leeway: %v", err)
	}
	tooLate := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": "a", "jti": "j", "exp": time.Now().Add(-40 * time.Second).Unix()})
	if _, err := lax.Verify(tooLate); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("40s late with 30s leeway: %v", err)
	}
	early := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": "a", "jti": "j", "exp": future(), "nbf": time.Now().Add(10 * time.Second).Unix()})
	if _, err := lax.Verify(early); err != nil {
		t.Errorf("nbf 10s ahead with 30s leeway: %v", err)
	}
	if _, err := strict.Verify(early); err == nil || !strings.Contains(err.Error(), "not valid yet") {
		t.Errorf("nbf 10s ahead without leeway: %v", err)
	}
}

func TestPreviousSecret(t *testing.T) {
	const prev = "previous-secret-0123"
	c := jwtConfig(t, "")
	c.SecretKey, c.PreviousSecretKey = secret, prev
	v := newFrom(t, c)
	byPrev := sign(t, jwt.SigningMethodHS256, []byte(prev), jwt.MapClaims{"user": "a", "jti": "j", "exp": future()})
	if s, err := v.Verify(byPrev); err != nil || s.User != "a" {
		t.Fatalf("previous secret, no end: %+v, %v", s, err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte("a-third-secret-xyz"), jwt.MapClaims{"user": "a", "jti": "j", "exp": future()})); err == nil {
		t.Error("a third secret was accepted")
	}
	expired := sign(t, jwt.SigningMethodHS256, []byte(prev), jwt.MapClaims{"user": "a", "jti": "j", "exp": time.Now().Add(-time.Minute).Unix()})
	if _, err := v.Verify(expired); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token of the previous secret: %v", err)
	}

	// With an end: sessions it signed end then too, whatever their exp.
	until := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	c.PreviousUntil = until
	v = newFrom(t, c)
	s, err := v.Verify(byPrev)
	if err != nil || !s.Expires.Equal(until) {
		t.Errorf("previous secret until %s: %+v, %v", until, s, err)
	}
	if _, e, err := v.Expiry(byPrev); err != nil || !e.Equal(until) {
		t.Errorf("Expiry of the previous secret's token: %s, %v", e, err)
	}
	byCurrent := sign(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"user": "a", "jti": "j", "exp": future()})
	if s, err := v.Verify(byCurrent); err != nil || s.Expires.Equal(until) {
		t.Errorf("current secret capped by the previous one's end: %+v, %v", s, err)
	}
	c.PreviousUntil = time.Now().Add(-time.Second)
	v = newFrom(t, c)
	if _, err := v.Verify(byPrev); err == nil || !strings.Contains(err.Error(), "bad signature") {
		t.Errorf("previous secret after its end: %v", err)
	}
}

// jwksConfig points a configuration at a test key set.
func jwksConfig(t testing.TB, j *authtest.JWKS) config.JWT {
	c := jwtConfig(t, "")
	c.JWKS.URLs = []string{j.URL()}
	return c
}

func TestJWKSEveryAlgorithmByKID(t *testing.T) {
	genKeys(t)
	var keys []authtest.Key
	for _, f := range families() {
		keys = append(keys, authtest.Key{KID: "k-" + f.alg, ALG: f.alg, USE: "sig", Public: f.key.Public()})
	}
	j := authtest.NewJWKS(t, nil, keys...)
	v := newFrom(t, jwksConfig(t, j))
	for _, f := range families() {
		if s, err := v.Verify(mintKey(t, f.key, "k-"+f.alg, f.alg, claimsFor("alice"))); err != nil || s.User != "alice" {
			t.Errorf("%s by kid: %+v, %v", f.alg, s, err)
		}
	}
	if j.Hits() != 1 {
		t.Errorf("JWKS fetched %d times; want once, at start", j.Hits())
	}
}

func TestJWKSKeySelection(t *testing.T) {
	genKeys(t)
	j := authtest.NewJWKS(t, nil,
		authtest.Key{KID: "a", Public: rsaA.Public()},
		authtest.Key{KID: "b", ALG: "RS256", Public: rsaB.Public()},
		authtest.Key{KID: "ec", Public: ec256.Public()},
		authtest.Key{KID: "enc", USE: "enc", Public: rsaB.Public()},
		authtest.Key{KID: "oct", Public: []byte(secret)},
	)
	c := jwksConfig(t, j)
	c.SecretKey = secret
	v := newFrom(t, c)
	ok := map[string]string{
		"kid a, RS256":                     mintKey(t, rsaA, "a", "RS256", claimsFor("u")),
		"kid a, PS384 (no alg in the set)": mintKey(t, rsaA, "a", "PS384", claimsFor("u")),
		"kid b, RS256":                     mintKey(t, rsaB, "b", "RS256", claimsFor("u")),
		"no kid, key b":                    mintKey(t, rsaB, "", "RS256", claimsFor("u")),
		"no kid, EC key":                   mintKey(t, ec256, "", "ES256", claimsFor("u")),
	}
	for name, tok := range ok {
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	octTok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"user": "u", "jti": "j", "exp": future()})
	octTok.Header["kid"] = "oct"
	forgedOct, _ := octTok.SignedString([]byte("the-oct-key-bytes"))
	for name, c := range map[string]struct{ token, reason string }{
		"key a's signature, kid b":          {mintKey(t, rsaA, "b", "RS256", claimsFor("u")), "bad signature"},
		"kid b's alg is RS256, token PS256": {mintKey(t, rsaB, "b", "PS256", claimsFor("u")), `key with kid "b" is for algorithm "RS256", not "PS256"`},
		"RSA kid for an ES256 token":        {mintKey(t, ec256, "a", "ES256", claimsFor("u")), `key with kid "a" (RSA) cannot verify algorithm "ES256"`},
		"EC kid for an RS256 token":         {mintKey(t, rsaA, "ec", "RS256", claimsFor("u")), `key with kid "ec" (EC) cannot verify algorithm "RS256"`},
		"key for encryption":                {mintKey(t, rsaB, "enc", "RS256", claimsFor("u")), `is for use "enc"`},
		"oct key of the set as HMAC secret": {forgedOct, "bad signature"},
		"kid not a string":                  {signWithKID(t, rsaA, 42), `"kid" header is not a string`},
		"oct kid for an RS256 token":        {mintKey(t, rsaA, "oct", "RS256", claimsFor("u")), `key with kid "oct" (oct) cannot verify`},
	} {
		if _, err := v.Verify(c.token); err == nil || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: %v; want %q", name, err, c.reason)
		}
	}
}

// TestTokenNamesItsOwnKey: headers by which a token points at a key of its
// choosing (jku, x5u: a URL; jwk, x5c: the key itself) are never followed.
func TestTokenNamesItsOwnKey(t *testing.T) {
	genKeys(t)
	idp := authtest.NewJWKS(t, nil, authtest.Key{KID: "real", Public: rsaA.Public()})
	evil := authtest.NewJWKS(t, nil, authtest.Key{KID: "evil", Public: rsaB.Public()})
	c := jwksConfig(t, idp)
	c.PublicKeys = []crypto.PublicKey{ec256.Public()}
	v := newFrom(t, c)
	der, _ := x509.MarshalPKIXPublicKey(rsaB.Public())
	for name, header := range map[string]map[string]any{
		"jku":         {"jku": evil.URL(), "kid": "evil"},
		"x5u":         {"x5u": evil.URL(), "kid": "evil"},
		"jwk":         {"jwk": map[string]any{"kty": "RSA", "kid": "evil"}},
		"x5c":         {"x5c": []string{string(der)}},
		"jku, no kid": {"jku": evil.URL()},
	} {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"user": "mallory", "jti": "j", "exp": future()})
		for k, val := range header {
			tok.Header[k] = val
		}
		s, err := tok.SignedString(rsaB)
		if err != nil {
			t.Fatal(err)
		}
		if sess, err := v.Verify(s); err == nil {
			t.Errorf("%s: accepted as %+v", name, sess)
		}
	}
	if evil.Hits() != 0 {
		t.Errorf("the token's own URL was fetched %d times", evil.Hits())
	}
	// A 1024-bit RSA key published in a set verifies nothing.
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	j := authtest.NewJWKS(t, nil, authtest.Key{KID: "small", Public: small.Public()})
	w := newFrom(t, jwksConfig(t, j))
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"user": "u", "jti": "j", "exp": future()})
	tok.Header["kid"] = "small"
	weak, _ := tok.SignedString(small)
	if _, err := w.Verify(weak); err == nil || !strings.Contains(err.Error(), `key with kid "small" (RSA) cannot verify`) {
		t.Errorf("1024-bit RSA key from a JWKS: %v", err)
	}
}

func signWithKID(t *testing.T, key *rsa.PrivateKey, kid any) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"user": "u", "jti": "j", "exp": future()})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJWKSUnknownKIDRefresh: a new kid is found by one fetch; forged kids
// cost at most one fetch per JWT_JWKS_UNKNOWN_KID_REFRESH, are refused
// at once meanwhile, and tokens arriving during a fetch wait for it.
func TestJWKSUnknownKIDRefresh(t *testing.T) {
	genKeys(t)
	j := authtest.NewJWKS(t, nil, authtest.Key{KID: "old", Public: rsaA.Public()})
	c := jwksConfig(t, j)
	// Long enough that the forged kids below are all verified within one
	// interval on a loaded machine; their tokens are signed beforehand.
	c.JWKS.UnknownKIDRefresh = 3 * time.Second
	forged := make([]string, 50)
	for i := range forged {
		forged[i] = mintKey(t, rsaA, fmt.Sprintf("forged-%d", i), "RS256", claimsFor("mallory"))
	}
	v := newFrom(t, c)
	if j.Hits() != 1 {
		t.Fatalf("fetched %d times at start", j.Hits())
	}
	// Rotation: the provider publishes "new"; the first token with it,
	// and every one arriving while that fetch runs, gets in.
	j.Publish(authtest.Key{KID: "old", Public: rsaA.Public()}, authtest.Key{KID: "new", Public: rsaB.Public()})
	j.Delay(300 * time.Millisecond)
	newTok := mintKey(t, rsaB, "new", "RS256", claimsFor("alice"))
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			if _, err := v.Verify(newTok); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("token with the new kid, during its fetch: %v", err)
	}
	if got := j.Hits(); got != 2 {
		t.Fatalf("10 tokens with one new kid made %d fetches in all; want 2 (start, one refresh)", got)
	}
	j.Delay(0)

	// Forged kids right after: no fetch, a refusal without waiting.
	start := time.Now()
	for i, tok := range forged {
		_, err := v.Verify(tok)
		if err == nil || !strings.Contains(err.Error(), `no key with kid "forged-`) {
			t.Fatalf("forged kid %d: %v", i, err)
		}
	}
	// Waiting for the rate limit would take the rest of the interval.
	if took := time.Since(start); took >= c.JWKS.UnknownKIDRefresh {
		t.Errorf("50 forged kids took %s: they waited for the rate limit", took)
	}
	if got := j.Hits(); got != 2 {
		t.Fatalf("forged kids within the interval fetched the set: %d fetches", got)
	}
	// After the interval, one more forged kid may fetch once again.
	later := mintKey(t, rsaA, "forged-later", "RS256", claimsFor("mallory"))
	check.For(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, _ = v.Verify(later)
		if j.Hits() < 3 {
			return fmt.Errorf("no fetch after the interval yet")
		}
		return nil
	})
	if got := j.Hits(); got != 3 {
		t.Errorf("%d fetches; want exactly 3", got)
	}
	if v.jwks.fetches.Load() != 2 {
		t.Errorf("%d unknown-kid fetches counted; want 2", v.jwks.fetches.Load())
	}
}

// TestJWKSRefresh: the background refresh drops a removed key and adds a
// new one; a refresh that fails keeps the keys cached before.
func TestJWKSRefresh(t *testing.T) {
	genKeys(t)
	j := authtest.NewJWKS(t, nil, authtest.Key{KID: "old", Public: rsaA.Public()})
	c := jwksConfig(t, j)
	c.JWKS.Refresh = 100 * time.Millisecond
	v := newFrom(t, c)
	oldTok := mintKey(t, rsaA, "old", "RS256", claimsFor("a"))
	if _, err := v.Verify(oldTok); err != nil {
		t.Fatal(err)
	}
	// Broken answers: the cached key stays.
	for _, bad := range []struct {
		status int
		body   string
	}{{http.StatusOK, `{"keys":[`}, {http.StatusInternalServerError, `{}`}, {http.StatusOK, strings.Repeat(" ", 70<<10) + `{"keys":[]}`}} {
		j.Serve(bad.status, []byte(bad.body))
		hits := j.Hits()
		check.For(t, 5*time.Second, 20*time.Millisecond, func() error {
			if j.Hits() < hits+2 {
				return fmt.Errorf("no refresh yet")
			}
			return nil
		})
		if _, err := v.Verify(oldTok); err != nil {
			t.Errorf("after a refresh answering %d %.20q: %v", bad.status, bad.body, err)
		}
	}
	j.Publish(authtest.Key{KID: "new", Public: rsaB.Public()})
	check.For(t, 5*time.Second, 20*time.Millisecond, func() error {
		if _, err := v.Verify(oldTok); err == nil {
			return fmt.Errorf("the removed key still verifies")
		}
		return nil
	})
	if _, err := v.Verify(mintKey(t, rsaB, "new", "RS256", claimsFor("a"))); err != nil {
		t.Errorf("new key after the refresh: %v", err)
	}
}

// TestJWKSAtStart: a key set that cannot be used at start is an error
// naming the URL and why; nothing is verified without it.
func TestJWKSAtStart(t *testing.T) {
	genKeys(t)
	key := authtest.Key{KID: "k", Public: rsaA.Public()}
	big := authtest.Marshal(key)
	big = append(big[:len(big)-2], []byte(`,"pad":"`+strings.Repeat("x", 2<<10)+`"}]}`)...)
	for name, c := range map[string]struct {
		status int
		body   []byte
		delay  time.Duration
		reason string
	}{
		"bad JSON":    {http.StatusOK, []byte(`{"keys": [{"kty":`), 0, "decode"},
		"not a set":   {http.StatusOK, []byte(`[1,2,3]`), 0, "decode"},
		"status 503":  {http.StatusServiceUnavailable, []byte(`{}`), 0, "503"},
		"too large":   {http.StatusOK, big, 0, "JWT_JWKS_MAX_SIZE (1024 bytes)"},
		"too slow":    {http.StatusOK, authtest.Marshal(key), 3 * time.Second, "no answer within JWT_JWKS_TIMEOUT=500ms"},
		"invalid key": {http.StatusOK, []byte(`{"keys":[{"kty":"RSA","kid":"k","n":"AQAB"}]}`), 0, "JWK"},
	} {
		j := authtest.NewJWKS(t, nil)
		j.Serve(c.status, c.body)
		j.Delay(c.delay)
		cfg := jwksConfig(t, j)
		cfg.JWKS.MaxSize = 1 << 10
		cfg.JWKS.Timeout = 500 * time.Millisecond
		start := time.Now()
		v, err := New(t.Context(), cfg, discard())
		if err == nil || !strings.Contains(err.Error(), "JWT_JWKS_URL="+j.URL()) || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: %v, %v; want an error naming the URL and %q", name, v, err, c.reason)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s: New took %s with a 500ms timeout", name, took)
		}
	}
	// Streamed without a length: the bound still holds.
	j := authtest.NewJWKS(t, nil)
	j.Serve(http.StatusOK, []byte(strings.Repeat(" ", 4<<10)+`{"keys":[]}`))
	j.Stream(true)
	cfg := jwksConfig(t, j)
	cfg.JWKS.MaxSize = 1 << 10
	if _, err := New(t.Context(), cfg, discard()); err == nil || !strings.Contains(err.Error(), "JWT_JWKS_MAX_SIZE") {
		t.Errorf("4KiB body, 1KiB bound: %v", err)
	}
	// No server at all.
	cfg.JWKS.URLs = []string{"http://127.0.0.1:1/jwks.json"}
	if _, err := New(t.Context(), cfg, discard()); err == nil || !strings.Contains(err.Error(), "JWT_JWKS_URL=http://127.0.0.1:1/jwks.json") {
		t.Errorf("no server: %v", err)
	}
}
