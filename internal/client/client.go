// Package client is one connected client below its transport: who it is,
// its bounded queue of events, and the writer that drains that queue into
// the transport. Transports (SSE, WebSocket, Phoenix, long-poll) only frame
// events and read the wire; everything else about a connection lives here.
package client

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rig-go/rig/internal/hub"
	"github.com/rig-go/rig/internal/positions"
	"github.com/rig-go/rig/internal/rig"
)

// Transport writes framed events to one client connection.
type Transport interface {
	// Write sends evs in order. It may coalesce them into a single write.
	// An event whose kind ends the session (see Final) is the last one the
	// transport is given; it may end the stream cleanly after writing it.
	Write(evs []*rig.Event) error
	// Close closes the connection, unblocking a Write in progress; d says
	// why. It is called once. After the final event it ends the stream
	// with d (a WebSocket close frame) and may give the peer a moment to
	// answer; otherwise it closes at once and never blocks.
	Close(d Disconnect) error
}

// DirectTransport is a Transport that can also write without waiting:
// Deliver then writes a message on the goroutine that delivers it, and a
// writer goroutine starts only for what the socket did not take.
type DirectTransport interface {
	Transport
	// WriteNow writes evs as Write would, as far as the connection takes
	// them at once, and keeps the rest for the next Write, which may then
	// be given no events; it reports whether it kept anything.
	WriteNow(evs []*rig.Event) (left bool, err error)
	// Direct reports whether WriteNow writes at all: false on a
	// connection that is not a plain socket (TLS), whose WriteNow would
	// leave everything to Write.
	Direct() bool
}

// directLocked returns the transport as a DirectTransport that writes, if it is one.
func (c *Client) directLocked() (DirectTransport, bool) {
	d, ok := c.t.(DirectTransport)
	return d, ok && d.Direct()
}

// ErrClosed is returned by Send after the client was closed.
var ErrClosed = errors.New("client closed")

// ErrClosing is what a transport's Write returns when its connection is
// closing on its own (a WebSocket close frame went out: the library's for
// an oversized message, or the reader's for a broken rule). Nothing was
// written, so nothing is counted or receipted, and the client accepts
// nothing more; it is not closed for it, as the connection's reader
// closes it with the reason, which must be the one kept.
var ErrClosing = errors.New("connection closing")

// Final reports whether an event of kind k ends the connection after it is written.
func Final(k rig.Kind) bool {
	return k == rig.KindSessionKilled || k == rig.KindTokenExpired || k == rig.KindReconnect
}

// Counters are what clients count, shared by the clients of one server and
// read by its metrics. Plain atomics: adding to them costs the hot path
// nothing more.
type Counters struct {
	Delivered  atomic.Uint64 // message events written to the transport
	Dropped    atomic.Uint64 // events refused because the queue was full
	SlowClosed atomic.Uint64 // clients closed for it
}

// Client is one connection of a session, subscribed to some users' messages.
type Client struct {
	Session   *rig.Session
	Transport string    // "sse", "websocket", "phoenix", "longpoll", "phoenix-longpoll"
	Since     time.Time // when it connected
	// Remote (the client's address) and Conn (a number unique on this
	// edge), if set before the hub registers it, are what presence shows.
	Remote string
	Conn   uint64
	// Counters, if set before Attach, is added to.
	Counters *Counters
	// Written, if set before Attach, is called on the goroutine that wrote
	// (the writer's, or Deliver's caller for a direct write: it must not
	// block) for every message event that asks for a delivery receipt
	// (rig.Event.Receipt) once the transport's Write of it returned
	// without error. Events without one cost a string length check.
	Written func(*Client, *rig.Event)

	// users are the users whose messages the client receives: set when the
	// hub registers it, changed by Phoenix joins and leaves (through the hub).
	users hub.UserSet

	max int

	mu      sync.Mutex
	t       Transport
	queue   []*rig.Event
	spare   []*rig.Event
	writing bool
	left    bool         // WriteNow kept bytes: the writer writes them even with nothing queued
	leftEvs []*rig.Event // the events of those bytes, counted once written
	final   bool         // a final event is queued: accept nothing more
	closed  bool
	reason  Disconnect // the first given; zero while open
	done    chan struct{}

	// While holds > 0 the connection's first events are being read from
	// history: every event waits in held, to follow them (see Hold and
	// Release). While userHolds[u] > 0 the same goes for u's messages
	// alone (a Phoenix join of u; see HoldUser and ReleaseUser).
	holds     int
	userHolds map[string]int
	held      []*rig.Event
	// marks say what the client has after a replay: live copies of it
	// are dropped.
	marks positions.Marks
}

