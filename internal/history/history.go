// Package history reads users' recent messages back from the JetStream
// history stream, so that a client that reconnects, to any edge, gets what
// it missed: every message after the id it last saw, once, in publish order,
// or a gap when history shows some are gone, or an error. Never less
// without saying so.
package history

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/rig"
)

// Skew is how far a publisher's clock (which stamps the ULID event id) may
// be ahead of the NATS server's (which stamps stored messages). A lookup by
// a ULID id starts this much before the id's time instead of at the start.
const Skew = 10 * time.Second

// readTimeout bounds each JetStream request of a read. It is not
// broker.AttemptTimeout on purpose: that bounds calls that are retried
// until they succeed, while a read has one try within a client's request
// (a resume fails with it), and a page of a read carries up to pageBytes.
const readTimeout = 5 * time.Second

// Pages of a user's messages: one request answers up to pageSize messages
// or pageBytes, whichever comes first (a user holds HISTORY_MAX_PER_USER,
// 1,000 by default, so most reads are one page).
const (
	pageSize  = 1024
	pageBytes = 8 << 20
)

// ageMargin: when the stream's oldest message is this close to HISTORY_MAX_AGE,
// messages after a cursor may age out while they are read, and the stream's
// state is checked again afterwards (see Since).
const ageMargin = 30 * time.Second

// lagRetry is how long a read waits before asking again when a replica
// answered without a message the stream's leader has (see verifyTails).
const lagRetry = 20 * time.Millisecond

// DefaultConcurrency is how many reads run at once unless configured.
const DefaultConcurrency = 16

// Replay is what history holds for a resume.
type Replay struct {
	// Events are the messages after the cursor, in stream (publish) order.
	Events []*rig.Event
	// Gap is set when messages between the cursor and Events may be
	// missing: the cursor is not in history, or history shows that
	// messages after it were removed (see Since for the rules).
	Gap bool
	// Floor is the cursor's position in the stream: the client has every
	// message up to it. 0 when the cursor was not found.
	Floor uint64
	// Last is the position read up to, as an id (rig.SeqID) that resumes
	// exactly after it.
	Last string
}

// Reader replays the history stream. At most a fixed number of its reads
// run at once; the others wait their turn (in order) until their context
// ends, so a burst of resumes queues instead of starving every read of
// the server's time.
type Reader struct {
	js     jetstream.JetStream
	stream string
	slots  chan struct{}

	inFlight, waiting atomic.Int64

	mu     sync.Mutex
	handle jetstream.Stream // for LastSeq's direct gets; looked up once
}

// NewReader reads the RIG-Go history stream through js, concurrency reads at
// a time (DefaultConcurrency if not positive).
func NewReader(js jetstream.JetStream, concurrency int) *Reader {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	return &Reader{js: js, stream: broker.StreamName, slots: make(chan struct{}, concurrency)}
}

// InFlight returns how many reads run now.
func (r *Reader) InFlight() int { return int(r.inFlight.Load()) }

// Waiting returns how many reads wait for their turn.
func (r *Reader) Waiting() int { return int(r.waiting.Load()) }

// acquire waits for a read slot until ctx ends.
func (r *Reader) acquire(ctx context.Context) (release func(), err error) {
	select {
	case r.slots <- struct{}{}:
	default:
		r.waiting.Add(1)
		select {
		case r.slots <- struct{}{}:
			r.waiting.Add(-1)
		case <-ctx.Done():
			r.waiting.Add(-1)
			return nil, fmt.Errorf("history: no read slot free (%d reads at a time) before the deadline: %w", cap(r.slots), ctx.Err())
		}
	}
	r.inFlight.Add(1)
	return func() {
		r.inFlight.Add(-1)
		<-r.slots
	}, nil
}

