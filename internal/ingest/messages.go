package ingest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/valyala/fastjson"

	"github.com/rig-go/rig/internal/api"
	"github.com/rig-go/rig/internal/broker"
	"github.com/rig-go/rig/internal/metrics"
	"github.com/rig-go/rig/internal/rig"
)

var parsers fastjson.ParserPool

// accepted is the 202 body of one message: the event id clients will see.
type accepted struct {
	ID string `json:"id"`
}

// acceptedBatch is the 202 body of a batch: the event ids, in order.
type acceptedBatch struct {
	IDs []string `json:"ids"`
}

// handleMessages is POST /v1/messages: RIG's body, a JSON object naming its
// user in MESSAGE_USER_FIELD, whose whole body is the payload; or a JSON
// array of such objects, each one message (a batch).
func (s *Server) handleMessages(c *fiber.Ctx) error {
	if !isJSON(c.Get(fiber.HeaderContentType)) {
		s.metrics.Rejected.Inc()
		return api.NewError(fiber.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	body := c.Body()
	if isArray(body) {
		return s.handleBatch(c, body)
	}
	if len(body) > s.cfg.MaxMessageSize {
		s.metrics.Rejected.Inc()
		return api.NewError(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("message of %d bytes exceeds the limit of %d", len(body), s.cfg.MaxMessageSize))
	}
	user, err := s.userOf(body)
	if err != nil {
		s.metrics.Rejected.Inc()
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		s.metrics.Rejected.Inc()
		return err
	}
	if err := s.broker.Ready(); err != nil {
		s.metrics.Failed.Inc()
		return api.Unavailable("cannot accept messages: "+err.Error(), 1)
	}
	// The request buffer is reused after the handler returns; the pending
	// publish keeps the message until it is acknowledged.
	body = bytes.Clone(body)
	if key != "" {
		return s.storeKeyed(c, user, key, body)
	}
	id := ulid.Make().String()
	if _, err := s.publishWait(user, id, body, time.Now().Add(s.cfg.PublishTimeout+100*time.Millisecond)); err != nil {
		s.metrics.Failed.Inc()
		return api.Unavailable("message not stored: "+err.Error(), 1) // logged once, by the error handler
	}
	s.metrics.Stored.Inc()
	return api.JSON(c, fiber.StatusAccepted, accepted{ID: id})
}

// HeaderIdempotencyKey lets a back-end that retries a message (after a 503
// or a lost answer) have it stored, and delivered, once. See storeKeyed.
const HeaderIdempotencyKey = "Idempotency-Key"

// idempotencyKey returns the request's Idempotency-Key, "" if none.
func idempotencyKey(c *fiber.Ctx) (string, error) {
	key := c.Get(HeaderIdempotencyKey)
	if key == "" {
		return "", nil
	}
	if !rig.ValidEventID(key) || strings.HasPrefix(key, rig.SeqIDPrefix) {
		return "", api.NewError(fiber.StatusBadRequest, HeaderIdempotencyKey+" must be 1 to 256 bytes without control characters, not starting with "+rig.SeqIDPrefix)
	}
	return strings.Clone(key), nil
}

// keyedMsgID is the de-duplication id (Nats-Msg-Id) of user's message sent
// with key: the same for every retry, and never the same for two users, or
// for a key and another message's id (ULIDs, and direct publishers' ids,
// have no "idem:" prefix). Hashed, so any key fits in a header. A subject
// token holds no line break, so the first one ends it, whatever the key.
func keyedMsgID(user, key string) string {
	sum := sha256.Sum256([]byte(rig.SubjectToken(user) + "\n" + key))
	return keyedPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

const keyedPrefix = "idem:"

// errDuplicateInProcess is JetStream's answer (in a cluster) to a message
// whose id is that of one still being stored: the first's sequence is not
// known yet, so the publish is repeated until it is.
const errDuplicateInProcess = 10158

// storeKeyed stores a message sent with an Idempotency-Key and answers
// 202 with its event id. The key does not become the event id, which is a
// new ULID carried in broker.HeaderEventID: the key only makes the message's
// de-duplication id (keyedMsgID), so two users, or a key and another
// message's id, never collide. A retry within IDEMPOTENCY_WINDOW is dropped
// by JetStream, which acknowledges it as a duplicate with the first's
// sequence; the first is read back: the same body answers 202 with the
// first's event id, another body 409 (the key is taken).
func (s *Server) storeKeyed(c *fiber.Ctx, user, key string, body []byte) error {
	msgID := keyedMsgID(user, key)
	deadline := time.Now().Add(s.cfg.PublishTimeout + 100*time.Millisecond)
	for {
		id := ulid.Make().String()
		paf, err := s.publishAsync(user, msgID, id, body)
		var ack *jetstream.PubAck
		if err == nil {
			ack, err = s.await(paf, deadline)
		}
		var apiErr *jetstream.APIError
		switch {
		case err == nil && !ack.Duplicate:
			s.metrics.Stored.Inc()
			return api.JSON(c, fiber.StatusAccepted, accepted{ID: id})
		case err == nil:
			return s.answerRetry(c, user, key, msgID, ack.Sequence, body, deadline)
		case errors.As(err, &apiErr) && apiErr.ErrorCode == errDuplicateInProcess && time.Now().Before(deadline):
			s.log.Debug("a message with this Idempotency-Key is being stored; asking again", "user", user)
			time.Sleep(20 * time.Millisecond)
		default:
			s.metrics.Failed.Inc()
			return api.Unavailable("message not stored: "+err.Error(), 1)
		}
	}
}

// answerRetry answers a keyed message JetStream dropped as a duplicate of
// the one it stored at seq: 202 with that one's event id if it is the same
// message, else 409.
func (s *Server) answerRetry(c *fiber.Ctx, user, key, msgID string, seq uint64, body []byte, deadline time.Time) error {
	// The stream's leader answers (not a direct get, which a replica may
	// answer before it has stored seq).
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	first, err := s.leader.GetMsg(broker.StreamName, seq, nats.Context(ctx))
	switch {
	case errors.Is(err, nats.ErrMsgNotFound):
		// Pushed out of history by newer messages for the user: its body
		// cannot be compared any more.
		s.metrics.Rejected.Inc()
		return api.NewError(fiber.StatusConflict, fmt.Sprintf("%s %q was used within IDEMPOTENCY_WINDOW (%s) for a message no longer in history; use a new key for a new message",
			HeaderIdempotencyKey, key, s.cfg.NATS.IdempotencyWindow))
	case err != nil:
		s.metrics.Failed.Inc()
		return api.Unavailable(fmt.Sprintf("cannot tell whether this is a retry of the message stored with this %s: %v", HeaderIdempotencyKey, err), 1)
	}
	if first.Subject != rig.SubjectPrefix+rig.SubjectToken(user) || first.Header.Get(broker.HeaderMsgID) != msgID || !bytes.Equal(first.Data, body) {
		s.metrics.Rejected.Inc()
		return api.NewError(fiber.StatusConflict, fmt.Sprintf("%s %q was used within IDEMPOTENCY_WINDOW (%s) for a different message for this user; use a new key for a new message",
			HeaderIdempotencyKey, key, s.cfg.NATS.IdempotencyWindow))
	}
	s.metrics.Duplicates.Inc()
	return api.JSON(c, fiber.StatusAccepted, accepted{ID: broker.EventIDOf(first.Header)})
}

// handleBatch checks every message of a batch first and publishes none
// unless all are valid, then publishes them all at once and answers when
// JetStream has stored every one. Within a batch, messages for the same
// user are stored in the order given.
func (s *Server) handleBatch(c *fiber.Ctx, body []byte) error {
	s.metrics.Batches.Inc()
	if c.Get(HeaderIdempotencyKey) != "" {
		// One key cannot name each message, and a retried batch with one
		// message changed could be neither refused whole nor stored whole.
		s.metrics.Rejected.Inc()
		return api.NewError(fiber.StatusBadRequest, HeaderIdempotencyKey+" applies to a single message, not a batch: post keyed messages one at a time")
	}
	msgs, users, err := s.parseBatch(body)
	if err != nil {
		s.metrics.Rejected.Add(float64(max(len(msgs), 1)))
		return err
	}
	if err := s.broker.Ready(); err != nil {
		s.metrics.Failed.Add(float64(len(msgs)))
		return api.Unavailable("cannot accept messages: "+err.Error(), 1)
	}
	ids := make([]string, len(msgs))
	pafs := make([]pending, 0, len(msgs))
	for i, m := range msgs {
		ids[i] = ulid.Make().String()
		var paf pending
		// The raw message was copied out of the request buffer already.
		if paf, err = s.publishAsync(users[i], ids[i], "", m); err != nil {
			break
		}
		pafs = append(pafs, paf)
	}
	deadline := time.Now().Add(s.cfg.PublishTimeout + 100*time.Millisecond)
	stored := 0
	for _, paf := range pafs {
		if _, werr := s.await(paf, deadline); werr != nil {
			err = cmp.Or(err, werr)
			continue
		}
		stored++
	}
	s.metrics.Stored.Add(float64(stored))
	if err != nil {
		s.metrics.Failed.Add(float64(len(msgs) - stored))
		// Logged once, by the error handler.
		return api.Unavailable(fmt.Sprintf("%d of %d messages stored (those are delivered); the others not: %v", stored, len(msgs), err), 1)
	}
	return api.JSON(c, fiber.StatusAccepted, acceptedBatch{IDs: ids})
}

// parseBatch checks a batch: a JSON array of 1 to MESSAGE_BATCH_MAX_COUNT
// messages, each valid as a single message would have to be. It returns
// each message's bytes, exactly as sent, and its user; or the error for
// the whole batch, naming the first bad message by its index (from 0),
// with the messages read so far.
func (s *Server) parseBatch(body []byte) (msgs []json.RawMessage, users []string, err error) {
	if len(body) > s.cfg.BatchMaxSize {
		return nil, nil, api.NewError(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("batch of %d bytes exceeds the limit of %d (MESSAGE_BATCH_MAX_SIZE)", len(body), s.cfg.BatchMaxSize))
	}
	if err := json.Unmarshal(body, &msgs); err != nil {
		return nil, nil, api.NewError(fiber.StatusBadRequest, "body is not valid JSON: "+err.Error())
	}
	switch {
	case len(msgs) == 0:
		return nil, nil, api.NewError(fiber.StatusBadRequest, "empty batch: send at least one message")
	case len(msgs) > s.cfg.BatchMaxCount:
		return msgs, nil, api.NewError(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("batch of %d messages exceeds the limit of %d (MESSAGE_BATCH_MAX_COUNT)", len(msgs), s.cfg.BatchMaxCount))
	}
	users = make([]string, len(msgs))
	for i, m := range msgs {
		if len(m) > s.cfg.MaxMessageSize {
			return msgs, nil, api.NewError(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("message %d: %d bytes exceeds the limit of %d", i, len(m), s.cfg.MaxMessageSize))
		}
		u, err := s.userOf(m)
		if err != nil {
			var ae *api.Error
			if errors.As(err, &ae) {
				return msgs, nil, api.NewError(ae.Status, fmt.Sprintf("message %d: %s", i, ae.Message))
			}
			return msgs, nil, err
		}
		users[i] = u
	}
	return msgs, users, nil
}

// isArray reports whether body's first byte that is not JSON white space
// opens an array.
func isArray(body []byte) bool {
	for _, b := range body {
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		case '[':
			return true
		}
		return false
	}
	return false
}

// isJSON accepts application/json with optional parameters (charset).
func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), fiber.MIMEApplicationJSON)
}