// New returns a client that queues at most queueSize events. Events may be
// delivered at once; they are written once Attach binds a transport.
func New(s *rig.Session, transport string, queueSize int) *Client {
	return &Client{
		Session:   s,
		Transport: transport,
		Since:     time.Now(),
		max:       queueSize,
		done:      make(chan struct{}),
	}
}

// Members implements hub.Client: the hub keeps the client's users here.
func (c *Client) Members() *hub.UserSet { return &c.users }

// Users returns the users whose messages the client receives.
func (c *Client) Users() []string { return c.users.List() }

// Attach binds the transport and begins writing what is queued.
func (c *Client) Attach(t Transport) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		t.Close(c.reason)
		return
	}
	c.t = t
	c.kickLocked()
	c.mu.Unlock()
}

// Deliver queues ev without blocking. A client whose queue is full is
// closed: it stopped reading, and must not hold memory or stall others.
//
// On a DirectTransport, an idle client's message is written on the
// caller's goroutine, without waiting: a live message is then one wake-up
// fewer on its way (no writer goroutine is started and woken for it). A
// writer starts only for what the socket did not take, or what was queued
// meanwhile; final events and held clients go the usual way.
func (c *Client) Deliver(ev *rig.Event) {
	c.mu.Lock()
	err := c.enqueueLocked(ev)
	if errors.Is(err, errFull) {
		c.mu.Unlock()
		c.closeSlow()
		return
	}
	d, direct := c.directLocked()
	if err != nil || !direct || c.writing || c.final || c.holds > 0 || len(c.queue) == 0 {
		if err == nil {
			c.kickLocked()
		}
		c.mu.Unlock()
		return
	}
	c.writing = true
	batch := c.queue
	c.queue = c.spare[:0]
	c.spare = nil
	c.mu.Unlock()

	left, err := d.WriteNow(batch)
	if left && err == nil {
		// Not all written yet: counted, and receipted, once the writer
		// has written the rest (flush).
		c.mu.Lock()
		c.leftEvs = batch
	} else {
		c.wrote(batch, err)
		c.mu.Lock()
		c.keepLocked(batch)
	}
	switch {
	case err != nil || c.closed:
		c.writing = false
		c.endLocked(err)
	case left || len(c.queue) > 0:
		c.left = left
		c.mu.Unlock()
		go c.flush() // still writing: the writer takes over
	default:
		c.writing = false
		c.queue, c.spare = nil, nil // idle clients hold no buffers
		c.mu.Unlock()
	}
}

// Direct reports whether Deliver writes on the caller's goroutine when the
// client is idle: its transport is a DirectTransport. Deliver never waits
// either way.
func (c *Client) Direct() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.directLocked()
	return ok
}

// wrote counts what a write of batch delivered and clears it; the caller
// then keeps its array for the next write (keepLocked).
func (c *Client) wrote(batch []*rig.Event, err error) {
	if err == nil {
		c.written(batch)
	}
	clear(batch)
}

func (c *Client) keepLocked(batch []*rig.Event) {
	if c.spare == nil && cap(batch) <= 64 {
		c.spare = batch[:0]
	}
}

var errFull = errors.New("client queue full")

// Send queues ev, or reports why it cannot: the client is closed or its
// queue is full. A final event (see Final) is always accepted while the
// client is open, and nothing is accepted after it.
func (c *Client) Send(ev *rig.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.enqueueLocked(ev); err != nil {
		return err
	}
	c.kickLocked()
	return nil
}

