package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The pacer never lets a request leave before it is due, across sleeps
// shorter and longer than the runtime's millisecond poll timeout, and
// returns at once for a time already past.
func TestPacerNeverEarly(t *testing.T) {
	p := newPacer()
	defer p.done()
	start := time.Now()
	for _, d := range []time.Duration{-time.Second, 0, 50 * time.Microsecond, 300 * time.Microsecond, 1700 * time.Microsecond, 5 * time.Millisecond} {
		due := start.Add(d)
		if d > 0 {
			due = time.Now().Add(d)
		}
		p.until(due)
		if now := time.Now(); now.Before(due) {
			t.Fatalf("until(%v) returned %v early", d, due.Sub(now))
		}
	}
}

func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.log")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\nfour: address already in use\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := logTail(path), "two | three | four: address already in use"; got != want {
		t.Fatalf("logTail = %q, want %q", got, want)
	}
	if got := logTail(filepath.Join(t.TempDir(), "missing.log")); !strings.Contains(got, "no such file") {
		t.Fatalf("logTail of a missing file = %q", got)
	}
}
