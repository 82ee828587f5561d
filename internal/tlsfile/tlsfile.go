// Package tlsfile serves a TLS certificate and key read from two PEM files,
// and reads them again when they change, so that a renewed certificate
// (cert-manager, certbot, a mounted Secret) is used without a restart.
package tlsfile

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Part names the file a pair's error is about.
type Part int

const (
	CertFile Part = iota // the certificate (chain) file
	KeyFile              // the private key file
	Both                 // each file is valid, but the key is not the certificate's
)

// Error is a pair of files that cannot be served, and which of them is at
// fault, so that the caller can name its setting.
type Error struct {
	Part Part
	Path string // the file at fault; for Both, the key file
	Err  error
}

func (e *Error) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// maxFileSize bounds what is read from either file: a certificate chain is
// a few KiB, and a path set to the wrong file (a log, a device) must not
// be read whole every few seconds.
const maxFileSize = 1 << 20

// Pair is a certificate and key from two files. Its zero value is not
// usable; use Load.
type Pair struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]

	mu      sync.Mutex // one Reload at a time
	loaded  [sha256.Size]byte
	pending [sha256.Size]byte // unusable contents last seen, not yet reported
	refused [sha256.Size]byte // unusable contents already reported
}

// Load reads the pair once; an error is an *Error.
func Load(certFile, keyFile string) (*Pair, error) {
	p := &Pair{certFile: certFile, keyFile: keyFile}
	certPEM, keyPEM, sum, err := p.read()
	if err != nil {
		return nil, err
	}
	c, err := p.parse(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	p.cur.Store(c)
	p.loaded = sum
	return p, nil
}

// GetCertificate is tls.Config's: every new handshake gets the pair last
// loaded; connections already made keep theirs.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.cur.Load(), nil
}

// Leaf returns the certificate in use.
func (p *Pair) Leaf() *x509.Certificate { return p.cur.Load().Leaf }

// Result is what a Reload found.
type Result int

const (
	// Unchanged: nothing new (the same contents, or unusable ones that
	// were already reported).
	Unchanged Result = iota
	// Reloaded: the files hold a new usable pair, served from now on.
	Reloaded
	// Pending: the files changed to something unusable, seen for the first
	// time. Renewals write two files one after the other, or write a file
	// in pieces, so a poll can fall between: the next Reload tells.
	Pending
	// Refused: the same unusable contents as at the last Reload; the pair
	// in use stays. Reported once for given contents.
	Refused
)

// Reload reads both files and serves their pair if it is new and usable.
// The error, with Pending and Refused, is why the new contents cannot be
// served.
//
// It compares contents (a hash of both files) rather than modification
// times: a copy that keeps times (cp -p, tar, Kubernetes' atomic
// writer swapping a directory link) changes a file without changing its
// mtime, and two small files cost nothing to read every few seconds.
func (p *Pair) Reload() (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	certPEM, keyPEM, sum, err := p.read()
	if err == nil {
		if sum == p.loaded {
			p.pending = [sha256.Size]byte{}
			return Unchanged, nil
		}
		var c *tls.Certificate
		if c, err = p.parse(certPEM, keyPEM); err == nil {
			p.cur.Store(c)
			p.loaded, p.pending, p.refused = sum, [sha256.Size]byte{}, [sha256.Size]byte{}
			return Reloaded, nil
		}
	} else {
		// A file that cannot be read: its error stands for its contents.
		sum = sha256.Sum256([]byte(err.Error()))
	}
	switch {
	case sum == p.refused:
		return Unchanged, err
	case sum == p.pending:
		p.refused = sum
		return Refused, err
	}
	p.pending = sum
	return Pending, err
}

// Watch calls Reload every interval until ctx ends, and logs what it found:
// each new certificate, and once each unusable contents that stayed for two
// polls (the one in use stays). report, when set, is told each Reloaded and
// Refused (for metrics).
func (p *Pair) Watch(ctx context.Context, every time.Duration, log *slog.Logger, report func(Result)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := p.Reload()
		switch res {
		case Reloaded:
			log.Info("TLS certificate reloaded; new connections get it", Attrs(p.Leaf())...)
		case Pending:
			log.Debug("TLS certificate files changed but are not a usable pair yet; checking again", "err", err)
		case Refused:
			log.Error("TLS certificate files changed but cannot be used; keeping the previous certificate",
				append([]any{"cert_file", p.certFile, "key_file", p.keyFile, "err", err}, Attrs(p.Leaf())...)...)
		}
		if report != nil && (res == Reloaded || res == Refused) {
			report(res)
		}
	}
}

// Attrs describe a certificate in a log line: whom it is for, its serial
// number, its expiry and its fingerprint, enough to tell which one an edge
// serves.
func Attrs(c *x509.Certificate) []any {
	if c == nil {
		return nil
	}
	names := c.DNSNames
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	fp := sha256.Sum256(c.Raw)
	return []any{"subject", c.Subject.CommonName, "names", strings.Join(names, ","), "serial", c.SerialNumber.Text(16),
		"not_after", c.NotAfter.UTC().Format(time.RFC3339), "sha256", hex.EncodeToString(fp[:])}
}

// read returns both files' contents and a hash of the two.
func (p *Pair) read() (certPEM, keyPEM []byte, sum [sha256.Size]byte, err error) {
	if certPEM, err = readFile(p.certFile); err != nil {
		return nil, nil, sum, &Error{Part: CertFile, Path: p.certFile, Err: err}
	}
	if keyPEM, err = readFile(p.keyFile); err != nil {
		return nil, nil, sum, &Error{Part: KeyFile, Path: p.keyFile, Err: err}
	}
	h := sha256.New()
	// The length first, so that no split of the same bytes hashes alike.
	fmt.Fprintf(h, "%d\n", len(certPEM))
	h.Write(certPEM)
	h.Write(keyPEM)
	copy(sum[:], h.Sum(nil))
	return certPEM, keyPEM, sum, nil
}

func readFile(path string) ([]byte, error) {
	// Opening a FIFO would block until something writes to it: the edge
	// would hang at start, or stop reloading.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes: not a PEM certificate or key", maxFileSize)
	}
	return b, nil
}

// parse checks each file on its own first, so that the error names the
// one at fault, then the two together.
func (p *Pair) parse(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	if err := checkCert(certPEM); err != nil {
		return nil, &Error{Part: CertFile, Path: p.certFile, Err: err}
	}
	if err := checkKey(keyPEM); err != nil {
		return nil, &Error{Part: KeyFile, Path: p.keyFile, Err: err}
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &Error{Part: Both, Path: p.keyFile, Err: fmt.Errorf("the key is not the certificate's in %s (%w)", p.certFile, err)}
	}
	return &c, nil
}

var (
	errNoCert = errors.New("no PEM CERTIFICATE block")
	errNoKey  = errors.New("no PEM PRIVATE KEY block")
)

// checkCert accepts a PEM file whose first CERTIFICATE block parses: the
// leaf, which must come first.
func checkCert(b []byte) error {
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return errNoCert
		}
		if blk.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
				return fmt.Errorf("its first certificate: %w", err)
			}
			return nil
		}
	}
}

// checkKey accepts a PEM file whose first private key parses in one of the
// encodings crypto/tls reads (PKCS #8, PKCS #1, SEC 1).
func checkKey(b []byte) error {
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return errNoKey
		}
		if blk.Type != "PRIVATE KEY" && !strings.HasSuffix(blk.Type, " PRIVATE KEY") {
			continue
		}
		if _, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
			return nil
		}
		return fmt.Errorf("its %s block is not a PKCS #8, PKCS #1 or EC private key", blk.Type)
	}
}
