package route

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Limits of one definition, so a route file or a POST cannot make the
// edge compile without bound.
const (
	MaxAPIs      = 1000
	MaxEndpoints = 1000
	maxIDLen     = 128
	maxPathLen   = 2048
	maxHeaders   = 64
)

var parsers fastjson.ParserPool

// ParseList reads a route file (RIG's PROXY_CONFIG_FILE): a JSON array of
// API definitions with distinct ids.
func ParseList(data []byte) ([]*API, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(data)
	if err != nil {
		return nil, &Error{Problem: "not valid JSON: " + err.Error()}
	}
	items, err := v.Array()
	if err != nil {
		return nil, &Error{Problem: "expected a JSON array of API definitions, got " + typeName(v)}
	}
	if len(items) > MaxAPIs {
		return nil, &Error{Problem: fmt.Sprintf("expected at most %d APIs, got %d", MaxAPIs, len(items))}
	}
	apis := make([]*API, 0, len(items))
	seen := make(map[string]int, len(items))
	for i, item := range items {
		a, err := parseAPI(item, "#"+strconv.Itoa(i+1))
		if err != nil {
			return nil, err
		}
		if j, dup := seen[a.ID]; dup {
			return nil, &Error{API: a.ID, Field: "id", Problem: fmt.Sprintf("API #%d has the same id; ids must be unique", j)}
		}
		seen[a.ID] = i + 1
		apis = append(apis, a)
	}
	return apis, nil
}

// ParseAPI reads one API definition (the body of POST /v1/apis).
func ParseAPI(data []byte) (*API, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(data)
	if err != nil {
		return nil, &Error{Problem: "not valid JSON: " + err.Error()}
	}
	return parseAPI(v, "")
}

// fields is a JSON object's members, each key once.
type fields struct {
	keys []string
	vals map[string]*fastjson.Value
}

// get returns the member key, nil when it is absent or null.
func (f fields) get(key string) *fastjson.Value {
	v := f.vals[key]
	if v == nil || v.Type() == fastjson.TypeNull {
		return nil
	}
	return v
}

// decoder reads one API, naming it in every error.
type decoder struct{ api string }

func (d *decoder) errorf(field, format string, args ...any) *Error {
	return &Error{API: d.api, Field: field, Problem: fmt.Sprintf(format, args...)}
}

// object reads a JSON object whose keys must all be in known (ignored keys
// are accepted and dropped).
func (d *decoder) object(v *fastjson.Value, field string, known, ignored []string) (fields, error) {
	o, err := v.Object()
	if err != nil {
		return fields{}, d.errorf(field, "expected a JSON object, got %s", typeName(v))
	}
	f := fields{vals: make(map[string]*fastjson.Value, o.Len())}
	var ferr error
	o.Visit(func(k []byte, v *fastjson.Value) {
		if ferr != nil {
			return
		}
		key := string(k)
		name := join(field, key)
		switch {
		case contains(ignored, key):
			return
		case !contains(known, key):
			ferr = d.errorf(name, "unknown field (expected one of %s)", strings.Join(known, ", "))
		case f.vals[key] != nil:
			ferr = d.errorf(name, "appears more than once")
		default:
			f.keys = append(f.keys, key)
			f.vals[key] = v
		}
	})
	return f, ferr
}

func (d *decoder) str(v *fastjson.Value, field string) (string, error) {
	if v == nil {
		return "", nil
	}
	b, err := v.StringBytes()
	if err != nil {
		return "", d.errorf(field, "expected a string, got %s", typeName(v))
	}
	return string(b), nil
}

func (d *decoder) boolean(v *fastjson.Value, field string) (bool, error) {
	if v == nil {
		return false, nil
	}
	b, err := v.Bool()
	if err != nil {
		return false, d.errorf(field, "expected true or false, got %s", shown(v))
	}
	return b, nil
}

