package phoenix

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/rig-go/rig/internal/rig"
)

func TestDecodeV2(t *testing.T) {
	// What phoenix.js 1.8 sends: a join, a heartbeat, a leave.
	cases := []struct {
		in   string
		want Frame
	}{
		{`["3","3","user:alice","phx_join",{"last_event_id":"01K"}]`,
			Frame{JoinRef: `"3"`, Ref: `"3"`, Topic: "user:alice", Event: "phx_join", Payload: json.RawMessage(`{"last_event_id":"01K"}`)}},
		{`[null,"4","phoenix","heartbeat",{}]`,
			Frame{Ref: `"4"`, Topic: "phoenix", Event: "heartbeat", Payload: json.RawMessage(`{}`)}},
		{` [ 7 , -1.5 , "user:bob" , "phx_leave" , null ] `,
			Frame{JoinRef: `7`, Ref: `-1.5`, Topic: "user:bob", Event: "phx_leave", Payload: json.RawMessage(`null`)}},
	}
	for _, c := range cases {
		got, err := Decode(V2, []byte(c.in))
		if err != nil {
			t.Fatalf("Decode(%s): %v", c.in, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Decode(%s) =\n %+v\nwant\n %+v", c.in, got, c.want)
		}
	}
}

func TestDecodeV1(t *testing.T) {
	got, err := Decode(V1, []byte(`{"topic":"user:alice","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Frame{JoinRef: `"1"`, Ref: `"1"`, Topic: "user:alice", Event: "phx_join", Payload: json.RawMessage(`{}`)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// Phoenix 1.0 clients send no join_ref.
	got, err = Decode(V1, []byte(`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":2}`))
	if err != nil || got.JoinRef != "" || got.Ref != "2" {
		t.Fatalf("frame without join_ref: %+v, %v", got, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, c := range []struct {
		v  Version
		in string
	}{
		{V2, ``},
		{V2, `not json`},
		{V2, `{"topic":"x"}`},
		{V2, `["1","1","user:alice","phx_join"]`},
		{V2, `["1","1","user:alice","phx_join",{},6]`},
		{V2, `[true,"1","user:alice","phx_join",{}]`},
		{V2, `["1",{},"user:alice","phx_join",{}]`},
		{V2, `["1","1",5,"phx_join",{}]`},
		{V2, `["1","1","user:alice",null,{}]`},
		{V2, `["1","1","user:alice","phx_join",{}`},
		{V1, `["1","1","user:alice","phx_join",{}]`},
		{V1, `null`},
		{V1, `{"event":"phx_join","payload":{},"ref":"1"}`},
		{V1, `{"topic":"user:a","payload":{},"ref":"1"}`},
		{V1, `{"topic":"user:a","event":"x","ref":[1]}`},
	} {
		if f, err := Decode(c.v, []byte(c.in)); !errors.Is(err, ErrInvalidFrame) {
			t.Errorf("Decode(v%d, %q) = %+v, %v; want ErrInvalidFrame", c.v, c.in, f, err)
		}
	}
}

func TestReply(t *testing.T) {
	req := Frame{JoinRef: `"3"`, Ref: `"3"`, Topic: "user:alice", Event: EventJoin}
	if got := string(Reply(V2, req, "ok", nil)); got != `["3","3","user:alice","phx_reply",{"status":"ok","response":{}}]` {
		t.Errorf("v2 ok reply: %s", got)
	}
	if got := string(ErrorReply(V2, req, "unauthorized")); got != `["3","3","user:alice","phx_reply",{"status":"error","response":{"reason":"unauthorized"}}]` {
		t.Errorf("v2 error reply: %s", got)
	}
	hb := Frame{Ref: `"9"`, Topic: TopicPhoenix, Event: EventHeartbeat}
	if got := string(Reply(V1, hb, "ok", nil)); got != `{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"9","join_ref":null}` {
		t.Errorf("v1 heartbeat reply: %s", got)
	}
}

func TestPush(t *testing.T) {
	ev := &rig.Event{Kind: rig.KindMessage, ID: "01K", User: "alice", Data: []byte(`{"text":"Hi"}`)}
	if got := string(Encoded(V2, ev)); got != `[null,"01K","user:alice","message",{"text":"Hi"}]` {
		t.Errorf("v2 push: %s", got)
	}
	if got := string(Encoded(V1, ev)); got != `{"topic":"user:alice","event":"message","payload":{"text":"Hi"},"ref":"01K","join_ref":null}` {
		t.Errorf("v1 push: %s", got)
	}
	// What phoenix.js's serializer does with it.
	var parts []any
	if err := json.Unmarshal(Encoded(V2, ev), &parts); err != nil || len(parts) != 5 || parts[0] != nil {
		t.Fatalf("v2 push does not decode as phoenix.js decodes: %v %v", parts, err)
	}
	killed := &rig.Event{Kind: rig.KindSessionKilled, User: "bob@example.com", Data: []byte(`{"reason":"session blacklisted"}`)}
	if got := string(Push(V2, killed)); got != `[null,null,"user:bob@example.com","session_killed",{"reason":"session blacklisted"}]` {
		t.Errorf("session_killed push: %s", got)
	}
}

func TestParseVersion(t *testing.T) {
	if v, err := ParseVersion("2.0.0"); err != nil || v != V2 {
		t.Errorf("2.0.0: %v %v", v, err)
	}
	if v, err := ParseVersion("1.0.0"); err != nil || v != V1 {
		t.Errorf("1.0.0: %v %v", v, err)
	}
	for _, bad := range []string{"", "2", "3.0.0", "2.0.0 "} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}

func TestUser(t *testing.T) {
	if u, ok := User("user:alice@example.com"); !ok || u != "alice@example.com" {
		t.Errorf("User: %q %v", u, ok)
	}
	for _, bad := range []string{"user", "users:alice", "room:lobby", ""} {
		if _, ok := User(bad); ok {
			t.Errorf("User(%q) accepted", bad)
		}
	}
}

// FuzzDecode proves that no frame a client sends makes the parser panic,
// and that whatever it accepts encodes back to a frame it reads the same
// way, so replies echo refs and topics faithfully.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`["3","3","user:alice","phx_join",{"last_event_id":"01K"}]`,
		`[null,"4","phoenix","heartbeat",{}]`,
		`{"topic":"user:alice","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}`,
		`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":2}`,
		`[1e400,"1","\ud800","\u0000",[[[[]]]]]`,
		`{"topic":"a","TOPIC":"b","event":"e","ref":null}`,
		`["1","1","user:\xff","phx_join",{}]`,
		``, `[`, `null`, `[]`, `{}`,
	} {
		f.Add(true, []byte(s))
		f.Add(false, []byte(s))
	}
	f.Fuzz(func(t *testing.T, v1 bool, data []byte) {
		v := V2
		if v1 {
			v = V1
		}
		fr, err := Decode(v, data)
		if err != nil {
			if !errors.Is(err, ErrInvalidFrame) {
				t.Fatalf("Decode error %v does not wrap ErrInvalidFrame", err)
			}
			return
		}
		out := Encode(v, fr)
		if !json.Valid(out) {
			t.Fatalf("Encode(%+v) is not JSON: %s", fr, out)
		}
		back, err := Decode(v, out)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		if back.Topic != fr.Topic || back.Event != fr.Event || back.Ref != fr.Ref || back.JoinRef != fr.JoinRef || string(back.Payload) != string(fr.Payload) {
			t.Fatalf("round trip changed the frame:\n %+v\n %+v", fr, back)
		}
		reply := ErrorReply(v, fr, "unmatched topic")
		if r, err := Decode(v, reply); err != nil || r.Topic != fr.Topic || r.Ref != fr.Ref {
			t.Fatalf("reply %s to %+v does not read back: %+v %v", reply, fr, r, err)
		}
	})
}
