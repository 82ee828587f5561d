package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// runAdmin is `ingest admin`: the operator's actions (see docs/ADMIN.md)
// for scripts, over ingest's HTTP API, so that it needs nothing the API
// does not already check (API_TOKENS).
func runAdmin(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, adminUsage)
		if len(args) == 0 {
			return errors.New("admin: a command is needed: sessions, kill, send, routes, health or metrics")
		}
		return flag.ErrHelp
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("ingest admin "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, adminUsage); fs.PrintDefaults() }
	a := &admin{out: stdout}
	fs.StringVar(&a.base, "url", or(getenv("INGEST_URL"), "http://127.0.0.1:4010"), "ingest's API (default $INGEST_URL or http://127.0.0.1:4010)")
	fs.StringVar(&a.token, "token", getenv("API_TOKEN"), "one of ingest's API_TOKENS (default $API_TOKEN)")
	fs.BoolVar(&a.json, "json", false, "print the API's JSON instead of a table")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for ingest")
	var run func(ctx context.Context, pos []string) error
	var npos int
	switch cmd {
	case "sessions":
		user := fs.String("user", "", "only this user's sessions")
		q := fs.String("q", "", "only sessions whose user or jti contains this")
		limit := fs.Int("limit", 100, "print at most this many sessions (pages of up to 1000 are fetched)")
		run = func(ctx context.Context, _ []string) error { return a.sessions(ctx, *user, *q, *limit) }
	case "kill":
		dur := fs.Duration("for", 0, "how long the session stays blacklisted (default: until its token expires, as its connections say)")
		npos = 1
		run = func(ctx context.Context, pos []string) error { return a.kill(ctx, pos[0], *dur) }
	case "send":
		field := fs.String("user-field", or(getenv("MESSAGE_USER_FIELD"), "user"), "the message's user field (ingest's MESSAGE_USER_FIELD)")
		wait := fs.Duration("wait", 5*time.Second, "how long to wait for the edges' delivery receipts (at most 30s; 0: only store it)")
		npos = 2
		run = func(ctx context.Context, pos []string) error { return a.send(ctx, pos[0], pos[1], *field, *wait) }
	case "routes":
		run = func(ctx context.Context, _ []string) error { return a.routes(ctx) }
	case "health":
		run = func(ctx context.Context, _ []string) error { return a.health(ctx) }
	case "metrics":
		run = func(ctx context.Context, _ []string) error { return a.metrics(ctx) }
	default:
		fmt.Fprint(stderr, adminUsage)
		return fmt.Errorf("admin: unknown command %q: expected sessions, kill, send, routes, health or metrics", cmd)
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != npos {
		return fmt.Errorf("admin %s: expected %d argument(s), got %d (%q); see ingest admin -help", cmd, npos, len(pos), pos)
	}
	if u, err := url.Parse(a.base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("admin: invalid --url=%q: expected http(s)://host:port", a.base)
	}
	a.base = strings.TrimRight(a.base, "/")
	a.client = &http.Client{Timeout: *timeout}
	return run(ctx, pos)
}

const adminUsage = `Usage: ingest admin <command> [flags]

  sessions [--user U] [--q S] [--limit N]   who is connected, on which edge, since when
  kill <jti> [--for 1h]                     blacklist a session: its connections end at once
  send <user> <json> [--wait 5s]            publish a message (a JSON object) to a user and
                                            wait for its delivery receipts from the edges
  routes                                    the gateway's routes, from the file and at runtime
  health                                    NATS, the streams, every edge and ingest
  metrics                                   the last sample of the console's charts, per edge

Flags common to all: --url (INGEST_URL), --token (API_TOKEN), --json, --timeout.
`

// parseInterspersed parses fs's flags wherever they are among args and
// returns the other arguments: "kill abc --for 1h" as "kill --for 1h abc".
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

type admin struct {
	base, token string
	json        bool
	client      *http.Client
	out         io.Writer
}

// call does one API request and decodes a 2xx answer's JSON into v (if
// not nil). Any other answer is an error of one line: the status and the
// API's own message.
func (a *admin) call(ctx context.Context, method, path string, body []byte, v any) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach ingest at %s (--url, INGEST_URL): %v", a.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		hint := ""
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			hint = " (give one of ingest's API_TOKENS with --token or API_TOKEN)"
		case http.StatusForbidden:
			hint = " (the token given with --token or API_TOKEN is not one of ingest's API_TOKENS)"
		}
		return nil, fmt.Errorf("%s %s: %d %s%s", method, path, resp.StatusCode, oneLine(msg, 300), hint)
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			return nil, fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return data, nil
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

