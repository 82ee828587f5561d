package rig

import (
	"strconv"
	"strings"
)

// Event ids are what clients echo back to resume (Last-Event-ID). Most are
// the Nats-Msg-Id a publisher set (ingest sets a ULID). Ids starting with
// SeqIDPrefix are made up by RIG-Go; publishers should not use it.

// SeqIDPrefix starts an id that names a position in the history stream (its
// sequence number): the id of a message published without a usable
// Nats-Msg-Id, and long-poll's cursor. Resuming from it is exact.
const SeqIDPrefix = "seq:"

// MaxEventIDLen bounds event ids, ours and publishers'.
const MaxEventIDLen = 256

// ValidEventID reports whether id can be sent as an event id on every
// transport: not empty, at most MaxEventIDLen bytes, no control characters
// (SSE ends a field at a line break; browsers ignore ids with NUL).
func ValidEventID(id string) bool {
	if id == "" || len(id) > MaxEventIDLen {
		return false
	}
	return !strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// SeqID returns the id naming history stream position seq.
func SeqID(seq uint64) string { return SeqIDPrefix + strconv.FormatUint(seq, 10) }

// ParseSeqID returns the position a SeqID names.
func ParseSeqID(id string) (uint64, bool) {
	rest, ok := strings.CutPrefix(id, SeqIDPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil
}
