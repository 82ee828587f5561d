package ws

import (
	"errors"
	"io"
	"unicode/utf8"
)

// ErrInvalidUTF8 is returned by Read and Discard for a text message that is
// not UTF-8, which RFC 6455 §8.1 says to fail the connection over (1007).
var ErrInvalidUTF8 = errors.New("text message is not valid UTF-8")

// checkUTF8 reads r to its end and returns ErrInvalidUTF8 if what it read
// is not UTF-8, holding only a small buffer. utf8.Valid wants the whole
// text at once, and a plain socket's messages (up to WS_MAX_FRAME_SIZE)
// are dropped unread otherwise, so they are checked piece by piece: a rune
// cut at the end of one read is kept for the next.
func checkUTF8(r io.Reader) error {
	var buf [512]byte
	kept := 0 // the start of a rune cut off by the last read
	for {
		n, err := r.Read(buf[kept:])
		if err != nil && err != io.EOF {
			return err
		}
		n += kept
		end := n
		if err == nil {
			end = completeRunes(buf[:n])
		}
		if !utf8.Valid(buf[:end]) {
			return ErrInvalidUTF8
		}
		kept = copy(buf[:], buf[end:n])
		if err == io.EOF {
			return nil
		}
	}
}

// completeRunes returns the length of p without a rune that starts in its
// last three bytes and needs more bytes than p has. Invalid bytes count as
// complete, for utf8.Valid to find.
func completeRunes(p []byte) int {
	for i := len(p) - 1; i >= 0 && i >= len(p)-(utf8.UTFMax-1); i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				return i
			}
			break
		}
	}
	return len(p)
}