// Since returns what history holds for users after cursor, the id of the
// last event a client saw: a position (rig.SeqID, exact) or an event id
// (found by searching history). An empty cursor returns no events, only the
// current position (Last). It waits for a read slot first (see Reader).
//
// Gap rules, so that a client is told whenever it may have missed something
// and only then:
//   - a position past the stream's last sequence, a malformed position
//     (seq:abc) or an id history does not hold: gap, then everything history
//     holds for users;
//   - the stream's first sequence is past cursor+1: messages after the cursor
//     were removed (by age, or by any other removal): gap;
//   - HISTORY_MAX_PER_USER trims a user's oldest messages without moving
//     the stream's first sequence while other users hold older ones, so a
//     user that has that many messages after the cursor may have lost some
//     to it (removal is oldest first, so fewer cannot have): gap;
//   - messages that age out while they are read: gap.
//
// A found id is still held, and everything after it too (removal is oldest
// first), so it gets no gap for its own user.
//
// Any failure to read (a timeout under load, NATS unreachable) is an error,
// never fewer events: the caller must not move the client's cursor.
func (r *Reader) Since(ctx context.Context, users []string, cursor string) (*Replay, error) {
	if len(users) == 0 {
		return nil, errors.New("history: no users")
	}
	release, err := r.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return r.since(ctx, users, cursor)
}

// Refill is Since from a position, without waiting for a slot: an edge's
// delivery lanes refill what they missed of their users' live messages
// this way (at most one read per lane at a time), and live delivery must
// not queue behind a crowd of resumes.
func (r *Reader) Refill(ctx context.Context, users []string, after uint64) (*Replay, error) {
	if len(users) == 0 {
		return nil, errors.New("history: no users")
	}
	r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	return r.since(ctx, users, rig.SeqID(after))
}

func (r *Reader) since(ctx context.Context, users []string, cursor string) (*Replay, error) {
	info, err := r.streamInfo(ctx)
	if err != nil {
		return nil, err
	}
	st := info.State
	rp := &Replay{Last: rig.SeqID(st.LastSeq)}
	if cursor == "" {
		rp.Floor = st.LastSeq
		return rp, nil
	}
	rd := r.readerFor(info)
	var events []*rig.Event
	var short bool
	seq, isSeq := rig.ParseSeqID(cursor)
	if isSeq && seq <= st.LastSeq {
		rp.Floor = seq
		if events, short, err = rd(ctx, users, from{seq: seq + 1}); err != nil {
			return nil, err
		}
	} else {
		// An event id: search for it. A ULID names its time, so the search
		// starts shortly before it. A position past the end, or one that
		// does not parse, is no id an edge sent: it is not found.
		start := from{seq: 1}
		if id, err := ulid.ParseStrict(cursor); err == nil && !isSeq {
			start = from{time: ulid.Time(id.Time()).Add(-Skew)}
		}
		if events, short, err = rd(ctx, users, start); err != nil {
			return nil, err
		}
		i := slices.IndexFunc(events, func(ev *rig.Event) bool { return ev.ID == cursor })
		switch {
		case i >= 0 && !strings.HasPrefix(cursor, rig.SeqIDPrefix):
			rp.Floor = events[i].Seq
			events = events[i+1:]
		case start.time.IsZero():
			rp.Gap = true
		default:
			rp.Gap = true
			if events, _, err = rd(ctx, users, from{seq: 1}); err != nil {
				return nil, err
			}
		}
	}
	if !rp.Gap {
		rp.Gap = short || st.FirstSeq > rp.Floor+1 || trimmed(events, info.Config.MaxMsgsPerSubject)
	}
	if !rp.Gap && agingNow(info) {
		after, err := r.streamInfo(ctx)
		if err != nil {
			return nil, err
		}
		rp.Gap = after.State.FirstSeq > rp.Floor+1
	}
	if n := len(events); n > 0 && events[n-1].Seq > st.LastSeq {
		rp.Last = rig.SeqID(events[n-1].Seq)
	}
	rp.Events = events
	return rp, nil
}

// trimmed reports whether some user has perUser messages (or more) among
// events: HISTORY_MAX_PER_USER may have dropped older ones after the cursor.
func trimmed(events []*rig.Event, perUser int64) bool {
	if perUser <= 0 || int64(len(events)) < perUser {
		return false
	}
	count := map[string]int64{}
	for _, ev := range events {
		if count[ev.User]++; count[ev.User] >= perUser {
			return true
		}
	}
	return false
}