func (a *admin) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *admin) table(header string, rows [][]string) error {
	w := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

type session struct {
	JTI            string    `json:"jti"`
	User           string    `json:"user"`
	Users          []string  `json:"users"`
	Transport      string    `json:"transport"`
	Edge           string    `json:"edge"`
	ConnectedSince time.Time `json:"connectedSince"`
	Remote         string    `json:"remote"`
	Expires        time.Time `json:"expires"`
}

type sessionsPage struct {
	Sessions []session `json:"sessions"`
	Total    int       `json:"total"`
	Next     string    `json:"next,omitempty"`
	Edges    int       `json:"edges"`
	Complete bool      `json:"complete"`
}

// listSessions fetches pages until limit sessions or the last page.
func (a *admin) listSessions(ctx context.Context, user, q string, limit int) (sessionsPage, error) {
	var all sessionsPage
	cursor := ""
	for {
		v := url.Values{"limit": {strconv.Itoa(min(max(limit-len(all.Sessions), 1), 1000))}}
		for k, s := range map[string]string{"user": user, "q": q, "cursor": cursor} {
			if s != "" {
				v.Set(k, s)
			}
		}
		var p sessionsPage
		if _, err := a.call(ctx, "GET", "/v1/admin/sessions?"+v.Encode(), nil, &p); err != nil {
			return all, err
		}
		all.Sessions = append(all.Sessions, p.Sessions...)
		all.Total, all.Edges, all.Complete, all.Next = p.Total, p.Edges, p.Complete, p.Next
		if cursor = p.Next; cursor == "" || len(all.Sessions) >= limit {
			return all, nil
		}
	}
}

func (a *admin) sessions(ctx context.Context, user, q string, limit int) error {
	if limit < 1 {
		return fmt.Errorf("admin sessions: invalid --limit=%d: expected at least 1", limit)
	}
	p, err := a.listSessions(ctx, user, q, limit)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(p)
	}
	now := time.Now()
	var rows [][]string
	for _, s := range p.Sessions {
		rows = append(rows, []string{s.User, or(s.JTI, "-"), s.Transport, s.Edge, or(s.Remote, "-"),
			s.ConnectedSince.Local().Format(time.DateTime), expiresIn(s.Expires, now), strings.Join(s.Users, ",")})
	}
	if err := a.table("USER\tJTI\tTRANSPORT\tEDGE\tREMOTE\tCONNECTED\tEXPIRES IN\tRECEIVES", rows); err != nil {
		return err
	}
	note := ""
	if !p.Complete {
		note = "; an edge did not answer in time, so some may be missing"
	}
	fmt.Fprintf(a.out, "%d of %d sessions, from %d edges%s\n", len(p.Sessions), p.Total, p.Edges, note)
	return nil
}

func expiresIn(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(now).Round(time.Second).String()
}

// kill blacklists jti for d; without d, until the latest expiry of the
// session's connections, which is when its token stops being accepted.
func (a *admin) kill(ctx context.Context, jti string, d time.Duration) error {
	if d < 0 || (d > 0 && d < time.Second) {
		return fmt.Errorf("admin kill: invalid --for=%s: expected at least 1s", d)
	}
	if d == 0 {
		p, err := a.listSessions(ctx, "", jti, 1000)
		if err != nil {
			return err
		}
		var until time.Time
		for _, s := range p.Sessions {
			if s.JTI == jti && s.Expires.After(until) {
				until = s.Expires
			}
		}
		if until.IsZero() {
			return fmt.Errorf("admin kill: session %q has no connection now, so its token's expiry is unknown: give --for", jti)
		}
		d = time.Until(until)
	}
	body, _ := json.Marshal(map[string]any{"sessionId": jti, "validityInSeconds": int64(max((d+time.Second-1)/time.Second, 1))})
	var st struct {
		SessionID string     `json:"sessionId"`
		Validity  int64      `json:"validityInSeconds"`
		ExpiresAt *time.Time `json:"expiresAt"`
	}
	data, err := a.call(ctx, "POST", "/v1/session-blacklist", body, &st)
	if err != nil {
		return err
	}
	if a.json {
		_, err := a.out.Write(append(bytes.TrimSpace(data), '\n'))
		return err
	}
	until := "-"
	if st.ExpiresAt != nil {
		until = st.ExpiresAt.Local().Format(time.DateTime)
	}
	fmt.Fprintf(a.out, "session %s blacklisted for %s (until %s): every edge closes its connections\n",
		st.SessionID, (time.Duration(st.Validity) * time.Second).String(), until)
	return nil
}

