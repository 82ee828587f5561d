package blacklist

import (
	"encoding/json"
	"fmt"
	"time"
)

// MaxValidity bounds how long one blacklisting lasts. Longer requests are
// refused rather than silently cut: a caller asking for centuries has a bug.
const MaxValidity = 10 * 365 * 24 * time.Hour

// Entry is one blacklisted session, as stored under its key.
type Entry struct {
	SessionID string    `json:"sessionId"`
	Expires   time.Time `json:"expiresAt"`
}

// Listed reports whether the entry still blacklists its session at now.
func (e Entry) Listed(now time.Time) bool { return now.Before(e.Expires) }

func (e Entry) encode() []byte {
	b, _ := json.Marshal(e)
	return b
}

func decodeEntry(b []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return Entry{}, fmt.Errorf("blacklist entry %q: %w", b, err)
	}
	if e.Expires.IsZero() {
		return Entry{}, fmt.Errorf("blacklist entry %q: no expiresAt", b)
	}
	return e, nil
}
