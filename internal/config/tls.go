package config

import (
	"errors"
	"strconv"
	"time"

	"github.com/rig-go/rig/internal/tlsfile"
)

// PublicTLS is TLS on the edge's public port, for setups without a load
// balancer that terminates it. The operations port stays plain HTTP.
type PublicTLS struct {
	CertFile       string        // TLS_CERT_FILE
	KeyFile        string        // TLS_KEY_FILE
	ReloadInterval time.Duration // TLS_RELOAD_INTERVAL
	// Pair is the certificate and key, read at start (nil: TLS is off), so
	// that an unusable pair stops the edge then.
	Pair *tlsfile.Pair
}

func (s *Set) publicTLS(t *PublicTLS) {
	s.String(&t.CertFile, "TLS_CERT_FILE", "", "PEM file with the public port's certificate, then its intermediates. With TLS_KEY_FILE, INBOUND_PORT serves HTTPS only (TLS 1.2 or later, HTTP/1.1); METRICS_PORT stays plain HTTP.")
	s.String(&t.KeyFile, "TLS_KEY_FILE", "", "PEM file with the private key of TLS_CERT_FILE's certificate.")
	s.Duration(&t.ReloadInterval, "TLS_RELOAD_INTERVAL", 5*time.Second, 100*time.Millisecond, "How often TLS_CERT_FILE and TLS_KEY_FILE are read again: changed contents that form a valid pair are served to new connections; a broken pair is logged and the previous one kept.")
	s.Check(t.load)
}

// load reads the pair, and names the setting of the file at fault.
func (t *PublicTLS) load() error {
	switch {
	case t.CertFile == "" && t.KeyFile == "":
		return nil
	case t.KeyFile == "":
		return &Error{Setting: "TLS_KEY_FILE", Value: "", Expected: "the private key file of TLS_CERT_FILE=" + strconv.Quote(t.CertFile) + " (TLS needs both, or neither)"}
	case t.CertFile == "":
		return &Error{Setting: "TLS_CERT_FILE", Value: "", Expected: "the certificate file of TLS_KEY_FILE=" + strconv.Quote(t.KeyFile) + " (TLS needs both, or neither)"}
	}
	p, err := tlsfile.Load(t.CertFile, t.KeyFile)
	var e *tlsfile.Error
	switch {
	case err == nil:
		t.Pair = p
		return nil
	case !errors.As(err, &e):
		return err
	case e.Part == tlsfile.CertFile:
		return &Error{Setting: "TLS_CERT_FILE", Value: t.CertFile, Expected: "a readable PEM file whose first certificate is the server's (" + e.Err.Error() + ")"}
	case e.Part == tlsfile.KeyFile:
		return &Error{Setting: "TLS_KEY_FILE", Value: t.KeyFile, Expected: "a readable PEM file with a private key (" + e.Err.Error() + ")"}
	}
	why := e.Err
	if inner := errors.Unwrap(why); inner != nil {
		why = inner
	}
	return &Error{Setting: "TLS_KEY_FILE", Value: t.KeyFile, Expected: "the private key of the certificate in TLS_CERT_FILE=" + strconv.Quote(t.CertFile) + " (" + why.Error() + ")"}
}