// send publishes msg to user. With wait, through the admin test send,
// which waits for the edges' receipts: it prints them and fails when a
// connection of the user did not confirm. Without, it only stores it.
func (a *admin) send(ctx context.Context, user, msg, field string, wait time.Duration) error {
	if wait < 0 || wait > 30*time.Second {
		return fmt.Errorf("admin send: invalid --wait=%s: expected 0 (only store it) to 30s", wait)
	}
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(msg))
	dec.UseNumber() // the payload goes on as written
	if err := dec.Decode(&m); err != nil || m == nil || dec.More() {
		return fmt.Errorf("admin send: the message must be one JSON object, got %s", oneLine(msg, 60))
	}
	if v, ok := m[field]; ok && v != user {
		return fmt.Errorf("admin send: the message's %q is %v, not %q", field, v, user)
	}
	m[field] = user
	body, _ := json.Marshal(m)
	if wait == 0 {
		var r struct{ ID string }
		data, err := a.call(ctx, "POST", "/v1/messages", body, &r)
		if err != nil {
			return err
		}
		if a.json {
			_, err := a.out.Write(append(bytes.TrimSpace(data), '\n'))
			return err
		}
		fmt.Fprintf(a.out, "stored and published to %s: id %s\n", user, r.ID)
		return nil
	}
	if a.client.Timeout < wait+5*time.Second {
		a.client.Timeout = wait + 5*time.Second // ingest answers after the wait
	}
	var r sendAnswer
	data, err := a.call(ctx, "POST", "/v1/admin/messages?wait="+url.QueryEscape(wait.String()), body, &r)
	if err != nil {
		return err
	}
	if a.json {
		if _, err := a.out.Write(append(bytes.TrimSpace(data), '\n')); err != nil {
			return err
		}
	} else if err := a.printSent(r); err != nil {
		return err
	}
	if r.Confirmed < r.Online {
		return fmt.Errorf("admin send: message %s stored, but only %d of %d connections of %s confirmed it within %s", r.ID, r.Confirmed, r.Online, user, wait)
	}
	return nil
}

type sendAnswer struct {
	ID          string    `json:"id"`
	User        string    `json:"user"`
	Online      int       `json:"online"`
	Confirmed   int       `json:"confirmed"`
	Complete    bool      `json:"complete"`
	Receipts    []receipt `json:"receipts"`
	Unconfirmed []session `json:"unconfirmed"`
	Waited      string    `json:"waited"`
}

type receipt struct {
	Edge      string    `json:"edge"`
	JTI       string    `json:"jti"`
	User      string    `json:"user"`
	Transport string    `json:"transport"`
	Conn      uint64    `json:"conn"`
	At        time.Time `json:"at"`
}

func (a *admin) printSent(r sendAnswer) error {
	fmt.Fprintf(a.out, "stored and published to %s: id %s\n", r.User, r.ID)
	if len(r.Receipts)+len(r.Unconfirmed) > 0 {
		var rows [][]string
		for _, c := range r.Receipts {
			rows = append(rows, []string{"confirmed", c.Edge, c.Transport, or(c.JTI, "-"), c.User, c.At.Local().Format("15:04:05.000")})
		}
		for _, s := range r.Unconfirmed {
			rows = append(rows, []string{"NOT CONFIRMED", s.Edge, s.Transport, or(s.JTI, "-"), s.User, "-"})
		}
		if err := a.table("RECEIPT\tEDGE\tTRANSPORT\tJTI\tUSER\tWRITTEN AT", rows); err != nil {
			return err
		}
	}
	note := ""
	if !r.Complete {
		note = "; an edge did not answer presence, so the user may have more"
	}
	switch {
	case r.Online == 0:
		fmt.Fprintf(a.out, "no connection of %s is online%s: the message waits in history for a resume\n", r.User, note)
	case r.Confirmed == r.Online:
		fmt.Fprintf(a.out, "delivered to %d of %d connections, confirmed by their edges in %s%s\n", r.Confirmed, r.Online, r.Waited, note)
	default:
		fmt.Fprintf(a.out, "%d of %d connections confirmed after %s%s\n", r.Confirmed, r.Online, r.Waited, note)
	}
	return nil
}

type apiRoute struct {
	ID          string `json:"id"`
	Source      string `json:"source"`
	VersionData struct {
		Default struct {
			Endpoints []struct {
				Path      string `json:"path"`
				PathRegex string `json:"path_regex"`
				Method    string `json:"method"`
			} `json:"endpoints"`
		} `json:"default"`
	} `json:"version_data"`
	Proxy struct {
		UseEnv    bool   `json:"use_env"`
		TargetURL string `json:"target_url"`
		Port      int    `json:"port"`
	} `json:"proxy"`
}

