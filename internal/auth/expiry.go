package auth

import "time"

// Expiry checks token as Verify does (signature, algorithm, expiry,
// issuer, audience) and returns its jti and until when it is accepted,
// without asking for a user claim: what blacklisting a session needs to
// know about the token it revokes. That time includes JWT_LEEWAY, so a
// blacklisting lasts as long as the token could still get in.
func (v *Verifier) Expiry(token string) (jti string, exp time.Time, err error) {
	claims, expires, err := v.check(token)
	if err != nil {
		return "", time.Time{}, err
	}
	jti, _ = claims["jti"].(string)
	return jti, expires, nil
}