func parseAPI(v *fastjson.Value, label string) (*API, error) {
	d := &decoder{api: label}
	// Name the API by its id in every later error when it has a usable one.
	if o, err := v.Object(); err == nil {
		if id := o.Get("id"); id != nil && id.Type() == fastjson.TypeString {
			if s := string(id.GetStringBytes()); ValidID(s) {
				d.api = s
			}
		}
	}
	f, err := d.object(v, "",
		[]string{"id", "name", "auth_type", "auth", "versioned", "version_data", "proxy"},
		// RIG's bookkeeping, as its GET /v1/apis returned it.
		[]string{"active", "node_name", "ref_number", "timestamp", "phx_ref"})
	if err != nil {
		return nil, err
	}
	a := &API{}
	if f.get("id") == nil {
		return nil, d.errorf("id", "missing")
	}
	if a.ID, err = d.str(f.get("id"), "id"); err != nil {
		return nil, err
	}
	if !ValidID(a.ID) {
		return nil, d.errorf("id", "expected 1 to %d letters, digits or . _ - : ~, got %s", maxIDLen, strconv.Quote(a.ID))
	}
	if a.Name, err = d.str(f.get("name"), "name"); err != nil {
		return nil, err
	}
	if len(a.Name) > 256 {
		return nil, d.errorf("name", "expected at most 256 bytes, got %d", len(a.Name))
	}
	if a.AuthType, err = d.str(f.get("auth_type"), "auth_type"); err != nil {
		return nil, err
	}
	switch a.AuthType {
	case "":
		a.AuthType = AuthNone
	case AuthNone, AuthJWT:
	default:
		return nil, d.errorf("auth_type", "expected \"jwt\" or \"none\", got %s", strconv.Quote(a.AuthType))
	}
	if err := d.auth(a, f.get("auth")); err != nil {
		return nil, err
	}
	if a.Versioned, err = d.boolean(f.get("versioned"), "versioned"); err != nil {
		return nil, err
	}
	if a.Versioned {
		return nil, d.errorf("versioned", "versioned APIs are not supported (RIG never served them); set false and use version_data.default")
	}
	vd := f.get("version_data")
	if vd == nil {
		return nil, d.errorf("version_data", "missing")
	}
	if err := d.versionData(a, vd); err != nil {
		return nil, err
	}
	pv := f.get("proxy")
	if pv == nil {
		return nil, d.errorf("proxy", "missing")
	}
	if a.Proxy, err = d.target(pv); err != nil {
		return nil, err
	}
	return a, nil
}

func (d *decoder) auth(a *API, v *fastjson.Value) error {
	if v == nil {
		if a.AuthType == AuthJWT {
			// RIG's default: the token in the Authorization header.
			a.Auth = Auth{UseHeader: true, HeaderName: "Authorization"}
		}
		return nil
	}
	f, err := d.object(v, "auth", []string{"use_header", "header_name", "use_query", "query_name"}, nil)
	if err != nil {
		return err
	}
	au := &a.Auth
	if au.UseHeader, err = d.boolean(f.get("use_header"), "auth.use_header"); err != nil {
		return err
	}
	if au.HeaderName, err = d.str(f.get("header_name"), "auth.header_name"); err != nil {
		return err
	}
	if au.UseQuery, err = d.boolean(f.get("use_query"), "auth.use_query"); err != nil {
		return err
	}
	if au.QueryName, err = d.str(f.get("query_name"), "auth.query_name"); err != nil {
		return err
	}
	switch {
	case au.HeaderName != "" && !isToken(au.HeaderName):
		return d.errorf("auth.header_name", "expected an HTTP header name, got %s", strconv.Quote(au.HeaderName))
	case len(au.QueryName) > maxIDLen || strings.ContainsAny(au.QueryName, "&=#") || hasControl(au.QueryName):
		return d.errorf("auth.query_name", "expected a query parameter name, got %s", strconv.Quote(au.QueryName))
	case a.AuthType != AuthJWT && (au.UseHeader || au.UseQuery):
		return d.errorf("auth_type", "expected \"jwt\" when auth.use_header or auth.use_query is true, got %s", strconv.Quote(a.AuthType))
	case a.AuthType == AuthJWT && !au.UseHeader && !au.UseQuery:
		return d.errorf("auth", "auth_type \"jwt\" needs use_header or use_query to be true")
	case au.UseHeader && au.HeaderName == "":
		return d.errorf("auth.header_name", "missing (use_header is true)")
	case au.UseQuery && au.QueryName == "":
		return d.errorf("auth.query_name", "missing (use_query is true)")
	}
	return nil
}

