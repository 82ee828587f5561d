// Package blacklist is the session blacklist on a replicated JetStream
// key-value bucket: ingest adds entries (one key per blacklisted jti, each
// expiring by its own TTL), and every edge keeps a local copy of the bucket
// by watching it, so checking a connecting session costs no NATS round trip.
package blacklist

import (
	"encoding/base64"
	"errors"
	"fmt"
)

// MaxSessionIDLen bounds a jti, in bytes. Its key (4/3 as long) plus the
// bucket's subject prefix must fit comfortably in a NATS control line.
const MaxSessionIDLen = 1024

// ErrInvalidSessionID is wrapped by every error about a malformed jti.
var ErrInvalidSessionID = errors.New("invalid session id")

// ValidateSessionID reports whether jti can be blacklisted: 1 to
// MaxSessionIDLen bytes, any bytes (Key encodes them).
func ValidateSessionID(jti string) error {
	switch {
	case jti == "":
		return fmt.Errorf("%w: empty", ErrInvalidSessionID)
	case len(jti) > MaxSessionIDLen:
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidSessionID, len(jti), MaxSessionIDLen)
	}
	return nil
}

// keyEncoding is base64url without padding: its alphabet (letters, digits,
// '-', '_') is a subset of what KV keys allow, and it never yields '.', so no
// jti can address a wildcard or another key. Strict rejects non-canonical
// spellings, so each key names exactly one jti.
var keyEncoding = base64.RawURLEncoding.Strict()

// Key returns the bucket key of a valid session id.
func Key(jti string) (string, error) {
	if err := ValidateSessionID(jti); err != nil {
		return "", err
	}
	return keyEncoding.EncodeToString([]byte(jti)), nil
}

// SessionID reverses Key.
func SessionID(key string) (string, error) {
	// The decoder skips line breaks; a key must not have any.
	for i := 0; i < len(key); i++ {
		if !keyByte(key[i]) {
			return "", fmt.Errorf("%w: key %q has byte %q", ErrInvalidSessionID, key, key[i])
		}
	}
	b, err := keyEncoding.DecodeString(key)
	if err != nil {
		return "", fmt.Errorf("%w: key %q is not unpadded base64url: %v", ErrInvalidSessionID, key, err)
	}
	jti := string(b)
	if err := ValidateSessionID(jti); err != nil {
		return "", err
	}
	return jti, nil
}

func keyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}
