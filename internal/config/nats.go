package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// NATSAuth is how a binary proves who it is to NATS: at most one of a
// creds file (a user JWT and its seed, from an operator/account setup), an
// NKey seed file, a user and password, or a token.
type NATSAuth struct {
	CredsFile    string // NATS_CREDS_FILE
	NKeySeedFile string // NATS_NKEY_SEED_FILE
	User         string // NATS_USER
	Password     string // NATS_PASSWORD
	Token        string // NATS_TOKEN
}

// Method names the way a connection authenticates, as a log line shows it:
// creds, nkey, user, token, or none.
func (a NATSAuth) Method() string {
	switch {
	case a.CredsFile != "":
		return "creds"
	case a.NKeySeedFile != "":
		return "nkey"
	case a.User != "":
		return "user"
	case a.Token != "":
		return "token"
	}
	return "none"
}

// NATSTLS is the TLS of the connection to NATS. Any file set turns TLS on:
// the server's certificate is verified against CAFile (the system's roots
// without one), and CertFile with KeyFile is the client certificate a
// server with verify: true asks for.
type NATSTLS struct {
	CAFile   string // NATS_TLS_CA_FILE
	CertFile string // NATS_TLS_CERT_FILE
	KeyFile  string // NATS_TLS_KEY_FILE
}

// Enabled reports whether any TLS file is set.
func (t NATSTLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

func (s *Set) natsSecurity(n *NATS) {
	a, t := &n.Auth, &n.TLS
	s.String(&a.CredsFile, "NATS_CREDS_FILE", "", "NATS credentials file (user JWT and NKey seed, as `nsc` writes it) for servers with operator/account JWTs.")
	s.String(&a.NKeySeedFile, "NATS_NKEY_SEED_FILE", "", "File holding the NATS user's NKey seed (SU...), for servers whose users are NKeys.")
	s.String(&a.User, "NATS_USER", "", "NATS user name; needs NATS_PASSWORD.")
	s.Secret(&a.Password, "NATS_PASSWORD", "Password of NATS_USER.")
	s.Secret(&a.Token, "NATS_TOKEN", "NATS authentication token, for servers with authorization { token: ... }.")
	s.String(&t.CAFile, "NATS_TLS_CA_FILE", "", "PEM file of the CA(s) the NATS server's certificate is verified against; any NATS_TLS_* file turns TLS on (the system's roots without this one).")
	s.String(&t.CertFile, "NATS_TLS_CERT_FILE", "", "PEM client certificate for NATS servers that verify clients (tls { verify: true }); needs NATS_TLS_KEY_FILE.")
	s.String(&t.KeyFile, "NATS_TLS_KEY_FILE", "", "PEM private key of NATS_TLS_CERT_FILE.")
	s.Check(func() error { return checkNATSAuth(n) })
	s.Check(func() error { return checkNATSTLS(n) })
}

// checkNATSAuth allows one method and reads its file now: a wrong path or
// a file of the wrong kind is one line at start, not a connection that
// keeps failing.
func checkNATSAuth(n *NATS) error {
	a := n.Auth
	var set []string
	for _, m := range []struct{ env, v string }{{"NATS_CREDS_FILE", a.CredsFile}, {"NATS_NKEY_SEED_FILE", a.NKeySeedFile}, {"NATS_USER", a.User}, {"NATS_TOKEN", a.Token}} {
		if m.v != "" {
			set = append(set, m.env)
		}
	}
	switch {
	case len(set) > 1:
		return fmt.Errorf("invalid NATS authentication: %s are all set, expected at most one method", strings.Join(set, ", "))
	case a.Password != "" && a.User == "":
		return &Error{Setting: "NATS_USER", Value: "", Expected: "a user name: NATS_PASSWORD is set"}
	case a.User != "" && a.Password == "":
		return &Error{Setting: "NATS_PASSWORD", Value: "", Expected: "the password of NATS_USER=" + a.User}
	case (len(set) > 0 || n.TLS.Enabled()) && n.Embedded:
		// The embedded server has no accounts and no TLS: a connection
		// with credentials would be refused, or would mean nothing.
		env := "NATS_TLS_*"
		if len(set) > 0 {
			env = set[0]
		}
		return &Error{Setting: "NATS_EMBEDDED", Value: "true", Expected: "false with " + env + ": the embedded NATS server runs without accounts or TLS"}
	}
	if a.CredsFile != "" {
		if err := checkCreds(a.CredsFile); err != nil {
			return &Error{Setting: "NATS_CREDS_FILE", Value: a.CredsFile, Expected: "a NATS credentials file with a user JWT and its seed (" + err.Error() + ")"}
		}
	}
	if a.NKeySeedFile != "" {
		if err := checkSeed(a.NKeySeedFile); err != nil {
			return &Error{Setting: "NATS_NKEY_SEED_FILE", Value: a.NKeySeedFile, Expected: "a file holding a NATS user NKey seed, SU... (" + err.Error() + ")"}
		}
	}
	return nil
}

// checkCreds parses a creds file as nats.UserCredentials will: the error
// never quotes the file, which holds a secret.
func checkCreds(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	token, err := nkeys.ParseDecoratedJWT(b)
	if err != nil {
		return fmt.Errorf("no JWT: %w", err)
	}
	if _, err := jwt.DecodeUserClaims(token); err != nil {
		return fmt.Errorf("its JWT is not a user JWT: %w", err)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return fmt.Errorf("no user seed: %w", err)
	}
	kp.Wipe()
	return nil
}

func checkSeed(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return err
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return err
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return fmt.Errorf("the seed is not a user's (its public key %.1s... is not U...)", pub)
	}
	return nil
}

func checkNATSTLS(n *NATS) error {
	t := n.TLS
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return &Error{Setting: "NATS_TLS_KEY_FILE", Value: "", Expected: "the private key of NATS_TLS_CERT_FILE=" + t.CertFile}
	case t.KeyFile != "" && t.CertFile == "":
		return &Error{Setting: "NATS_TLS_CERT_FILE", Value: "", Expected: "the certificate of NATS_TLS_KEY_FILE=" + t.KeyFile}
	}
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return &Error{Setting: "NATS_TLS_CA_FILE", Value: t.CAFile, Expected: "a readable PEM file of CA certificates (" + err.Error() + ")"}
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return &Error{Setting: "NATS_TLS_CA_FILE", Value: t.CAFile, Expected: "a PEM file of CA certificates (it holds none)"}
		}
	}
	if t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return &Error{Setting: "NATS_TLS_CERT_FILE", Value: t.CertFile, Expected: "a PEM certificate matching NATS_TLS_KEY_FILE=" + t.KeyFile + " (" + err.Error() + ")"}
		}
	}
	return nil
}