// DeliverHere is Deliver for a caller that can lend its goroutine: when
// the client is idle, the write happens on the caller's goroutine, and
// DeliverHere returns once the queue is written; else the event is queued
// for the writer at work. The edge's heartbeat writers use it, so that a
// heartbeat round starts no goroutine (and grows no stack) per client.
func (c *Client) DeliverHere(ev *rig.Event) {
	c.mu.Lock()
	err := c.enqueueLocked(ev)
	if errors.Is(err, errFull) {
		c.mu.Unlock()
		c.closeSlow()
		return
	}
	if err != nil || c.writing || c.t == nil || len(c.queue) == 0 || c.holds > 0 {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.mu.Unlock()
	c.flush()
}

func (c *Client) closeSlow() {
	if c.Counters != nil {
		c.Counters.Dropped.Add(1)
		c.Counters.SlowClosed.Add(1)
	}
	c.Close(DisconnectSlow)
}

// enqueueLocked queues ev for the writer without starting it.
func (c *Client) enqueueLocked(ev *rig.Event) error {
	if c.closed || c.final {
		return ErrClosed
	}
	if c.marks.Duplicate(ev) {
		return nil
	}
	if c.holds > 0 || ev.Kind == rig.KindMessage && c.userHolds[ev.User] > 0 {
		if Final(ev.Kind) {
			c.final = true
		} else if len(c.held) >= c.max {
			return errFull
		}
		c.held = append(c.held, ev)
		return nil
	}
	if Final(ev.Kind) {
		c.final = true
	} else if len(c.queue) >= c.max {
		return errFull
	}
	c.queue = append(c.queue, ev)
	return nil
}

// Hold makes every event wait while the connection's first events are
// read. Each Hold is ended by one Release.
func (c *Client) Hold() {
	c.mu.Lock()
	c.holds++
	c.mu.Unlock()
}

// Release ends a Hold for users: it queues first (the connected event, a
// gap, replayed messages...), bypassing the queue limit (history bounds
// them), and once no hold is left, the events that waited. The client has
// every message of users up to stream position upTo and those in first;
// live copies of them, held or still to come, are dropped.
func (c *Client) Release(users []string, upTo uint64, first ...*rig.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holds == 0 {
		panic("client: Release without Hold")
	}
	c.holds--
	if c.closed {
		return
	}
	c.marks.Have(users, upTo, first)
	c.queue = append(c.queue, first...)
	if c.holds == 0 {
		c.held = c.unholdLocked(func(ev *rig.Event) bool { return ev.Kind != rig.KindMessage || c.userHolds[ev.User] == 0 })
	}
	c.kickLocked()
}

// HoldUser makes user's messages wait while a Phoenix join of user reads
// where it starts; other events, heartbeats included, go on. Each
// HoldUser is ended by one ReleaseUser.
func (c *Client) HoldUser(user string) {
	c.mu.Lock()
	if c.userHolds == nil {
		c.userHolds = make(map[string]int)
	}
	c.userHolds[user]++
	c.mu.Unlock()
}

// ReleaseUser ends a HoldUser as Release ends a Hold, for one user.
func (c *Client) ReleaseUser(user string, upTo uint64, first ...*rig.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.userHolds[user] == 0 {
		panic("client: ReleaseUser without HoldUser")
	}
	if c.userHolds[user]--; c.userHolds[user] == 0 {
		delete(c.userHolds, user)
	}
	if c.closed {
		return
	}
	c.marks.Have([]string{user}, upTo, first)
	c.queue = append(c.queue, first...)
	if c.holds == 0 && c.userHolds[user] == 0 {
		c.held = c.unholdLocked(func(ev *rig.Event) bool { return ev.User == user })
	}
	c.kickLocked()
}

// unholdLocked queues the held events that release picks, dropping copies
// of what the client has, and returns those still held.
func (c *Client) unholdLocked(release func(*rig.Event) bool) []*rig.Event {
	var still []*rig.Event
	for _, ev := range c.held {
		switch {
		case !release(ev):
			still = append(still, ev)
		case c.marks.Duplicate(ev):
		default:
			c.queue = append(c.queue, ev)
		}
	}
	return still
}

// Fail ends a Hold whose first events could not be read (history was
// unavailable): the live events held meanwhile are dropped and ev, a final
// event, is the only thing written, so the client learns of nothing past
// the cursor it came with and comes back with that same cursor.
func (c *Client) Fail(ev *rig.Event, d Disconnect) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holds == 0 {
		panic("client: Fail without Hold")
	}
	c.holds--
	if c.closed || c.final {
		return
	}
	if c.reason == (Disconnect{}) {
		c.reason = d
	}
	if c.holds == 0 {
		c.held = nil
	}
	c.final = true
	c.queue = append(c.queue, ev)
	c.kickLocked()
}