// userOf checks that body is one JSON object with exactly one valid user
// field and returns that user.
func (s *Server) userOf(body []byte) (string, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return "", api.NewError(fiber.StatusBadRequest, "body is not valid JSON: "+err.Error())
	}
	obj, err := v.Object()
	if err != nil {
		return "", api.NewError(fiber.StatusBadRequest, "body must be a JSON object, got "+v.Type().String())
	}
	field := s.cfg.MessageUserField
	var found *fastjson.Value
	dup := false
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if string(k) == field {
			dup = found != nil
			found = v
		}
	})
	switch {
	case found == nil:
		return "", api.NewError(fiber.StatusBadRequest, fmt.Sprintf("missing field %q naming the user", field))
	case dup:
		return "", api.NewError(fiber.StatusBadRequest, fmt.Sprintf("field %q appears more than once", field))
	case found.Type() != fastjson.TypeString:
		return "", api.NewError(fiber.StatusBadRequest, fmt.Sprintf("field %q must be a string, got %s", field, found.Type()))
	}
	user := string(found.GetStringBytes())
	if err := rig.ValidateUser(user); err != nil {
		return "", api.NewError(fiber.StatusBadRequest, fmt.Sprintf("field %q: %v", field, err))
	}
	return user, nil
}

var errTimeout = errors.New("JetStream did not acknowledge in time")

