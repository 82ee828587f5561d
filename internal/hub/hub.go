// Package hub is the edge's registry of connected clients, by user and by
// session. It is plain data, split over lock shards, with no I/O of its own:
// it asks a Subscriber for one NATS subscription per user when that user's
// first client arrives, closes it when the last one leaves, and fans every
// message out to the user's clients.
package hub

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/rig-go/rig/internal/rig"
)

const numShards = 64

// Client is what the hub holds: one connection, which receives events
// and keeps the set of users it receives them for. The hub holds clients of
// one concrete type (the edge's *client.Client), so what it returns needs
// no cast back.
type Client interface {
	comparable
	// Deliver must not block: it queues or drops.
	Deliver(ev *rig.Event)
	// Members is the client's user set, which only the hub changes.
	Members() *UserSet
}

// UserSet is a client's set of users, kept in the client and changed by
// the hub alone (Register, AddUser, RemoveUser): the users the hub fans out
// to the client are the users the client reports. Its zero value is empty.
type UserSet struct {
	mu   sync.Mutex // held while the hub changes the set and its subscriptions
	list []string   // copy on write: a slice once returned never changes
}

// List returns the users. The slice is never modified.
func (u *UserSet) List() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.list
}

// Subscription is one open subscription to a user's subject.
type Subscription interface {
	Unsubscribe() error
}

// Subscriber opens the subscription for a user's messages. The hub calls it
// with the user's shard locked, so it must be quick and must not call back
// into the hub.
type Subscriber interface {
	Subscribe(user string) (Subscription, error)
}

type userEntry[C Client] struct {
	sub     Subscription
	clients []C
}

type userShard[C Client] struct {
	mu sync.RWMutex
	m  map[string]*userEntry[C]
}

type sessionShard[C Client] struct {
	mu sync.Mutex
	m  map[string][]C
}

// memberShard maps each registered client to its session id.
type memberShard[C Client] struct {
	mu sync.Mutex
	m  map[C]string
}

// Hub is safe for concurrent use. Its zero value is not usable; call New.
type Hub[C Client] struct {
	subscriber Subscriber
	seed       maphash.Seed
	users      [numShards]userShard[C]
	sessions   [numShards]sessionShard[C]
	members    [numShards]memberShard[C]
	clients    atomic.Int64
	userCount  atomic.Int64
}

// New returns an empty hub that opens subscriptions with s.
func New[C Client](s Subscriber) *Hub[C] {
	h := &Hub[C]{subscriber: s, seed: maphash.MakeSeed()}
	for i := range numShards {
		h.users[i].m = make(map[string]*userEntry[C])
		h.sessions[i].m = make(map[string][]C)
		h.members[i].m = make(map[C]string)
	}
	return h
}

func (h *Hub[C]) shard(key string) int {
	return int(maphash.String(h.seed, key) % numShards)
}

func (h *Hub[C]) memberShard(c C) *memberShard[C] {
	return &h.members[maphash.Comparable(h.seed, c)%numShards]
}

// Register adds c for the given users, subscribing to each user that had
// no client yet, and makes them c's user set. On error nothing stays
// registered. A client is registered once.
func (h *Hub[C]) Register(c C, session string, users []string) error {
	set := c.Members()
	set.mu.Lock()
	defer set.mu.Unlock()
	for i, u := range users {
		if err := h.addUser(u, c); err != nil {
			for _, done := range users[:i] {
				h.removeUser(done, c)
			}
			return err
		}
	}
	set.list = users
	if session != "" {
		s := &h.sessions[h.shard(session)]
		s.mu.Lock()
		s.m[session] = append(s.m[session], c)
		s.mu.Unlock()
	}
	ms := h.memberShard(c)
	ms.mu.Lock()
	ms.m[c] = session
	ms.mu.Unlock()
	h.clients.Add(1)
	return nil
}

func (h *Hub[C]) registered(c C) bool {
	ms := h.memberShard(c)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	_, ok := ms.m[c]
	return ok
}

func (h *Hub[C]) addUser(user string, c C) error {
	s := &h.users[h.shard(user)]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[user]
	if e == nil {
		sub, err := h.subscriber.Subscribe(user)
		if err != nil {
			return fmt.Errorf("cannot subscribe to the messages of user %q: %w", user, err)
		}
		e = &userEntry[C]{sub: sub}
		s.m[user] = e
		h.userCount.Add(1)
	}
	e.clients = append(e.clients, c)
	return nil
}

func (h *Hub[C]) removeUser(user string, c C) {
	s := &h.users[h.shard(user)]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[user]
	if e == nil {
		return
	}
	e.clients = remove(e.clients, c)
	if len(e.clients) == 0 {
		_ = e.sub.Unsubscribe() // fails only when NATS is closed, which drops it anyway
		delete(s.m, user)
		h.userCount.Add(-1)
	}
}

