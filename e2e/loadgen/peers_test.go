package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Lines as Centrifugo v6.9.1's /connection/uni_sse and RIG's /socket/sse
// write them.
func TestSSEDialects(t *testing.T) {
	for _, c := range []struct {
		dialect string
		lines   []string
		want    []sseLine
	}{
		{"centrifugo-sse", []string{
			"\r\n",
			`data: {"connect":{"client":"8e2c6f8e","version":"0.0.0 OSS","subs":{"#u1":{}},"expires":true,"ttl":3600,"ping":2}}` + "\n",
			"\n",
			"data: {}\n", // its ping
			"\n",
			`data: {"channel":"#u1","pub":{"data":{"ts":123,"user":"u1"}}}` + "\n",
		}, []sseLine{sseOther, sseConnected, sseOther, sseOther, sseOther, sseMessage}},
		{"sse", []string{
			"id: 42\n", "event: connected\n", "data: {}\n", "\n",
			"event: heartbeat\n", "data: {}\n", "\n",
			"id: 01JDX5\n", "event: message\n", `data: {"ts":123}` + "\n", "\n",
			"data: {}\n", // outside a message event
		}, []sseLine{sseOther, sseConnected, sseOther, sseOther, sseOther, sseOther, sseOther, sseOther, sseOther, sseMessage, sseOther, sseOther}},
	} {
		d := dialects[c.dialect]
		message := false
		for i, line := range c.lines {
			if got := d.event([]byte(line), &message); got != c.want[i] {
				t.Errorf("%s: line %q: %d, want %d", c.dialect, line, got, c.want[i])
			}
		}
	}
	if ts, ok := sentAt([]byte(`data: {"channel":"#u1","pub":{"data":{"ts":1733130000000000000,"user":"u1"}}}`)); !ok || ts != 1733130000000000000 {
		t.Errorf("sentAt of a Centrifugo push: %d, %v", ts, ok)
	}
}

func TestSelected(t *testing.T) {
	for _, c := range []struct {
		only, group string
		want        bool
	}{
		{"", "peers/rig", true},
		{"peers", "peers/centrifugo-redis", true},
		{"peers/centrifugo", "peers/centrifugo", true},
		{"peers/centrifugo", "peers/centrifugo-redis", false},
		{"throughput,scale", "peers/rig", false},
		{"throughput,scale", "scale", true},
	} {
		if got := selected(c.only, c.group); got != c.want {
			t.Errorf("selected(%q, %q) = %v", c.only, c.group, got)
		}
	}
}

// TestPeerGroups: RIG-Go's two columns run beside a peer, in the smoke
// run, or when named; without a peer each is skipped with a note.
func TestPeerGroups(t *testing.T) {
	keys := func(systems []peerSystem) string {
		var out []string
		for _, s := range systems {
			out = append(out, s.key)
		}
		return strings.Join(out, ",")
	}
	dir := t.TempDir() // no Centrifugo in it
	newBench := func() *bench { return &bench{bin: dir, log: io.Discard, peerCols: map[string]string{}} }

	b := newBench()
	if got := keys(b.peerGroups("", false, Machine{})); got != "" {
		t.Errorf("no peer installed: %q run", got)
	}
	notes := strings.Join(b.notes, "\n")
	for _, want := range []string{"peers/rig-single: no peer to compare with", "peers/rig: no peer to compare with", "peers/centrifugo: "} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if got := keys(newBench().peerGroups("", true, Machine{})); got != "rig-single,rig" {
		t.Errorf("smoke: %q", got)
	}
	if got := keys(newBench().peerGroups("peers/rig-single", false, Machine{})); got != "rig-single" {
		t.Errorf("-only peers/rig-single: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "centrifugo"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := keys(newBench().peerGroups("peers/rig,peers/centrifugo", false, Machine{})); got != "rig,centrifugo" {
		t.Errorf("-only peers/rig,peers/centrifugo: %q", got)
	}
	if got := keys(newBench().peerGroups("peers", false, Machine{})); !strings.HasPrefix(got, "rig-single,rig,centrifugo") {
		t.Errorf("-only peers with Centrifugo: %q", got)
	}
}
