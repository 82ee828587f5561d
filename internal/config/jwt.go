package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"
)

// JWT is how tokens are verified: the keys (HMAC secrets, PEM public keys,
// JWKS URLs), the claims a token must carry, and how its claims become a
// session.
type JWT struct {
	SecretKey string // JWT_SECRET_KEY
	// PreviousSecretKey (JWT_SECRET_KEY_PREVIOUS) is still accepted after
	// a rotation, until PreviousUntil (JWT_SECRET_KEY_PREVIOUS_UNTIL; zero:
	// until the setting is removed), so tokens minted just before the
	// rotation keep working while they last.
	PreviousSecretKey string
	PreviousUntil     time.Time
	// PublicKeys are every PEM block of JWT_PUBLIC_KEY and
	// JWT_PUBLIC_KEY_FILE: *rsa.PublicKey, *ecdsa.PublicKey (P-256, P-384,
	// P-521) or ed25519.PublicKey. Several allow a rotation without JWKS.
	PublicKeys []crypto.PublicKey
	// PublicKeyFile is JWT_PUBLIC_KEY_FILE, for messages.
	PublicKeyFile string
	JWKS          JWKS
	Issuers       []string      // JWT_ISSUER: accepted "iss"; none: not checked
	Audiences     []string      // JWT_AUDIENCE: "aud" must name one; none: not checked
	Leeway        time.Duration // JWT_LEEWAY: clock skew allowed on exp and nbf

	UserField       string   // JWT_USER_FIELD
	RolesField      string   // JWT_ROLES_FIELD
	PrivilegedRoles []string // PRIVILEGED_ROLES
	RequireJTI      bool     // JWT_REQUIRE_JTI
}

// JWKS is where an identity provider publishes its signing keys.
type JWKS struct {
	URLs []string // JWT_JWKS_URL
	// Refresh (JWT_JWKS_REFRESH) is how often the key sets are fetched
	// again in the background: a removed key stays accepted at most this long.
	Refresh time.Duration
	// UnknownKIDRefresh (JWT_JWKS_UNKNOWN_KID_REFRESH) is the least time
	// between two fetches caused by a token whose kid is not in the cache,
	// so forged kids cannot make the edge hammer the identity provider.
	UnknownKIDRefresh time.Duration
	Timeout           time.Duration // JWT_JWKS_TIMEOUT: one fetch, connect to last byte
	MaxSize           int           // JWT_JWKS_MAX_SIZE: largest key set body
}

// HasKeys reports whether any key source is configured.
func (j *JWT) HasKeys() bool {
	return j.SecretKey != "" || len(j.PublicKeys) > 0 || len(j.JWKS.URLs) > 0
}

// maxLeeway keeps JWT_LEEWAY a clock skew, not a second lifetime for
// expired tokens.
const maxLeeway = 5 * time.Minute

// maxPublicKeyFile bounds what JWT_PUBLIC_KEY_FILE reads: PEM keys are a
// few KiB, a bigger file is a wrong path.
const maxPublicKeyFile = 1 << 20

