package config

import (
	"net/url"
)

// Demo is the edge's demo page (/demo/) and the request it sends messages
// with, for the local stack only: `task run` turns it on.
type Demo struct {
	Enabled bool // DEMO_ENABLED
	// IngestURL (DEMO_INGEST_URL) is the ingest API the page's messages
	// are forwarded to: the browser cannot reach ingest's port itself
	// (another origin, and maybe API_TOKENS).
	IngestURL string
	// IngestToken (DEMO_INGEST_TOKEN) is sent as the bearer token to an
	// ingest with API_TOKENS.
	IngestToken string
}

func (s *Set) demo(d *Demo) {
	s.Bool(&d.Enabled, "DEMO_ENABLED", false, "Serve the demo page at /demo/ on the public port, and POST /demo/messages, which sends a message to any user through DEMO_INGEST_URL for whoever holds a valid token. For the local stack only (task run sets it); never in production.")
	s.String(&d.IngestURL, "DEMO_INGEST_URL", "http://127.0.0.1:4010", "Ingest API the demo page's messages are forwarded to (DEMO_ENABLED only).")
	s.Secret(&d.IngestToken, "DEMO_INGEST_TOKEN", "Bearer token the demo sends to an ingest with API_TOKENS (DEMO_ENABLED only).")
	s.Check(func() error {
		u, err := url.Parse(d.IngestURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
			return &Error{Setting: "DEMO_INGEST_URL", Value: d.IngestURL, Expected: "the ingest API's base URL, such as http://127.0.0.1:4010 (http or https, no path or query)"}
		}
		return nil
	})
}
