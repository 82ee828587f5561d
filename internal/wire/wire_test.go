package wire

import (
	"encoding/json"
	"testing"

	"github.com/rig-go/rig/internal/rig"
)

func TestJSON(t *testing.T) {
	cases := []struct {
		ev   *rig.Event
		want string
	}{
		{&rig.Event{Kind: rig.KindMessage, ID: "01K", User: "alice", Data: []byte(`{"user":"alice","text":"Hi"}`)},
			`{"event":"message","id":"01K","data":{"user":"alice","text":"Hi"}}`},
		{&rig.Event{Kind: rig.KindConnected, Data: []byte(`{"users":["alice"]}`)},
			`{"event":"connected","data":{"users":["alice"]}}`},
		{&rig.Event{Kind: rig.KindMessage, ID: "live-1", Data: []byte("plain text\nwith \"quotes\"")},
			`{"event":"message","id":"live-1","data":"plain text\nwith \"quotes\""}`},
		{&rig.Event{Kind: rig.KindMessage, ID: "x", Data: nil},
			`{"event":"message","id":"x","data":""}`},
		{&rig.Event{Kind: rig.KindMessage, ID: "n", Data: []byte(`42`)},
			`{"event":"message","id":"n","data":42}`},
		{&rig.Event{Kind: rig.KindMessage, ID: "broken", Data: []byte(`{"a":`)},
			`{"event":"message","id":"broken","data":"{\"a\":"}`},
		{&rig.Event{Kind: rig.KindGap, ID: "01OLD"},
			`{"event":"gap","data":"01OLD"}`},
		{&rig.Event{Kind: rig.KindSessionKilled, Data: []byte(`{"reason":"session blacklisted"}`)},
			`{"event":"session_killed","data":{"reason":"session blacklisted"}}`},
		{&rig.Event{Kind: rig.KindReconnect, Data: []byte(`{"reason":"edge restarting"}`)},
			`{"event":"reconnect","data":{"reason":"edge restarting"}}`},
	}
	for _, c := range cases {
		got := string(JSON(c.ev))
		if got != c.want {
			t.Errorf("JSON(%v %q) =\n %s\nwant\n %s", c.ev.Kind, c.ev.Data, got, c.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("JSON(%v) is not valid JSON: %s", c.ev.Kind, got)
		}
	}
}

func TestValueBinary(t *testing.T) {
	// Bytes that are neither JSON nor UTF-8 still give a valid JSON string.
	v := Value([]byte{0xff, 0x00, 'a'})
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		t.Fatalf("Value of binary data %q: %v", v, err)
	}
	if s != "\ufffd\x00a" {
		t.Fatalf("Value of binary data decodes to %q", s)
	}
}

func TestEncodedIsCached(t *testing.T) {
	ev := &rig.Event{Kind: rig.KindMessage, ID: "1", Data: []byte(`{}`)}
	a, b := Encoded(ev), Encoded(ev)
	if &a[0] != &b[0] {
		t.Fatal("Encoded encoded the event twice")
	}
}