// jwtKeys registers where tokens' keys come from and which claims they
// must carry. required: at least one key source (the edge); else a binary
// without keys just verifies no token (ingest).
func (s *Set) jwtKeys(j *JWT, required bool) {
	s.Secret(&j.SecretKey, "JWT_SECRET_KEY", "Shared secret (at least 8 bytes) for HS256/HS384/HS512 JWTs; HMAC tokens are refused without one.")
	s.Secret(&j.PreviousSecretKey, "JWT_SECRET_KEY_PREVIOUS", "After rotating JWT_SECRET_KEY, the previous secret: HMAC tokens it signed are still accepted (until JWT_SECRET_KEY_PREVIOUS_UNTIL, if set).")
	var until, pemText string
	s.String(&until, "JWT_SECRET_KEY_PREVIOUS_UNTIL", "", "RFC 3339 time (2026-01-31T12:00:00Z) after which JWT_SECRET_KEY_PREVIOUS is refused; sessions it signed end then. Empty: accepted until the setting is removed.")
	s.String(&pemText, "JWT_PUBLIC_KEY", "", `PEM public keys (RSA for RS/PS256-512, EC P-256/P-384/P-521 for ES256/384/512, Ed25519 for EdDSA) or certificates; several blocks allow a rotation. "\n" may stand for line breaks.`)
	s.String(&j.PublicKeyFile, "JWT_PUBLIC_KEY_FILE", "", "File with PEM public keys or certificates, as JWT_PUBLIC_KEY; both may be set.")
	s.List(&j.JWKS.URLs, "JWT_JWKS_URL", "", "Identity provider's JWKS URL (or a comma-separated list): keys chosen by the token's kid; fetched at start (the binary does not start without it) and refreshed in the background.")
	s.Duration(&j.JWKS.Refresh, "JWT_JWKS_REFRESH", 15*time.Minute, time.Second, "How often the JWKS is fetched again; a key removed from it stays accepted at most this long.")
	s.Duration(&j.JWKS.UnknownKIDRefresh, "JWT_JWKS_UNKNOWN_KID_REFRESH", 30*time.Second, 100*time.Millisecond, "A token with a kid not in the cached JWKS fetches it again, at most this often; meanwhile such tokens get 401.")
	s.Duration(&j.JWKS.Timeout, "JWT_JWKS_TIMEOUT", 10*time.Second, 10*time.Millisecond, "Longest one JWKS fetch may take, from connecting to the last byte.")
	s.Size(&j.JWKS.MaxSize, "JWT_JWKS_MAX_SIZE", 256<<10, 1<<10, 16<<20, "Largest JWKS body accepted; a larger one fails the fetch (the cached keys stay).")
	s.List(&j.Issuers, "JWT_ISSUER", "", `Accepted "iss" claims (comma-separated); set, a token without one of them gets 401. Empty: not checked.`)
	s.List(&j.Audiences, "JWT_AUDIENCE", "", `Accepted audiences (comma-separated); set, a token whose "aud" names none of them gets 401. Empty: not checked.`)
	s.Duration(&j.Leeway, "JWT_LEEWAY", 0, 0, "Clock skew allowed when checking exp and nbf (at most 5m); a token is accepted, and its connections kept, until exp plus this.")
	s.Check(func() error { return j.load(until, pemText, required) })
}

// jwtClaims registers how a token's claims become a session (the edge).
func (s *Set) jwtClaims(j *JWT) {
	s.String(&j.UserField, "JWT_USER_FIELD", "user", `JWT claim holding the user id; "sub" is used when it is absent.`)
	s.String(&j.RolesField, "JWT_ROLES_FIELD", "roles", "JWT claim holding the list of roles.")
	s.List(&j.PrivilegedRoles, "PRIVILEGED_ROLES", "", "Roles that may subscribe to any user's messages (comma-separated).")
	s.Bool(&j.RequireJTI, "JWT_REQUIRE_JTI", true, `Refuse (401) tokens without a "jti" claim: their sessions could never be blacklisted.`)
}

var errNoKeys = errors.New(`invalid JWT_SECRET_KEY="": expected a secret of at least 8 bytes, or public keys (JWT_PUBLIC_KEY, JWT_PUBLIC_KEY_FILE) or a key set (JWT_JWKS_URL): no token can be verified without one`)

