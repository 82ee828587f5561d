package main

import (
	"flag"
	"fmt"
	"io"
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
	alg := fs.String("alg", "HS256", "HS256, HS384 or HS512")
	secret := fs.String("jwt-secret-key", getenv("JWT_SECRET_KEY"), "signing secret (default $JWT_SECRET_KEY)")
	userField := fs.String("jwt-user-field", or(getenv("JWT_USER_FIELD"), "user"), "claim for the user id (default $JWT_USER_FIELD or user)")
	rolesField := fs.String("jwt-roles-field", or(getenv("JWT_ROLES_FIELD"), "roles"), "claim for the roles (default $JWT_ROLES_FIELD or roles)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: edge token --user alice [--roles support] [--exp 1h] [--jti id]\n\nPrints a JWT signed with JWT_SECRET_KEY.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		fs.Usage()
		return fmt.Errorf("token: --user is required")
	}
	if *secret == "" {
		return fmt.Errorf("token: no secret: set JWT_SECRET_KEY or --jwt-secret-key")
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
	tok, err := auth.Mint(*secret, auth.Claims{
		User: *user, UserField: *userField, Roles: config.SplitList(*roles), RolesField: *rolesField,
		ID: id, TTL: ttl, Algorithm: *alg,
	}, now)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
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
