// Package hub is the edge's registry of connected clients, by user and by
// session. It is plain data, split over lock shards, with no I/O of its own:
// it asks a Subscriber for one NATS subscription per user when that user's
// first client arrives, closes it when the last one leaves, and fans every
// message out to the user's clients.
package hub

import (
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/rig-go/rig/internal/rig"
)

const numShards = 64

// Client receives events. Deliver must not block: it queues or drops.
type Client interface {
	Deliver(ev *rig.Event)
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

// Handle is a registered client; keep it to unregister.
type Handle struct {
	Client  Client
	Session string // jti, may be empty
	id      uint64

	mu    sync.Mutex // guards users and gone: a Phoenix socket joins and leaves over time
	users []string
	gone  bool
}

// Users returns the users whose messages the handle receives. The slice
// is never modified; AddUser and RemoveUser replace it.
func (hd *Handle) Users() []string {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	return hd.users
}

type userEntry struct {
	sub     Subscription
	clients []*Handle
	// last is the stream sequence of the last message published to the
	// user's clients (see LastSeq).
	last atomic.Uint64
	// base is 1 + the stream position the subscription started from, 0
	// while unknown (see NoteBase).
	base atomic.Uint64
}

type userShard struct {
	mu sync.RWMutex
	m  map[string]*userEntry
}

type setShard struct {
	mu sync.Mutex
	m  map[string][]*Handle
}

type handleShard struct {
	mu sync.Mutex
	m  map[*Handle]struct{}
}

// Hub is safe for concurrent use. Its zero value is not usable; call New.
type Hub struct {
	subscriber Subscriber
	seed       maphash.Seed
	users      [numShards]userShard
	sessions   [numShards]setShard
	handles    [numShards]handleShard
	nextID     atomic.Uint64
	clients    atomic.Int64
	userCount  atomic.Int64
}

// New returns an empty hub that opens subscriptions with s.
func New(s Subscriber) *Hub {
	h := &Hub{subscriber: s, seed: maphash.MakeSeed()}
	for i := range numShards {
		h.users[i].m = make(map[string]*userEntry)
		h.sessions[i].m = make(map[string][]*Handle)
		h.handles[i].m = make(map[*Handle]struct{})
	}
	return h
}

func (h *Hub) shard(key string) int {
	return int(maphash.String(h.seed, key) % numShards)
}

// Register adds c for the given users, subscribing to each user that had
// no client yet. On error nothing stays registered.
func (h *Hub) Register(c Client, session string, users []string) (*Handle, error) {
	hd := &Handle{Client: c, Session: session, users: users, id: h.nextID.Add(1)}
	for i, u := range users {
		if err := h.addUser(u, hd); err != nil {
			for _, done := range users[:i] {
				h.removeUser(done, hd)
			}
			return nil, err
		}
	}
	if session != "" {
		s := &h.sessions[h.shard(session)]
		s.mu.Lock()
		s.m[session] = append(s.m[session], hd)
		s.mu.Unlock()
	}
	hs := &h.handles[hd.id%numShards]
	hs.mu.Lock()
	hs.m[hd] = struct{}{}
	hs.mu.Unlock()
	h.clients.Add(1)
	return hd, nil
}

func (h *Hub) addUser(user string, hd *Handle) error {
	s := &h.users[h.shard(user)]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[user]
	if e == nil {
		sub, err := h.subscriber.Subscribe(user)
		if err != nil {
			return err
		}
		e = &userEntry{sub: sub}
		s.m[user] = e
		h.userCount.Add(1)
	}
	e.clients = append(e.clients, hd)
	return nil
}

func (h *Hub) removeUser(user string, hd *Handle) {
	s := &h.users[h.shard(user)]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[user]
	if e == nil {
		return
	}
	e.clients = removeHandle(e.clients, hd)
	if len(e.clients) == 0 {
		_ = e.sub.Unsubscribe() // fails only when NATS is closed, which drops it anyway
		delete(s.m, user)
		h.userCount.Add(-1)
	}
}

func removeHandle(list []*Handle, hd *Handle) []*Handle {
	for i, x := range list {
		if x == hd {
			last := len(list) - 1
			list[i] = list[last]
			list[last] = nil
			return list[:last]
		}
	}
	return list
}

// ErrUnregistered is returned by AddUser for a handle that was unregistered.
var ErrUnregistered = errors.New("client is no longer registered")

// AddUser subscribes a registered client to one more user's messages (a
// Phoenix join), opening the user's subscription if it is the first client.
// Adding a user the handle already has changes nothing. On error nothing
// changes.
func (h *Hub) AddUser(hd *Handle, user string) error {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if hd.gone {
		return ErrUnregistered
	}
	if slices.Contains(hd.users, user) {
		return nil
	}
	if err := h.addUser(user, hd); err != nil {
		return err
	}
	// Copy on write: the slice given to Register may be shared with the caller.
	hd.users = append(slices.Clip(hd.users), user)
	return nil
}

// RemoveUser stops a client's messages of user (a Phoenix leave); the last
// client of the user closes its subscription.
func (h *Hub) RemoveUser(hd *Handle, user string) {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	i := slices.Index(hd.users, user)
	if hd.gone || i < 0 {
		return
	}
	hd.users = slices.Concat(hd.users[:i], hd.users[i+1:]) // copy on write, as AddUser
	h.removeUser(user, hd)
}

// Unregister removes a handle; the last client of a user closes its
// subscription. Unregistering twice is harmless.
func (h *Hub) Unregister(hd *Handle) {
	hs := &h.handles[hd.id%numShards]
	hs.mu.Lock()
	_, ok := hs.m[hd]
	delete(hs.m, hd)
	hs.mu.Unlock()
	if !ok {
		return
	}
	hd.mu.Lock()
	hd.gone = true
	users := hd.users
	hd.users = nil
	hd.mu.Unlock()
	for _, u := range users {
		h.removeUser(u, hd)
	}
	if hd.Session != "" {
		s := &h.sessions[h.shard(hd.Session)]
		s.mu.Lock()
		if list := removeHandle(s.m[hd.Session], hd); len(list) == 0 {
			delete(s.m, hd.Session)
		} else {
			s.m[hd.Session] = list
		}
		s.mu.Unlock()
	}
	h.clients.Add(-1)
}

// Publish delivers ev to every client of user and returns how many there were.
func (h *Hub) Publish(user string, ev *rig.Event) int {
	s := &h.users[h.shard(user)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.m[user]
	if e == nil {
		return 0
	}
	if ev.Seq > e.last.Load() {
		e.last.Store(ev.Seq)
	}
	for _, hd := range e.clients {
		hd.Client.Deliver(ev)
	}
	return len(e.clients)
}

// Clients returns the clients subscribed to user's messages.
func (h *Hub) Clients(user string) []Client {
	s := &h.users[h.shard(user)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.m[user]
	if e == nil {
		return nil
	}
	out := make([]Client, len(e.clients))
	for i, hd := range e.clients {
		out[i] = hd.Client
	}
	return out
}

// NoteBase records, once per subscription, the stream position it started
// from: every message of user after it reaches the user's clients. A
// caller that finds messages were missed, before any was delivered, reads
// from there (see Resume).
func (h *Hub) NoteBase(user string, seq uint64) {
	s := &h.users[h.shard(user)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.m[user]; e != nil {
		e.base.CompareAndSwap(0, seq+1)
	}
}

// ResumePoint returns where to look for user's missed messages: after the
// last one published, or after the subscription's base; ok is false when
// neither is known (or there is no subscription).
func (h *Hub) ResumePoint(user string) (seq uint64, ok bool) {
	s := &h.users[h.shard(user)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.m[user]
	if e == nil {
		return 0, false
	}
	if last := e.last.Load(); last > 0 {
		return last, true
	}
	if b := e.base.Load(); b > 0 {
		return b - 1, true
	}
	return 0, false
}

// LastSeq returns the stream sequence of the last message published to
// user's clients since the user's subscription opened, 0 if none (or no
// subscription). A caller that publishes each user's messages from one
// goroutine can use it to drop duplicates and find gaps.
func (h *Hub) LastSeq(user string) uint64 {
	s := &h.users[h.shard(user)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.m[user]; e != nil {
		return e.last.Load()
	}
	return 0
}

// Session returns the clients registered with session id jti.
func (h *Hub) Session(jti string) []Client {
	s := &h.sessions[h.shard(jti)]
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.m[jti]
	out := make([]Client, len(list))
	for i, hd := range list {
		out[i] = hd.Client
	}
	return out
}

// Each calls fn for every registered client, one shard at a time, without
// holding a lock while fn runs.
func (h *Hub) Each(fn func(Client)) {
	var buf []Client
	for i := range numShards {
		buf = h.eachIn(i, buf, fn)
	}
}

// Shards is how many parts EachIn splits the clients into.
const Shards = numShards

// EachIn calls fn for every client of one part (0 to Shards-1) of the
// registry, without holding a lock while fn runs: a caller can visit every
// client over time, a part at a time.
func (h *Hub) EachIn(shard int, fn func(Client)) {
	h.eachIn(shard%numShards, nil, fn)
}

func (h *Hub) eachIn(i int, buf []Client, fn func(Client)) []Client {
	hs := &h.handles[i]
	hs.mu.Lock()
	buf = buf[:0]
	for hd := range hs.m {
		buf = append(buf, hd.Client)
	}
	hs.mu.Unlock()
	for _, c := range buf {
		fn(c)
	}
	return buf
}

// Users returns the ids of users with at least one client.
func (h *Hub) Users() []string {
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

// Subscribed reports whether user has a subscription.
func (h *Hub) Subscribed(user string) bool {
	s := &h.users[h.shard(user)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[user] != nil
}

// Len returns the number of registered clients.
func (h *Hub) Len() int { return int(h.clients.Load()) }

// UserCount returns the number of users with a subscription.
func (h *Hub) UserCount() int { return int(h.userCount.Load()) }