func (d *decoder) versionData(a *API, v *fastjson.Value) error {
	o, err := v.Object()
	if err != nil {
		return d.errorf("version_data", "expected a JSON object, got %s", typeName(v))
	}
	var ferr error
	o.Visit(func(k []byte, _ *fastjson.Value) {
		if ferr == nil && string(k) != "default" {
			ferr = d.errorf("version_data."+string(k), "only the \"default\" version is served; move its endpoints there")
		}
	})
	if ferr != nil {
		return ferr
	}
	f, err := d.object(v, "version_data", []string{"default"}, nil)
	if err != nil {
		return err
	}
	dv := f.get("default")
	if dv == nil {
		return d.errorf("version_data.default", "missing")
	}
	const at = "version_data.default"
	df, err := d.object(dv, at, []string{"endpoints", "transform_request_headers"}, nil)
	if err != nil {
		return err
	}
	if tv := df.get("transform_request_headers"); tv != nil {
		t, err := d.transform(tv, at+".transform_request_headers")
		if err != nil {
			return err
		}
		a.VersionData.Default.TransformRequestHeaders = t
	}
	ev := df.get("endpoints")
	if ev == nil {
		return d.errorf(at+".endpoints", "missing")
	}
	items, err := ev.Array()
	if err != nil {
		return d.errorf(at+".endpoints", "expected a JSON array, got %s", typeName(ev))
	}
	if len(items) > MaxEndpoints {
		return d.errorf(at+".endpoints", "expected at most %d endpoints, got %d", MaxEndpoints, len(items))
	}
	eps := make([]Endpoint, 0, len(items))
	ids := make(map[string]int, len(items))
	for i, item := range items {
		field := fmt.Sprintf("%s.endpoints[%d]", at, i)
		ep, err := d.endpoint(a, item, field)
		if err != nil {
			return err
		}
		if j, dup := ids[ep.ID]; dup {
			return d.errorf(field+".id", "endpoints[%d] has the same id %s; endpoint ids must be unique", j, strconv.Quote(ep.ID))
		}
		ids[ep.ID] = i
		eps = append(eps, ep)
	}
	a.VersionData.Default.Endpoints = eps
	return nil
}

func (d *decoder) transform(v *fastjson.Value, field string) (*Transform, error) {
	f, err := d.object(v, field, []string{"add_headers"}, nil)
	if err != nil {
		return nil, err
	}
	t := &Transform{AddHeaders: map[string]string{}}
	hv := f.get("add_headers")
	if hv == nil {
		return t, nil
	}
	o, err := hv.Object()
	if err != nil {
		return nil, d.errorf(field+".add_headers", "expected a JSON object of header names and values, got %s", typeName(hv))
	}
	if o.Len() > maxHeaders {
		return nil, d.errorf(field+".add_headers", "expected at most %d headers, got %d", maxHeaders, o.Len())
	}
	var ferr error
	o.Visit(func(k []byte, v *fastjson.Value) {
		if ferr != nil {
			return
		}
		name := string(k)
		at := field + ".add_headers." + name
		if !isToken(name) {
			ferr = d.errorf(field+".add_headers", "expected HTTP header names, got %s", strconv.Quote(name))
			return
		}
		val, err := d.str(v, at)
		if err != nil {
			ferr = err
			return
		}
		if hasControl(val) {
			ferr = d.errorf(at, "header values may not contain control characters")
			return
		}
		t.AddHeaders[name] = val
	})
	return t, ferr
}

