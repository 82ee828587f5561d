package main

import "testing"

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
