package route

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
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

// ParseList reads a route file (RIG's PROXY_CONFIG_FILE): a JSON array of
// API definitions with distinct ids.
func ParseList(data []byte) ([]*API, error) {
	if err := checkJSON(data); err != nil {
		return nil, err
	}
	if k := kind(data); k != "an array" {
		return nil, &Error{Problem: "expected a JSON array of API definitions, got " + k}
	}
	var items []json.RawMessage
	if err := json.Unmarshal(data, &items); err != nil {
		return nil, &Error{Problem: "not valid JSON: " + err.Error()}
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
	if err := checkJSON(data); err != nil {
		return nil, err
	}
	return parseAPI(data, "")
}

// The input structs are a definition as written, each object decoded by
// decoder.object. A pointer tells a member that is absent (or null) from
// its zero value. A nested object or array stays raw until the rules below
// reach it, so that they check a definition in one fixed order, member by
// member, and name each fault by its full path (encoding/json's own
// errors leave out array indices). A member of the wrong type is named as
// its object is decoded, before the rules look at the object's others.
type (
	apiInput struct {
		ID          *string         `json:"id"`
		Name        string          `json:"name"`
		AuthType    string          `json:"auth_type"`
		Auth        json.RawMessage `json:"auth"`
		Versioned   bool            `json:"versioned"`
		VersionData json.RawMessage `json:"version_data"`
		Proxy       json.RawMessage `json:"proxy"`
		rigBookkeeping
	}
	// rigBookkeeping is what RIG's GET /v1/apis returned besides the
	// definition, so that its output can be posted back: accepted, dropped.
	rigBookkeeping struct {
		Active    json.RawMessage `json:"active"`
		NodeName  json.RawMessage `json:"node_name"`
		RefNumber json.RawMessage `json:"ref_number"`
		Timestamp json.RawMessage `json:"timestamp"`
		PhxRef    json.RawMessage `json:"phx_ref"`
	}
	versionDataInput struct {
		Default json.RawMessage `json:"default"`
	}
	versionInput struct {
		Endpoints               json.RawMessage `json:"endpoints"`
		TransformRequestHeaders json.RawMessage `json:"transform_request_headers"`
	}
	transformInput struct {
		AddHeaders json.RawMessage `json:"add_headers"`
	}
	endpointInput struct {
		ID                      *string `json:"id"`
		Path                    string  `json:"path"`
		PathRegex               string  `json:"path_regex"`
		PathReplacement         string  `json:"path_replacement"`
		Method                  string  `json:"method"`
		Secured                 *bool   `json:"secured"`
		NotSecured              *bool   `json:"not_secured"`
		TransformRequestHeaders bool    `json:"transform_request_headers"`
		Target                  string  `json:"target"`
		ResponseFrom            string  `json:"response_from"`
	}
	targetInput struct {
		UseEnv    bool            `json:"use_env"`
		TargetURL string          `json:"target_url"`
		Port      json.RawMessage `json:"port"` // raw, so that a bad one is shown as given
	}
)

// parseAPI reads one API from raw, valid JSON; label names it in errors
// until its id is known.
func parseAPI(raw json.RawMessage, label string) (*API, error) {
	d := &decoder{api: label}
	ms, ok := members(raw)
	if !ok {
		return nil, d.errorf("", "expected a JSON object, got %s", kind(raw))
	}
	// Name the API by its id in every error when it has a usable one.
	if i := slices.IndexFunc(ms, func(m member) bool { return m.name == "id" }); i >= 0 {
		if s, ok := str(ms[i].value); ok && ValidID(s) {
			d.api = s
		}
	}
	var in apiInput
	if err := d.decode(raw, ms, "", &in); err != nil {
		return nil, err
	}
	a := &API{Name: in.Name, AuthType: in.AuthType, Versioned: in.Versioned}
	switch {
	case in.ID == nil:
		return nil, d.errorf("id", "missing")
	case !ValidID(*in.ID):
		return nil, d.errorf("id", "expected 1 to %d letters, digits or . _ - : ~, got %s", maxIDLen, strconv.Quote(*in.ID))
	case len(a.Name) > 256:
		return nil, d.errorf("name", "expected at most 256 bytes, got %d", len(a.Name))
	}
	a.ID = *in.ID
	switch a.AuthType {
	case "":
		a.AuthType = AuthNone
	case AuthNone, AuthJWT:
	default:
		return nil, d.errorf("auth_type", "expected \"jwt\" or \"none\", got %s", strconv.Quote(a.AuthType))
	}
	if err := d.auth(a, in.Auth); err != nil {
		return nil, err
	}
	if a.Versioned {
		return nil, d.errorf("versioned", "versioned APIs are not supported (RIG never served them); set false and use version_data.default")
	}
	if !present(in.VersionData) {
		return nil, d.errorf("version_data", "missing")
	}
	if err := d.versionData(a, in.VersionData); err != nil {
		return nil, err
	}
	if !present(in.Proxy) {
		return nil, d.errorf("proxy", "missing")
	}
	var err error
	if a.Proxy, err = d.target(in.Proxy); err != nil {
		return nil, err
	}
	return a, nil
}

func (d *decoder) auth(a *API, raw json.RawMessage) error {
	if !present(raw) {
		if a.AuthType == AuthJWT {
			// RIG's default: the token in the Authorization header.
			a.Auth = Auth{UseHeader: true, HeaderName: "Authorization"}
		}
		return nil
	}
	var au Auth // its own input struct: every member is a plain value
	if err := d.object(raw, "auth", &au); err != nil {
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
	a.Auth = au
	return nil
}

func (d *decoder) versionData(a *API, raw json.RawMessage) error {
	ms, ok := members(raw)
	if !ok {
		return d.errorf("version_data", "expected a JSON object, got %s", kind(raw))
	}
	for _, m := range ms {
		if m.name != "default" {
			return d.errorf("version_data."+m.name, "only the \"default\" version is served; move its endpoints there")
		}
	}
	var vd versionDataInput
	if err := d.decode(raw, ms, "version_data", &vd); err != nil {
		return err
	}
	const at = "version_data.default"
	if !present(vd.Default) {
		return d.errorf(at, "missing")
	}
	var in versionInput
	if err := d.object(vd.Default, at, &in); err != nil {
		return err
	}
	if present(in.TransformRequestHeaders) {
		t, err := d.transform(in.TransformRequestHeaders, at+".transform_request_headers")
		if err != nil {
			return err
		}
		a.VersionData.Default.TransformRequestHeaders = t
	}
	if !present(in.Endpoints) {
		return d.errorf(at+".endpoints", "missing")
	}
	var items []json.RawMessage
	if kind(in.Endpoints) != "an array" || json.Unmarshal(in.Endpoints, &items) != nil {
		return d.errorf(at+".endpoints", "expected a JSON array, got %s", kind(in.Endpoints))
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

func (d *decoder) transform(raw json.RawMessage, field string) (*Transform, error) {
	var in transformInput
	if err := d.object(raw, field, &in); err != nil {
		return nil, err
	}
	t := &Transform{AddHeaders: map[string]string{}}
	if !present(in.AddHeaders) {
		return t, nil
	}
	// Any header names, so members rather than a struct. A repeated name
	// is taken, the last one winning: refusing it would stop route files
	// that load today.
	headers, ok := members(in.AddHeaders)
	if !ok {
		return nil, d.errorf(field+".add_headers", "expected a JSON object of header names and values, got %s", kind(in.AddHeaders))
	}
	if len(headers) > maxHeaders {
		return nil, d.errorf(field+".add_headers", "expected at most %d headers, got %d", maxHeaders, len(headers))
	}
	for _, h := range headers {
		at := field + ".add_headers." + h.name
		if !isToken(h.name) {
			return nil, d.errorf(field+".add_headers", "expected HTTP header names, got %s", strconv.Quote(h.name))
		}
		val, ok := str(h.value)
		if !ok {
			return nil, d.errorf(at, "expected a string, got %s", kind(h.value))
		}
		if hasControl(val) {
			return nil, d.errorf(at, "header values may not contain control characters")
		}
		t.AddHeaders[h.name] = val
	}
	return t, nil
}

func (d *decoder) endpoint(a *API, raw json.RawMessage, field string) (Endpoint, error) {
	var in endpointInput
	if err := d.object(raw, field, &in); err != nil {
		return Endpoint{}, err
	}
	ep := Endpoint{
		Path:                    in.Path,
		PathRegex:               in.PathRegex,
		PathReplacement:         in.PathReplacement,
		TransformRequestHeaders: in.TransformRequestHeaders,
	}
	switch {
	case in.ID == nil:
		return ep, d.errorf(field+".id", "missing")
	case !ValidID(*in.ID):
		return ep, d.errorf(field+".id", "expected 1 to %d letters, digits or . _ - : ~, got %s", maxIDLen, strconv.Quote(*in.ID))
	}
	ep.ID = *in.ID
	for _, t := range []struct{ name, value string }{{"target", in.Target}, {"response_from", in.ResponseFrom}} {
		if t.value != "" && !strings.EqualFold(t.value, "http") {
			return ep, d.errorf(field+"."+t.name, "only \"http\" is supported (RIG-Go forwards over HTTP; it has no Kafka, Kinesis or NATS targets), got %s", strconv.Quote(t.value))
		}
	}
	switch {
	case in.Method == "":
		return ep, d.errorf(field+".method", "missing")
	case !isToken(in.Method) || len(in.Method) > 32:
		return ep, d.errorf(field+".method", "expected an HTTP method such as GET, got %s", strconv.Quote(in.Method))
	}
	ep.Method = strings.ToUpper(in.Method)
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
	if err := d.secured(a, &ep, in, field); err != nil {
		return ep, err
	}
	if ep.TransformRequestHeaders && a.VersionData.Default.TransformRequestHeaders == nil {
		return ep, d.errorf(field+".transform_request_headers", "true, but version_data.default.transform_request_headers.add_headers is missing")
	}
	return ep, nil
}

// secured resolves RIG 1's not_secured and RIG 3's secured: an endpoint of
// a jwt API is secured unless it says otherwise.
func (d *decoder) secured(a *API, ep *Endpoint, in endpointInput, field string) error {
	switch {
	case in.Secured != nil && in.NotSecured != nil && *in.Secured == *in.NotSecured:
		return d.errorf(field+".secured", "contradicts not_secured; give one of them")
	case a.AuthType != AuthJWT:
		if in.Secured != nil && *in.Secured {
			return d.errorf(field+".secured", "true needs auth_type \"jwt\" (the API's auth_type is %s)", strconv.Quote(a.AuthType))
		}
		ep.Secured = false
	case in.Secured != nil:
		ep.Secured = *in.Secured
	case in.NotSecured != nil:
		ep.Secured = !*in.NotSecured
	default:
		ep.Secured = true
	}
	return nil
}

func (d *decoder) target(raw json.RawMessage) (Target, error) {
	var in targetInput
	if err := d.object(raw, "proxy", &in); err != nil {
		return Target{}, err
	}
	t := Target{UseEnv: in.UseEnv, TargetURL: in.TargetURL}
	if present(in.Port) {
		n, err := strconv.Atoi(string(in.Port))
		if err != nil || n < 0 || n > 65535 {
			return t, d.errorf("proxy.port", "expected a port number from 1 to 65535, got %s", shown(in.Port))
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

// EnvName reports whether s may name an environment variable in use_env.
func EnvName(s string) bool { return envName.MatchString(s) }

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

// CheckUpdate checks the body of PUT /v1/apis/<id> on its own, before the
// stored definition is read: one JSON object naming each member once,
// whose id, if it has one, is the path's.
func CheckUpdate(body []byte, id string) error {
	_, err := updateMembers(body, id)
	return err
}

func updateMembers(body []byte, id string) ([]member, error) {
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	ms, ok := members(body)
	if !ok {
		return nil, &Error{Problem: "body must be a JSON object (an API definition), got " + kind(body)}
	}
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		if seen[m.name] {
			return nil, &Error{Field: m.name, Problem: "appears more than once"}
		}
		seen[m.name] = true
		if bid, ok := str(m.value); m.name == "id" && (!ok || bid != id) {
			return nil, &Error{Field: "id", Problem: "the body's id " + shown(m.value) + " differs from the path's " + strconv.Quote(id)}
		}
	}
	return ms, nil
}

// ParseUpdate reads the body of PUT /v1/apis/<id> (see CheckUpdate): as in
// RIG, its members replace the stored definition's (stored, valid JSON)
// and members it leaves out are kept.
func ParseUpdate(stored, body []byte, id string) (*API, error) {
	ms, err := updateMembers(body, id)
	if err != nil {
		return nil, err
	}
	merged, _ := members(stored)
	idValue, _ := json.Marshal(id)
	ms = append(ms, member{"id", idValue}) // the stored id, or the path's if none was stored
	for _, m := range ms {
		if i := slices.IndexFunc(merged, func(s member) bool { return s.name == m.name }); i >= 0 {
			merged[i].value = m.value
		} else {
			merged = append(merged, m)
		}
	}
	var doc bytes.Buffer
	doc.WriteByte('{')
	for i, m := range merged {
		if i > 0 {
			doc.WriteByte(',')
		}
		name, _ := json.Marshal(m.name)
		doc.Write(name)
		doc.WriteByte(':')
		doc.Write(m.value)
	}
	doc.WriteByte('}')
	return parseAPI(doc.Bytes(), "")
}
