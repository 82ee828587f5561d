package main

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// pacer sleeps until each request of an open-loop schedule is due, on an
// OS thread of its own. time.Sleep cannot pace 2,000 requests a second: a
// Go program whose goroutines all wait sleeps in epoll_wait, whose timeout
// is in whole milliseconds, so a timer due in 0.3 ms fires after about 1
// ms and the requests leave in bursts of two or three (seen as a schedule
// lag p99 of 1.15 ms for every system). clock_nanosleep wakes the locked
// thread within the timer slack, set here to 1 µs for that thread only.
type pacer struct{}

func newPacer() *pacer {
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	return &pacer{}
}

func (*pacer) until(due time.Time) {
	for {
		d := time.Until(due)
		if d <= 0 {
			return
		}
		ts := unix.NsecToTimespec(d.Nanoseconds())
		if err := unix.ClockNanosleep(unix.CLOCK_MONOTONIC, 0, &ts, nil); err != nil && err != unix.EINTR {
			time.Sleep(time.Until(due))
			return
		}
	}
}

// done gives the thread back to the runtime.
func (*pacer) done() { runtime.UnlockOSThread() }
