// Command gen writes what nats/secured/cluster.conf and the binaries need
// for local use: a CA, a server certificate (for clients and routes) and a
// client certificate signed by it, and one NKey user per RIG-Go role (edge,
// ingest, publisher). `go tool task certs` runs it; it is Go so that a
// machine with only Go needs no openssl.
//
//	go run ./nats/gen -dir .data/nats-secure [-hosts nats-1,nats-2] [-force]
//
// It writes nothing when every file is there already (unless -force), so
// a running cluster keeps its identities across restarts.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

// Roles are the NATS users of nats/secured/permissions.conf.
var roles = []string{"edge", "ingest", "publisher"}

// files are what gen writes into -dir; seeds and keys are readable by
// their owner only.
var files = []string{
	"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem",
	"edge.nk", "ingest.nk", "publisher.nk", "nkeys.env",
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("gen", flag.ContinueOnError)
	dir := fl.String("dir", ".data/nats-secure", "directory to write into")
	hosts := fl.String("hosts", "", "comma-separated extra names or IPs of the server certificate (besides localhost, 127.0.0.1, ::1)")
	force := fl.Bool("force", false, "write new files even when they exist")
	validity := fl.Duration("validity", 825*24*time.Hour, "how long the certificates are valid")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if !*force && complete(*dir) {
		fmt.Printf("NATS certificates and NKeys already in %s (-force writes new ones)\n", *dir)
		return nil
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	names := []string{"localhost", "127.0.0.1", "::1"}
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			names = append(names, h)
		}
	}
	if err := writeCerts(*dir, names, *validity); err != nil {
		return err
	}
	if err := writeNKeys(*dir); err != nil {
		return err
	}
	fmt.Printf("NATS CA, server and client certificates and NKeys for %s written to %s\n", strings.Join(roles, ", "), *dir)
	return nil
}

func complete(dir string) bool {
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); errors.Is(err, fs.ErrNotExist) {
			return false
		}
	}
	return true
}

func writeCerts(dir string, names []string, validity time.Duration) error {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ca := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "RIG-Go local NATS CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := sign(ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePEM(dir, "ca.pem", "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	if err := writeKey(dir, "ca-key.pem", caKey); err != nil {
		return err
	}
	// The server's certificate also authenticates a node to the others
	// (cluster routes with verify: true), hence client use too.
	server := leaf("RIG-Go NATS server", now, validity, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			server.IPAddresses = append(server.IPAddresses, ip)
		} else {
			server.DNSNames = append(server.DNSNames, n)
		}
	}
	if err := writeLeaf(dir, "server", server, caCert, caKey); err != nil {
		return err
	}
	return writeLeaf(dir, "client", leaf("RIG-Go NATS client", now, validity, x509.ExtKeyUsageClientAuth), caCert, caKey)
}

func leaf(cn string, now time.Time, validity time.Duration, usage ...x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: usage,
	}
}

func writeLeaf(dir, name string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := sign(tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writePEM(dir, name+".pem", "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writeKey(dir, name+"-key.pem", key)
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, key *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
}

func writeKey(dir, name string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(dir, name, "PRIVATE KEY", der, 0o600)
}

func writePEM(dir, name, kind string, der []byte, mode os.FileMode) error {
	return writeFile(dir, name, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}

// writeNKeys writes each role's seed (<role>.nk, what NATS_NKEY_SEED_FILE
// names) and nkeys.env, the public keys the server configuration reads
// from its environment (NATS_EDGE_NKEY=U...).
func writeNKeys(dir string) error {
	var env strings.Builder
	for _, role := range roles {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return err
		}
		seed, err := kp.Seed()
		if err != nil {
			return err
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return err
		}
		if err := writeFile(dir, role+".nk", append(seed, '\n'), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(&env, "NATS_%s_NKEY=%s\n", strings.ToUpper(role), pub)
	}
	return writeFile(dir, "nkeys.env", []byte(env.String()), 0o644)
}

// writeFile replaces a file whole (a reader never sees half of one).
func writeFile(dir, name string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}
