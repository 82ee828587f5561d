package tlsfile

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/tlsfile/tlsfiletest"
)

// files writes a pair into a new directory and returns its paths.
func files(t *testing.T, l tlsfiletest.Leaf) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write(t, certFile, l.CertPEM)
	write(t, keyFile, l.KeyPEM)
	return certFile, keyFile
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// served is the certificate a new handshake gets.
func served(t *testing.T, p *Pair) []byte {
	t.Helper()
	c, err := p.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || c == nil {
		t.Fatalf("GetCertificate: %v, %v", c, err)
	}
	return c.Certificate[0]
}

func TestLoadServesThePair(t *testing.T) {
	ca := tlsfiletest.NewCA(t, "test CA")
	l := ca.Issue(t, "edge-1")
	p, err := Load(files(t, l))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served(t, p), l.Cert.Raw) {
		t.Fatal("GetCertificate does not return the loaded leaf")
	}
	if p.Leaf().Subject.CommonName != "edge-1" {
		t.Fatalf("Leaf is %q, want edge-1", p.Leaf().Subject.CommonName)
	}
}

func TestLoadNamesTheFileAtFault(t *testing.T) {
	ca := tlsfiletest.NewCA(t, "test CA")
	a, b := ca.Issue(t, "a"), ca.Issue(t, "b")
	dir := t.TempDir()
	path := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if content != nil {
			write(t, p, content)
		}
		return p
	}
	unreadable := path("unreadable.pem", a.CertPEM)
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name              string
		certFile, keyFile string
		part              Part
		want              string
	}{
		{"missing cert", path("none.crt", nil), path("a.key", a.KeyPEM), CertFile, "no such file"},
		{"missing key", path("a.crt", a.CertPEM), path("none.key", nil), KeyFile, "no such file"},
		{"empty cert", path("empty.crt", []byte{}), path("a.key", a.KeyPEM), CertFile, "no PEM CERTIFICATE block"},
		{"key in cert file", path("a.key", a.KeyPEM), path("a.key", a.KeyPEM), CertFile, "no PEM CERTIFICATE block"},
		{"cert in key file", path("a.crt", a.CertPEM), path("a.crt", a.CertPEM), KeyFile, "no PEM PRIVATE KEY block"},
		{"garbage certificate", path("bad.crt", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")), path("a.key", a.KeyPEM), CertFile, "its first certificate"},
		{"garbage key", path("a.crt", a.CertPEM), path("bad.key", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")), KeyFile, "is not a PKCS #8"},
		{"another cert's key", path("a.crt", a.CertPEM), path("b.key", b.KeyPEM), Both, "the key is not the certificate's"},
		{"directory", dir, path("a.key", a.KeyPEM), CertFile, "not a regular file"},
		{"FIFO", fifo(t, dir), path("a.key", a.KeyPEM), CertFile, "not a regular file"},
		{"too large", path("big.crt", bytes.Repeat([]byte("A"), maxFileSize+1)), path("a.key", a.KeyPEM), CertFile, "larger than"},
	}
	if os.Geteuid() != 0 { // root reads any file
		cases = append(cases, struct {
			name              string
			certFile, keyFile string
			part              Part
			want              string
		}{"unreadable cert", unreadable, path("a.key", a.KeyPEM), CertFile, "permission denied"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Load(c.certFile, c.keyFile)
			var e *Error
			if p != nil || !errors.As(err, &e) {
				t.Fatalf("Load = %v, %v; want an *Error", p, err)
			}
			if e.Part != c.part || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q (part %d), want part %d and %q", err, e.Part, c.part, c.want)
			}
			wantPath := c.certFile
			if c.part != CertFile {
				wantPath = c.keyFile
			}
			if e.Path != wantPath || !strings.HasPrefix(err.Error(), wantPath+": ") {
				t.Fatalf("error %q names %q, want %q", err, e.Path, wantPath)
			}
		})
	}
}

func TestReloadSwapsInANewPair(t *testing.T) {
	ca := tlsfiletest.NewCA(t, "test CA")
	old, renewed := ca.Issue(t, "old"), ca.Issue(t, "renewed")
	certFile, keyFile := files(t, old)
	p, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := p.Reload(); res != Unchanged || err != nil {
		t.Fatalf("Reload of unchanged files = %v, %v", res, err)
	}
	// Rewriting the same bytes (a touch, a sync that rewrites) is no reload.
	write(t, certFile, old.CertPEM)
	if res, err := p.Reload(); res != Unchanged || err != nil {
		t.Fatalf("Reload of rewritten identical files = %v, %v", res, err)
	}
	write(t, certFile, renewed.CertPEM)
	write(t, keyFile, renewed.KeyPEM)
	if res, err := p.Reload(); res != Reloaded || err != nil {
		t.Fatalf("Reload of a renewed pair = %v, %v", res, err)
	}
	if !bytes.Equal(served(t, p), renewed.Cert.Raw) {
		t.Fatal("the renewed certificate is not served")
	}
}

// A renewal that keeps the modification times (cp -p, tar) is still seen.
func TestReloadSeesAChangeThatKeepsTheModTime(t *testing.T) {
	ca := tlsfiletest.NewCA(t, "test CA")
	old, renewed := ca.Issue(t, "old"), ca.Issue(t, "renewed")
	certFile, keyFile := files(t, old)
	p, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	then := time.Now().Add(-time.Hour)
	for path, b := range map[string][]byte{certFile: renewed.CertPEM, keyFile: renewed.KeyPEM} {
		write(t, path, b)
		if err := os.Chtimes(path, then, then); err != nil {
			t.Fatal(err)
		}
	}
	if res, _ := p.Reload(); res != Reloaded || !bytes.Equal(served(t, p), renewed.Cert.Raw) {
		t.Fatalf("Reload = %v; the renewed certificate is not served", res)
	}
}

// The two files of a renewal are written one after the other: between
// them the pair does not match for a moment. That is Pending, not an error
// to report, and the old pair is served until the new one is complete.
func TestReloadWaitsForBothFiles(t *testing.T) {
	ca := tlsfiletest.NewCA(t, "test CA")
	old, renewed := ca.Issue(t, "old"), ca.Issue(t, "renewed")
	certFile, keyFile := files(t, old)
	p, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	write(t, certFile, renewed.CertPEM)
	res, err := p.Reload()
	var e *Error
	if res != Pending || !errors.As(err, &e) || e.Part != Both {
		t.Fatalf("Reload halfway = %v, %v; want Pending with a mismatch", res, err)
	}
	if !bytes.Equal(served(t, p), old.Cert.Raw) {
		t.Fatal("halfway through, the old certificate is not served")
	}
	write(t, keyFile, renewed.KeyPEM)
	if res, err := p.Reload(); res != Reloaded || err != nil {
		t.Fatalf("Reload once complete = %v, %v", res, err)
	}
}

// Unusable contents that stay are Refused once, then Unchanged: one error
// line, and the old pair served throughout.
func TestReloadRefusesABrokenPairOnce(t *testing.T) {
	ca := tlsfiletest.NewCA(t, "test CA")
	old, other := ca.Issue(t, "old"), ca.Issue(t, "other")
	for _, c := range []struct {
		name    string
		breakIt func(certFile, keyFile string)
	}{
		{"mismatched", func(certFile, _ string) { write(t, certFile, other.CertPEM) }},
		{"half-written", func(certFile, _ string) { write(t, certFile, old.CertPEM[:len(old.CertPEM)/3]) }},
		{"key removed", func(_, keyFile string) { os.Remove(keyFile) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			certFile, keyFile := files(t, old)
			p, err := Load(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			c.breakIt(certFile, keyFile)
			var got []Result
			for range 4 {
				res, err := p.Reload()
				if err == nil {
					t.Fatalf("Reload of a broken pair gave no error (%v)", res)
				}
				got = append(got, res)
			}
			if want := []Result{Pending, Refused, Unchanged, Unchanged}; !equal(got, want) {
				t.Fatalf("Reloads = %v, want %v", got, want)
			}
			if !bytes.Equal(served(t, p), old.Cert.Raw) {
				t.Fatal("the old certificate is not served after a broken reload")
			}
			// Repaired: served again, and a later break is reported anew.
			write(t, certFile, other.CertPEM)
			write(t, keyFile, other.KeyPEM)
			if res, err := p.Reload(); res != Reloaded || err != nil {
				t.Fatalf("Reload after the repair = %v, %v", res, err)
			}
			c.breakIt(certFile, keyFile)
			write(t, certFile, old.CertPEM) // broken against other's key, if not already
			p.Reload()
			if res, _ := p.Reload(); res != Refused {
				t.Fatalf("a second break: Reload = %v, want Refused", res)
			}
		})
	}
}

func equal(a, b []Result) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// logs collects a logger's lines.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logs) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

func TestWatchReloadsAndLogsOnce(t *testing.T) {
	ca := tlsfiletest.NewCA(t, "test CA")
	old, renewed, other := ca.Issue(t, "old"), ca.Issue(t, "renewed"), ca.Issue(t, "other")
	certFile, keyFile := files(t, old)
	p, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var out logs
	log := slog.New(slog.NewTextHandler(&out, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var mu sync.Mutex
	var results []Result
	go func() {
		defer close(done)
		p.Watch(ctx, 10*time.Millisecond, log, func(r Result) { mu.Lock(); results = append(results, r); mu.Unlock() })
	}()
	defer func() { cancel(); <-done }()

	write(t, certFile, renewed.CertPEM)
	write(t, keyFile, renewed.KeyPEM)
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !bytes.Equal(served(t, p), renewed.Cert.Raw) {
			return errors.New("renewed certificate not served yet")
		}
		return nil
	})
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if out.count("TLS certificate reloaded") != 1 || out.count("subject=renewed") != 1 {
			return errors.New("no reload line naming the new certificate yet:\n" + out.buf.String())
		}
		return nil
	})
	write(t, keyFile, other.KeyPEM)
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		if out.count("cannot be used; keeping the previous certificate") != 1 {
			return errors.New("no error line for the mismatched key yet")
		}
		return nil
	})
	// Many polls later, still one error line and the renewed pair served.
	var got []Result
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		got = append([]Result(nil), results...)
		mu.Unlock()
		if len(got) < 2 {
			return fmt.Errorf("Watch reported %v so far", got)
		}
		return nil
	})
	if want := []Result{Reloaded, Refused}; !equal(got, want) {
		t.Fatalf("Watch reported %v, want %v", got, want)
	}
	// More polls of the same broken pair report nothing new.
	for range 10 {
		if res, err := p.Reload(); res != Unchanged || err == nil {
			t.Fatalf("Reload of the pair already refused = %v, %v; want Unchanged with its error", res, err)
		}
	}
	if c := out.count("cannot be used"); c != 1 {
		t.Fatalf("%d error lines for one broken pair, want 1", c)
	}
	if !bytes.Equal(served(t, p), renewed.Cert.Raw) {
		t.Fatal("the broken key replaced the renewed certificate")
	}
}

// Kubernetes mounts a Secret as links into a directory that it swaps
// whole (..data -> ..2026_...): the files' own paths never change.
func TestReloadFollowsASwappedLink(t *testing.T) {
	ca := tlsfiletest.NewCA(t, "test CA")
	old, renewed := ca.Issue(t, "old"), ca.Issue(t, "renewed")
	dir := t.TempDir()
	version := func(name string, l tlsfiletest.Leaf) {
		v := filepath.Join(dir, name)
		if err := os.Mkdir(v, 0o700); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(v, "tls.crt"), l.CertPEM)
		write(t, filepath.Join(v, "tls.key"), l.KeyPEM)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", old)
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Load(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	version("..v2", renewed)
	if res, err := p.Reload(); res != Reloaded || err != nil || !bytes.Equal(served(t, p), renewed.Cert.Raw) {
		t.Fatalf("Reload after the swap = %v, %v; want the renewed certificate served", res, err)
	}
}

// fifo makes a named pipe that nothing writes to.
func fifo(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
