package hub

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/rig-go/rig/internal/rig"
)

// countingSubscriber stands where NATS stands in production; the hub is
// plain data, so its reference counting is tested without a network. The
// edge's tests cover the same paths against a real NATS server.
type countingSubscriber struct {
	mu     sync.Mutex
	open   map[string]int
	total  int
	failOn string
}

type countedSub struct {
	s    *countingSubscriber
	user string
}

func (c countedSub) Unsubscribe() error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.open[c.user]--
	if c.s.open[c.user] == 0 {
		delete(c.s.open, c.user)
	}
	return nil
}

func (s *countingSubscriber) Subscribe(user string) (Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if user == s.failOn {
		return nil, errors.New("subscribe failed")
	}
	s.open[user]++
	s.total++
	return countedSub{s, user}, nil
}

func (s *countingSubscriber) openCount(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[user]
}

type inbox struct {
	mu    sync.Mutex
	got   []string
	users UserSet
}

func (b *inbox) Members() *UserSet { return &b.users }

func (b *inbox) Deliver(ev *rig.Event) {
	b.mu.Lock()
	b.got = append(b.got, ev.ID)
	b.mu.Unlock()
}

func (b *inbox) ids() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.got...)
}

func TestOneSubscriptionPerUser(t *testing.T) {
	s := &countingSubscriber{open: map[string]int{}}
	h := New[*inbox](s)
	phone, laptop, support := &inbox{}, &inbox{}, &inbox{}
	if err := h.Register(phone, "s1", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	h.Register(laptop, "s2", []string{"alice"})
	h.Register(support, "s3", []string{"alice", "bob"})
	if n := s.openCount("alice"); n != 1 {
		t.Fatalf("alice has %d subscriptions, want 1", n)
	}
	if h.Len() != 3 || h.UserCount() != 2 {
		t.Fatalf("Len %d UserCount %d", h.Len(), h.UserCount())
	}
	if n := h.Publish("alice", &rig.Event{ID: "m1"}); n != 3 {
		t.Fatalf("Publish reached %d clients, want 3", n)
	}
	h.Publish("bob", &rig.Event{ID: "m2"})
	if got := phone.ids(); len(got) != 1 || got[0] != "m1" {
		t.Fatalf("phone got %v", got)
	}
	if got := support.ids(); len(got) != 2 {
		t.Fatalf("support got %v", got)
	}
	h.Unregister(phone)
	h.Unregister(laptop)
	if s.openCount("alice") != 1 {
		t.Fatal("alice unsubscribed while the support client still watches")
	}
	h.Unregister(support)
	h.Unregister(support) // twice is harmless
	if len(s.open) != 0 || h.Len() != 0 || h.UserCount() != 0 {
		t.Fatalf("left open %v, Len %d, users %d", s.open, h.Len(), h.UserCount())
	}
	if h.Publish("alice", &rig.Event{ID: "m3"}) != 0 {
		t.Fatal("publish reached an unregistered client")
	}
}

func TestRegisterRollsBackOnError(t *testing.T) {
	s := &countingSubscriber{open: map[string]int{}, failOn: "carol"}
	h := New[*inbox](s)
	if err := h.Register(&inbox{}, "j", []string{"alice", "bob", "carol"}); err == nil {
		t.Fatal("Register succeeded although a subscription failed")
	}
	if len(s.open) != 0 || h.Len() != 0 || len(h.Session("j")) != 0 {
		t.Fatalf("left behind: subs %v, clients %d", s.open, h.Len())
	}
}

func TestSessionIndex(t *testing.T) {
	h := New[*inbox](&countingSubscriber{open: map[string]int{}})
	a, b, c := &inbox{}, &inbox{}, &inbox{}
	h.Register(a, "jti-1", []string{"alice"})
	h.Register(b, "jti-1", []string{"alice"})
	h.Register(c, "jti-2", []string{"alice"})
	if got := h.Session("jti-1"); len(got) != 2 {
		t.Fatalf("jti-1 has %d clients", len(got))
	}
	h.Unregister(a)
	if got := h.Session("jti-1"); len(got) != 1 || got[0] != b {
		t.Fatalf("after unregister jti-1 has %v", got)
	}
	n := 0
	h.Each(func(*inbox) { n++ })
	if n != 2 {
		t.Fatalf("Each saw %d clients", n)
	}
}

func TestConcurrentRegisterPublish(t *testing.T) {
	s := &countingSubscriber{open: map[string]int{}}
	h := New[*inbox](s)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				user := fmt.Sprintf("u%d", i%17)
				c := &inbox{}
				if err := h.Register(c, "", []string{user}); err != nil {
					t.Error(err)
					return
				}
				h.Publish(user, &rig.Event{ID: fmt.Sprint(w, i)})
				h.Unregister(c)
			}
		}()
	}
	wg.Wait()
	if len(s.open) != 0 || h.Len() != 0 {
		t.Fatalf("left open %v, clients %d", s.open, h.Len())
	}
}

