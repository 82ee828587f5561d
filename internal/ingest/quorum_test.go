package ingest

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestHasQuorum(t *testing.T) {
	peer := func(name string, active time.Duration, offline bool) *jetstream.PeerInfo {
		return &jetstream.PeerInfo{Name: name, Current: true, Active: active, Offline: offline}
	}
	info := func(replicas int, leader string, peers ...*jetstream.PeerInfo) *jetstream.StreamInfo {
		i := &jetstream.StreamInfo{Config: jetstream.StreamConfig{Name: "RIG_HISTORY", Replicas: replicas}}
		if leader != "" || peers != nil {
			i.Cluster = &jetstream.ClusterInfo{Leader: leader, Replicas: peers}
		}
		return i
	}
	for _, c := range []struct {
		name string
		info *jetstream.StreamInfo
		ok   bool
	}{
		{"single node", info(1, ""), true},
		{"R3, all heard from", info(3, "n1", peer("n2", 3*time.Millisecond, false), peer("n3", time.Second, false)), true},
		{"R3, one replica gone", info(3, "n1", peer("n2", 3*time.Millisecond, false), peer("n3", time.Minute, false)), true},
		{"R3, one offline", info(3, "n1", peer("n2", 3*time.Millisecond, false), peer("n3", 0, true)), true},
		// A leader that lost both replicas still calls them current.
		{"R3, leader alone", info(3, "n1", peer("n2", 6*time.Second, false), peer("n3", 7*time.Second, false)), false},
		{"R3, no leader", info(3, "", peer("n1", 0, false), peer("n2", 0, false), peer("n3", 0, false)), false},
		{"R3, no cluster info", info(3, ""), false},
		{"R5, two of five", info(5, "n1", peer("n2", 0, false), peer("n3", time.Minute, false), peer("n4", 0, true), peer("n5", time.Minute, false)), false},
		{"R5, three of five", info(5, "n1", peer("n2", 0, false), peer("n3", 0, false), peer("n4", 0, true), peer("n5", time.Minute, false)), true},
	} {
		err := hasQuorum(c.info)
		if (err == nil) != c.ok {
			t.Errorf("%s: hasQuorum = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}
