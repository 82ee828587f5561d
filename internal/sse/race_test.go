//go:build race

package sse

// raceEnabled: the race detector is on, and sync.Pool drops a share of
// what it is given, so allocation counts mean nothing.
const raceEnabled = true