func BenchmarkPublish(b *testing.B) {
	h := New[*inbox](&countingSubscriber{open: map[string]int{}})
	for i := range 10000 {
		h.Register(&inbox{}, "", []string{fmt.Sprintf("u%d", i)})
	}
	ev := &rig.Event{ID: "x"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			h.Publish(fmt.Sprintf("u%d", i%10000), ev)
			i++
		}
	})
}

func TestAddRemoveUser(t *testing.T) {
	s := &countingSubscriber{open: map[string]int{}, failOn: "carol"}
	h := New[*inbox](s)
	sock := &inbox{}
	hd := sock
	// A Phoenix socket registers with no users, then joins topics.
	if err := h.Register(sock, "jti", nil); err != nil {
		t.Fatal(err)
	}
	if err := h.AddUser(hd, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := h.AddUser(hd, "alice"); err != nil { // a second join of the same topic
		t.Fatal(err)
	}
	if err := h.AddUser(hd, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := h.AddUser(hd, "carol"); err == nil {
		t.Fatal("AddUser succeeded although the subscription failed")
	}
	if got := hd.Members().List(); len(got) != 2 || got[0] != "alice" || got[1] != "bob" {
		t.Fatalf("users %v, want [alice bob]", got)
	}
	if s.openCount("alice") != 1 || s.openCount("carol") != 0 {
		t.Fatalf("subscriptions %v", s.open)
	}
	h.Publish("alice", &rig.Event{ID: "a1"})
	h.Publish("bob", &rig.Event{ID: "b1"})
	if got := sock.ids(); len(got) != 2 {
		t.Fatalf("socket got %v, want one message each of alice and bob", got)
	}
	before := hd.Members().List()
	h.RemoveUser(hd, "alice")
	h.RemoveUser(hd, "alice") // leaving twice is harmless
	if s.openCount("alice") != 0 || h.UserCount() != 1 {
		t.Fatalf("alice still subscribed: %v", s.open)
	}
	if len(before) != 2 {
		t.Fatalf("RemoveUser changed a slice returned earlier: %v", before)
	}
	h.Publish("alice", &rig.Event{ID: "a2"})
	if got := sock.ids(); len(got) != 2 {
		t.Fatalf("socket got %v after leaving alice", got)
	}
	h.Unregister(hd)
	if len(s.open) != 0 || h.Len() != 0 {
		t.Fatalf("left open %v, clients %d", s.open, h.Len())
	}
	if err := h.AddUser(hd, "dave"); !errors.Is(err, ErrUnregistered) {
		t.Fatalf("AddUser after Unregister: %v", err)
	}
	if len(s.open) != 0 {
		t.Fatalf("AddUser after Unregister subscribed: %v", s.open)
	}
}

func TestAddUserDoesNotTouchTheCallersSlice(t *testing.T) {
	h := New[*inbox](&countingSubscriber{open: map[string]int{}})
	users := make([]string, 1, 4)
	users[0] = "alice"
	hd := &inbox{}
	h.Register(hd, "", users)
	h.AddUser(hd, "bob")
	h.RemoveUser(hd, "alice")
	if users[:2][1] != "" || users[0] != "alice" {
		t.Fatalf("the slice given to Register was changed: %q", users[:2])
	}
}
