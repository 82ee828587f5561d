// Package route holds the API gateway's route definitions in RIG's JSON
// format: parsing and validation, with errors that name the API, the field
// and the problem, and the table the edge looks each request up in.
package route

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// API is one back-end service and the endpoints the gateway forwards to it,
// as RIG defines it (PROXY_CONFIG_FILE, POST /v1/apis).
type API struct {
	ID          string      `json:"id"`
	Name        string      `json:"name,omitempty"`
	AuthType    string      `json:"auth_type"` // AuthJWT or AuthNone
	Auth        Auth        `json:"auth"`
	Versioned   bool        `json:"versioned"`
	VersionData VersionData `json:"version_data"`
	Proxy       Target      `json:"proxy"`
}

// Auth types.
const (
	AuthNone = "none"
	AuthJWT  = "jwt"
)

// Auth says where a jwt API's requests carry their token.
type Auth struct {
	UseHeader  bool   `json:"use_header"`
	HeaderName string `json:"header_name"`
	UseQuery   bool   `json:"use_query"`
	QueryName  string `json:"query_name"`
}

// VersionData holds the endpoints; RIG only ever served "default".
type VersionData struct {
	Default Version `json:"default"`
}

// Version is a set of endpoints and the headers its endpoints may add.
type Version struct {
	Endpoints []Endpoint `json:"endpoints"`
	// TransformRequestHeaders are added to (and override) the request's
	// headers on endpoints with TransformRequestHeaders set.
	TransformRequestHeaders *Transform `json:"transform_request_headers,omitempty"`
}

// Transform is RIG's transform_request_headers.
type Transform struct {
	AddHeaders map[string]string `json:"add_headers"`
}

// Endpoint is one method and path of an API.
type Endpoint struct {
	ID string `json:"id"`
	// Path matches literally, except that each {name} matches one non-empty
	// path segment (or part of one).
	Path string `json:"path,omitempty"`
	// PathRegex is an anchored regular expression (Go's RE2 syntax) the
	// request path must match, instead of Path.
	PathRegex string `json:"path_regex,omitempty"`
	// PathReplacement rewrites the path sent upstream; \1 (or \g{1}) is the
	// first capture group of PathRegex, or the first {name} of Path.
	PathReplacement string `json:"path_replacement,omitempty"`
	Method          string `json:"method"`
	// Secured requires a valid token on a jwt API. RIG 1 said
	// "not_secured": false, RIG 3 "secured": true; both are read. An
	// endpoint of a jwt API that says neither is secured.
	Secured                 bool `json:"secured"`
	TransformRequestHeaders bool `json:"transform_request_headers,omitempty"`
}

// Target is where an API's requests go.
type Target struct {
	// UseEnv makes TargetURL the name of an environment variable holding
	// the URL (RIG's use_env), read by each edge.
	UseEnv    bool   `json:"use_env"`
	TargetURL string `json:"target_url"`
	// Port overrides the URL's port; 0 keeps it (or the scheme's default).
	Port int `json:"port,omitempty"`
}

// Base returns the upstream's scheme://host:port. getenv resolves use_env.
func (t Target) Base(getenv func(string) string) (string, error) {
	raw := t.TargetURL
	if t.UseEnv {
		raw = getenv(t.TargetURL)
		if raw == "" {
			return "", fmt.Errorf("environment variable %s (use_env) is not set", t.TargetURL)
		}
	}
	base, err := baseURL(raw, t.Port)
	if err != nil && t.UseEnv {
		// Not the value: a variable named by mistake may hold a secret.
		return "", fmt.Errorf("environment variable %s (use_env) does not hold a URL such as http://host:port (its value is not shown)", t.TargetURL)
	}
	return base, err
}

// baseURL turns RIG's target_url ("http://host", "host", "https://h:8443")
// and port into scheme://host:port.
func baseURL(raw string, port int) (string, error) {
	s := strings.TrimSpace(raw)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("expected a URL such as http://host or host, got %q", raw)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("expected an http:// or https:// URL, got %q", raw)
	case u.Hostname() == "":
		return "", fmt.Errorf("expected a URL with a host, got %q", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
		return "", fmt.Errorf("expected scheme://host[:port] without path, query or user, got %q", raw)
	}
	p := u.Port()
	if port > 0 {
		p = strconv.Itoa(port)
	}
	if p == "" {
		p = "80"
		if u.Scheme == "https" {
			p = "443"
		}
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("expected a port from 1 to 65535, got %q", raw)
	}
	return u.Scheme + "://" + net.JoinHostPort(u.Hostname(), p), nil
}

// Error is a definition that cannot be used: which API, which field, what
// is wrong.
type Error struct {
	API     string // the API's id, or "#n" (1-based) when it has none
	Field   string // such as "version_data.default.endpoints[1].path"
	Problem string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.API != "" {
		if strings.HasPrefix(e.API, "#") {
			b.WriteString("API " + e.API + ": ")
		} else {
			b.WriteString("API " + strconv.Quote(e.API) + ": ")
		}
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}
