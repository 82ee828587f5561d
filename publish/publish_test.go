package publish_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/rig"
	"github.com/rig-go/rig/publish"
)

// natsURL is the in-process NATS server with RIG-Go's history stream that
// the tests and the example publish to.
var natsURL string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rig-publish-")
	if err != nil {
		panic(err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoSigs: true})
	if err != nil {
		panic(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		panic("nats-server did not start")
	}
	natsURL = ns.ClientURL()
	code := func() int {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			panic(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The real stream, as edges and ingest ensure it.
		cfg := config.NATS{MaxAge: time.Minute, MaxPerUser: 1000, IdempotencyWindow: 30 * time.Second}
		if _, err := js.CreateStream(ctx, broker.StreamConfig(cfg, 1)); err != nil {
			panic(err)
		}
		return m.Run()
	}()
	ns.Shutdown()
	os.RemoveAll(dir)
	os.Exit(code)
}

func connect(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func TestStreamName(t *testing.T) {
	if publish.Stream != broker.StreamName || publish.HeaderMsgID != broker.HeaderMsgID {
		t.Fatalf("publish.Stream %q, HeaderMsgID %q; RIG-Go uses %q, %q", publish.Stream, publish.HeaderMsgID, broker.StreamName, broker.HeaderMsgID)
	}
}

// TestToUser: the message is stored on the user's one-token subject with
// a ULID id, and republished to where edges listen for that user.
func TestToUser(t *testing.T) {
	nc, js := connect(t)
	const user = "alice@example.com"
	live, err := nc.SubscribeSync(rig.LiveSubject(user))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := publish.ToUser(ctx, js, user, []byte(`{"text":"Hi ü"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ulid.ParseStrict(ack.ID); err != nil || ack.Sequence == 0 || ack.Duplicate {
		t.Fatalf("ack %+v", ack)
	}
	m, err := live.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(broker.HeaderSubject) != "user.alice%40example%2Ecom" || broker.EventIDOf(m.Header) != ack.ID ||
		m.Header.Get(broker.HeaderSequence) != fmt.Sprint(ack.Sequence) || string(m.Data) != `{"text":"Hi ü"}` {
		t.Fatalf("republished %v %q", m.Header, m.Data)
	}
}

// TestToUserWithID: a retry with the same id is acknowledged as a
// duplicate of the first and not stored again; another message with that
// id, for another user or with other data, is refused with ErrIDTaken
// instead of being dropped without a word.
func TestToUserWithID(t *testing.T) {
	_, js := connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	first, err := publish.ToUser(ctx, js, "bob", []byte("one"), publish.WithID("invoice-7"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := publish.ToUser(ctx, js, "bob", []byte("one"), publish.WithID("invoice-7"))
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != "invoice-7" || first.Duplicate || !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("first %+v, again %+v", first, again)
	}
	for _, c := range []struct{ user, data string }{{"dave", "one"}, {"bob", "two"}} {
		if _, err := publish.ToUser(ctx, js, c.user, []byte(c.data), publish.WithID("invoice-7")); !errors.Is(err, publish.ErrIDTaken) {
			t.Errorf("%s %q with bob's id: %v, want ErrIDTaken", c.user, c.data, err)
		}
	}
}

// TestRefused: what RIG-Go cannot deliver as sent is refused before
// anything is published.
func TestRefused(t *testing.T) {
	nc, js := connect(t)
	all, err := nc.SubscribeSync("user.>")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range []struct {
		name, user string
		data       []byte
		opts       []publish.Option
		want       error
	}{
		{"empty user", "", []byte("x"), nil, publish.ErrInvalidUser},
		{"long user", strings.Repeat("u", 257), []byte("x"), nil, publish.ErrInvalidUser},
		{"invalid UTF-8", "carol", []byte("bad \xff"), nil, publish.ErrInvalidData},
		{"position id", "carol", []byte("x"), []publish.Option{publish.WithID("seq:999")}, publish.ErrInvalidID},
		{"empty id", "carol", []byte("x"), []publish.Option{publish.WithID("")}, publish.ErrInvalidID},
		{"id with a line break", "carol", []byte("x"), []publish.Option{publish.WithID("a\nid: seq:1")}, publish.ErrInvalidID},
		{"long id", "carol", []byte("x"), []publish.Option{publish.WithID(strings.Repeat("i", 257))}, publish.ErrInvalidID},
	} {
		if _, err := publish.ToUser(ctx, js, c.user, c.data, c.opts...); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// A user id that looks like a subject stays one token.
	ack, err := publish.ToUser(ctx, js, "a.b", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := all.NextMsg(5 * time.Second)
	if err != nil || m.Subject != "user.a%2Eb" || m.Header.Get(publish.HeaderMsgID) != ack.ID {
		t.Fatalf("first publish seen: %v %v; want only user.a%%2Eb", m, err)
	}
}

// TestNoStream: without the history stream (or with a stream that is not
// RIG-Go's) the publish fails instead of vanishing.
func TestNoStream(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := publish.ToUser(ctx, js, "alice", []byte("x")); !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("no stream: %v", err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"user.*"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.ToUser(ctx, js, "alice", []byte("x")); err == nil {
		t.Fatal("stored by a stream that is not RIG-Go's history")
	}
}

func TestSubject(t *testing.T) {
	for user, want := range map[string]string{"alice": "user.alice", "alice@example.com": "user.alice%40example%2Ecom", "a.b": "user.a%2Eb", "100%": "user.100%25"} {
		if got, err := publish.Subject(user); err != nil || got != want {
			t.Errorf("Subject(%q) = %q, %v; want %q", user, got, err, want)
		}
	}
	if _, err := publish.Subject(""); !errors.Is(err, publish.ErrInvalidUser) {
		t.Errorf("Subject(\"\"): %v", err)
	}
}

// FuzzNewMsg: any user, payload and id gives an error or a message that
// RIG-Go delivers to exactly that user, as sent, with an id that is an
// event id and never a position.
func FuzzNewMsg(f *testing.F) {
	f.Add("alice", []byte(`{"t":1}`), "")
	f.Add("a.b.*.>", []byte("x"), "seq:1")
	f.Add("user.bob", []byte("\xff"), "id")
	f.Add("%2E", []byte{}, "a\nb")
	f.Fuzz(func(t *testing.T, user string, data []byte, id string) {
		var opts []publish.Option
		if id != "" {
			opts = append(opts, publish.WithID(id))
		}
		m, err := publish.NewMsg(user, data, opts...)
		if err != nil {
			if !errors.Is(err, publish.ErrInvalidUser) && !errors.Is(err, publish.ErrInvalidData) && !errors.Is(err, publish.ErrInvalidID) {
				t.Fatalf("error %v is none of the package's", err)
			}
			return
		}
		token, ok := strings.CutPrefix(m.Subject, rig.SubjectPrefix)
		if !ok || token == "" || strings.ContainsAny(token, ".*> \t\r\n") {
			t.Fatalf("user %q: subject %q", user, m.Subject)
		}
		if back, err := rig.UserFromSubject(m.Subject); err != nil || back != user {
			t.Fatalf("subject %q is user %q, %v; want %q", m.Subject, back, err, user)
		}
		if !utf8.Valid(m.Data) || string(m.Data) != string(data) {
			t.Fatalf("payload %q, sent %q", m.Data, data)
		}
		got := m.Header.Get(publish.HeaderMsgID)
		if !rig.ValidEventID(got) || strings.HasPrefix(got, rig.SeqIDPrefix) || (id != "" && got != id) {
			t.Fatalf("id %q (asked for %q)", got, id)
		}
	})
}