// agingNow reports whether the stream's oldest messages are close enough
// to its age limit that some after a cursor may age out during a read.
func agingNow(info *jetstream.StreamInfo) bool {
	maxAge := info.Config.MaxAge
	return maxAge > 0 && info.State.Msgs > 0 && time.Since(info.State.FirstTime) > maxAge-ageMargin
}

// from is where a read starts: a stream sequence, or a time.
type from struct {
	seq  uint64
	time time.Time
}

// readFunc reads every message of users from a start, in stream order.
// short reports that some messages it was to read were removed meanwhile.
type readFunc func(ctx context.Context, users []string, start from) (events []*rig.Event, short bool, err error)

// readerFor picks how to read the stream, by measurement (see
// docs/BENCHMARKS.md) and by what is exact:
//
// A stream of one replica is read through an ephemeral consumer per read:
// on a single server that is exact, and it measured twice as fast as
// batched direct gets, which the server answers inline on the reading
// connection (one at a time) and whose headers it rewrites per message.
//
// A replicated stream is read with batched direct gets, checked against
// its leader (readVerified). A direct get is answered by any replica, and a
// follower may lag the leader: what it lacks was stored before the reading
// edge subscribed to its users' live messages (it was republished before),
// so it would be neither replayed nor delivered live. A consumer is no way
// out: an R1 consumer of an R3 stream is placed on any of its peers and
// reads that peer's copy, each one costs the cluster's meta layer a
// proposal to create and one to delete, and a fetch right after creating
// one measured "no responders" while its interest spread.
func (r *Reader) readerFor(info *jetstream.StreamInfo) readFunc {
	if info.Config.Replicas <= 1 {
		return r.readConsumer
	}
	return r.readVerified
}

// fetchBatch is how many messages one fetch of a read's consumer asks for.
const fetchBatch = 512

// readConsumer creates a short-lived consumer for users from start and
// reads the messages it had pending when created; anything stored later is
// republished, so it reaches a client that subscribed before this read
// began. A fetch that comes back empty is either one that timed out under
// load or one for messages that aged out meanwhile: the consumer's own
// count tells which, so the first is fetched again (until ctx ends: an
// error) and the second reported as short.
func (r *Reader) readConsumer(ctx context.Context, users []string, start from) ([]*rig.Event, bool, error) {
	cfg := consumerConfig(users)
	if start.time.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, max(start.seq, 1)
	} else {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start.time
	}
	actx, cancel := context.WithTimeout(ctx, readTimeout)
	cons, err := r.js.CreateConsumer(actx, r.stream, cfg)
	cancel()
	if err != nil {
		return nil, false, fmt.Errorf("history: create consumer: %w", err)
	}
	info := cons.CachedInfo()
	defer func() {
		// Best effort: the inactive threshold removes it anyway.
		go func(name string) {
			dctx, cancel := context.WithTimeout(context.Background(), readTimeout)
			defer cancel()
			_ = r.js.DeleteConsumer(dctx, r.stream, name)
		}(info.Name)
	}()
	pending := int(info.NumPending)
	events := make([]*rig.Event, 0, min(pending, 1024))
	for seen := 0; seen < pending; {
		wait := readTimeout
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d))
		}
		if ctx.Err() != nil || wait <= 0 {
			return nil, false, fmt.Errorf("history: read %d of %d messages before the deadline: %w", seen, pending, context.DeadlineExceeded)
		}
		batch, err := cons.Fetch(min(pending-seen, fetchBatch), jetstream.FetchMaxWait(wait))
		if err != nil {
			return nil, false, fmt.Errorf("history: fetch: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			if ev, ok := EventOf(msg.Subject(), broker.EventIDOf(msg.Headers()), msg.Data(), meta.Sequence.Stream, 0); ok {
				events = append(events, ev)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return nil, false, fmt.Errorf("history: fetch: %w", err)
		}
		seen += n
		if n > 0 {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, readTimeout)
		ci, err := cons.Info(actx)
		cancel()
		if err != nil {
			return nil, false, fmt.Errorf("history: consumer info after an empty fetch: %w", err)
		}
		if ci.NumPending == 0 {
			return events, true, nil // the rest was removed while we read
		}
	}
	return events, false, nil
}

