package ingest

import (
	"bytes"
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
	"github.com/rig-go/rig/internal/rig"
)

var parsers fastjson.ParserPool

// accepted is the 202 body: the event id clients will see.
type accepted struct {
	ID string `json:"id"`
}

// handleMessages is POST /v1/messages: RIG's body, a JSON object naming its
// user in MESSAGE_USER_FIELD; the whole body is the payload.
func (s *Server) handleMessages(c *fiber.Ctx) error {
	if !isJSON(c.Get(fiber.HeaderContentType)) {
		return api.Errorf(fiber.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	body := c.Body()
	if len(body) > s.cfg.MaxMessageSize {
		return api.Errorf(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("message of %d bytes exceeds the limit of %d", len(body), s.cfg.MaxMessageSize))
	}
	user, err := s.userOf(body)
	if err != nil {
		return err
	}
	if err := s.broker.Ready(); err != nil {
		return api.Unavailable("cannot accept messages: "+err.Error(), 1)
	}
	id, err := s.publish(user, body)
	if err != nil {
		return api.Unavailable("message not stored: "+err.Error(), 1) // logged once, by the error handler
	}
	return api.JSON(c, fiber.StatusAccepted, accepted{ID: id})
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
		return "", api.Errorf(fiber.StatusBadRequest, "body is not valid JSON: "+err.Error())
	}
	obj, err := v.Object()
	if err != nil {
		return "", api.Errorf(fiber.StatusBadRequest, "body must be a JSON object, got "+v.Type().String())
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
		return "", api.Errorf(fiber.StatusBadRequest, fmt.Sprintf("missing field %q naming the user", field))
	case dup:
		return "", api.Errorf(fiber.StatusBadRequest, fmt.Sprintf("field %q appears more than once", field))
	case found.Type() != fastjson.TypeString:
		return "", api.Errorf(fiber.StatusBadRequest, fmt.Sprintf("field %q must be a string, got %s", field, found.Type()))
	}
	user := string(found.GetStringBytes())
	if err := rig.ValidateUser(user); err != nil {
		return "", api.Errorf(fiber.StatusBadRequest, fmt.Sprintf("field %q: %v", field, err))
	}
	return user, nil
}

var errTimeout = errors.New("JetStream did not acknowledge in time")

// publish sends body to user's subject with a new event id and waits until
// the history stream has stored it. JetStream de-duplicates by the id.
func (s *Server) publish(user string, body []byte) (string, error) {
	id := ulid.Make().String()
	msg := &nats.Msg{
		Subject: rig.SubjectPrefix + rig.SubjectToken(user),
		// The request buffer is reused after the handler returns; the
		// pending publish keeps the message until it is acknowledged.
		Data:   bytes.Clone(body),
		Header: nats.Header{broker.HeaderMsgID: []string{id}},
	}
	paf, err := s.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0), jetstream.WithExpectStream(broker.StreamName))
	if err != nil {
		return "", err
	}
	t := time.NewTimer(s.cfg.PublishTimeout + 100*time.Millisecond)
	defer t.Stop()
	select {
	case <-paf.Ok():
		return id, nil
	case err := <-paf.Err():
		return "", err
	case <-t.C:
		return "", errTimeout
	}
}