// SendFinal sends a final event (session_killed, token_expired, reconnect) and
// closes the client once it is written, or at once if the client is stuck.
func (c *Client) SendFinal(ev *rig.Event, d Disconnect) {
	c.mu.Lock()
	if c.reason == (Disconnect{}) {
		c.reason = d
	}
	c.mu.Unlock()
	if err := c.Send(ev); err != nil && !errors.Is(err, ErrClosed) {
		c.Close(d)
	}
}

func (c *Client) kickLocked() {
	if c.writing || c.t == nil || len(c.queue) == 0 || c.holds > 0 {
		return
	}
	c.writing = true
	go c.flush()
}

// flush runs while the queue is not empty. It exists only while there is
// something to write, so an idle client costs no goroutine here.
func (c *Client) flush() {
	for {
		c.mu.Lock()
		if c.closed || len(c.queue) == 0 && !c.left {
			// Close emptied the queue after this goroutine was started.
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch := c.queue
		c.queue = c.spare[:0]
		c.spare = nil
		c.left = false // Write writes what WriteNow kept first
		kept := c.leftEvs
		c.leftEvs = nil
		t := c.t
		c.mu.Unlock()

		err := t.Write(batch)
		final := len(batch) > 0 && Final(batch[len(batch)-1].Kind)
		if err == nil {
			c.written(kept) // their last bytes went out with this Write
		}
		c.wrote(batch, err)

		c.mu.Lock()
		c.keepLocked(batch)
		if err != nil || final || c.closed {
			c.writing = false
			if err == nil {
				err = errFinalWritten
			}
			c.endLocked(err)
			return
		}
		if len(c.queue) == 0 {
			c.writing = false
			c.queue, c.spare = nil, nil // idle clients hold no buffers
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}

// errFinalWritten tells endLocked that the write ended the session.
var errFinalWritten = errors.New("final event written")

// endLocked stops writing after a write that ended with err (or after the
// final event, or once closed), and unlocks: a failed write closes the
// client, the final event closes it with the reason already kept, and a
// connection closing on its own (ErrClosing) is left to its reader.
func (c *Client) endLocked(err error) {
	if errors.Is(err, ErrClosing) {
		c.final = true
		c.queue = nil
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	switch {
	case errors.Is(err, errFinalWritten):
		c.Close(DisconnectShutdown) // the final event's reason is already kept
	case err != nil:
		c.Close(DisconnectWriteFailed)
	}
}

// written counts the messages of evs, which the transport wrote, and
// calls Written for those that ask for a receipt.
func (c *Client) written(evs []*rig.Event) {
	n := uint64(0)
	for _, ev := range evs {
		if ev.Kind == rig.KindMessage {
			n++
			if ev.Receipt != "" && c.Written != nil {
				c.Written(c, ev)
			}
		}
	}
	if c.Counters != nil {
		c.Counters.Delivered.Add(n)
	}
}

// Close closes the client's connection. The first reason given (by Close,
// SendFinal or Fail) is kept, and given to the transport. Safe to call more
// than once.
func (c *Client) Close(d Disconnect) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.reason == (Disconnect{}) {
		c.reason = d
	}
	d = c.reason
	t := c.t
	c.queue = nil
	c.mu.Unlock()
	if t != nil {
		t.Close(d)
	}
	close(c.done)
}

// Done is closed when the client is closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Reason says why the client was closed; zero while it is open.
func (c *Client) Reason() Disconnect {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}
