// Package history reads users' recent messages back from the JetStream
// history stream, so that a client that reconnects, to any edge, gets what
// it missed: every message after the id it last saw, once, in publish order.
package history

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/rig"
)

// Skew is how far a publisher's clock (which stamps the ULID event id) may
// be ahead of the NATS server's (which stamps stored messages). A lookup by
// a ULID id starts this much before the id's time instead of at the start.
const Skew = 10 * time.Second

// attemptTimeout bounds each JetStream call of a replay.
const attemptTimeout = 5 * time.Second

// Replay is what history holds for a resume.
type Replay struct {
	// Events are the messages after the cursor, in stream (publish) order.
	Events []*rig.Event
	// Gap is set when the cursor is no longer in history: messages between
	// it and Events[0] may have been dropped by the history limits.
	Gap bool
	// Floor is the cursor's position in the stream: the client has every
	// message up to it. 0 when the cursor was not found.
	Floor uint64
	// Last is the position read up to, as an id (rig.SeqID) that resumes
	// exactly after it.
	Last string
}

// Reader replays the history stream.
type Reader struct {
	js     jetstream.JetStream
	stream string

	mu     sync.Mutex
	handle jetstream.Stream // for direct gets; looked up once
}

// NewReader reads the RIG-Go history stream through js.
func NewReader(js jetstream.JetStream) *Reader {
	return &Reader{js: js, stream: broker.StreamName}
}

// Since returns what history holds for users after cursor, the id of the
// last event a client saw: an event id (found by searching history) or a
// position (rig.SeqID, exact). An empty cursor returns no events, only the
// current position (Last).
func (r *Reader) Since(ctx context.Context, users []string, cursor string) (*Replay, error) {
	if len(users) == 0 {
		return nil, errors.New("history: no users")
	}
	if cursor == "" {
		info, err := r.streamInfo(ctx)
		if err != nil {
			return nil, err
		}
		return &Replay{Last: rig.SeqID(info.State.LastSeq), Floor: info.State.LastSeq}, nil
	}
	cfg := consumerConfig(users)
	seq, isSeq := rig.ParseSeqID(cursor)
	switch {
	case isSeq:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	default:
		if id, err := ulid.ParseStrict(cursor); err == nil {
			from := ulid.Time(id.Time()).Add(-Skew)
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &from
		} else {
			cfg.DeliverPolicy = jetstream.DeliverAllPolicy
		}
	}

	rp := &Replay{}
	if isSeq {
		info, err := r.streamInfo(ctx)
		if err != nil {
			return nil, err
		}
		// Something after the position was dropped. (It may have been
		// another user's message; the client is told it may have missed
		// some, which errs on the safe side.)
		rp.Gap = info.State.FirstSeq > seq+1 && info.State.Msgs > 0
		rp.Floor = seq
		rp.Last = rig.SeqID(max(seq, info.State.LastSeq))
	}
	events, err := r.read(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if !isSeq {
		found := -1
		for i, ev := range events {
			if ev.ID == cursor {
				found = i
				break
			}
		}
		if found >= 0 {
			rp.Floor = events[found].Seq
			events = events[found+1:]
		} else {
			rp.Gap = true
		}
		info, err := r.streamInfo(ctx)
		if err != nil {
			return nil, err
		}
		rp.Last = rig.SeqID(info.State.LastSeq)
	}
	if n := len(events); n > 0 {
		if last, _ := rig.ParseSeqID(rp.Last); events[n-1].Seq > last {
			rp.Last = rig.SeqID(events[n-1].Seq)
		}
	}
	rp.Events = events
	return rp, nil
}

// LastSeq returns the stream sequence of user's latest message in history,
// 0 if history holds none: the position a fresh connection starts from.
// It is one direct get, answered by any replica.
func (r *Reader) LastSeq(ctx context.Context, user string) (uint64, error) {
	r.mu.Lock()
	st := r.handle
	r.mu.Unlock()
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
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

// After returns user's messages after stream position seq: what an edge
// missed when it sees a gap in the live sequence.
func (r *Reader) After(ctx context.Context, user string, seq uint64) ([]*rig.Event, error) {
	cfg := consumerConfig([]string{user})
	cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	return r.read(ctx, cfg)
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

func (r *Reader) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	s, err := r.js.Stream(actx, r.stream)
	if err != nil {
		return nil, fmt.Errorf("history: stream %s: %w", r.stream, err)
	}
	return s.CachedInfo(), nil
}

// read creates a short-lived consumer and reads the messages it had
// pending when created. Anything stored later is republished, so it
// reaches a client that subscribed before this read began.
func (r *Reader) read(ctx context.Context, cfg jetstream.ConsumerConfig) ([]*rig.Event, error) {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	cons, err := r.js.CreateConsumer(actx, r.stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("history: create consumer: %w", err)
	}
	info := cons.CachedInfo()
	defer func() {
		// Best effort: the inactive threshold removes it anyway.
		go func(name string) {
			dctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
			defer cancel()
			_ = r.js.DeleteConsumer(dctx, r.stream, name)
		}(info.Name)
	}()
	pending := int(info.NumPending)
	events := make([]*rig.Event, 0, min(pending, 1024))
	for seen := 0; seen < pending; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch, err := cons.Fetch(min(pending-seen, 512), jetstream.FetchMaxWait(attemptTimeout))
		if err != nil {
			return nil, fmt.Errorf("history: fetch: %w", err)
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
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("history: fetch: %w", err)
		}
		if n == 0 {
			break // the rest aged out of history while we read
		}
		seen += n
	}
	return events, nil
}

// EventOf builds the event a stored message is delivered as, live or
// replayed alike: its id is its Nats-Msg-Id, or its stream position when it
// has none usable.
func EventOf(subject, id string, data []byte, seq, prev uint64) (*rig.Event, bool) {
	user, err := rig.UserFromSubject(subject)
	if err != nil {
		return nil, false
	}
	if !rig.ValidEventID(id) {
		id = rig.SeqID(seq)
	}
	return &rig.Event{Kind: rig.KindMessage, ID: id, User: user, Data: data, Seq: seq, Prev: prev}, true
}