// publishAsync hands body to JetStream for user's subject, with
// de-duplication id msgID and, when it is not msgID, event id eventID.
// body must not be reused: the pending publish keeps it until it is
// acknowledged.
func (s *Server) publishAsync(user, msgID, eventID string, body []byte) (pending, error) {
	msg := &nats.Msg{
		Subject: rig.SubjectPrefix + rig.SubjectToken(user),
		Data:    body,
		Header:  nats.Header{broker.HeaderMsgID: []string{msgID}},
	}
	if eventID != "" && eventID != msgID {
		msg.Header[broker.HeaderEventID] = []string{eventID}
	}
	start := time.Now()
	// With maxInFlight publishes waiting for their acknowledgement, wait for
	// room (up to PUBLISH_TIMEOUT) rather than fail: a few large batches at
	// once would otherwise get 503s that a moment's wait avoids.
	paf, err := s.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0), jetstream.WithExpectStream(broker.StreamName),
		jetstream.WithStallWait(s.cfg.PublishTimeout))
	return pending{paf, start}, err
}

// pending is a publish waiting for its acknowledgement.
type pending struct {
	jetstream.PubAckFuture
	start time.Time
}

// await waits until p is acknowledged (the message is stored, or was
// already: ack.Duplicate), failed, or deadline passed, and observes the
// publish time.
func (s *Server) await(p pending, deadline time.Time) (*jetstream.PubAck, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case ack := <-p.Ok():
		metrics.Since(s.metrics.PublishSeconds, p.start)
		return ack, nil
	case err := <-p.Err():
		return nil, err
	case <-t.C:
		return nil, errTimeout
	}
}
