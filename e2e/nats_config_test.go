package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/check"
)

// TestNATSConfigs: nats-server accepts the checked-in configurations with
// the environment they document, and refuses them, naming the variable,
// without it.
func TestNATSConfigs(t *testing.T) {
	env := map[string][]string{
		"single.conf": {"NATS_LISTEN=127.0.0.1:4222", "NATS_MONITOR_LISTEN=127.0.0.1:8222", `NATS_STORE_DIR="` + t.TempDir() + `"`},
		"cluster.conf": {"NATS_SERVER_NAME=nats-1", "NATS_LISTEN=127.0.0.1:4222", "NATS_MONITOR_LISTEN=127.0.0.1:8222",
			"NATS_CLUSTER_LISTEN=127.0.0.1:6222", "NATS_ROUTES=[nats://127.0.0.1:6222, nats://127.0.0.1:6223, nats://127.0.0.1:6224]",
			`NATS_STORE_DIR="` + t.TempDir() + `"`},
	}
	for name, vars := range env {
		conf, _ := filepath.Abs(filepath.Join("..", "nats", name))
		cmd := exec.Command(bin.natsServer, "-c", conf, "-t")
		cmd.Env = vars
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "is valid") {
			t.Errorf("nats-server -t -c nats/%s: %v\n%s", name, err, out)
		}
		cmd = exec.Command(bin.natsServer, "-c", conf, "-t")
		cmd.Env = vars[1:]
		missing, _, _ := strings.Cut(vars[0], "=")
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), missing) {
			t.Errorf("nats-server -t -c nats/%s without %s: %v\n%s", name, missing, err, out)
		}
	}
}

// TestNATSSingleConfig: an edge and ingest on a nats-server run with
// nats/single.conf deliver messages, with a history stream of one replica.
func TestNATSSingleConfig(t *testing.T) {
	port, mon := FreePort(t), FreePort(t)
	conf, _ := filepath.Abs("../nats/single.conf")
	n := StartProc(t, "nats-server", bin.natsServer, []string{"-c", conf}, map[string]string{
		"NATS_LISTEN":         fmt.Sprintf("127.0.0.1:%d", port),
		"NATS_MONITOR_LISTEN": fmt.Sprintf("127.0.0.1:%d", mon),
		"NATS_STORE_DIR":      strconv.Quote(t.TempDir()),
	})
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !n.Running() {
			t.Fatalf("nats-server exited:\n%s", n.Logs())
		}
		if !dialOK(fmt.Sprintf("127.0.0.1:%d", mon)) {
			return fmt.Errorf("nats-server did not listen")
		}
		return nil
	})
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	edge := StartEdge(t, EdgeEnv(FreePort(t), url))
	ingest := StartIngest(t, IngestEnv(FreePort(t), url))
	s := MustSSE(t, sseURL(edge.URL, Token(t, "alice")))
	id := Post(t, ingest.URL, map[string]any{"user": "alice"})
	if ev := s.NextMessage(t, 5*time.Second); ev.ID != id {
		t.Fatalf("got %s, want %s", ev.ID, id)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(context.Background(), "RIG_HISTORY")
	if err != nil {
		t.Fatal(err)
	}
	if r := stream.CachedInfo().Config.Replicas; r != 1 {
		t.Fatalf("history stream replicas %d on a single node, want 1", r)
	}
	if r := Do(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/healthz", mon), "", nil); r.Status != 200 {
		t.Fatalf("nats-server /healthz: %d %s", r.Status, r.Body)
	}
}