func (d *decoder) endpoint(a *API, v *fastjson.Value, field string) (Endpoint, error) {
	var ep Endpoint
	f, err := d.object(v, field, []string{"id", "path", "path_regex", "path_replacement", "method",
		"secured", "not_secured", "transform_request_headers", "target", "response_from"}, nil)
	if err != nil {
		return ep, err
	}
	if f.get("id") == nil {
		return ep, d.errorf(field+".id", "missing")
	}
	if ep.ID, err = d.str(f.get("id"), field+".id"); err != nil {
		return ep, err
	}
	if !ValidID(ep.ID) {
		return ep, d.errorf(field+".id", "expected 1 to %d letters, digits or . _ - : ~, got %s", maxIDLen, strconv.Quote(ep.ID))
	}
	for _, k := range []string{"target", "response_from"} {
		s, err := d.str(f.get(k), field+"."+k)
		if err != nil {
			return ep, err
		}
		if s != "" && !strings.EqualFold(s, "http") {
			return ep, d.errorf(field+"."+k, "only \"http\" is supported (RIG-Go forwards over HTTP; it has no Kafka, Kinesis or NATS targets), got %s", strconv.Quote(s))
		}
	}
	if ep.Method, err = d.str(f.get("method"), field+".method"); err != nil {
		return ep, err
	}
	if ep.Method == "" {
		return ep, d.errorf(field+".method", "missing")
	}
	if !isToken(ep.Method) || len(ep.Method) > 32 {
		return ep, d.errorf(field+".method", "expected an HTTP method such as GET, got %s", strconv.Quote(ep.Method))
	}
	ep.Method = strings.ToUpper(ep.Method)
	if ep.Path, err = d.str(f.get("path"), field+".path"); err != nil {
		return ep, err
	}
	if ep.PathRegex, err = d.str(f.get("path_regex"), field+".path_regex"); err != nil {
		return ep, err
	}
	if ep.PathReplacement, err = d.str(f.get("path_replacement"), field+".path_replacement"); err != nil {
		return ep, err
	}
	var groups int
	switch {
	case ep.Path == "" && ep.PathRegex == "":
		return ep, d.errorf(field+".path", "missing (give path or path_regex)")
	case ep.Path != "" && ep.PathRegex != "":
		return ep, d.errorf(field+".path_regex", "give path or path_regex, not both")
	case ep.Path != "":
		p, err := compilePath(ep.Path)
		if err != nil {
			return ep, d.errorf(field+".path", "%s", err.Error())
		}
		groups = p.params
	default:
		re, err := compileRegex(ep.PathRegex)
		if err != nil {
			return ep, d.errorf(field+".path_regex", "%s", err.Error())
		}
		groups = re.NumSubexp()
	}
	if ep.PathReplacement != "" {
		if _, err := replacement(ep.PathReplacement, groups); err != nil {
			return ep, d.errorf(field+".path_replacement", "%s", err.Error())
		}
	}
	if err := d.secured(a, &ep, f, field); err != nil {
		return ep, err
	}
	if ep.TransformRequestHeaders, err = d.boolean(f.get("transform_request_headers"), field+".transform_request_headers"); err != nil {
		return ep, err
	}
	if ep.TransformRequestHeaders && a.VersionData.Default.TransformRequestHeaders == nil {
		return ep, d.errorf(field+".transform_request_headers", "true, but version_data.default.transform_request_headers.add_headers is missing")
	}
	return ep, nil
}

// secured resolves RIG 1's not_secured and RIG 3's secured: an endpoint of
// a jwt API is secured unless it says otherwise.
func (d *decoder) secured(a *API, ep *Endpoint, f fields, field string) error {
	sv, nv := f.get("secured"), f.get("not_secured")
	secured, err := d.boolean(sv, field+".secured")
	if err != nil {
		return err
	}
	notSecured, err := d.boolean(nv, field+".not_secured")
	if err != nil {
		return err
	}
	switch {
	case sv != nil && nv != nil && secured == notSecured:
		return d.errorf(field+".secured", "contradicts not_secured; give one of them")
	case a.AuthType != AuthJWT:
		if sv != nil && secured {
			return d.errorf(field+".secured", "true needs auth_type \"jwt\" (the API's auth_type is %s)", strconv.Quote(a.AuthType))
		}
		ep.Secured = false
	case sv != nil:
		ep.Secured = secured
	case nv != nil:
		ep.Secured = !notSecured
	default:
		ep.Secured = true
	}
	return nil
}

