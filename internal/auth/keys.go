package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// asymmetric are the public-key algorithms a PEM key or a JWKS may verify.
var asymmetric = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// minRSABits: a JWKS may publish what config refuses in a PEM key.
const minRSABits = 2048

// fits pins each algorithm to a key type: an RSA key verifies RS* and PS*,
// an EC key the one ES* of its curve, an Ed25519 key EdDSA, and nothing
// else any of them. golang-jwt would also refuse most mismatches; this
// makes the rule one place and keeps, say, a P-256 key from an ES384 token.
func fits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")) && k.N.BitLen() >= minRSABits
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// maxQuoted bounds what an error repeats of a claim or header: it is the
// token's text, and may be long.
const maxQuoted = 64

// quoteClaim quotes a value from a token for an error message.
func quoteClaim(s string) string {
	if len(s) > maxQuoted {
		s = s[:maxQuoted] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// publicKeys are the keys that may verify t, an asymmetric token: the one
// the JWKS has under its kid, else every PEM key (and, without a kid, every
// JWKS key) that fits its algorithm.
func (v *Verifier) publicKeys(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	raw, hasKID := t.Header["kid"]
	var keys []any
	if hasKID && v.jwks != nil {
		kid, ok := raw.(string)
		if !ok {
			return nil, &keyError{`"kid" header is not a string`}
		}
		key, err := v.jwks.key(t, kid)
		if err == nil {
			return key, nil
		}
		if !v.anyPublicFits(alg) {
			return nil, err
		}
	} else if v.jwks != nil {
		keys = v.jwks.all(alg)
	}
	for _, k := range v.public {
		if fits(alg, k) {
			keys = append(keys, k)
		}
	}
	switch len(keys) {
	case 0:
		return nil, &keyError{fmt.Sprintf("no configured key verifies algorithm %s", alg)}
	case 1:
		return keys[0], nil
	}
	set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(keys))}
	for i, k := range keys {
		set.Keys[i] = k
	}
	return set, nil
}

func (v *Verifier) anyPublicFits(alg string) bool {
	for _, k := range v.public {
		if fits(alg, k) {
			return true
		}
	}
	return false
}

// checkIssuer refuses a token whose iss is not one of JWT_ISSUER.
func (v *Verifier) checkIssuer(claims jwt.MapClaims) error {
	if len(v.issuers) == 0 {
		return nil
	}
	iss, err := claims.GetIssuer()
	if err != nil {
		return fmt.Errorf(`%w: claim "iss" is not a string`, ErrInvalidToken)
	}
	if iss == "" {
		return fmt.Errorf(`%w: no "iss" claim; expected %s (JWT_ISSUER)`, ErrInvalidToken, quoteList(v.issuers))
	}
	for _, want := range v.issuers {
		if iss == want {
			return nil
		}
	}
	return fmt.Errorf(`%w: claim "iss" is %s; expected %s (JWT_ISSUER)`, ErrInvalidToken, quoteClaim(iss), quoteList(v.issuers))
}

// checkAudience refuses a token whose aud names none of JWT_AUDIENCE.
func (v *Verifier) checkAudience(claims jwt.MapClaims) error {
	if len(v.audiences) == 0 {
		return nil
	}
	aud, err := claims.GetAudience()
	if _, ok := claims["aud"]; ok && len(aud) == 0 || err != nil {
		return fmt.Errorf(`%w: claim "aud" is not a string or a list of strings`, ErrInvalidToken)
	}
	if len(aud) == 0 {
		return fmt.Errorf(`%w: no "aud" claim; expected %s (JWT_AUDIENCE)`, ErrInvalidToken, quoteList(v.audiences))
	}
	for _, a := range aud {
		for _, want := range v.audiences {
			if a == want {
				return nil
			}
		}
	}
	got := make([]string, 0, 4)
	for i, a := range aud {
		if i == 4 {
			got = append(got, "...")
			break
		}
		got = append(got, quoteClaim(a))
	}
	return fmt.Errorf(`%w: claim "aud" is [%s]; expected %s (JWT_AUDIENCE)`, ErrInvalidToken, strings.Join(got, ", "), quoteList(v.audiences))
}

// quoteList quotes values as one of them ("a"), or a list of them.
func quoteList(vs []string) string {
	q := make([]string, len(vs))
	for i, s := range vs {
		q[i] = quoteClaim(s)
	}
	if len(q) == 1 {
		return q[0]
	}
	return "one of " + strings.Join(q, ", ")
}
