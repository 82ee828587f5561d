package route

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// rig1 is RIG 1's test route file format: not_secured, auth in a header.
const rig1 = `[{
  "id": "identity-service", "name": "identity-service", "auth_type": "jwt",
  "auth": {"use_header": true, "header_name": "Authorization", "use_query": false, "query_name": ""},
  "versioned": false,
  "version_data": {"default": {"endpoints": [
    {"id": "get-myapi-detail-id", "path": "/myapi/detail/{id}", "method": "GET", "not_secured": false},
    {"id": "get-myapi-free", "path": "/myapi/free", "method": "GET", "not_secured": true},
    {"id": "post-myapi-books", "path": "/myapi/books", "method": "post", "not_secured": false}
  ]}},
  "proxy": {"use_env": false, "target_url": "http://localhost", "port": 6666}
}]`

// rig3 is RIG 3's format: secured, use_env, bookkeeping fields.
const rig3 = `[{
  "id": "new-service", "name": "new-service", "auth_type": "jwt",
  "auth": {"use_header": false, "header_name": "", "use_query": true, "query_name": "token"},
  "versioned": false, "active": true, "node_name": "rig@host", "ref_number": 0,
  "version_data": {"default": {"endpoints": [
    {"id": "post-auth-register", "path": "/auth/register", "method": "POST", "secured": false},
    {"id": "get-me", "path": "/auth/me", "method": "GET", "secured": true},
    {"id": "get-default", "path": "/auth/default", "method": "GET"}
  ]}},
  "proxy": {"use_env": true, "target_url": "AUTH_HOST", "port": 6666}
}, {
  "id": "my-service",
  "version_data": {"default": {"endpoints": [{"id": "my-endpoint", "method": "GET", "path": "/"}]}},
  "proxy": {"use_env": true, "target_url": "API_HOST", "port": 3000}
}]`

func TestParseRIGFormats(t *testing.T) {
	apis, err := ParseList([]byte(rig1))
	if err != nil {
		t.Fatal(err)
	}
	eps := apis[0].VersionData.Default.Endpoints
	if !eps[0].Secured || eps[1].Secured || !eps[2].Secured || eps[2].Method != "POST" {
		t.Fatalf("RIG 1 endpoints: %+v", eps)
	}
	if a := apis[0].Auth; !a.UseHeader || a.HeaderName != "Authorization" || a.UseQuery {
		t.Fatalf("auth %+v", a)
	}

	apis, err = ParseList([]byte(rig3))
	if err != nil {
		t.Fatal(err)
	}
	eps = apis[0].VersionData.Default.Endpoints
	if eps[0].Secured || !eps[1].Secured || !eps[2].Secured {
		t.Fatalf("RIG 3 endpoints: %+v (a jwt endpoint saying neither is secured)", eps)
	}
	if apis[1].AuthType != AuthNone || apis[1].VersionData.Default.Endpoints[0].Secured {
		t.Fatalf("an API without auth_type: %+v", apis[1])
	}
	env := map[string]string{"AUTH_HOST": "http://auth.internal", "API_HOST": "api"}
	getenv := func(k string) string { return env[k] }
	if b, err := apis[0].Proxy.Base(getenv); err != nil || b != "http://auth.internal:6666" {
		t.Fatalf("use_env base %q %v", b, err)
	}
	if b, err := apis[1].Proxy.Base(getenv); err != nil || b != "http://api:3000" {
		t.Fatalf("use_env base without scheme %q %v", b, err)
	}
	if _, err := apis[0].Proxy.Base(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "AUTH_HOST") {
		t.Fatalf("unset use_env variable: %v", err)
	}
}

// TestRoundTrip: what the API stores and lists (the JSON of a parsed
// definition) parses back to the same definition.
func TestRoundTrip(t *testing.T) {
	for _, file := range []string{rig1, rig3} {
		apis, err := ParseList([]byte(file))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range apis {
			b, _ := json.Marshal(a)
			again, err := ParseAPI(b)
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if !reflect.DeepEqual(a, again) {
				t.Fatalf("round trip changed %+v into %+v", a, again)
			}
		}
	}
}

func api(mod string) string {
	return `{"id":"svc","auth_type":"jwt",` + mod + `}`
}

