// Package demo is the local stack's demo page: a page that shows one user's
// events as they arrive (through clients/js), and the request it sends a
// message with, forwarded to ingest. The edge serves it only when
// DEMO_ENABLED is set, which only `task run` does.
package demo

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	rigjs "github.com/rig-go/rig/clients/js"
	"github.com/rig-go/rig/internal/rig"
)

//go:embed static
var static embed.FS

// Files is the page (index.html, demo.js, demo.css) and, under client/,
// clients/js as that directory holds it, so that the page imports the
// client it documents rather than a copy.
var Files http.FileSystem = http.FS(files{})

type files struct{}

func (files) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if rest, ok := strings.CutPrefix(name, "client/"); ok {
		return rigjs.FS.Open(rest)
	}
	return static.Open("static/" + name)
}

// Bounds of what the page may send: a chat line, not a payload.
const (
	MaxBody = 4 << 10
	MaxText = 500 // characters
)

// Message is what the page sends: a line of text for a user.
type Message struct {
	To   string `json:"to"`
	Text string `json:"text"`
}

// Error is a refusal of a request, with the HTTP status it deserves.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Parse reads the page's request body: a JSON object with exactly "to" (a
// valid user id) and "text" (1 to MaxText characters), at most MaxBody bytes.
func Parse(body []byte) (Message, error) {
	var m Message
	if len(body) > MaxBody {
		return m, &Error{http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes: at most %d", len(body), MaxBody)}
	}
	if !utf8.Valid(body) {
		return m, &Error{http.StatusBadRequest, "body is not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Message{}, &Error{http.StatusBadRequest, `body must be a JSON object {"to": "<user>", "text": "<message>"}: ` + err.Error()}
	}
	if dec.More() {
		return Message{}, &Error{http.StatusBadRequest, "body must hold one JSON object, and nothing after it"}
	}
	if err := rig.ValidateUser(m.To); err != nil {
		return Message{}, &Error{http.StatusBadRequest, fmt.Sprintf(`"to": %v`, err)}
	}
	switch n := utf8.RuneCountInString(m.Text); {
	case strings.TrimSpace(m.Text) == "":
		return Message{}, &Error{http.StatusBadRequest, `"text" is empty`}
	case n > MaxText:
		return Message{}, &Error{http.StatusBadRequest, fmt.Sprintf(`"text" has %d characters: at most %d`, n, MaxText)}
	}
	return m, nil
}

// Forwarder posts the page's messages to ingest, as a back-end would.
type Forwarder struct {
	url    string // ingest's POST /v1/messages
	token  string // ingest's API token; "": none
	client *http.Client
	// slots bounds the forwards in flight, so that a page (or a script
	// with a token) cannot pile up requests to ingest.
	slots chan struct{}
}

// maxInFlight is how many forwards may wait for ingest at once.
const maxInFlight = 8

// NewForwarder forwards to the ingest API at base (DEMO_INGEST_URL), with
// token (DEMO_INGEST_TOKEN) when it is not empty.
func NewForwarder(base, token string) *Forwarder {
	return &Forwarder{
		url:    strings.TrimSuffix(base, "/") + "/v1/messages",
		token:  token,
		client: &http.Client{Timeout: 10 * time.Second},
		slots:  make(chan struct{}, maxInFlight),
	}
}

// ErrBusy is Send's refusal when maxInFlight forwards are waiting.
var ErrBusy = errors.New("too many messages in flight to ingest; retry in a moment")

// Answer is ingest's answer to a forwarded message.
type Answer struct {
	Status     int
	Body       []byte // JSON: {"id": ...} or {"error": ...}
	RetryAfter string // ingest's Retry-After (with 503)
}

// Send posts m to ingest as {"user": to, "from": from, "text": text} and
// returns ingest's answer (202 {"id": ...} once stored). An error means
// ingest did not answer.
func (f *Forwarder) Send(ctx context.Context, from string, m Message) (Answer, error) {
	select {
	case f.slots <- struct{}{}:
		defer func() { <-f.slots }()
	default:
		return Answer{}, ErrBusy
	}
	body, err := json.Marshal(struct {
		User string `json:"user"`
		From string `json:"from"`
		Text string `json:"text"`
	}{m.To, from, m.Text})
	if err != nil {
		return Answer{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("ingest %s: %w", f.url, err)
	}
	defer resp.Body.Close()
	// Ingest's answers are small JSON; a larger one is not ingest's.
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Answer{}, fmt.Errorf("ingest %s: reading the answer: %w", f.url, err)
	}
	return Answer{Status: resp.StatusCode, Body: b, RetryAfter: resp.Header.Get("Retry-After")}, nil
}
