// Package auth verifies the JWTs that say who a connection belongs to, with
// shared secrets, PEM public keys or an identity provider's JWKS, and mints
// them for development (RIG's encode_jwt).
package auth

import (
	"crypto"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rig-go/rig/internal/rig"
)

// ErrInvalidToken is wrapped by every verification failure.
var ErrInvalidToken = errors.New("invalid token")

// Algorithms are the HMAC signing methods, the only ones a shared secret
// verifies.
var Algorithms = []string{"HS256", "HS384", "HS512"}

// Verifier checks tokens and turns their claims into sessions. Each key it
// holds verifies only the algorithms of its type (see fits), so a token
// cannot choose "none", nor have an RSA public key read as an HMAC secret.
type Verifier struct {
	secrets    []hmacSecret  // current first
	public     []any         // PEM public keys
	jwks       *jwks         // nil: no JWT_JWKS_URL
	issuers    []string      // none: not checked
	audiences  []string      // none: not checked
	leeway     time.Duration // added to exp, also for how long a session lasts
	userField  string
	rolesField string
	privileged map[string]bool
	requireJTI bool
	algs       []string // what the keys can verify, see algorithms
	parser     *jwt.Parser
}

// hmacSecret is an HMAC key, accepted until until (zero: for as long as it is
// configured).
type hmacSecret struct {
	key   []byte
	until time.Time
}

// An Option changes what a Verifier accepts.
type Option func(*Verifier)

// RequireJTI says whether a token must have a jti (it does by default): a
// session without one can never be blacklisted, so a stolen token would
// stay usable until it expires.
func RequireJTI(require bool) Option { return func(v *Verifier) { v.requireJTI = require } }

// NewVerifier returns a Verifier for HMAC tokens signed with secret (none
// when it is empty). userField names the user claim ("sub" is the fallback
// when the token has no such claim), rolesField the roles claim, and
// privileged the roles that may subscribe to anyone. New adds the other
// key sources and claim rules of the configuration.
func NewVerifier(secret, userField, rolesField string, privileged []string, opts ...Option) *Verifier {
	v := newVerifier(userField, rolesField, privileged)
	if secret != "" {
		v.addSecret([]byte(secret), time.Time{})
	}
	for _, o := range opts {
		o(v)
	}
	v.parser = v.newParser()
	return v
}

func newVerifier(userField, rolesField string, privileged []string) *Verifier {
	v := &Verifier{
		userField:  userField,
		rolesField: rolesField,
		privileged: make(map[string]bool, len(privileged)),
		requireJTI: true,
	}
	for _, r := range privileged {
		v.privileged[r] = true
	}
	return v
}

func (v *Verifier) addSecret(key []byte, until time.Time) {
	v.secrets = append(v.secrets, hmacSecret{key: key, until: until})
}

// algorithms are the signing methods some configured key can verify; the
// parser refuses any other before a key is looked at.
func (v *Verifier) algorithms() []string {
	var algs []string
	if len(v.secrets) > 0 {
		algs = append(algs, Algorithms...)
	}
	for _, alg := range asymmetric {
		ok := v.jwks != nil
		for _, k := range v.public {
			ok = ok || fits(alg, k)
		}
		if ok {
			algs = append(algs, alg)
		}
	}
	return algs
}

func (v *Verifier) newParser() *jwt.Parser {
	v.algs = v.algorithms()
	return jwt.NewParser(
		jwt.WithValidMethods(v.algs),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.leeway),
	)
}

// errCrit refuses a token with a crit header: it names extensions the
// token says must be understood (RFC 7515 §4.1.11), and none is.
var errCrit = errors.New(`"crit" header: no JWS extension is supported`)

// Verify checks the token's signature, algorithm, expiry, issuer and
// audience, and returns its session. Errors wrap ErrInvalidToken and say
// why, without the token.
func (v *Verifier) Verify(token string) (*rig.Session, error) {
	claims, expires, err := v.check(token)
	if err != nil {
		return nil, err
	}
	s, err := v.session(claims)
	if err != nil {
		return nil, err
	}
	s.Expires = expires
	return s, nil
}