func (a *admin) routes(ctx context.Context) error {
	var rs []apiRoute
	data, err := a.call(ctx, "GET", "/v1/apis", nil, &rs)
	if err != nil {
		return err
	}
	if a.json {
		_, err := a.out.Write(append(bytes.TrimSpace(data), '\n'))
		return err
	}
	var rows [][]string
	for _, r := range rs {
		var eps []string
		for _, e := range r.VersionData.Default.Endpoints {
			eps = append(eps, e.Method+" "+or(e.Path, e.PathRegex))
		}
		target := r.Proxy.TargetURL
		if r.Proxy.UseEnv {
			target = "$" + target
		}
		if r.Proxy.Port != 0 {
			target += ":" + strconv.Itoa(r.Proxy.Port)
		}
		rows = append(rows, []string{r.ID, or(r.Source, "runtime"), or(strings.Join(eps, ", "), "-"), or(target, "-")})
	}
	if err := a.table("ID\tSOURCE\tENDPOINTS\tTARGET", rows); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "%d routes\n", len(rs))
	return nil
}

type healthAnswer struct {
	Status string `json:"status"`
	Ingest struct {
		Status string `json:"status"`
		NATS   string `json:"nats"`
		Detail string `json:"detail"`
	} `json:"ingest"`
	NATS struct {
		Status     string   `json:"status"`
		Connected  string   `json:"connected"`
		ServerName string   `json:"serverName"`
		Cluster    string   `json:"cluster"`
		RTT        string   `json:"rtt"`
		Servers    []string `json:"servers"`
		Error      string   `json:"error"`
	} `json:"nats"`
	Streams []struct {
		Name     string `json:"name"`
		Role     string `json:"role"`
		Replicas int    `json:"replicas"`
		Leader   string `json:"leader"`
		Peers    []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Offline bool   `json:"offline"`
			Lag     uint64 `json:"lag"`
		} `json:"peers"`
		Messages uint64 `json:"messages"`
		Bytes    uint64 `json:"bytes"`
		OK       bool   `json:"ok"`
		Error    string `json:"error"`
	} `json:"streams"`
	Edges []struct {
		ID       string    `json:"edge"`
		LastSeen time.Time `json:"lastSeen"`
		Status   *struct {
			Ready       bool   `json:"ready"`
			Detail      string `json:"detail"`
			Connections int    `json:"connections"`
		} `json:"status"`
	} `json:"edges"`
}

func (a *admin) health(ctx context.Context) error {
	var h healthAnswer
	data, err := a.call(ctx, "GET", "/v1/admin/health", nil, &h)
	if err != nil {
		return err
	}
	if a.json {
		_, err := a.out.Write(append(bytes.TrimSpace(data), '\n'))
		return err
	}
	fmt.Fprintf(a.out, "status: %s\n\n", h.Status)
	rows := [][]string{{"ingest", h.Ingest.Status, or(h.Ingest.Detail, "NATS "+h.Ingest.NATS)}}
	natsDetail := fmt.Sprintf("%s %s, cluster %s, rtt %s, knows %s", h.NATS.ServerName, h.NATS.Connected, or(h.NATS.Cluster, "-"), or(h.NATS.RTT, "-"), strings.Join(h.NATS.Servers, " "))
	rows = append(rows, []string{"nats", strings.ToLower(h.NATS.Status), or(h.NATS.Error, natsDetail)})
	now := time.Now()
	for _, e := range h.Edges {
		state, detail := "unknown", "announces no status (an older edge)"
		if e.Status != nil {
			state, detail = "ready", fmt.Sprintf("%d connections", e.Status.Connections)
			if !e.Status.Ready {
				state, detail = "not ready", e.Status.Detail
			}
		}
		rows = append(rows, []string{"edge " + e.ID, state, fmt.Sprintf("%s, heard %s ago", detail, now.Sub(e.LastSeen).Round(time.Millisecond))})
	}
	if err := a.table("COMPONENT\tSTATE\tDETAIL", rows); err != nil {
		return err
	}
	fmt.Fprintln(a.out)
	rows = nil
	for _, s := range h.Streams {
		state := "ok"
		if !s.OK {
			state = or(s.Error, "degraded")
		}
		var peers []string
		for _, p := range s.Peers {
			ps := "current"
			switch {
			case p.Offline:
				ps = "offline"
			case !p.Current:
				ps = fmt.Sprintf("lagging %d", p.Lag)
			}
			peers = append(peers, p.Name+" "+ps)
		}
		rows = append(rows, []string{s.Name, s.Role, state, strconv.Itoa(s.Replicas), or(s.Leader, "-"), or(strings.Join(peers, ", "), "-"),
			strconv.FormatUint(s.Messages, 10), strconv.FormatUint(s.Bytes, 10)})
	}
	return a.table("STREAM\tROLE\tSTATE\tREPLICAS\tLEADER\tOTHER REPLICAS\tMESSAGES\tBYTES", rows)
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