func (d *decoder) target(v *fastjson.Value) (Target, error) {
	var t Target
	f, err := d.object(v, "proxy", []string{"use_env", "target_url", "port"}, nil)
	if err != nil {
		return t, err
	}
	if t.UseEnv, err = d.boolean(f.get("use_env"), "proxy.use_env"); err != nil {
		return t, err
	}
	if t.TargetURL, err = d.str(f.get("target_url"), "proxy.target_url"); err != nil {
		return t, err
	}
	if pv := f.get("port"); pv != nil {
		n, err := pv.Int()
		if err != nil || n < 0 || n > 65535 {
			return t, d.errorf("proxy.port", "expected a port number from 1 to 65535, got %s", shown(pv))
		}
		t.Port = n
	}
	switch {
	case t.TargetURL == "":
		return t, d.errorf("proxy.target_url", "missing")
	case t.UseEnv && !envName.MatchString(t.TargetURL):
		return t, d.errorf("proxy.target_url", "expected the name of an environment variable (use_env is true), got %s", strconv.Quote(t.TargetURL))
	case !t.UseEnv:
		if _, err := baseURL(t.TargetURL, t.Port); err != nil {
			return t, d.errorf("proxy.target_url", "%s", err.Error())
		}
	}
	return t, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// pathPattern is a compiled Path.
type pathPattern struct {
	re      string // the anchored regular expression
	literal string // the path itself when it has no {name}
	params  int
	fixed   int // bytes matched literally, for precedence
}

// reserved are the edge's own paths; a route can never serve them.
var reserved = []string{"/health", "/socket"}

// Reserved reports whether path belongs to the edge itself (its health and
// connection endpoints), which routes never serve.
func Reserved(path string) bool {
	for _, r := range reserved {
		if len(path) >= len(r) && strings.EqualFold(path[:len(r)], r) && (len(path) == len(r) || path[len(r)] == '/') {
			return true
		}
	}
	return false
}

// compilePath checks a Path and turns it into a regular expression in which
// each {name} is a capture group of one or more bytes other than "/".
func compilePath(p string) (pathPattern, error) {
	var pp pathPattern
	switch {
	case !strings.HasPrefix(p, "/"):
		return pp, fmt.Errorf("expected a path starting with \"/\", got %s", strconv.Quote(p))
	case len(p) > maxPathLen:
		return pp, fmt.Errorf("expected at most %d bytes, got %d", maxPathLen, len(p))
	case strings.ContainsAny(p, "?#") || hasSpaceOrControl(p):
		return pp, fmt.Errorf("expected a path without query, fragment, spaces or control characters, got %s", strconv.Quote(p))
	}
	// Requests are matched by their decoded path, so the route's is too.
	dec, err := url.PathUnescape(p)
	if err != nil || hasControl(dec) || !utf8.ValidString(dec) {
		return pp, fmt.Errorf("invalid percent-encoding in %s", strconv.Quote(p))
	}
	for _, seg := range strings.Split(dec, "/")[1:] {
		if seg == "." || seg == ".." {
			return pp, fmt.Errorf("dot segments never match a request (requests are normalised), got %s", strconv.Quote(p))
		}
	}
	if strings.Contains(dec, "//") {
		return pp, fmt.Errorf("empty segments (//) never match a request (requests are normalised), got %s", strconv.Quote(p))
	}
	var re strings.Builder
	re.WriteString("^")
	for i := 0; i < len(dec); {
		switch c := dec[i]; c {
		case '{':
			end := strings.IndexByte(dec[i:], '}')
			if end < 0 {
				return pp, fmt.Errorf("unclosed { in %s", strconv.Quote(p))
			}
			name := dec[i+1 : i+end]
			if name == "" || strings.ContainsAny(name, "{/") {
				return pp, fmt.Errorf("expected {name} with a non-empty name, got %s in %s", strconv.Quote(dec[i:i+end+1]), strconv.Quote(p))
			}
			re.WriteString("([^/]+)")
			pp.params++
			i += end + 1
		case '}':
			return pp, fmt.Errorf("} without { in %s", strconv.Quote(p))
		default:
			j := i
			for j < len(dec) && dec[j] != '{' && dec[j] != '}' {
				j++
			}
			re.WriteString(regexp.QuoteMeta(dec[i:j]))
			pp.fixed += j - i
			i = j
		}
	}
	re.WriteString("$")
	pp.re = re.String()
	if pp.params == 0 {
		pp.literal = dec
	}
	if Reserved(dec) {
		return pp, fmt.Errorf("%s belongs to the edge itself (/health, /socket/...); routes cannot serve it", strconv.Quote(p))
	}
	return pp, nil
}

// compileRegex compiles a PathRegex anchored at both ends, as RIG did.
func compileRegex(s string) (*regexp.Regexp, error) {
	if len(s) > maxPathLen {
		return nil, fmt.Errorf("expected at most %d bytes, got %d", maxPathLen, len(s))
	}
	re, err := regexp.Compile(`^(?:` + s + `)$`)
	if err != nil {
		return nil, fmt.Errorf("not a valid regular expression (Go RE2 syntax): %v", err)
	}
	return re, nil
}

// replacement turns RIG's path_replacement, where \1 or \g{1} is a capture
// group, into a regexp.Expand template, checking the groups exist.
func replacement(s string, groups int) (string, error) {
	if len(s) > maxPathLen {
		return "", fmt.Errorf("expected at most %d bytes, got %d", maxPathLen, len(s))
	}
	if hasSpaceOrControl(s) || strings.ContainsAny(s, "?#") {
		return "", fmt.Errorf("expected a path without query, fragment, spaces or control characters, got %s", strconv.Quote(s))
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '$':
			b.WriteString("$$")
		case c == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			n := int(s[i+1] - '0')
			if n > groups {
				return "", fmt.Errorf("\\%d refers to a capture group the path does not have (it has %d)", n, groups)
			}
			b.WriteString("${" + strconv.Itoa(n) + "}")
			i++
		case c == '\\' && strings.HasPrefix(s[i:], `\g{`):
			end := strings.IndexByte(s[i:], '}')
			n, err := strconv.Atoi(s[i+3 : i+max(end, 3)])
			if end < 0 || err != nil || n < 0 {
				return "", fmt.Errorf("expected \\g{N} with a group number N, in %s", strconv.Quote(s))
			}
			if n > groups {
				return "", fmt.Errorf("\\g{%d} refers to a capture group the path does not have (it has %d)", n, groups)
			}
			b.WriteString("${" + strconv.Itoa(n) + "}")
			i += end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// ValidID reports whether s may be an API or endpoint id: 1 to 128 letters,
// digits or . _ - : ~.
func ValidID(s string) bool {
	if s == "" || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._-:~", c) >= 0) {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token (method, header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

func hasSpaceOrControl(s string) bool { return hasControl(s) || strings.ContainsRune(s, ' ') }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func typeName(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeObject:
		return "an object"
	case fastjson.TypeArray:
		return "an array"
	case fastjson.TypeString:
		return "a string"
	case fastjson.TypeNumber:
		return "a number"
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	}
	return "null"
}

// shown is a value for an error message, cut short.
func shown(v *fastjson.Value) string {
	s := string(v.MarshalTo(nil))
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

// SortByID orders apis by id, the order every edge builds its table in.
func SortByID(apis []*API) {
	sort.Slice(apis, func(i, j int) bool { return apis[i].ID < apis[j].ID })
}
