package auth

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/rig-go/rig/internal/config"
)

// New builds the Verifier that the configuration describes: the one every
// part of a binary shares (connections, the API gateway, the blacklist's
// expiry rule). It fetches the JWKS now, and refreshes it until ctx ends;
// a key set that cannot be fetched is an error. With no key source at all
// it returns nil (ingest, where tokens are optional).
func New(ctx context.Context, cfg config.JWT, log *slog.Logger) (*Verifier, error) {
	if !cfg.HasKeys() {
		return nil, nil
	}
	userField, rolesField := cfg.UserField, cfg.RolesField
	if userField == "" {
		userField = "user"
	}
	if rolesField == "" {
		rolesField = "roles"
	}
	v := NewVerifier(cfg.SecretKey, userField, rolesField, cfg.PrivilegedRoles, RequireJTI(cfg.RequireJTI))
	if cfg.SecretKey != "" {
		if cfg.PreviousSecretKey != "" {
			v.addSecret([]byte(cfg.PreviousSecretKey), cfg.PreviousUntil)
			if u := cfg.PreviousUntil; !u.IsZero() && !time.Now().Before(u) {
				log.Warn("JWT_SECRET_KEY_PREVIOUS_UNTIL has passed: the previous secret verifies nothing; remove it", "until", u.Format(time.RFC3339))
			}
		}
	}
	for _, k := range cfg.PublicKeys {
		v.public = append(v.public, k)
	}
	v.issuers, v.audiences, v.leeway = cfg.Issuers, cfg.Audiences, cfg.Leeway
	if len(cfg.JWKS.URLs) > 0 {
		for _, u := range cfg.JWKS.URLs {
			if p, err := url.Parse(u); err == nil && p.Scheme == "http" && !loopbackHost(p.Hostname()) {
				log.Warn("INSECURE: JWT_JWKS_URL is plain http; whoever sits on the path can publish keys that sign any token", "url", u)
			}
		}
		j, err := newJWKS(ctx, cfg.JWKS, log)
		if err != nil {
			return nil, err
		}
		v.jwks = j
	}
	v.parser = v.newParser()
	log.Info("tokens verified", "algorithms", v.algs, "hmac_secrets", len(v.secrets), "public_keys", len(v.public),
		"jwks", cfg.JWKS.URLs, "issuer", cfg.Issuers, "audience", cfg.Audiences, "leeway", cfg.Leeway.String())
	return v, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