// check verifies token and returns its claims and until when it is
// accepted: exp plus the leeway, or sooner when the secret that signed it
// is retired before (JWT_SECRET_KEY_PREVIOUS_UNTIL).
func (v *Verifier) check(token string) (jwt.MapClaims, time.Time, error) {
	if token == "" {
		return nil, time.Time{}, fmt.Errorf("%w: empty", ErrInvalidToken)
	}
	var claims jwt.MapClaims
	var until time.Time
	t, err := v.parser.ParseWithClaims(token, &claims, v.keyFor(0))
	// A token the current secret does not verify may be one the previous
	// secret signed before the rotation. Only a signature error tries it:
	// an expired token stays expired.
	for i := 1; i < len(v.secrets) && err != nil && errors.Is(err, jwt.ErrTokenSignatureInvalid) && isHMAC(t); i++ {
		if u := v.secrets[i].until; !u.IsZero() && !time.Now().Before(u) {
			continue
		}
		claims = nil
		t, err = v.parser.ParseWithClaims(token, &claims, v.keyFor(i))
		until = v.secrets[i].until
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %s", ErrInvalidToken, v.reason(t, err))
	}
	if err := v.checkIssuer(claims); err != nil {
		return nil, time.Time{}, err
	}
	if err := v.checkAudience(claims); err != nil {
		return nil, time.Time{}, err
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, time.Time{}, fmt.Errorf("%w: no exp claim", ErrInvalidToken)
	}
	expires := exp.Add(v.leeway)
	if !until.IsZero() && until.Before(expires) {
		expires = until
	}
	return claims, expires, nil
}

func isHMAC(t *jwt.Token) bool {
	if t == nil {
		return false
	}
	_, ok := t.Method.(*jwt.SigningMethodHMAC)
	return ok
}

// keyFor is the parser's key function: for an HMAC token the secret
// secrets[i], for another the public keys that fit its algorithm. A token
// asking for an extension gets none.
func (v *Verifier) keyFor(i int) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			return nil, errCrit
		}
		if isHMAC(t) {
			return v.secrets[i].key, nil
		}
		return v.publicKeys(t)
	}
}

// keyError is a key lookup's refusal, said as it is to the client.
type keyError struct{ msg string }

func (e *keyError) Error() string { return e.msg }

func (v *Verifier) reason(t *jwt.Token, err error) string {
	var ke *keyError
	switch {
	case errors.Is(err, errCrit):
		return errCrit.Error()
	case errors.As(err, &ke):
		return ke.msg
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case t != nil && t.Method != nil && !slices.Contains(v.algs, t.Method.Alg()):
		return fmt.Sprintf("algorithm %s is not accepted (accepted: %s)", quoteClaim(t.Method.Alg()), strings.Join(v.algs, ", "))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature or algorithm"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "no exp claim"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unverifiable"
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return "invalid claims"
	}
	return "rejected"
}

func (v *Verifier) session(claims jwt.MapClaims) (*rig.Session, error) {
	s := &rig.Session{}
	// The user claim, when the token has one, is the user: a claim that is
	// no usable id (a number, "") refuses the token rather than letting
	// "sub" say who it is.
	field := v.userField
	raw, ok := claims[field]
	if !ok {
		field = "sub"
		if raw, ok = claims[field]; !ok {
			return nil, fmt.Errorf("%w: no %q or \"sub\" claim with a user id", ErrInvalidToken, v.userField)
		}
	}
	user, ok := raw.(string)
	if !ok {
		return nil, fmt.Errorf("%w: claim %q is not a string", ErrInvalidToken, field)
	}
	if err := rig.ValidateUser(user); err != nil {
		return nil, fmt.Errorf("%w: claim %q: %w", ErrInvalidToken, field, err)
	}
	s.User = user
	switch roles := claims[v.rolesField].(type) {
	case nil:
	case string:
		s.Roles = splitRoles(roles)
	case []any:
		for _, r := range roles {
			if r, ok := r.(string); ok {
				s.Roles = append(s.Roles, r)
			}
		}
	default:
		return nil, fmt.Errorf("%w: claim %q is not a list of roles", ErrInvalidToken, v.rolesField)
	}
	for _, r := range s.Roles {
		if v.privileged[r] {
			s.Privileged = true
		}
	}
	if jti, ok := claims["jti"]; ok {
		id, ok := jti.(string)
		if !ok {
			return nil, fmt.Errorf("%w: claim \"jti\" is not a string", ErrInvalidToken)
		}
		s.ID = id
	}
	if s.ID == "" && v.requireJTI {
		return nil, fmt.Errorf("%w: no \"jti\" claim: a session without one could never be blacklisted (JWT_REQUIRE_JTI)", ErrInvalidToken)
	}
	return s, nil
}

