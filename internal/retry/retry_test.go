package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestDoRetriesUntilSuccess: failures are reported, then Do returns nil.
func TestDoRetriesUntilSuccess(t *testing.T) {
	calls, failed := 0, 0
	err := Do(context.Background(), func(context.Context) error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}, func(error) { failed++ })
	if err != nil || calls != 3 || failed != 2 {
		t.Fatalf("Do = %v after %d calls, %d failures reported", err, calls, failed)
	}
}

// TestDoStopsWithContext: Do returns the context's error once it ends.
func TestDoStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := Do(ctx, func(context.Context) error { return errors.New("never") }, func(error) {})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %v, want the context's deadline", err)
	}
}

// TestBackoffDoublesAndResets checks the pauses' bounds without waiting
// them out.
func TestBackoffDoublesAndResets(t *testing.T) {
	b := Backoff{First: time.Millisecond, Max: 4 * time.Millisecond}
	var got []time.Duration
	for range 4 {
		if err := b.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		got = append(got, b.next)
	}
	want := []time.Duration{2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("next pauses %v, want %v", got, want)
		}
	}
	b.Reset()
	if err := b.Wait(context.Background()); err != nil || b.next != 2*time.Millisecond {
		t.Fatalf("after Reset the next pause is %v, want 2ms", b.next)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (&Backoff{First: time.Hour}).Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on an ended context = %v", err)
	}
}