func consumerConfig(users []string) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: 30 * time.Second,
	}
	subjects := make([]string, len(users))
	for i, u := range users {
		subjects[i] = rig.SubjectPrefix + rig.SubjectToken(u)
	}
	if len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = subjects
	}
	return cfg
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// headerNumPending is what a batched direct get's answer says is left to
// send after each message.
const headerNumPending = "Nats-Num-Pending"

// readUser reads one subject's messages from start, a page at a time, until
// the server says nothing is left. jetstreamext's iterator ends the same way
// at the end of a batch and when its request times out, so a page counts
// only as complete when its last message says nothing is pending (or the
// server answers that there is no message at all); a page cut short is read
// on from its last message, and no answer at all is an error.
func (r *Reader) readUser(ctx context.Context, subject string, start from) ([]*rig.Event, error) {
	var events []*rig.Event
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("history: read %s: %w", subject, err)
		}
		opts := []jetstreamext.GetBatchOpt{jetstreamext.GetBatchSubject(subject), jetstreamext.GetBatchMaxBytes(pageBytes)}
		if start.time.IsZero() {
			opts = append(opts, jetstreamext.GetBatchSeq(max(start.seq, 1)))
		} else {
			opts = append(opts, jetstreamext.GetBatchStartTime(start.time))
		}
		actx, cancel := context.WithTimeout(ctx, readTimeout)
		msgs, err := jetstreamext.GetBatch(actx, r.js, r.stream, pageSize, opts...)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("history: read %s: %w", subject, err)
		}
		n, pending, none := 0, uint64(0), false
		for m, err := range msgs {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				none = true
				break
			}
			if err != nil {
				cancel()
				if errors.Is(err, jetstreamext.ErrBatchUnsupported) {
					err = errors.New("answer without Nats-Num-Pending: stream unavailable, or nats-server older than 2.11")
				}
				return nil, fmt.Errorf("history: read %s: %w", subject, err)
			}
			n++
			pending, _ = strconv.ParseUint(m.Header.Get(headerNumPending), 10, 64)
			start = from{seq: m.Sequence + 1}
			if ev, ok := EventOf(m.Subject, broker.EventIDOf(m.Header), m.Data, m.Sequence, 0); ok {
				events = append(events, ev)
			}
		}
		cancel()
		switch {
		case none || n > 0 && pending == 0:
			return events, nil
		case n == 0:
			return nil, fmt.Errorf("history: read %s: no answer within %s", subject, readTimeout)
		}
	}
}

// readVerified reads each user's messages with batched direct gets and
// merges them in stream order. It first asks the stream's leader for each
// user's latest message, then reads, and reads a user again (after lagRetry) while the answer stops short of that message:
// a follower answered that has not caught up. A follower's copy is a prefix
// of the leader's, so an answer that reaches the leader's latest message of
// a user has every earlier one it still holds.
func (r *Reader) readVerified(ctx context.Context, users []string, start from) ([]*rig.Event, bool, error) {
	tails := make(map[string]*leaderMsg, len(users))
	for _, u := range users {
		m, err := r.leaderLast(ctx, rig.SubjectPrefix+rig.SubjectToken(u))
		if err != nil {
			return nil, false, err
		}
		if m != nil && (m.Seq >= start.seq && start.time.IsZero() || !start.time.IsZero() && !m.Time.Before(start.time)) {
			tails[u] = m
		}
	}
	var events []*rig.Event
	for _, u := range users {
		for {
			evs, err := r.readUser(ctx, rig.SubjectPrefix+rig.SubjectToken(u), start)
			if err != nil {
				return nil, false, err
			}
			tail := tails[u]
			if tail == nil || len(evs) > 0 && evs[len(evs)-1].Seq >= tail.Seq {
				events = append(events, evs...)
				break
			}
			select {
			case <-ctx.Done():
				return nil, false, fmt.Errorf("history: read %s: replicas stayed behind the leader's sequence %d: %w", u, tail.Seq, ctx.Err())
			case <-time.After(lagRetry):
			}
		}
	}
	if len(users) > 1 {
		slices.SortFunc(events, func(a, b *rig.Event) int { return cmpSeq(a.Seq, b.Seq) })
	}
	return events, false, nil
}