const eps = `"version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET"}]}}`
const prx = `"proxy":{"target_url":"http://h","port":80}`

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"not JSON", `{`, "not valid JSON"},
		{"not an object", `[]`, "expected a JSON object, got an array"},
		{"no id", `{"version_data":{}}`, "id: missing"},
		{"bad id", `{"id":"a b"}`, `id: expected 1 to 128 letters, digits or . _ - : ~, got "a b"`},
		{"unknown field", api(eps + `,` + prx + `,"not_secure":true`), `API "svc": not_secure: unknown field`},
		{"duplicate field", api(eps + `,` + prx + `,"proxy":{}`), `API "svc": proxy: appears more than once`},
		{"auth type", `{"id":"svc","auth_type":"oauth",` + eps + `,` + prx + `}`, `API "svc": auth_type: expected "jwt" or "none", got "oauth"`},
		{"versioned", api(`"versioned":true,` + eps + `,` + prx), `API "svc": versioned: versioned APIs are not supported`},
		{"other version", api(`"version_data":{"v2":{}},` + prx), `API "svc": version_data.v2: only the "default" version is served`},
		{"no endpoints", api(`"version_data":{"default":{}},` + prx), `version_data.default.endpoints: missing`},
		{"endpoint without method", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a"}]}},` + prx),
			`API "svc": version_data.default.endpoints[0].method: missing`},
		{"bad method", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GE T"}]}},` + prx),
			`endpoints[0].method: expected an HTTP method such as GET, got "GE T"`},
		{"path without slash", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"a","method":"GET"}]}},` + prx),
			`API "svc": version_data.default.endpoints[0].path: expected a path starting with "/", got "a"`},
		{"unclosed param", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a/{id","method":"GET"}]}},` + prx),
			`endpoints[0].path: unclosed { in "/a/{id"`},
		{"empty param", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a/{}","method":"GET"}]}},` + prx),
			`endpoints[0].path: expected {name} with a non-empty name`},
		{"dot segment", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a/../b","method":"GET"}]}},` + prx),
			`endpoints[0].path: dot segments never match`},
		{"reserved", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/socket/sse","method":"GET"}]}},` + prx),
			`endpoints[0].path: "/socket/sse" belongs to the edge itself`},
		{"both paths", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a","path_regex":"/a","method":"GET"}]}},` + prx),
			`endpoints[0].path_regex: give path or path_regex, not both`},
		{"bad regex", api(`"version_data":{"default":{"endpoints":[{"id":"e","path_regex":"/a/(?=x)","method":"GET"}]}},` + prx),
			`endpoints[0].path_regex: not a valid regular expression`},
		{"missing group", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a/{x}","path_replacement":"/b/\\2","method":"GET"}]}},` + prx),
			`endpoints[0].path_replacement: \2 refers to a capture group the path does not have (it has 1)`},
		{"kafka target", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET","target":"kafka"}]}},` + prx),
			`endpoints[0].target: only "http" is supported`},
		{"secured contradiction", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET","secured":true,"not_secured":true}]}},` + prx),
			`endpoints[0].secured: contradicts not_secured`},
		{"secured without jwt", `{"id":"svc",` + `"version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET","secured":true}]}},` + prx + `}`,
			`endpoints[0].secured: true needs auth_type "jwt"`},
		{"duplicate endpoint id", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET"},{"id":"e","path":"/b","method":"GET"}]}},` + prx),
			`endpoints[1].id: endpoints[0] has the same id "e"`},
		{"not_secured not a bool", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET","not_secured":"no"}]}},` + prx),
			`endpoints[0].not_secured: expected true or false, got "no"`},
		{"jwt without token source", api(`"auth":{"use_header":false,"use_query":false},` + eps + `,` + prx),
			`API "svc": auth: auth_type "jwt" needs use_header or use_query to be true`},
		{"header without name", api(`"auth":{"use_header":true},` + eps + `,` + prx), `auth.header_name: missing (use_header is true)`},
		{"no proxy", api(eps), `API "svc": proxy: missing`},
		{"no target", api(eps + `,"proxy":{"port":80}`), `proxy.target_url: missing`},
		{"target with path", api(eps + `,"proxy":{"target_url":"http://h/base"}`), `proxy.target_url: expected scheme://host[:port] without path`},
		{"ftp target", api(eps + `,"proxy":{"target_url":"ftp://h"}`), `proxy.target_url: expected an http:// or https:// URL`},
		{"bad port", api(eps + `,"proxy":{"target_url":"h","port":70000}`), `proxy.port: expected a port number from 1 to 65535, got 70000`},
		{"port as string", api(eps + `,"proxy":{"target_url":"h","port":"80"}`), `proxy.port: expected a port number from 1 to 65535, got "80"`},
		{"bad env name", api(eps + `,"proxy":{"use_env":true,"target_url":"http://h"}`), `proxy.target_url: expected the name of an environment variable`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseAPI([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted %s", c.in)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
}

// TestParseStrict: encoding/json alone would take the last of repeated
// members, fill "id" from "ID", and read invalid UTF-8 as U+FFFD; a
// definition does none of these, at every level.
func TestParseStrict(t *testing.T) {
	ep := `{"id":"e","path":"/a","method":"GET"}`
	cases := []struct{ name, in, want string }{
		{"repeated member", api(eps + `,` + prx + `,"name":"a","name":"b"`), `API "svc": name: appears more than once`},
		{"repeated in auth", api(`"auth":{"use_query":true,"query_name":"t","query_name":"u"},` + eps + `,` + prx), `API "svc": auth.query_name: appears more than once`},
		{"repeated version", api(`"version_data":{"default":{"endpoints":[]},"default":{"endpoints":[]}},` + prx), `API "svc": version_data.default: appears more than once`},
		{"repeated endpoints", api(`"version_data":{"default":{"endpoints":[],"endpoints":[` + ep + `]}},` + prx), `API "svc": version_data.default.endpoints: appears more than once`},
		{"repeated in endpoint", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET","secured":true,"secured":false}]}},` + prx),
			`API "svc": version_data.default.endpoints[0].secured: appears more than once`},
		{"repeated in transform", api(`"version_data":{"default":{"transform_request_headers":{"add_headers":{},"add_headers":{}},"endpoints":[]}},` + prx),
			`API "svc": version_data.default.transform_request_headers.add_headers: appears more than once`},
		{"repeated in proxy", api(eps + `,"proxy":{"target_url":"http://h","port":80,"port":70000}`), `API "svc": proxy.port: appears more than once`},
		{"name in another case", api(eps + `,` + prx + `,"ID":"other"`), `API "svc": ID: unknown field (expected one of id, name, auth_type, auth, versioned, version_data, proxy)`},
		{"endpoint member in another case", api(`"version_data":{"default":{"endpoints":[{"id":"e","path":"/a","Method":"GET"}]}},` + prx),
			`API "svc": version_data.default.endpoints[0].Method: unknown field (expected one of id, path, path_regex, path_replacement, method, secured, not_secured, transform_request_headers, target, response_from)`},
		{"unknown in proxy", api(eps + `,"proxy":{"target_url":"http://h","host":"h"}`), `API "svc": proxy.host: unknown field (expected one of use_env, target_url, port)`},
		{"invalid UTF-8", "{\"id\":\"svc\",\"name\":\"caf\xe9\"}", `not valid JSON: byte 0xE9 at offset 23 is not UTF-8`},
		{"trailing data", api(eps+`,`+prx) + ` {}`, `not valid JSON: invalid character '{' after top-level value (at offset`},
		{"leading zero", api(eps + `,"proxy":{"target_url":"h","port":080}`), `not valid JSON`},
		{"id of another type", `{"id":7}`, `id: expected a string, got a number`},
		{"null endpoint", api(`"version_data":{"default":{"endpoints":[null]}},` + prx), `API "svc": version_data.default.endpoints[0]: expected a JSON object, got null`},
		{"null header value", api(`"version_data":{"default":{"transform_request_headers":{"add_headers":{"X-A":null}},"endpoints":[]}},` + prx),
			`version_data.default.transform_request_headers.add_headers.X-A: expected a string, got null`},
		{"port as a fraction", api(eps + `,"proxy":{"target_url":"h","port":80.0}`), `proxy.port: expected a port number from 1 to 65535, got 80.0`},
		{"bool as an object", api(eps + `,"proxy":{"use_env":{ "a" : 1 },"target_url":"h"}`), `proxy.use_env: expected true or false, got {"a":1}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseAPI([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted %s", c.in)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, c.want)
			}
		})
	}

	// RIG's bookkeeping is accepted with any value and dropped; null is
	// the same as leaving a member out.
	in := `{"id":"svc","active":true,"node_name":"rig@host","ref_number":3,"timestamp":{"at":1},"phx_ref":null,
	  "name":null,"auth_type":null,"auth":null,"versioned":null,
	  "version_data":{"default":{"transform_request_headers":null,"endpoints":[{"id":"e","path":"/a","method":"GET","secured":null,"target":null}]}},
	  "proxy":{"use_env":null,"target_url":"h","port":null}}`
	got, err := ParseAPI([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseAPI([]byte(`{"id":"svc","version_data":{"default":{"endpoints":[{"id":"e","path":"/a","method":"GET"}]}},"proxy":{"target_url":"h"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("bookkeeping and nulls: %+v, want %+v", got, want)
	}
}

func TestParseListErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{}`, "expected a JSON array of API definitions, got an object"},
		{`[1]`, "API #1: expected a JSON object, got a number"},
		{`[{"id":"a",` + eps + `,` + prx + `},{"id":"a",` + eps + `,` + prx + `}]`, `API "a": id: API #1 has the same id`},
		{`[{"id":"a",` + eps + `,` + prx + `},{"name":"x"}]`, `API #2: id: missing`},
	}
	for _, c := range cases {
		_, err := ParseList([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseList(%s) = %v, want %q", c.in, err, c.want)
		}
	}
}

func TestBaseURL(t *testing.T) {
	cases := []struct {
		url  string
		port int
		want string
	}{
		{"http://localhost", 6666, "http://localhost:6666"},
		{"localhost", 6666, "http://localhost:6666"},
		{"https://h", 0, "https://h:443"},
		{"h", 0, "http://h:80"},
		{"http://h:8080", 0, "http://h:8080"},
		{"http://h:8080", 9090, "http://h:9090"},
		{"http://[::1]", 81, "http://[::1]:81"},
		{"http://h/", 1, "http://h:1"},
	}
	for _, c := range cases {
		got, err := baseURL(c.url, c.port)
		if err != nil || got != c.want {
			t.Errorf("baseURL(%q, %d) = %q, %v; want %q", c.url, c.port, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "http://", "http://u@h", "http://h?x", "gopher://h", "http://h:99999"} {
		if got, err := baseURL(bad, 0); err == nil {
			t.Errorf("baseURL(%q) = %q, want an error", bad, got)
		}
	}
}

// BenchmarkParseList reads a route file of 100 APIs with 10 endpoints
// each: the edge's start, and ingest's POST /v1/apis, pay this once per
// definition.
func BenchmarkParseList(b *testing.B) {
	var s strings.Builder
	s.WriteString("[")
	for a := range 100 {
		if a > 0 {
			s.WriteString(",")
		}
		fmt.Fprintf(&s, `{"id":"api%d","auth_type":"jwt","version_data":{"default":{"endpoints":[`, a)
		for e := range 10 {
			if e > 0 {
				s.WriteString(",")
			}
			fmt.Fprintf(&s, `{"id":"e%d","path":"/a%d/e%d/{id}","method":"GET","secured":true}`, e, a, e)
		}
		s.WriteString(`]}},"proxy":{"target_url":"http://h","port":8080}}`)
	}
	s.WriteString("]")
	data := []byte(s.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseList(data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestParseUpdate: a PUT body replaces the members it names, keeps the
// others, and is refused whole when it repeats a member, is no object or
// names another id.
func TestParseUpdate(t *testing.T) {
	stored, _ := json.Marshal(mustAPI(t, api(eps+","+prx)))
	a, err := ParseUpdate(stored, []byte(`{"name":"renamed","version_data":{"default":{"endpoints":[{"id":"n","path":"/b","method":"POST"}]}}}`), "svc")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "svc" || a.Name != "renamed" || a.AuthType != "jwt" || len(a.VersionData.Default.Endpoints) != 1 || a.VersionData.Default.Endpoints[0].Path != "/b" {
		t.Fatalf("merged %+v", a)
	}
	for body, want := range map[string]string{
		`{"name":"a","name":"b"}`:  "name: appears more than once",
		`{"id":"svc","id":"svc"}`:  "id: appears more than once",
		`{"id":"other"}`:           `id: the body's id "other" differs from the path's "svc"`,
		`{"id":7}`:                 `id: the body's id 7 differs from the path's "svc"`,
		`[{"id":"svc"}]`:           "body must be a JSON object (an API definition), got an array",
		`null`:                     "body must be a JSON object (an API definition), got null",
		`{"name":`:                 "not valid JSON",
		`{"version_data":{"x":1}}`: `only the "default" version is served`,
		"{\"name\":\"\xff\"}":      "not UTF-8",
	} {
		if err := CheckUpdate([]byte(body), "svc"); err == nil || !strings.Contains(err.Error(), want) {
			if _, perr := ParseUpdate(stored, []byte(body), "svc"); perr == nil || !strings.Contains(perr.Error(), want) {
				t.Errorf("%s: CheckUpdate %v, ParseUpdate %v; want %q", body, err, perr, want)
			}
		}
	}
}

func mustAPI(t *testing.T, def string) *API {
	t.Helper()
	a, err := ParseAPI([]byte(def))
	if err != nil {
		t.Fatal(err)
	}
	return a
}