func (j *JWT) load(until, pemText string, required bool) error {
	hidden := func(env, exp string) error { return &Error{Setting: env, Value: "(hidden)", Expected: exp} }
	if j.SecretKey != "" && len(j.SecretKey) < 8 {
		return hidden("JWT_SECRET_KEY", "a secret of at least 8 bytes")
	}
	if j.PreviousSecretKey != "" {
		if j.SecretKey == "" {
			return hidden("JWT_SECRET_KEY_PREVIOUS", "no value without JWT_SECRET_KEY: it is the secret JWT_SECRET_KEY replaced")
		}
		if len(j.PreviousSecretKey) < 8 {
			return hidden("JWT_SECRET_KEY_PREVIOUS", "a secret of at least 8 bytes")
		}
	}
	if until != "" {
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(until))
		if err != nil {
			return &Error{Setting: "JWT_SECRET_KEY_PREVIOUS_UNTIL", Value: until, Expected: "an RFC 3339 time such as 2026-01-31T12:00:00Z"}
		}
		if j.PreviousSecretKey == "" {
			return &Error{Setting: "JWT_SECRET_KEY_PREVIOUS_UNTIL", Value: until, Expected: "no value without JWT_SECRET_KEY_PREVIOUS"}
		}
		j.PreviousUntil = t
	}
	if pemText != "" {
		if !strings.Contains(pemText, "\n") {
			// Some environments (a one-line .env, a CI secret) cannot
			// hold a line break; PEM needs them.
			pemText = strings.ReplaceAll(pemText, `\n`, "\n")
		}
		keys, err := ParsePublicKeys([]byte(pemText))
		if err != nil {
			return &Error{Setting: "JWT_PUBLIC_KEY", Value: shorten(pemText), Expected: "PEM public keys or certificates: " + err.Error()}
		}
		j.PublicKeys = append(j.PublicKeys, keys...)
	}
	if j.PublicKeyFile != "" {
		keys, err := readPublicKeyFile(j.PublicKeyFile)
		if err != nil {
			return &Error{Setting: "JWT_PUBLIC_KEY_FILE", Value: j.PublicKeyFile, Expected: "a readable file of PEM public keys or certificates: " + err.Error()}
		}
		j.PublicKeys = append(j.PublicKeys, keys...)
	}
	for _, u := range j.JWKS.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.User != nil || p.Fragment != "" {
			return &Error{Setting: "JWT_JWKS_URL", Value: u, Expected: "an https:// (or http://) URL of a JSON Web Key Set, without user:password@"}
		}
	}
	if j.Leeway > maxLeeway {
		return &Error{Setting: "JWT_LEEWAY", Value: j.Leeway.String(), Expected: "a duration from 0 to 5m"}
	}
	if required && !j.HasKeys() {
		return errNoKeys
	}
	return nil
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func readPublicKeyFile(path string) ([]crypto.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPublicKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPublicKeyFile {
		return nil, fmt.Errorf("larger than %d bytes", maxPublicKeyFile)
	}
	return ParsePublicKeys(b)
}

// minRSABits refuses RSA keys that can be factored (NIST: 2048 at least).
const minRSABits = 2048

// ParsePublicKeys reads every PEM block of b: PUBLIC KEY (PKIX), RSA PUBLIC
// KEY (PKCS #1) or CERTIFICATE (its key; the certificate's dates and chain
// are not checked, it only carries the key). A private key, an RSA key
// under 2048 bits, a curve other than P-256/P-384/P-521, or text that is
// not PEM, is an error naming the block.
func ParsePublicKeys(b []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		k, err := publicKey(block)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block (-----BEGIN PUBLIC KEY-----)")
	}
	if rest := strings.TrimSpace(string(b)); rest != "" {
		return nil, fmt.Errorf("text after PEM block %d is not PEM", len(keys))
	}
	return keys, nil
}

func publicKey(block *pem.Block) (crypto.PublicKey, error) {
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = c.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE") {
			return nil, errors.New("a private key: give the public key (openssl pkey -pubout)")
		}
		return nil, errors.New("expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE")
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits: expected at least %d", k.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, fmt.Errorf("EC curve %s: expected P-256, P-384 or P-521", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("%T: expected an RSA, EC or Ed25519 key", key)
	}
	return key, nil
}