// leaderMsg is what the leader says of a stored message.
type leaderMsg struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
}

// leaderLast asks the stream's leader (the JetStream API, not a direct
// get, which any replica answers) for the latest message on subject; nil
// when there is none. nats.go offers no way to skip direct gets on a
// stream that allows them, hence the request by hand.
func (r *Reader) leaderLast(ctx context.Context, subject string) (*leaderMsg, error) {
	actx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	resp, err := r.js.Conn().RequestWithContext(actx, apiPrefix(r.js.Options())+"STREAM.MSG.GET."+r.stream, req)
	if err != nil {
		return nil, fmt.Errorf("history: latest message of %s from the leader: %w", subject, err)
	}
	var a struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *leaderMsg `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &a); err != nil {
		return nil, fmt.Errorf("history: latest message of %s from the leader: %w", subject, err)
	}
	switch {
	case a.Error != nil && a.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return nil, nil
	case a.Error != nil:
		return nil, fmt.Errorf("history: latest message of %s from the leader: %s (%d)", subject, a.Error.Description, a.Error.ErrCode)
	case a.Message == nil:
		return nil, fmt.Errorf("history: latest message of %s from the leader: empty answer", subject)
	}
	return a.Message, nil
}

func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	}
	return "$JS.API."
}

// LastSeq returns the stream sequence of user's latest message in history,
// 0 if history holds none: the position a fresh connection starts from.
// It is one direct get, answered by any replica. A lagging follower answers
// an older message (or none): the connection then starts from an earlier
// position, and may get a few messages from before it connected, never
// miss one; so this needs no check against the leader.
func (r *Reader) LastSeq(ctx context.Context, user string) (uint64, error) {
	r.mu.Lock()
	st := r.handle
	r.mu.Unlock()
	actx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	if st == nil {
		var err error
		if st, err = r.js.Stream(actx, r.stream); err != nil {
			return 0, fmt.Errorf("history: stream %s: %w", r.stream, err)
		}
		r.mu.Lock()
		r.handle = st
		r.mu.Unlock()
	}
	m, err := st.GetLastMsgForSubject(actx, rig.SubjectPrefix+rig.SubjectToken(user))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("history: last message of %q: %w", user, err)
	}
	return m.Sequence, nil
}

func (r *Reader) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	actx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	s, err := r.js.Stream(actx, r.stream)
	if err != nil {
		return nil, fmt.Errorf("history: stream %s: %w", r.stream, err)
	}
	return s.CachedInfo(), nil
}

// EventOf builds the event a stored message is delivered as, live or
// replayed alike. Its id is the publisher's (see broker.EventIDOf) when
// every transport can carry it and it cannot be taken for a position;
// else its stream position. Ids starting with seq: are RIG-Go's: a
// publisher's seq:999 would otherwise be a cursor a resuming client trusts,
// skipping whatever lies between. Invalid UTF-8 in the payload is replaced
// (each invalid run by one U+FFFD), once for every transport: a WebSocket
// text frame must be valid UTF-8, and a client that closes on one would
// get the same message again on every resume.
func EventOf(subject, id string, data []byte, seq, prev uint64) (*rig.Event, bool) {
	user, err := rig.UserFromSubject(subject)
	if err != nil {
		return nil, false
	}
	if !rig.ValidEventID(id) || !utf8.ValidString(id) || strings.HasPrefix(id, rig.SeqIDPrefix) {
		id = rig.SeqID(seq)
	}
	if !utf8.Valid(data) {
		data = bytes.ToValidUTF8(data, []byte("\uFFFD"))
	}
	return &rig.Event{Kind: rig.KindMessage, ID: id, User: user, Data: data, Seq: seq, Prev: prev}, true
}
