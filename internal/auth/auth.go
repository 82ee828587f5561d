// Package auth verifies the JWTs that say who a connection belongs to, and
// mints them for development (RIG's encode_jwt).
package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rig-go/rig/internal/rig"
)

// ErrInvalidToken is wrapped by every verification failure.
var ErrInvalidToken = errors.New("invalid token")

// Algorithms are the only signing methods accepted: HMAC with the shared
// secret. Pinning them means a token cannot pick "none" or an RSA/EC method
// (with the secret misread as a public key).
var Algorithms = []string{"HS256", "HS384", "HS512"}

// Verifier checks tokens and turns their claims into sessions.
type Verifier struct {
	key        []byte
	userField  string
	rolesField string
	privileged map[string]bool
	requireJTI bool
	parser     *jwt.Parser
}

// An Option changes what a Verifier accepts.
type Option func(*Verifier)

// RequireJTI says whether a token must have a jti (it does by default): a
// session without one can never be blacklisted, so a stolen token would
// stay usable until it expires.
func RequireJTI(require bool) Option { return func(v *Verifier) { v.requireJTI = require } }

// NewVerifier returns a Verifier for tokens signed with secret.
// userField names the user claim ("sub" is the fallback when the token has
// no such claim), rolesField the roles claim, and privileged the roles that
// may subscribe to anyone.
func NewVerifier(secret, userField, rolesField string, privileged []string, opts ...Option) *Verifier {
	v := &Verifier{
		key:        []byte(secret),
		userField:  userField,
		rolesField: rolesField,
		privileged: make(map[string]bool, len(privileged)),
		requireJTI: true,
		parser: jwt.NewParser(
			jwt.WithValidMethods(Algorithms),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(0),
		),
	}
	for _, r := range privileged {
		v.privileged[r] = true
	}
	for _, o := range opts {
		o(v)
	}
	return v
}

// errCrit refuses a token with a crit header: it names extensions the
// token says must be understood (RFC 7515 §4.1.11), and none is.
var errCrit = errors.New(`"crit" header: no JWS extension is supported`)

// keyFor is the parser's key function: the one HMAC key, for a token that
// asks for no extension.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCrit
	}
	return v.key, nil
}

// Verify checks the token's signature, algorithm and expiry and returns its
// session. Errors wrap ErrInvalidToken and say why, without the token.
func (v *Verifier) Verify(token string) (*rig.Session, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidToken)
	}
	var claims jwt.MapClaims
	_, err := v.parser.ParseWithClaims(token, &claims, v.keyFor)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidToken, reason(err))
	}
	return v.session(claims)
}

func reason(err error) string {
	switch {
	case errors.Is(err, errCrit):
		return errCrit.Error()
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
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
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, fmt.Errorf("%w: no exp claim", ErrInvalidToken)
	}
	s.Expires = exp.Time
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
	Algorithm  string // HS256 (default), HS384 or HS512
}

// Mint signs a token for c with secret, as RIG's encode_jwt did.
func Mint(secret string, c Claims, now time.Time) (string, error) {
	if c.UserField == "" {
		c.UserField = "user"
	}
	if c.RolesField == "" {
		c.RolesField = "roles"
	}
	if c.Algorithm == "" {
		c.Algorithm = "HS256"
	}
	method := jwt.GetSigningMethod(c.Algorithm)
	if _, ok := method.(*jwt.SigningMethodHMAC); !ok {
		return "", fmt.Errorf("algorithm %q: expected one of %s", c.Algorithm, strings.Join(Algorithms, ", "))
	}
	if err := rig.ValidateUser(c.User); err != nil {
		return "", err
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
	return jwt.NewWithClaims(method, claims).SignedString([]byte(secret))
}
