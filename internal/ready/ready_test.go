package ready

import (
	"errors"
	"testing"
)

// TestFailReportsEachReasonOnce: a reason is news the first time, again
// after a different one or after being ready, and never while repeated.
func TestFailReportsEachReasonOnce(t *testing.T) {
	s := New("starting")
	if err := s.Err(); err == nil || err.Error() != "starting" {
		t.Fatalf("new state: Err() = %v", err)
	}
	a, b := errors.New("a"), errors.New("b")
	for i, c := range []struct {
		err  error
		news bool
	}{{a, true}, {a, false}, {b, true}, {b, false}, {a, true}} {
		if news := s.Fail(c.err); news != c.news {
			t.Fatalf("step %d: Fail(%v) = %v, want %v", i, c.err, news, c.news)
		}
		if s.Err() != c.err {
			t.Fatalf("step %d: Err() = %v, want %v", i, s.Err(), c.err)
		}
	}
	if !s.Ready() || s.Err() != nil {
		t.Fatal("Ready did not make the state ready")
	}
	if s.Ready() {
		t.Fatal("Ready reported a change twice")
	}
	if !s.Fail(a) {
		t.Fatal("the same reason after being ready is not news")
	}
	var zero State
	if zero.Err() != nil || !zero.Fail(a) {
		t.Fatal("zero State is not ready")
	}
}
