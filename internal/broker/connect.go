package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/rig-go/rig/internal/config"
)

// Inbox prefixes of the two binaries, instead of nats.go's _INBOX: the
// replies they get (JetStream API answers, direct gets carrying users'
// messages, presence) then come on subjects a secured NATS lets only them
// subscribe to (nats/secured/permissions.conf), while a back-end publisher
// keeps _INBOX.> for its acks.
const (
	EdgeInbox   = "_RIG_EDGE_INBOX"
	IngestInbox = "_RIG_INGEST_INBOX"
)

// securityOptions turns the configured credentials and TLS files into
// nats.go options. The files were checked at start (config); nats.go reads
// them again on each connect, so a rotated file is picked up on the next
// reconnect.
func securityOptions(cfg config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	a := cfg.Auth
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY_SEED_FILE=%s: %w", a.NKeySeedFile, err)
		}
		opts = append(opts, o)
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	}
	t := cfg.TLS
	if t.Enabled() {
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	if t.CAFile != "" {
		opts = append(opts, nats.RootCAs(t.CAFile))
	}
	if t.CertFile != "" {
		opts = append(opts, nats.ClientCert(t.CertFile, t.KeyFile))
	}
	return opts, nil
}

// connectError is a connection NATS refused for a reason retrying cannot
// fix (credentials, TLS), as the one line an operator needs; nil for
// any other error (NATS not there yet: retried).
func connectError(cfg config.NATS, urls string, err error) error {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		how := "no credentials were sent (set NATS_CREDS_FILE, NATS_NKEY_SEED_FILE, NATS_USER or NATS_TOKEN)"
		if m := cfg.Auth.Method(); m != "none" {
			how = "authenticating with " + authSetting(cfg.Auth)
		}
		return fmt.Errorf("NATS refused the credentials: %s at %s; %s", strings.ToLower(strings.TrimPrefix(err.Error(), "nats: ")), urls, how)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("NATS at %s does not offer TLS, and NATS_TLS_* is set: %w", urls, err)
	case tlsFailure(err) && !cfg.TLS.Enabled():
		return fmt.Errorf("NATS at %s requires TLS, and no NATS_TLS_CA_FILE (nor client certificate) is set: %w", urls, err)
	case tlsFailure(err):
		return fmt.Errorf("TLS with NATS at %s failed (check NATS_TLS_CA_FILE, NATS_TLS_CERT_FILE, NATS_TLS_KEY_FILE): %w", urls, err)
	}
	return nil
}

func authSetting(a config.NATSAuth) string {
	switch a.Method() {
	case "creds":
		return "NATS_CREDS_FILE=" + a.CredsFile
	case "nkey":
		return "NATS_NKEY_SEED_FILE=" + a.NKeySeedFile
	case "user":
		return "NATS_USER=" + a.User + " and NATS_PASSWORD"
	}
	return "NATS_TOKEN"
}

// tlsFailure reports whether err is a failed TLS handshake or certificate
// check; nats.go passes crypto/tls's errors through, some only as text.
func tlsFailure(err error) bool {
	var (
		unknown   x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		host      x509.HostnameError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		alert     tls.AlertError
		opErr     *net.OpError
		errSecure = errors.Is(err, nats.ErrSecureConnRequired)
	)
	if errSecure || errors.Is(err, nats.ErrTLS) || errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host) ||
		errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &alert) {
		return true
	}
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return true
	}
	return strings.Contains(err.Error(), "tls: ")
}

// permissionSubject is the subject a permissions violation names.
var permissionSubject = regexp.MustCompile(`(?i)publish to "([^"]+)"`)

// denials lets a caller learn at once that NATS denied one of its
// publishes. The server answers a denied publish with an error on the
// connection, not on the request, which would otherwise time out.
type denials struct {
	mu      sync.Mutex
	watches map[*denialWatch]struct{}
}

type denialWatch struct {
	match  func(subject string) bool
	cancel context.CancelCauseFunc
}

// DeniedError is a publish NATS refused for the user's permissions.
type DeniedError struct{ Subject string }

func (e *DeniedError) Error() string {
	return fmt.Sprintf("NATS denies this user publishing to %s", e.Subject)
}

// watch returns ctx, cancelled with a *DeniedError when NATS denies a
// publish to a subject match accepts, and the function that ends the
// watch.
func (d *denials) watch(ctx context.Context, match func(string) bool) (context.Context, func()) {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &denialWatch{match: match, cancel: cancel}
	d.mu.Lock()
	if d.watches == nil {
		d.watches = map[*denialWatch]struct{}{}
	}
	d.watches[w] = struct{}{}
	d.mu.Unlock()
	return wctx, func() {
		d.mu.Lock()
		delete(d.watches, w)
		d.mu.Unlock()
		cancel(nil)
	}
}

// denied tells the watches of err's subject; it reports whether one was
// waiting for it (so the caller handles it, and it is not logged here).
func (d *denials) denied(err error) bool {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return false
	}
	m := permissionSubject.FindStringSubmatch(err.Error())
	if m == nil {
		return false
	}
	found := false
	d.mu.Lock()
	for w := range d.watches {
		if w.match(m[1]) {
			w.cancel(&DeniedError{Subject: m[1]})
			found = true
		}
	}
	d.mu.Unlock()
	return found
}

// deniedCause returns the *DeniedError ctx (from watch) ended with, or nil.
func deniedCause(ctx context.Context) *DeniedError {
	var d *DeniedError
	if errors.As(context.Cause(ctx), &d) {
		return d
	}
	return nil
}

// streamAPI matches the JetStream API subjects that create or change
// stream (STREAM.CREATE.<stream>, STREAM.UPDATE.<stream>).
func (b *Broker) streamAPI(stream string) func(string) bool {
	prefix := b.JS.Options().APIPrefix
	if prefix == "" {
		prefix = "$JS.API."
	}
	prefix = strings.TrimSuffix(prefix, ".") + ".STREAM."
	return func(subject string) bool {
		return strings.HasPrefix(subject, prefix) && strings.HasSuffix(subject, "."+stream)
	}
}
