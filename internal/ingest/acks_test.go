package ingest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/internal/broker"
)

// TestPublishWait stores messages through publishWait on a real JetStream
// and reads them back; a slot is reused, and the late answer to a publish
// that gave up (a reply on the slot's earlier subject) is not taken for
// the next publish's; a publish whose deadline has passed stores nothing.
func TestPublishWait(t *testing.T) {
	s, st := testServer(t, 100)
	deadline := func() time.Time { return time.Now().Add(2 * time.Second) }
	ack, err := s.publishWait("alice", "id-1", []byte(`{"user":"alice","n":1}`), deadline())
	if err != nil || ack.Stream != broker.StreamName || ack.Sequence == 0 || ack.Duplicate {
		t.Fatalf("first publish: %+v, %v", ack, err)
	}
	first := ack.Sequence

	// The slot the first publish used is free again; a second answer on
	// that publish's subject is what a late one looks like.
	s.acks.mu.Lock()
	if len(s.acks.free) != 1 {
		s.acks.mu.Unlock()
		t.Fatalf("%d free slots after one publish, want 1", len(s.acks.free))
	}
	slot := s.acks.free[0]
	s.acks.mu.Unlock()
	if err := s.broker.NC.Publish(slot.prefix+".1", []byte(`{"stream":"`+broker.StreamName+`","seq":999999}`)); err != nil {
		t.Fatal(err)
	}
	ack, err = s.publishWait("alice", "id-2", []byte(`{"user":"alice","n":2}`), deadline())
	if err != nil || ack.Sequence != first+1 {
		t.Fatalf("second publish: %+v, %v (want sequence %d, not the stale answer's)", ack, err, first+1)
	}
	ack, err = s.publishWait("alice", "id-2", []byte(`{"user":"alice","n":2}`), deadline())
	if err != nil || !ack.Duplicate || ack.Sequence != first+1 {
		t.Fatalf("same id again: %+v, %v, want a duplicate of %d", ack, err, first+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := st.GetMsg(ctx, first+1)
	if err != nil || string(m.Data) != `{"user":"alice","n":2}` || m.Header.Get(broker.HeaderMsgID) != "id-2" {
		t.Fatalf("stored: %+v, %v", m, err)
	}
	if _, err := s.publishWait("alice", "id-3", []byte(`{}`), time.Now()); !errors.Is(err, errTimeout) {
		t.Fatalf("publish with its deadline passed: %v, want %v", err, errTimeout)
	}
	// ... and stores nothing: a quick acknowledgement is not taken after
	// the deadline, and the message it would acknowledge is not sent.
	ack, err = s.publishWait("alice", "id-4", []byte(`{"user":"alice","n":4}`), deadline())
	if err != nil || ack.Sequence != first+2 {
		t.Fatalf("publish after the timed-out one: %+v, %v, want sequence %d", ack, err, first+2)
	}
}

func TestParseAck(t *testing.T) {
	ack, err := parseAck([]byte(`{"stream":"S","seq":7,"duplicate":true,"domain":"d"}`))
	if err != nil || *ack != (jetstream.PubAck{Stream: "S", Sequence: 7, Duplicate: true, Domain: "d"}) {
		t.Fatalf("ack: %+v, %v", ack, err)
	}
	_, err = parseAck([]byte(`{"error":{"code":503,"err_code":10158,"description":"duplicate message id is in process"}}`))
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != 503 || apiErr.ErrorCode != errDuplicateInProcess || apiErr.Description == "" {
		t.Fatalf("error answer: %v", err)
	}
	if _, err := parseAck([]byte(`{"seq":1}`)); !errors.Is(err, jetstream.ErrInvalidJSAck) {
		t.Fatalf("ack without a stream: %v", err)
	}
	if _, err := parseAck([]byte(`not json`)); err == nil {
		t.Fatal("not JSON: no error")
	}
}
