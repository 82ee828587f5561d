package phoenix

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rig-go/rig/internal/rig"
)

// The long-poll transport of phoenix.js (its LongPoll class) keeps no
// connection: it GETs /socket/longpoll for what the server has, POSTs what
// it sends, and names its session with the token of the server's last
// answer. Phoenix keeps a session in a process; RIG-Go's edges keep nothing
// another edge needs: the token itself says whose session it is, which
// topics it joined and the stream position of the last message of each
// that the client was answered with, signed by a key every edge shares, so
// any edge can take the session over and replay from history what the
// client has not had.

// PollToken is the state a long-poll token carries.
type PollToken struct {
	// ID names the session: the edge serving it listens for its requests
	// under this name.
	ID string `json:"i"`
	// Gen changes with each answer that handed the client frames: an edge
	// whose session's Gen differs from the token's was passed by.
	Gen uint64 `json:"g"`
	// Issued is when the token was issued (Unix seconds): an old one is
	// an expired session.
	Issued int64 `json:"t"`
	// Auth binds the session to the JWT it was opened with (see AuthOf).
	Auth string `json:"a"`
	// Vsn is the serializer the session speaks.
	Vsn Version `json:"v"`
	// Topics are the joined user topics, each with the position of the
	// last message of it the client was answered with (or the join's start).
	Topics []TopicPosition `json:"c,omitempty"`
}

// TopicPosition is one joined topic of a long-poll session.
type TopicPosition struct {
	User string
	Pos  uint64
}

// MarshalJSON writes [user, pos]: a token travels in every URL.
func (tp TopicPosition) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{tp.User, tp.Pos})
}

// UnmarshalJSON reads [user, pos].
func (tp *TopicPosition) UnmarshalJSON(b []byte) error {
	var pair []json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil || len(pair) != 2 {
		return errors.New("topic must be [user, position]")
	}
	if err := json.Unmarshal(pair[0], &tp.User); err != nil {
		return errors.New("topic user must be a string")
	}
	if err := json.Unmarshal(pair[1], &tp.Pos); err != nil {
		return errors.New("topic position must be an unsigned integer")
	}
	return nil
}

// Token bounds: a token rides in the query of every poll, and proxies
// refuse long request lines (nginx: 8 KiB by default).
const (
	TokenPrefix = "lp1."
	// MaxTokenLen bounds a token as it arrives.
	MaxTokenLen = 6 << 10
	// MaxTopicBytes bounds the user ids of a session's topics together,
	// so that its token stays under MaxTokenLen.
	MaxTopicBytes = 3 << 10
	// MaxTopics bounds the topics of a session.
	MaxTopics = 100
	idLen     = 22 // 16 random bytes, base64url
)

// ErrBadToken is wrapped by every error about a token that is not one an
// edge issued, or not any more.
var ErrBadToken = errors.New("invalid long-poll token")

// TokenKey derives the key that signs poll tokens from a secret every edge
// shares, so that the key is never the secret itself.
func TokenKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("rig-go phoenix long-poll token v1"))
	return m.Sum(nil)
}

// AuthOf is the binding of a session to its JWT: a token is only good with
// the JWT it was issued for, so a leaked poll token alone opens nothing.
func AuthOf(jwt string) string {
	h := sha256.Sum256([]byte(jwt))
	return base64.RawURLEncoding.EncodeToString(h[:16])
}

// IsPollToken says whether a token= value is a poll token rather than a
// JWT: phoenix.js sends both under the same name.
func IsPollToken(v string) bool { return strings.HasPrefix(v, TokenPrefix) }

// EncodeToken signs t with key.
func EncodeToken(key []byte, t *PollToken) string {
	payload, _ := json.Marshal(t)
	body := base64.RawURLEncoding.EncodeToString(payload)
	return TokenPrefix + body + "." + base64.RawURLEncoding.EncodeToString(sign(key, body))
}

func sign(key []byte, body string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	return m.Sum(nil)
}

