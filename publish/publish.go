// Package publish sends messages to RIG-Go users straight through NATS
// JetStream, for Go back-ends that skip ingest's HTTP API. It writes a user
// id into its subject the one way RIG-Go reads it back, and returns only
// once the history stream has stored the message: a nil error means every
// connected client of the user gets it, and a reconnecting one resumes it.
//
//	ack, err := publish.ToUser(ctx, js, "alice@example.com", []byte(`{"text":"Hi"}`))
package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/rig-go/rig/internal/rig"
)

// Stream is the JetStream stream RIG-Go stores messages in; ToUser expects
// it to be the one that stores the publish.
const Stream = "RIG_HISTORY"

// HeaderMsgID is the NATS header that carries a message's event id. The
// history stream drops a second message with the same id within its
// de-duplication window (IDEMPOTENCY_WINDOW, default 30s).
const HeaderMsgID = "Nats-Msg-Id"

// Errors for what ToUser and NewMsg refuse; the message is not stored then.
var (
	// ErrInvalidUser: a user id must be 1 to 256 bytes.
	ErrInvalidUser = rig.ErrInvalidUser
	// ErrInvalidID: an event id must be 1 to 256 bytes without control
	// characters, and must not start with "seq:", which names a position
	// in history (RIG-Go's resume cursors).
	ErrInvalidID = errors.New("invalid event id")
	// ErrInvalidData: the payload must be valid UTF-8, so that clients
	// get it in WebSocket text frames and SSE events unchanged.
	ErrInvalidData = errors.New("payload is not valid UTF-8")
	// ErrIDTaken: within the de-duplication window the history stream
	// stored another message with this event id (for another user, or
	// with other data), or one that has left history since, so it
	// dropped this one. Ids are unique across all users.
	ErrIDTaken = errors.New("event id already used for another message")
)

// Ack says how the history stream took a message.
type Ack struct {
	// ID is the event id clients get the message with (and resume from).
	ID string
	// Sequence is the message's position in the history stream.
	Sequence uint64
	// Duplicate is set when the stream already held a message with this
	// ID from within its de-duplication window: this one was not stored
	// again, and Sequence is the first one's.
	Duplicate bool
}

// Option adjusts a message.
type Option func(*options)

type options struct {
	id    string
	hasID bool
}

// WithID sets the event id instead of a new ULID: 1 to 256 bytes without
// control characters, not starting with "seq:". Reusing the id of a
// message on a retry (after an error, or a lost answer) stores and
// delivers it once; ids should be unique and, for the fastest resume,
// time-ordered.
func WithID(id string) Option {
	return func(o *options) { o.id, o.hasID = id, true }
}

// Subject returns the subject that carries user's messages: "user." and
// the user id with every byte that is not an ASCII letter, digit, '-' or
// '_' written as %XX (upper-case hex; '%' too). It is one NATS token, so no
// user id reaches another user's subject or a wildcard.
func Subject(user string) (string, error) {
	s, err := rig.Subject(user)
	if err != nil {
		return "", fmt.Errorf("%w (user ids are 1 to %d bytes)", err, rig.MaxUserLen)
	}
	return s, nil
}

// NewMsg builds the message ToUser publishes: user's subject, data, and an
// event id in HeaderMsgID (a new ULID unless WithID). It is for publishing
// with another NATS API; publish it with JetStream, so that an error tells
// when it was not stored.
func NewMsg(user string, data []byte, opts ...Option) (*nats.Msg, error) {
	subject, err := Subject(user)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w (user %q, %d bytes)", ErrInvalidData, user, len(data))
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if !o.hasID {
		o.id = ulid.Make().String()
	} else if !rig.ValidEventID(o.id) || strings.HasPrefix(o.id, rig.SeqIDPrefix) {
		return nil, fmt.Errorf("%w %q: want 1 to %d bytes without control characters, not starting with %q",
			ErrInvalidID, o.id, rig.MaxEventIDLen, rig.SeqIDPrefix)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(HeaderMsgID, o.id)
	return m, nil
}

// ToUser publishes data to user and waits until the history stream has
// stored it (or ctx ends). On an error the message may or may not have
// been stored; publishing it again with the same WithID id stores it once.
// A retry is told apart from another message with the same id (which
// JetStream would drop without a word): the retry returns the first's Ack
// with Duplicate set, the other message ErrIDTaken.
func ToUser(ctx context.Context, js jetstream.JetStream, user string, data []byte, opts ...Option) (Ack, error) {
	m, err := NewMsg(user, data, opts...)
	if err != nil {
		return Ack{}, err
	}
	id := m.Header.Get(HeaderMsgID)
	pa, err := js.PublishMsg(ctx, m, jetstream.WithExpectStream(Stream))
	if err != nil {
		return Ack{ID: id}, fmt.Errorf("publish to %s (event id %s): %w", m.Subject, id, err)
	}
	ack := Ack{ID: id, Sequence: pa.Sequence, Duplicate: pa.Duplicate}
	if !pa.Duplicate {
		return ack, nil
	}
	first, err := leaderGet(ctx, js, pa.Sequence)
	switch {
	case errors.Is(err, nats.ErrMsgNotFound):
		return ack, fmt.Errorf("%w: %s was used for a message no longer in history (sequence %d); not stored", ErrIDTaken, id, pa.Sequence)
	case err != nil:
		return ack, fmt.Errorf("publish to %s (event id %s): dropped as a duplicate of sequence %d, which could not be read: %w", m.Subject, id, pa.Sequence, err)
	case first.Subject != m.Subject || !bytes.Equal(first.Data, data):
		return ack, fmt.Errorf("%w: %s is the id of sequence %d, on %s; not stored", ErrIDTaken, id, pa.Sequence, first.Subject)
	}
	return ack, nil
}

// leaderGet reads message seq of the history stream from the stream's
// leader, which holds every acknowledged message; a direct get (what the
// jetstream package uses for this stream) may be answered by a replica
// that has not stored it yet.
func leaderGet(ctx context.Context, js jetstream.JetStream, seq uint64) (*nats.RawStreamMsg, error) {
	var jo []nats.JSOpt
	switch o := js.Options(); {
	case o.Domain != "":
		jo = append(jo, nats.Domain(o.Domain))
	case o.APIPrefix != "":
		jo = append(jo, nats.APIPrefix(o.APIPrefix))
	}
	legacy, err := js.Conn().JetStream(jo...)
	if err != nil {
		return nil, err
	}
	return legacy.GetMsg(Stream, seq, nats.Context(ctx))
}
