package history

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/broker/brokertest"
	"github.com/rig-go/rig/internal/check"
	"github.com/rig-go/rig/internal/config"
	"github.com/rig-go/rig/internal/rig"
)

func openBroker(t testing.TB, perUser int) *broker.Broker {
	t.Helper()
	return openBrokerAge(t, perUser, time.Minute)
}

func openBrokerAge(t testing.TB, perUser int, maxAge time.Duration) *broker.Broker {
	t.Helper()
	cfg := config.NATS{Embedded: true, Listen: "127.0.0.1:0", StoreDir: t.TempDir(), MaxAge: maxAge, MaxPerUser: perUser, Name: "test"}
	b, err := broker.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Run(t, b, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// publish stores a message like ingest does and returns its id.
func publish(t *testing.T, b *broker.Broker, user, id string) string {
	t.Helper()
	subj, _ := rig.Subject(user)
	m := nats.NewMsg(subj)
	if id != "" {
		m.Header.Set(broker.HeaderMsgID, id)
	}
	m.Data = []byte(fmt.Sprintf(`{"user":%q,"id":%q}`, user, id))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	return id
}

func ids(evs []*rig.Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.ID)
	}
	return strings.Join(s, ",")
}

func since(t *testing.T, r *Reader, users []string, cursor string) *Replay {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rp, err := r.Since(ctx, users, cursor)
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

func TestSinceEventID(t *testing.T) {
	b := openBroker(t, 100)
	r := NewReader(b.JS, 0)
	var a, bo []string
	for i := range 4 {
		a = append(a, publish(t, b, "alice", ulid.Make().String()))
		bo = append(bo, publish(t, b, "bob@x", ulid.Make().String()))
		_ = i
	}
	rp := since(t, r, []string{"alice"}, a[1])
	if got := ids(rp.Events); got != a[2]+","+a[3] || rp.Gap || rp.Floor != 3 {
		t.Fatalf("after a[1]: %s gap=%v floor=%d", got, rp.Gap, rp.Floor)
	}
	// Two users: merged in publish order.
	rp = since(t, r, []string{"alice", "bob@x"}, a[2])
	if got := ids(rp.Events); got != bo[2]+","+a[3]+","+bo[3] {
		t.Fatalf("merged after a[2]: %s", got)
	}
	if ev := rp.Events[0]; ev.User != "bob@x" || ev.Seq == 0 || !strings.Contains(string(ev.Data), bo[2]) {
		t.Fatalf("event %+v", ev)
	}
	// Up to date: nothing, no gap.
	rp = since(t, r, []string{"alice"}, a[3])
	if len(rp.Events) != 0 || rp.Gap {
		t.Fatalf("after the last id: %s gap=%v", ids(rp.Events), rp.Gap)
	}
	// An id history never held: gap, then what it holds.
	rp = since(t, r, []string{"alice"}, ulid.Make().String())
	if !rp.Gap || ids(rp.Events) != strings.Join(a, ",") {
		t.Fatalf("unknown ULID: %s gap=%v", ids(rp.Events), rp.Gap)
	}
	rp = since(t, r, []string{"alice"}, "not-a-ulid")
	if !rp.Gap || ids(rp.Events) != strings.Join(a, ",") {
		t.Fatalf("unknown id: %s gap=%v", ids(rp.Events), rp.Gap)
	}
	// A publisher's own non-ULID ids are found by search.
	custom := publish(t, b, "alice", "backend-7")
	last := publish(t, b, "alice", ulid.Make().String())
	rp = since(t, r, []string{"alice"}, custom)
	if ids(rp.Events) != last || rp.Gap {
		t.Fatalf("after custom id: %s gap=%v", ids(rp.Events), rp.Gap)
	}
}

func TestSincePositions(t *testing.T) {
	b := openBroker(t, 100)
	r := NewReader(b.JS, 0)
	start := since(t, r, []string{"alice"}, "")
	if start.Last != "seq:0" || len(start.Events) != 0 || start.Floor != 0 {
		t.Fatalf("empty stream position %+v", start)
	}
	publish(t, b, "alice", "")
	publish(t, b, "bob", "")
	publish(t, b, "alice", "")
	rp := since(t, r, []string{"alice"}, start.Last)
	if ids(rp.Events) != "seq:1,seq:3" || rp.Gap || rp.Last != "seq:3" {
		t.Fatalf("from seq:0: %s gap=%v last=%s", ids(rp.Events), rp.Gap, rp.Last)
	}
	rp = since(t, r, []string{"alice"}, "seq:1")
	if ids(rp.Events) != "seq:3" {
		t.Fatalf("from seq:1: %s", ids(rp.Events))
	}
	rp = since(t, r, []string{"alice"}, "seq:3")
	if len(rp.Events) != 0 || rp.Last != "seq:3" || rp.Floor != 3 {
		t.Fatalf("from the end: %+v", rp)
	}
	rp, err := r.Refill(context.Background(), []string{"alice"}, 1)
	if err != nil || ids(rp.Events) != "seq:3" {
		t.Fatalf("Refill(alice, 1) = %+v, %v", rp, err)
	}
}

func TestGapWhenTrimmed(t *testing.T) {
	b := openBroker(t, 3)
	r := NewReader(b.JS, 0)
	var a []string
	for range 5 {
		a = append(a, publish(t, b, "alice", ulid.Make().String()))
	}
	rp := since(t, r, []string{"alice"}, a[0]) // a[0] and a[1] were dropped
	if !rp.Gap || ids(rp.Events) != strings.Join(a[2:], ",") {
		t.Fatalf("trimmed id: %s gap=%v", ids(rp.Events), rp.Gap)
	}
	rp = since(t, r, []string{"alice"}, "seq:1")
	if !rp.Gap || ids(rp.Events) != strings.Join(a[2:], ",") {
		t.Fatalf("trimmed position: %s gap=%v", ids(rp.Events), rp.Gap)
	}
	rp = since(t, r, []string{"alice"}, a[2])
	if rp.Gap || ids(rp.Events) != strings.Join(a[3:], ",") {
		t.Fatalf("held id: %s gap=%v", ids(rp.Events), rp.Gap)
	}
}

func TestLastSeq(t *testing.T) {
	b := openBroker(t, 100)
	r := NewReader(b.JS, 0)
	ctx := context.Background()
	if seq, err := r.LastSeq(ctx, "alice"); err != nil || seq != 0 {
		t.Fatalf("empty history: %d, %v", seq, err)
	}
	publish(t, b, "alice", "a1")
	publish(t, b, "bob", "b1")
	publish(t, b, "alice", "a2")
	publish(t, b, "bob", "b2")
	if seq, err := r.LastSeq(ctx, "alice"); err != nil || seq != 3 {
		t.Fatalf("alice: %d, %v; want 3", seq, err)
	}
	if seq, err := r.LastSeq(ctx, "bob"); err != nil || seq != 4 {
		t.Fatalf("bob: %d, %v; want 4", seq, err)
	}
}

// publishRaw stores data on user's subject with header id (none if empty)
// as a direct NATS publisher would, and returns its stream sequence.
func publishRaw(t *testing.T, b *broker.Broker, user, id string, data []byte) uint64 {
	t.Helper()
	subj, _ := rig.Subject(user)
	m := nats.NewMsg(subj)
	if id != "" {
		m.Header.Set(broker.HeaderMsgID, id)
	}
	m.Data = data
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := b.JS.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// TestForgedSeqIDs: a publisher's seq: id is never an event id (it would be
// a cursor a client trusts); a position past the stream's end or one that
// does not parse gets a gap, then everything history holds.
func TestForgedSeqIDs(t *testing.T) {
	b := openBroker(t, 100)
	r := NewReader(b.JS, 0)
	a1 := publish(t, b, "alice", ulid.Make().String())
	forged := publishRaw(t, b, "alice", "seq:999", []byte(`{"forged":true}`))
	a3 := publish(t, b, "alice", ulid.Make().String())
	rp := since(t, r, []string{"alice"}, a1)
	if got := ids(rp.Events); got != rig.SeqID(forged)+","+a3 || rp.Gap {
		t.Fatalf("after a1: %s gap=%v; want the forged message as %s", got, rp.Gap, rig.SeqID(forged))
	}
	for _, cursor := range []string{"seq:999", "seq:4", "seq:abc", "seq:", "seq:-1"} {
		rp := since(t, r, []string{"alice"}, cursor)
		if !rp.Gap || ids(rp.Events) != a1+","+rig.SeqID(forged)+","+a3 || rp.Floor != 0 || rp.Last != "seq:3" {
			t.Errorf("from %s: %s gap=%v floor=%d last=%s; want a gap and all three", cursor, ids(rp.Events), rp.Gap, rp.Floor, rp.Last)
		}
	}
	// The forged message's real position resumes exactly.
	rp = since(t, r, []string{"alice"}, rig.SeqID(forged))
	if ids(rp.Events) != a3 || rp.Gap {
		t.Fatalf("after %s: %s gap=%v", rig.SeqID(forged), ids(rp.Events), rp.Gap)
	}
}

// TestGapWhenUserTrimmed: HISTORY_MAX_PER_USER drops a user's oldest
// messages while another user's older message keeps the stream's first
// sequence where it was; a position before the dropped ones gets a gap.
func TestGapWhenUserTrimmed(t *testing.T) {
	b := openBroker(t, 3)
	r := NewReader(b.JS, 0)
	publish(t, b, "bob", "b1") // seq 1 stays: FirstSeq does not move
	var a []string
	for range 5 {
		a = append(a, publish(t, b, "alice", ulid.Make().String())) // seq 2..6; 2 and 3 are trimmed
	}
	for cursor, want := range map[string]struct {
		events string
		gap    bool
	}{
		"seq:1": {strings.Join(a[2:], ","), true}, // alice's 2 and 3 are gone
		"seq:3": {strings.Join(a[2:], ","), true}, // 3 items after: may have lost some
		"seq:4": {strings.Join(a[3:], ","), false},
		a[2]:    {strings.Join(a[3:], ","), false}, // found: nothing after it is trimmed
	} {
		rp := since(t, r, []string{"alice"}, cursor)
		if ids(rp.Events) != want.events || rp.Gap != want.gap {
			t.Errorf("from %s: %s gap=%v, want %s gap=%v", cursor, ids(rp.Events), rp.Gap, want.events, want.gap)
		}
	}
	// Another user's trimming shows through a found id too.
	rp := since(t, r, []string{"bob", "alice"}, "b1")
	if !rp.Gap || ids(rp.Events) != strings.Join(a[2:], ",") {
		t.Errorf("bob+alice after b1: %s gap=%v, want alice's 3 and a gap", ids(rp.Events), rp.Gap)
	}
}

// TestInvalidUTF8Replaced: a payload that is not valid UTF-8 (a direct NATS
// publisher's) is delivered with each invalid run replaced by U+FFFD, and
// an id that is not valid UTF-8 is replaced by the position.
func TestInvalidUTF8Replaced(t *testing.T) {
	b := openBroker(t, 100)
	r := NewReader(b.JS, 0)
	seq := publishRaw(t, b, "carol", "id-\xff", []byte("{\"t\":\"bad \xff\xfe end\"}"))
	rp := since(t, r, []string{"carol"}, "seq:0")
	if len(rp.Events) != 1 {
		t.Fatalf("events %s", ids(rp.Events))
	}
	ev := rp.Events[0]
	if string(ev.Data) != "{\"t\":\"bad \uFFFD end\"}" || ev.ID != rig.SeqID(seq) {
		t.Fatalf("event %q id %q", ev.Data, ev.ID)
	}
}

// TestReadFailsInsteadOfShort: a read that cannot complete is an error,
// never fewer events: here NATS is gone.
func TestReadFailsInsteadOfShort(t *testing.T) {
	b := openBroker(t, 100)
	r := NewReader(b.JS, 0)
	for range 3 {
		publish(t, b, "alice", "")
	}
	b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, cursor := range []string{"seq:0", "", "some-id"} {
		if rp, err := r.Since(ctx, []string{"alice"}, cursor); err == nil {
			t.Fatalf("from %q with NATS closed: %+v, want an error", cursor, rp)
		}
	}
}

// TestReadsQueue: at most the configured number of reads run at once; the
// others wait, counted, and fail when their deadline passes first.
func TestReadsQueue(t *testing.T) {
	b := openBroker(t, 100)
	r := NewReader(b.JS, 1)
	release, err := r.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := r.Since(ctx, []string{"alice"}, "seq:0")
		done <- err
	}()
	check.For(t, 5*time.Second, 5*time.Millisecond, func() error {
		if w, f := r.Waiting(), r.InFlight(); w != 1 || f != 1 {
			return fmt.Errorf("waiting %d, in flight %d; want 1 and 1", w, f)
		}
		return nil
	})
	release()
	if err := <-done; err != nil {
		t.Fatalf("queued read: %v", err)
	}
	if r.Waiting() != 0 || r.InFlight() != 0 {
		t.Fatalf("after: waiting %d, in flight %d", r.Waiting(), r.InFlight())
	}
	// A read whose deadline passes while it waits fails, saying why.
	release, _ = r.acquire(context.Background())
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Since(ctx, []string{"alice"}, "seq:0"); err == nil || !strings.Contains(err.Error(), "no read slot") {
		t.Fatalf("read past its deadline: %v", err)
	}
}

// TestAgingNow: the stream's state is checked again after a read only when
// its oldest message is about to age out.
func TestAgingNow(t *testing.T) {
	info := func(maxAge, age time.Duration, msgs uint64) *jetstream.StreamInfo {
		return &jetstream.StreamInfo{Config: jetstream.StreamConfig{MaxAge: maxAge},
			State: jetstream.StreamState{Msgs: msgs, FirstTime: time.Now().Add(-age)}}
	}
	for _, c := range []struct {
		i    *jetstream.StreamInfo
		want bool
	}{
		{info(5*time.Minute, time.Minute, 10), false},
		{info(5*time.Minute, 4*time.Minute+45*time.Second, 10), true},
		{info(5*time.Minute, 4*time.Minute+45*time.Second, 0), false},
		{info(0, time.Hour, 10), false},
	} {
		if got := agingNow(c.i); got != c.want {
			t.Errorf("max age %s, oldest %s old, %d messages: %v", c.i.Config.MaxAge, time.Since(c.i.State.FirstTime).Round(time.Second), c.i.State.Msgs, got)
		}
	}
}

// FuzzEventOf: whatever a publisher sends, the event's id is one every
// transport can carry and no forged position, and its payload valid UTF-8.
func FuzzEventOf(f *testing.F) {
	f.Add("seq:999", []byte(`{"t":"bad \xff"}`), uint64(7))
	f.Add("01ARZ3NDEKTSV4RRFFQ69G5FAV", []byte(`{}`), uint64(1))
	f.Add("", []byte("\xc3"), uint64(0))
	f.Add("a\nb", []byte("x"), uint64(3))
	f.Fuzz(func(t *testing.T, id string, data []byte, seq uint64) {
		ev, ok := EventOf("user.alice", id, data, seq, 0)
		if !ok {
			t.Fatal("valid subject refused")
		}
		if !rig.ValidEventID(ev.ID) || !utf8.ValidString(ev.ID) {
			t.Fatalf("id %q", ev.ID)
		}
		if strings.HasPrefix(ev.ID, rig.SeqIDPrefix) && ev.ID != rig.SeqID(seq) {
			t.Fatalf("id %q for position %d", ev.ID, seq)
		}
		if ev.ID != id && ev.ID != rig.SeqID(seq) {
			t.Fatalf("id %q from %q", ev.ID, id)
		}
		if !utf8.Valid(ev.Data) {
			t.Fatalf("payload %q", ev.Data)
		}
		if utf8.Valid(data) && string(ev.Data) != string(data) {
			t.Fatalf("valid payload %q changed to %q", data, ev.Data)
		}
	})
}