// DecodeToken checks a token's signature and shape and returns what it
// carries. It does not check its age (see PollToken.Expired).
func DecodeToken(key []byte, s string) (*PollToken, error) {
	if len(s) > MaxTokenLen {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadToken, len(s), MaxTokenLen)
	}
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	body, mac, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return nil, fmt.Errorf("%w: expected %s<payload>.<signature>", ErrBadToken, TokenPrefix)
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(mac)
	if err != nil || !hmac.Equal(got, sign(key, body)) {
		return nil, fmt.Errorf("%w: bad signature", ErrBadToken)
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrBadToken)
	}
	var t PollToken
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if len(t.Topics) == 0 {
		t.Topics = nil // "c":[] and no "c" are the same token
	}
	return &t, nil
}

// check holds a signed token to what an edge issues, so that a bug or an
// old key cannot make one that opens more than a join could.
func (t *PollToken) check() error {
	if len(t.ID) != idLen {
		return fmt.Errorf("session id of %d bytes, expected %d", len(t.ID), idLen)
	}
	if t.Vsn != V1 && t.Vsn != V2 {
		return fmt.Errorf("unknown serializer %d", t.Vsn)
	}
	if len(t.Topics) > MaxTopics {
		return fmt.Errorf("%d topics, more than %d", len(t.Topics), MaxTopics)
	}
	seen := make(map[string]bool, len(t.Topics))
	size := 0
	for _, tp := range t.Topics {
		if err := rig.ValidateUser(tp.User); err != nil {
			return err
		}
		if seen[tp.User] {
			return fmt.Errorf("topic user:%s twice", tp.User)
		}
		seen[tp.User] = true
		size += len(tp.User)
	}
	if size > MaxTopicBytes {
		return fmt.Errorf("topics of %d bytes, more than %d", size, MaxTopicBytes)
	}
	return nil
}

// Expired says whether the token is older than maxAge at now: its session
// was idle that long.
func (t *PollToken) Expired(now time.Time, maxAge time.Duration) bool {
	issued := time.Unix(t.Issued, 0)
	return now.Sub(issued) > maxAge || issued.After(now.Add(time.Minute))
}

// PollAnswer is the JSON body of every long-poll answer: phoenix.js reads
// the status from it, not from HTTP. A poll's answer lists messages (204:
// none); a POST's (messages nil) does not.
func PollAnswer(status int, token string, messages [][]byte, errMsg string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"status":%d`, status)
	if token != "" {
		b.WriteString(`,"token":`)
		b.WriteString(quote(token))
	}
	if status == 200 && messages != nil || status == 204 {
		// Each message is a frame as the WebSocket would carry it, as a
		// JSON string: phoenix.js hands it to the same decoder.
		b.WriteString(`,"messages":[`)
		for i, m := range messages {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(quote(string(m)))
		}
		b.WriteByte(']')
	}
	if errMsg != "" {
		b.WriteString(`,"error":`)
		b.WriteString(quote(errMsg))
	}
	b.WriteByte('}')
	return b.Bytes()
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ErrBatch is wrapped by every error about a POSTed batch: each is one of
// its bounds exceeded.
var ErrBatch = errors.New("invalid long-poll batch")

// SplitBatch reads the body of a long-poll POST: newline-delimited
// messages when phoenix.js sends several (application/x-ndjson), else one.
// Each is at most maxLine bytes, and there are at most maxLines.
func SplitBatch(body []byte, ndjson bool, maxLine, maxLines int) ([][]byte, error) {
	if !ndjson {
		if len(body) > maxLine {
			return nil, fmt.Errorf("%w: message of %d bytes, more than %d", ErrBatch, len(body), maxLine)
		}
		return [][]byte{body}, nil
	}
	var out [][]byte
	for line := range bytes.SplitSeq(body, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(line) > maxLine {
			return nil, fmt.Errorf("%w: line %d of %d bytes, more than %d", ErrBatch, len(out)+1, len(line), maxLine)
		}
		if len(out) == maxLines {
			return nil, fmt.Errorf("%w: more than %d messages", ErrBatch, maxLines)
		}
		out = append(out, line)
	}
	return out, nil
}