func remove[C comparable](list []C, c C) []C {
	for i, x := range list {
		if x == c {
			last := len(list) - 1
			list[i] = list[last]
			var zero C
			list[last] = zero
			return list[:last]
		}
	}
	return list
}

// ErrUnregistered is returned by AddUser for a client that is not registered.
var ErrUnregistered = errors.New("client is no longer registered")

// AddUser subscribes a registered client to one more user's messages (a
// Phoenix join), opening the user's subscription if it is the first client.
// Adding a user the client already has changes nothing. On error nothing
// changes.
func (h *Hub[C]) AddUser(c C, user string) error {
	set := c.Members()
	set.mu.Lock()
	defer set.mu.Unlock()
	// Unregister takes the client out of members before it takes the set's
	// lock: checked under that lock, a client found here is one whose users
	// Unregister has not read yet, so it will remove this one too.
	if !h.registered(c) {
		return ErrUnregistered
	}
	if slices.Contains(set.list, user) {
		return nil
	}
	if err := h.addUser(user, c); err != nil {
		return err
	}
	// Copy on write: the slice given to Register may be shared with the caller.
	set.list = append(slices.Clip(set.list), user)
	return nil
}

// RemoveUser stops a client's messages of user (a Phoenix leave); the last
// client of the user closes its subscription.
func (h *Hub[C]) RemoveUser(c C, user string) {
	set := c.Members()
	set.mu.Lock()
	defer set.mu.Unlock()
	i := slices.Index(set.list, user)
	if i < 0 || !h.registered(c) {
		return
	}
	set.list = slices.Concat(set.list[:i], set.list[i+1:]) // copy on write, as AddUser
	h.removeUser(user, c)
}

// Unregister removes a client; the last client of a user closes its
// subscription. The client's user set is left as it was, for the log.
// Unregistering twice is harmless.
func (h *Hub[C]) Unregister(c C) {
	ms := h.memberShard(c)
	ms.mu.Lock()
	session, ok := ms.m[c]
	delete(ms.m, c)
	ms.mu.Unlock()
	if !ok {
		return
	}
	set := c.Members()
	set.mu.Lock()
	for _, u := range set.list {
		h.removeUser(u, c)
	}
	set.mu.Unlock()
	if session != "" {
		s := &h.sessions[h.shard(session)]
		s.mu.Lock()
		if list := remove(s.m[session], c); len(list) == 0 {
			delete(s.m, session)
		} else {
			s.m[session] = list
		}
		s.mu.Unlock()
	}
	h.clients.Add(-1)
}

// Publish delivers ev to every client of user and returns how many there were.
func (h *Hub[C]) Publish(user string, ev *rig.Event) int {
	s := &h.users[h.shard(user)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.m[user]
	if e == nil {
		return 0
	}
	for _, c := range e.clients {
		c.Deliver(ev)
	}
	return len(e.clients)
}

// Clients returns the clients subscribed to user's messages.
func (h *Hub[C]) Clients(user string) []C {
	s := &h.users[h.shard(user)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.m[user]; e != nil {
		return slices.Clone(e.clients)
	}
	return nil
}

// Session returns the clients registered with session id jti.
func (h *Hub[C]) Session(jti string) []C {
	s := &h.sessions[h.shard(jti)]
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.m[jti])
}

// Each calls fn for every registered client, one shard at a time, without
// holding a lock while fn runs.
func (h *Hub[C]) Each(fn func(C)) {
	var buf []C
	for i := range numShards {
		buf = h.eachIn(i, buf, fn)
	}
}

// Shards is how many parts AppendIn splits the clients into.
const Shards = numShards

// AppendIn appends the clients of one part (0 to Shards-1) of the registry
// to dst and returns it: a caller can visit every client over time, a part
// at a time, without holding a lock while it does.
func (h *Hub[C]) AppendIn(shard int, dst []C) []C {
	ms := &h.members[shard%numShards]
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for c := range ms.m {
		dst = append(dst, c)
	}
	return dst
}

func (h *Hub[C]) eachIn(i int, buf []C, fn func(C)) []C {
	buf = h.AppendIn(i, buf[:0])
	for _, c := range buf {
		fn(c)
	}
	return buf
}

// Users returns the ids of users with at least one client.
func (h *Hub[C]) Users() []string {
	var out []string
	for i := range numShards {
		s := &h.users[i]
		s.mu.RLock()
		for u := range s.m {
			out = append(out, u)
		}
		s.mu.RUnlock()
	}
	return out
}

// Len returns the number of registered clients.
func (h *Hub[C]) Len() int { return int(h.clients.Load()) }

// UserCount returns the number of users with a subscription.
func (h *Hub[C]) UserCount() int { return int(h.userCount.Load()) }
