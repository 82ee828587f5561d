package e2e

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rig-go/rig/internal/check"
)

// PresenceSession is one entry of GET /v1/users/<user>/sessions.
type PresenceSession struct {
	JTI            string    `json:"jti"`
	User           string    `json:"user"`
	Users          []string  `json:"users"`
	Transport      string    `json:"transport"`
	Edge           string    `json:"edge"`
	ConnectedSince time.Time `json:"connectedSince"`
}

func onlineUsers(t testing.TB, ingestURL string) ([]string, Response) {
	t.Helper()
	r := Do(t, "GET", ingestURL+"/v1/users", "", nil)
	if r.Status != 200 {
		t.Fatalf("GET /v1/users: %d %s", r.Status, r.Body)
	}
	var users []string
	r.JSON(t, &users)
	return users, r
}

func userSessions(t testing.TB, ingestURL, user string) []PresenceSession {
	t.Helper()
	r := Do(t, "GET", ingestURL+"/v1/users/"+url.PathEscape(user)+"/sessions", "", nil)
	if r.Status != 200 {
		t.Fatalf("GET sessions of %q: %d %s", user, r.Status, r.Body)
	}
	var s []PresenceSession
	r.JSON(t, &s)
	return s
}

// TestPresence: ingest lists the users and sessions of both edges,
// gathered at query time, drops them when they disconnect, answers within
// PRESENCE_TIMEOUT when an edge does not answer, and refuses hostile ids.
func TestPresence(t *testing.T) {
	st := StartTwoEdges(t, nil, map[string]string{"PRESENCE_TIMEOUT": "1s"})
	user := "pres@example.com"
	before := time.Now().Add(-time.Second)
	onA := MustSSE(t, sseURL(st.A.URL, Token(t, user, TokenOpts{JTI: "pres-a"})))
	onB := MustSSE(t, sseURL(st.B.URL, Token(t, user, TokenOpts{JTI: "pres-b"})))
	other := MustSSE(t, sseURL(st.B.URL, Token(t, "pres-other")))
	after := time.Now().Add(time.Second)

	users, r := onlineUsers(t, st.Ingest.URL)
	if !slices.Contains(users, user) || !slices.Contains(users, "pres-other") {
		t.Fatalf("users %v", users)
	}
	if r.Header.Get("Rig-Presence-Edges") != "2" || r.Header.Get("Rig-Presence-Complete") != "true" {
		t.Fatalf("headers %v", r.Header)
	}
	sessions := userSessions(t, st.Ingest.URL, user)
	if len(sessions) != 2 {
		t.Fatalf("sessions %+v, want one per edge", sessions)
	}
	byJTI := map[string]PresenceSession{}
	for _, s := range sessions {
		byJTI[s.JTI] = s
		if s.User != user || s.Transport != "sse" || !slices.Equal(s.Users, []string{user}) ||
			s.ConnectedSince.Before(before) || s.ConnectedSince.After(after) {
			t.Fatalf("session %+v", s)
		}
	}
	if byJTI["pres-a"].Edge != "edge-a" || byJTI["pres-b"].Edge != "edge-b" {
		t.Fatalf("sessions %+v, want pres-a on edge-a and pres-b on edge-b", sessions)
	}

	// Once every edge announced itself, an answer comes as soon as both replied.
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		start := time.Now()
		onlineUsers(t, st.Ingest.URL)
		if got := time.Since(start); got >= 500*time.Millisecond {
			return fmt.Errorf("presence answers only at the timeout: got %v", got)
		}
		return nil
	})

	onA.Close()
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		s := userSessions(t, st.Ingest.URL, user)
		if !(len(s) == 1 && s[0].JTI == "pres-b") {
			return fmt.Errorf("closed session still listed: %+v", s)
		}
		return nil
	})
	onB.Close()
	other.Close()
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		users, _ := onlineUsers(t, st.Ingest.URL)
		if slices.Contains(users, user) || slices.Contains(users, "pres-other") {
			return fmt.Errorf("users still online after disconnecting: %v", users)
		}
		return nil
	})
	if s := userSessions(t, st.Ingest.URL, user); len(s) != 0 {
		t.Fatalf("sessions after disconnect: %+v", s)
	}

	t.Run("an edge that does not answer costs the timeout, not more", func(t *testing.T) {
		MustSSE(t, sseURL(st.A.URL, Token(t, "still-here")))
		st.B.Signal(syscall.SIGSTOP)
		defer st.B.Signal(syscall.SIGCONT)
		start := time.Now()
		users, r := onlineUsers(t, st.Ingest.URL)
		el := time.Since(start)
		if el > 3*time.Second {
			t.Fatalf("took %s with PRESENCE_TIMEOUT=1s", el)
		}
		if !slices.Contains(users, "still-here") || r.Header.Get("Rig-Presence-Complete") != "false" || r.Header.Get("Rig-Presence-Edges") != "1" {
			t.Fatalf("users %v headers %v", users, r.Header)
		}
	})

	t.Run("hostile user ids get 400", func(t *testing.T) {
		for _, path := range []string{
			"/v1/users/" + strings.Repeat("u", 257) + "/sessions",
			"/v1/users/%zz/sessions",
			"/v1/users/%/sessions",
		} {
			r := RawRequest(t, st.Ingest.URL, "GET", path)
			if r.Status != 400 {
				t.Fatalf("GET %.60s: %d %s", path, r.Status, r.Body)
			}
			r.ErrorMessage(t)
		}
		// Escaped ids that look like subjects or paths are just ids.
		for _, id := range []string{"a.b", "user.>", "*", "a/b", "x y"} {
			if s := userSessions(t, st.Ingest.URL, id); len(s) != 0 {
				t.Fatalf("sessions of %q: %+v", id, s)
			}
		}
	})
}
