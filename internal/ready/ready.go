// Package ready holds a component's readiness: nil while it can serve, else
// the error saying why not, and whether that reason is new (worth logging).
package ready

import (
	"errors"
	"sync/atomic"
)

// State is a component's readiness, safe for concurrent use. Its zero value
// is ready; New starts it not ready.
type State struct {
	err    atomic.Pointer[error]
	logged atomic.Pointer[string] // the last reason Fail reported as new
}

// New returns a State not ready for why (e.g. "connecting to NATS").
func New(why string) *State {
	s := &State{}
	err := errors.New(why)
	s.err.Store(&err)
	return s
}

// Err returns nil when ready, else why not.
func (s *State) Err() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Ready marks the state ready and reports whether it was not.
func (s *State) Ready() bool {
	was := s.err.Swap(nil) != nil
	s.logged.Store(nil)
	return was
}

// Fail marks the state not ready because of err and reports whether that
// is news: the state was ready, or err says something else than the last
// failure reported as news. A component retrying every moment logs each
// reason once that way.
func (s *State) Fail(err error) bool {
	wasReady := s.err.Swap(&err) == nil
	msg := err.Error()
	last := s.logged.Swap(&msg)
	return wasReady || last == nil || *last != msg
}
