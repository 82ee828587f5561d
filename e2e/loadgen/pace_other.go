//go:build !linux

package main

import "time"

// pacer sleeps until each request of an open-loop schedule is due. Off
// Linux it is time.Sleep, with the runtime's timer resolution.
type pacer struct{}

func newPacer() *pacer { return &pacer{} }

func (*pacer) until(due time.Time) { time.Sleep(time.Until(due)) }

func (*pacer) done() {}
