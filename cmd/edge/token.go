package main

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/rig-go/rig/internal/auth"
	"github.com/rig-go/rig/internal/config"
)

// runToken prints a signed JWT, like RIG's encode_jwt script: the quickest
// way to get a token for trying the gateway out.
func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "user id the token is for (required)")
	roles := fs.String("roles", "", "comma-separated roles, e.g. support")
	exp := fs.String("exp", "1h", "expiry: a duration from now (30m, 24h) or a Unix time")
	jti := fs.String("jti", "", "session id (jti), the handle for blacklisting; default: a new random id")
	alg := fs.String("alg", "", "HS256 (default), HS384 or HS512; with --key RS/PS256-512, ES256/384/512 or EdDSA (default: the key's RS256, ES* or EdDSA)")
	secret := fs.String("jwt-secret-key", getenv("JWT_SECRET_KEY"), "signing secret (default $JWT_SECRET_KEY)")
	keyFile := fs.String("key", "", "PEM private key file (RSA, EC or Ed25519) to sign with instead of the secret, as an identity provider does; the edge verifies with its public key (JWT_PUBLIC_KEY)")
	kid := fs.String("kid", "", `key id ("kid" header) naming the --key in a JWKS`)
	iss := fs.String("iss", "", `issuer ("iss" claim), for an edge with JWT_ISSUER`)
	aud := fs.String("aud", "", `comma-separated audiences ("aud" claim), for an edge with JWT_AUDIENCE`)
	userField := fs.String("jwt-user-field", or(getenv("JWT_USER_FIELD"), "user"), "claim for the user id (default $JWT_USER_FIELD or user)")
	rolesField := fs.String("jwt-roles-field", or(getenv("JWT_ROLES_FIELD"), "roles"), "claim for the roles (default $JWT_ROLES_FIELD or roles)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: edge token --user alice [--roles support] [--exp 1h] [--jti id] [--key private.pem --kid k1] [--iss URL] [--aud rig]\n\nPrints a JWT signed with JWT_SECRET_KEY, or with a private key (--key).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		fs.Usage()
		return fmt.Errorf("token: --user is required")
	}
	if *secret == "" && *keyFile == "" {
		return fmt.Errorf("token: no secret: set JWT_SECRET_KEY or --jwt-secret-key, or give a private key with --key")
	}
	now := time.Now()
	ttl, err := parseExp(*exp, now)
	if err != nil {
		return err
	}
	id := *jti
	if id == "" {
		id = newID()
	}
	claims := auth.Claims{
		User: *user, UserField: *userField, Roles: config.SplitList(*roles), RolesField: *rolesField,
		ID: id, TTL: ttl, Algorithm: *alg, Issuer: *iss, Audience: config.SplitList(*aud),
	}
	var tok string
	if *keyFile != "" {
		key, kerr := readPrivateKey(*keyFile)
		if kerr != nil {
			return fmt.Errorf("token: --key=%s: %w", *keyFile, kerr)
		}
		tok, err = auth.MintWithKey(key, *kid, claims, now)
	} else {
		tok, err = auth.Mint(*secret, claims, now)
	}
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// readPrivateKey reads the first PEM block of path: PKCS #8 (PRIVATE KEY),
// PKCS #1 (RSA PRIVATE KEY) or SEC 1 (EC PRIVATE KEY), as openssl writes them.
func readPrivateKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %s: expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T cannot sign", key)
	}
	return s, nil
}

func parseExp(v string, now time.Time) (time.Duration, error) {
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > now.Unix() {
		return time.Unix(n, 0).Sub(now), nil
	}
	return 0, fmt.Errorf("token: invalid --exp=%q: expected a positive duration such as 1h, or a future Unix time", v)
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