// splitRoles splits a roles claim at commas and spaces; no roles is nil.
func splitRoles(s string) []string {
	return append([]string(nil), strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })...)
}

// Claims describes a token to mint.
type Claims struct {
	User       string
	UserField  string
	Roles      []string
	RolesField string
	ID         string // jti; empty means none
	TTL        time.Duration
	Algorithm  string   // HS256 (default), HS384 or HS512; with a private key, see MintWithKey
	Issuer     string   // iss; empty means none
	Audience   []string // aud; empty means none
}

// Mint signs a token for c with secret, as RIG's encode_jwt did.
func Mint(secret string, c Claims, now time.Time) (string, error) {
	if c.Algorithm == "" {
		c.Algorithm = "HS256"
	}
	method := jwt.GetSigningMethod(c.Algorithm)
	if _, ok := method.(*jwt.SigningMethodHMAC); !ok {
		return "", fmt.Errorf("algorithm %q: expected one of %s", c.Algorithm, strings.Join(Algorithms, ", "))
	}
	claims, err := c.mapClaims(now)
	if err != nil {
		return "", err
	}
	return jwt.NewWithClaims(method, claims).SignedString([]byte(secret))
}

// MintWithKey signs a token for c with a private key (*rsa.PrivateKey,
// *ecdsa.PrivateKey, ed25519.PrivateKey), as an identity provider would;
// kid, when not empty, names the key in the header. c.Algorithm defaults
// to the key's: RS256, ES256/384/512 by curve, EdDSA.
func MintWithKey(key crypto.Signer, kid string, c Claims, now time.Time) (string, error) {
	if c.Algorithm == "" {
		c.Algorithm = defaultAlgorithm(key.Public())
	}
	if !fits(c.Algorithm, key.Public()) {
		return "", fmt.Errorf("algorithm %q does not fit a %T", c.Algorithm, key)
	}
	claims, err := c.mapClaims(now)
	if err != nil {
		return "", err
	}
	t := jwt.NewWithClaims(jwt.GetSigningMethod(c.Algorithm), claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	return t.SignedString(key)
}

func defaultAlgorithm(pub crypto.PublicKey) string {
	for _, alg := range []string{"RS256", "ES256", "ES384", "ES512", "EdDSA"} {
		if fits(alg, pub) {
			return alg
		}
	}
	return ""
}

func (c Claims) mapClaims(now time.Time) (jwt.MapClaims, error) {
	if c.UserField == "" {
		c.UserField = "user"
	}
	if c.RolesField == "" {
		c.RolesField = "roles"
	}
	if err := rig.ValidateUser(c.User); err != nil {
		return nil, err
	}
	claims := jwt.MapClaims{
		c.UserField: c.User,
		"iat":       now.Unix(),
		"exp":       now.Add(c.TTL).Unix(),
	}
	if c.UserField != "sub" {
		claims["sub"] = c.User
	}
	if len(c.Roles) > 0 {
		claims[c.RolesField] = c.Roles
	}
	if c.ID != "" {
		claims["jti"] = c.ID
	}
	if c.Issuer != "" {
		claims["iss"] = c.Issuer
	}
	if len(c.Audience) > 0 {
		claims["aud"] = c.Audience
	}
	return claims, nil
}
