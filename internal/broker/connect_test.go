package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/config"
)

// securedServer runs an in-process NATS server with JetStream and two
// users: admin may do anything, reader may not create or update streams.
func securedServer(t *testing.T) string {
	t.Helper()
	deny := []string{"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>"}
	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Users: []*server.User{
			{Username: "admin", Password: "admin-password"},
			{Username: "reader", Password: "reader-password", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: deny},
			}},
		},
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns.ClientURL()
}

func userCfg(url, user, password string) config.NATS {
	return config.NATS{URLs: []string{url}, MaxAge: time.Minute, MaxPerUser: 10, Name: user,
		Auth: config.NATSAuth{User: user, Password: password}}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestOpenRefused: a wrong password, or none, is an error from Open, at
// once, naming the problem; the right one connects.
func TestOpenRefused(t *testing.T) {
	url := securedServer(t)
	for _, c := range []struct {
		cfg  config.NATS
		want string
	}{
		{userCfg(url, "reader", "wrong-password"), "NATS refused the credentials: authorization violation at " + url + "; authenticating with NATS_USER=reader"},
		{userCfg(url, "", ""), "no credentials were sent"},
	} {
		start := time.Now()
		b, err := Open(c.cfg, discard())
		if err == nil {
			b.Close()
			t.Fatalf("%+v: connected", c.cfg.Auth)
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "wrong-password") {
			t.Errorf("%+v: %v, want %q without the password", c.cfg.Auth, err, c.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("refusal took %s", d)
		}
	}
	b, err := Open(userCfg(url, "reader", "reader-password"), discard())
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// TestEnsureDenied: a user NATS does not allow to create the stream or a
// bucket learns so at once (not after AttemptTimeout), waits while they do
// not exist, and uses them as they are once another user made them.
func TestEnsureDenied(t *testing.T) {
	url := securedServer(t)
	reader, err := Open(userCfg(url, "reader", "reader-password"), discard())
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err = reader.EnsureStream(ctx)
	if err == nil || !strings.Contains(err.Error(), "does not exist yet") || !strings.Contains(err.Error(), "$JS.API.STREAM.UPDATE.RIG_HISTORY") {
		t.Fatalf("ensure without the stream, denied: %v", err)
	}
	if d := time.Since(start); d >= AttemptTimeout {
		t.Fatalf("the denial took %s, as long as a timeout", d)
	}

	admin, err := Open(userCfg(url, "admin", "admin-password"), discard())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	runBroker(t, admin)
	if err := admin.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := reader.EnsureStream(ctx); err != nil {
		t.Fatalf("ensure of an existing stream, denied: %v", err)
	}
	if reader.Replicas() != 1 {
		t.Fatalf("replicas %d", reader.Replicas())
	}
	runBroker(t, reader)
	if err := reader.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	cfg := jetstream.KeyValueConfig{Bucket: "T_DENIED", History: 1}
	if _, err := reader.EnsureKV(ctx, cfg); err == nil || !strings.Contains(err.Error(), "bucket T_DENIED does not exist yet") {
		t.Fatalf("ensure of a missing bucket, denied: %v", err)
	}
	kv, err := admin.EnsureKV(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	rkv, err := reader.EnsureKV(ctx, cfg)
	if err != nil {
		t.Fatalf("ensure of an existing bucket, denied: %v", err)
	}
	if e, err := rkv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("read through the looked-up bucket: %v %v", e, err)
	}
}

// FuzzDenied: whatever a server's permissions error says, the watch of a
// stream's API learns of a denial only for a subject of that API, named in
// the error.
func FuzzDenied(f *testing.F) {
	f.Add(`Permissions Violation for Publish to "$JS.API.STREAM.UPDATE.RIG_HISTORY"`)
	f.Add(`Permissions Violation for Publish to "$JS.API.STREAM.INFO.RIG_HISTORY"`)
	f.Add(`Permissions Violation for Subscription to "user.>"`)
	f.Add(`Permissions Violation for Publish to "$JS.API.STREAM.CREATE.KV_RIG_BLACKLIST" using queue "q"`)
	f.Add(`publish to ""`)
	match := func(subject string) bool {
		return strings.HasPrefix(subject, "$JS.API.STREAM.") && strings.HasSuffix(subject, ".RIG_HISTORY")
	}
	f.Fuzz(func(t *testing.T, text string) {
		var d denials
		ctx, stop := d.watch(context.Background(), match)
		defer stop()
		found := d.denied(fmt.Errorf("%w: %s", nats.ErrPermissionViolation, text))
		cause := deniedCause(ctx)
		if found != (cause != nil) {
			t.Fatalf("found %v, cause %v", found, cause)
		}
		if cause != nil && (!match(cause.Subject) || !strings.Contains(text, `"`+cause.Subject+`"`)) {
			t.Fatalf("denied %q from %q", cause.Subject, text)
		}
		// Another error, or none, is no denial.
		if d.denied(errors.New(text)) && !found {
			t.Fatalf("a plain error %q taken for a denial", text)
		}
	})
}

// TestOpenBeforeNATS: NATS not there at start is no refusal: Open returns,
// the broker is unready, and it becomes ready once NATS listens, with Run
// still running.
func TestOpenBeforeNATS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	b, err := Open(userCfg(url, "admin", "admin-password"), discard())
	if err != nil {
		t.Fatalf("Open without NATS: %v", err)
	}
	ran := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); <-ran }()
	go func() { ran <- b.Run(ctx) }()
	if b.Ready() == nil {
		t.Fatal("ready without NATS")
	}
	opts := &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Users: []*server.User{{Username: "admin", Password: "admin-password"}}}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer ns.Shutdown()
	wctx, wcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer wcancel()
	if err := b.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		t.Fatalf("Run returned while NATS is up: %v", err)
	default:
	}
}
