package rig

import (
	"errors"
	"fmt"
	"strings"
)

// MaxUserLen is the longest user id accepted anywhere, in bytes.
const MaxUserLen = 256

// SubjectPrefix starts every delivery subject: a message for user u is
// published to SubjectPrefix + SubjectToken(u).
const SubjectPrefix = "user."

// LiveSubjectPrefix starts the subjects edges subscribe to: the history
// stream republishes every message it stores on user.<token> to
// LiveSubjectPrefix + "user.<token>", with its stream sequence. Delivering
// only what is stored means a message JetStream refused is never delivered,
// and the sequence lets an edge see and fill any gap.
const LiveSubjectPrefix = "rig.live."

// ErrInvalidUser is wrapped by every error about a malformed user id.
var ErrInvalidUser = errors.New("invalid user id")

// ValidateUser reports whether id may name a user: not empty and at most
// MaxUserLen bytes. Any other byte is allowed, because SubjectToken escapes it.
func ValidateUser(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidUser)
	case len(id) > MaxUserLen:
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidUser, len(id), MaxUserLen)
	}
	return nil
}

// plain reports whether b stands for itself in a subject token.
func plain(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_'
}

const upperHex = "0123456789ABCDEF"

// SubjectToken maps a user id to the single subject token that carries its
// messages: ASCII letters, digits, '-' and '_' stand for themselves, every
// other byte (including '%') becomes %XX in upper-case hex. The result never
// contains '.', '*', '>' or white space, so no user id can reach another
// user's subject or a wildcard, and UserFromToken reverses it exactly.
func SubjectToken(user string) string {
	n := 0
	for i := 0; i < len(user); i++ {
		if !plain(user[i]) {
			n++
		}
	}
	if n == 0 {
		return user
	}
	var b strings.Builder
	b.Grow(len(user) + 2*n)
	for i := 0; i < len(user); i++ {
		c := user[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
	return b.String()
}

// UserFromToken reverses SubjectToken. It accepts only tokens SubjectToken
// can produce (upper-case hex, no escaped plain bytes), so every user has
// exactly one token.
func UserFromToken(token string) (string, error) {
	if strings.IndexByte(token, '%') < 0 {
		for i := 0; i < len(token); i++ {
			if !plain(token[i]) {
				return "", fmt.Errorf("%w: subject token %q has byte %q", ErrInvalidUser, token, token[i])
			}
		}
		if err := ValidateUser(token); err != nil {
			return "", err
		}
		return token, nil
	}
	var b strings.Builder
	b.Grow(len(token))
	for i := 0; i < len(token); i++ {
		c := token[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		if c != '%' || i+2 >= len(token) {
			return "", fmt.Errorf("%w: subject token %q is not escaped correctly at byte %d", ErrInvalidUser, token, i)
		}
		hi, lo := unhex(token[i+1]), unhex(token[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("%w: subject token %q has a bad escape at byte %d", ErrInvalidUser, token, i)
		}
		d := byte(hi<<4 | lo)
		if plain(d) {
			return "", fmt.Errorf("%w: subject token %q escapes plain byte %q", ErrInvalidUser, token, d)
		}
		b.WriteByte(d)
		i += 2
	}
	user := b.String()
	if err := ValidateUser(user); err != nil {
		return "", err
	}
	return user, nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// Subject returns the delivery subject of a valid user id.
func Subject(user string) (string, error) {
	if err := ValidateUser(user); err != nil {
		return "", err
	}
	return SubjectPrefix + SubjectToken(user), nil
}

// LiveSubject returns the subject an edge subscribes to for a valid user id.
func LiveSubject(user string) string {
	return LiveSubjectPrefix + SubjectPrefix + SubjectToken(user)
}

// UserFromSubject returns the user a delivery subject belongs to.
func UserFromSubject(subject string) (string, error) {
	token, ok := strings.CutPrefix(subject, SubjectPrefix)
	if !ok {
		return "", fmt.Errorf("%w: subject %q does not start with %q", ErrInvalidUser, subject, SubjectPrefix)
	}
	return UserFromToken(token)
}
