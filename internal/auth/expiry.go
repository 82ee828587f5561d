package auth

import (
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Expiry checks token's signature, algorithm and expiry as Verify does, and
// returns its jti and exp without asking for a user claim: what blacklisting
// a session needs to know about the token it revokes.
func (v *Verifier) Expiry(token string) (jti string, exp time.Time, err error) {
	var claims jwt.MapClaims
	if _, err := v.parser.ParseWithClaims(token, &claims, v.keyFor); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %s", ErrInvalidToken, reason(err))
	}
	e, err := claims.GetExpirationTime()
	if err != nil || e == nil {
		return "", time.Time{}, fmt.Errorf("%w: no exp claim", ErrInvalidToken)
	}
	jti, _ = claims["jti"].(string)
	return jti, e.Time, nil
}
