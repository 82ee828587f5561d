package run

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestOrderedStopsInOrder checks each part's context ends only after the
// part before it returned.
func TestOrderedStopsInOrder(t *testing.T) {
	var mu sync.Mutex
	var order []string
	part := func(name string, linger time.Duration) Func {
		return func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(linger) // a part still stopping
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Ordered(ctx, part("clients", 50*time.Millisecond), part("ops", 0), part("nats", 0)) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := []string{"clients", "ops", "nats"}; !slices.Equal(order, want) {
		t.Fatalf("stopped in order %v, want %v", order, want)
	}
}

// TestOrderedStopsOnError checks a failing part stops the others and its
// error is returned.
func TestOrderedStopsOnError(t *testing.T) {
	boom := errors.New("boom")
	waits := func(ctx context.Context) error { <-ctx.Done(); return nil }
	err := Ordered(context.Background(), waits, func(context.Context) error { return boom }, waits)
	if !errors.Is(err, boom) {
		t.Fatalf("Ordered returned %v, want %v", err, boom)
	}
}

// TestAllStopsOnError checks a failing part ends the others' context.
func TestAllStopsOnError(t *testing.T) {
	boom := errors.New("boom")
	err := All(context.Background(), func(ctx context.Context) error { <-ctx.Done(); return nil },
		func(context.Context) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("All returned %v, want %v", err, boom)
	}
}
