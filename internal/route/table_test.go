package route

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func table(t testing.TB, file string) *Table {
	t.Helper()
	apis, err := ParseList([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	tb, errs := NewTable(apis, func(string) string { return "" })
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return tb
}

const lookupFile = `[{
  "id": "b-users",
  "version_data": {"default": {"endpoints": [
    {"id": "me", "path": "/users/me", "method": "GET"},
    {"id": "user", "path": "/users/{id}", "method": "GET"},
    {"id": "put-user", "path": "/users/{id}", "method": "PUT"},
    {"id": "file", "path": "/files/{name}.json", "method": "GET"},
    {"id": "pair", "path": "/pairs/{a}/{b}", "method": "GET", "path_replacement": "/v2/pairs/\\2/\\1"},
    {"id": "rewrite-fixed", "path": "/old", "method": "GET", "path_replacement": "/new"},
    {"id": "rig-regex", "path_regex": "/path/(.+)/somewhere/(.+)", "path_replacement": "/somewhere/\\1/path/\\2", "method": "GET"},
    {"id": "any-user", "path_regex": "/users/.*", "method": "DELETE"}
  ]}},
  "proxy": {"target_url": "http://users", "port": 1}
}, {
  "id": "a-items",
  "version_data": {"default": {"endpoints": [
    {"id": "item", "path": "/items/{id}", "method": "GET"},
    {"id": "dup", "path": "/users/{id}", "method": "GET"}
  ]}},
  "proxy": {"use_env": true, "target_url": "ITEMS_HOST"}
}]`

func TestLookup(t *testing.T) {
	tb := table(t, lookupFile)
	cases := []struct {
		method, path string
		api, ep      string
		upstream     string
		allow        []string
	}{
		{"GET", "/users/me", "b-users", "me", "/users/me", nil},
		{"GET", "/users/alice", "a-items", "dup", "/users/alice", nil}, // same specificity: by API id
		{"PUT", "/users/alice", "b-users", "put-user", "/users/alice", nil},
		{"GET", "/users/550e8400-e29b-41d4-a716-446655440000", "a-items", "dup", "/users/550e8400-e29b-41d4-a716-446655440000", nil},
		{"GET", "/items/v1.2.3", "a-items", "item", "/items/v1.2.3", nil},
		{"GET", "/items/a.b", "a-items", "item", "/items/a.b", nil},
		{"GET", "/files/report.2024.json", "b-users", "file", "/files/report.2024.json", nil},
		{"GET", "/pairs/x.1/y.2", "b-users", "pair", "/v2/pairs/y.2/x.1", nil},
		{"GET", "/old", "b-users", "rewrite-fixed", "/new", nil},
		{"GET", "/path/1/somewhere/2", "b-users", "rig-regex", "/somewhere/1/path/2", nil},
		{"DELETE", "/users/alice", "b-users", "any-user", "/users/alice", nil},
		{"POST", "/users/alice", "", "", "", []string{"DELETE", "GET", "PUT"}},
		{"POST", "/users/me", "", "", "", []string{"DELETE", "GET", "PUT"}},
		{"GET", "/users", "", "", "", nil},
		{"GET", "/users/", "", "", "", []string{"DELETE"}},
		{"GET", "/users/a/b", "", "", "", []string{"DELETE"}},
		{"GET", "/Users/me", "", "", "", nil},
		{"GET", "/items/", "", "", "", nil},
		{"GET", "/nope", "", "", "", nil},
	}
	for _, c := range cases {
		m, allow := tb.Lookup(c.method, c.path)
		if c.api == "" {
			if m != nil {
				t.Errorf("%s %s matched %s/%s", c.method, c.path, m.API.ID, m.Endpoint.ID)
			}
			if !reflect.DeepEqual(allow, c.allow) {
				t.Errorf("%s %s: allow %v, want %v", c.method, c.path, allow, c.allow)
			}
			continue
		}
		if m == nil {
			t.Errorf("%s %s: no match (allow %v), want %s/%s", c.method, c.path, allow, c.api, c.ep)
			continue
		}
		if m.API.ID != c.api || m.Endpoint.ID != c.ep || m.Path != c.upstream {
			t.Errorf("%s %s: %s/%s -> %s, want %s/%s -> %s", c.method, c.path, m.API.ID, m.Endpoint.ID, m.Path, c.api, c.ep, c.upstream)
		}
	}
	m, _ := tb.Lookup("GET", "/items/1")
	if m.BaseErr == nil || !strings.Contains(m.BaseErr.Error(), "ITEMS_HOST") {
		t.Fatalf("unset use_env variable: base %q err %v", m.Base, m.BaseErr)
	}
	m, _ = tb.Lookup("GET", "/users/me")
	if m.Base != "http://users:1" || m.BaseErr != nil {
		t.Fatalf("base %q %v", m.Base, m.BaseErr)
	}
	if tb.Len() != 10 || len(tb.APIs()) != 2 || tb.APIs()[0].ID != "a-items" {
		t.Fatalf("Len %d, APIs %d", tb.Len(), len(tb.APIs()))
	}
}

func TestReserved(t *testing.T) {
	for p, want := range map[string]bool{
		"/health": true, "/health/ready": true, "/HEALTH": true, "/socket": true, "/socket/sse": true,
		"/socket/websocket": true, "/healthz": false, "/sockets": false, "/": false, "/api/health": false,
	} {
		if Reserved(p) != want {
			t.Errorf("Reserved(%q) = %v", p, !want)
		}
	}
}

// FuzzParse: no input panics the route parser, every error is one line,
// and whatever it accepts survives the round trip through the JSON it is
// stored and listed as, also with its members in another order (PUT
// stores a merge of maps, whose members encoding/json sorts), and parses
// the same alone as in a route file.
func FuzzParse(f *testing.F) {
	f.Add([]byte(rig1))
	f.Add([]byte(rig3))
	f.Add([]byte(lookupFile))
	f.Add([]byte(`[{"id":"x","version_data":{"default":{"endpoints":[{"id":"e","path":"/{a}{b}","method":"GET","path_replacement":"\\g{2}$1"}]}},"proxy":{"target_url":"h"}}]`))
	f.Add([]byte(`{"id":"x","auth_type":"jwt","version_data":{"default":{"transform_request_headers":{"add_headers":{"X-A":"1"}},"endpoints":[{"id":"e","path_regex":"/(a|b)+","method":"get","transform_request_headers":true}]}},"proxy":{"target_url":"h"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		apis, err := ParseList(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			a, err := ParseAPI(data)
			if err != nil {
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error spans lines: %q", err)
				}
				return
			}
			in, err := ParseList([]byte("[" + string(data) + "]"))
			if err != nil || !reflect.DeepEqual(in, []*API{a}) {
				t.Fatalf("ParseAPI accepts %s as %+v, but in a list it is %+v, %v", data, a, in, err)
			}
			apis = []*API{a}
		}
		for _, a := range apis {
			b, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			sorted, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			for _, form := range [][]byte{b, sorted} {
				again, err := ParseAPI(form)
				if err != nil {
					t.Fatalf("stored form %s does not parse: %v", form, err)
				}
				if !reflect.DeepEqual(a, again) {
					t.Fatalf("round trip through %s changed %+v into %+v", form, a, again)
				}
			}
		}
		if _, errs := NewTable(apis, func(string) string { return "" }); len(errs) > 0 {
			t.Fatalf("a parsed definition does not compile: %v", errs)
		}
	})
}

// FuzzMatch: any route path and any request path either fail validation
// or look up without panicking; a path without {name} matches exactly
// itself; and a {name} never matches across a "/".
func FuzzMatch(f *testing.F) {
	f.Add("/myapi/detail/{id}", "/myapi/detail/550e8400-e29b-41d4-a716-446655440000")
	f.Add("/files/{name}.json", "/files/a.b.json")
	f.Add("/a/{x}/b", "/a/x/y/b")
	f.Add("/", "/")
	f.Add("/a%20b", "/a b")
	f.Add("/{a}{b}", "/xy")
	f.Fuzz(func(t *testing.T, pattern, path string) {
		p, err := compilePath(pattern)
		if err != nil {
			return
		}
		doc := `[{"id":"x","version_data":{"default":{"endpoints":[{"id":"e","method":"GET","path":` + quote(pattern) + `}]}},"proxy":{"target_url":"h"}}]`
		apis, err := ParseList([]byte(doc))
		if err != nil {
			t.Fatalf("compilePath accepts %q but ParseList does not: %v", pattern, err)
		}
		tb, errs := NewTable(apis, func(string) string { return "" })
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		m, _ := tb.Lookup("GET", path)
		if p.params == 0 && (m != nil) != (path == p.literal) {
			t.Fatalf("literal %q (decoded %q) vs %q: matched %v", pattern, p.literal, path, m != nil)
		}
		if m != nil && strings.Count(path, "/") != strings.Count(strings.ReplaceAll(p.re, "([^/]+)", ""), "/") {
			t.Fatalf("%q matched %q with a different number of segments", pattern, path)
		}
	})
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestOver: a table over another answers every request one of its own
// endpoints matches, however specific the other's are; the other serves
// the rest, and 405's Allow lists the methods of both.
func TestOver(t *testing.T) {
	file := table(t, `[{"id":"z-file","auth_type":"jwt","version_data":{"default":{"endpoints":[
	  {"id":"get","path":"/private/{id}","method":"GET"}]}},"proxy":{"target_url":"http://users","port":1}}]`)
	cluster := table(t, `[{"id":"a-shadow","version_data":{"default":{"endpoints":[
	  {"id":"get","path":"/private/1","method":"GET","secured":false},
	  {"id":"post","path":"/private/1","method":"POST"},
	  {"id":"other","path":"/other","method":"GET"}]}},"proxy":{"target_url":"http://evil","port":1}}]`)
	for _, c := range []struct {
		name   string
		tb     *Table
		method string
		path   string
		api    string
		allow  []string
	}{
		{"alone, the literal path wins", table(t, `[]`).Over(cluster), "GET", "/private/1", "a-shadow", nil},
		{"over it, the file's pattern wins", file.Over(cluster), "GET", "/private/1", "z-file", nil},
		{"a method the file has not", file.Over(cluster), "POST", "/private/1", "a-shadow", nil},
		{"a path the file has not", file.Over(cluster), "GET", "/other", "a-shadow", nil},
		{"405 from both", file.Over(cluster), "PUT", "/private/1", "", []string{"GET", "POST"}},
		{"404", file.Over(cluster), "GET", "/nowhere", "", nil},
	} {
		m, allow := c.tb.Lookup(c.method, c.path)
		switch {
		case c.api == "" && (m != nil || !reflect.DeepEqual(allow, c.allow)):
			t.Errorf("%s: %v %v, want no match and allow %v", c.name, m, allow, c.allow)
		case c.api != "" && (m == nil || m.API.ID != c.api):
			t.Errorf("%s: %+v, want %s", c.name, m, c.api)
		}
	}
	both := file.Over(cluster)
	if both.Len() != 4 || len(both.APIs()) != 2 || both.APIs()[0].ID != "a-shadow" {
		t.Fatalf("Len %d, APIs %v", both.Len(), both.APIs())
	}
}
