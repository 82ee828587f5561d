package route

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
)

// Table is the endpoints of a set of APIs, compiled for lookups. A Table
// never changes: the edge builds a new one when a definition changes and
// swaps it in.
type Table struct {
	exact     map[string][]*entry // literal paths
	patterns  []*entry            // {name} paths and regular expressions, by precedence
	apis      []*API
	endpoints int
	// under is looked up only when no endpoint here matches (see Over).
	under *Table
}

type entry struct {
	api      *API
	ep       *Endpoint
	re       *regexp.Regexp // nil for a literal path without rewrite
	template string         // regexp.Expand template of path_replacement
	rewrite  bool
	literal  string // the decoded path of a literal endpoint (re is nil)
	base     string
	baseErr  error

	regex  bool
	params int
	fixed  int
	order  int
}

// Match is the route of one request.
type Match struct {
	API      *API
	Endpoint *Endpoint
	// Path is the path to request upstream (rewritten by path_replacement).
	Path string
	// Base is the upstream's scheme://host:port.
	Base string
	// BaseErr says why this edge cannot reach the upstream (a use_env
	// variable it does not have); Base is empty then.
	BaseErr error
}

// NewTable compiles apis. getenv resolves use_env targets; an API whose
// target cannot be resolved is kept, and its matches carry BaseErr. APIs
// that do not compile (only possible for ones not made by ParseAPI or
// ParseList) are left out and reported.
func NewTable(apis []*API, getenv func(string) string) (*Table, []error) {
	sorted := slices.Clone(apis)
	SortByID(sorted)
	t := &Table{exact: map[string][]*entry{}}
	var errs []error
	order := 0
	for _, a := range sorted {
		base, baseErr := a.Proxy.Base(getenv)
		var entries []*entry
		var err error
		for i := range a.VersionData.Default.Endpoints {
			ep := &a.VersionData.Default.Endpoints[i]
			e := &entry{api: a, ep: ep, base: base, baseErr: baseErr, order: order}
			order++
			if err = e.compile(); err != nil {
				err = &Error{API: a.ID, Field: fmt.Sprintf("version_data.default.endpoints[%d]", i), Problem: err.Error()}
				break
			}
			entries = append(entries, e)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t.apis = append(t.apis, a)
		for _, e := range entries {
			if e.re == nil {
				t.exact[e.literal] = append(t.exact[e.literal], e)
			} else {
				t.patterns = append(t.patterns, e)
			}
			t.endpoints++
		}
	}
	// Most specific first, the same on every edge: a literal path beats a
	// {name} path, fewer {name}s beat more, more fixed bytes beat fewer,
	// and a regular expression comes last; ties go by API id, then by the
	// endpoint's position.
	sort.SliceStable(t.patterns, func(i, j int) bool {
		a, b := t.patterns[i], t.patterns[j]
		switch {
		case a.regex != b.regex:
			return !a.regex
		case a.params != b.params:
			return a.params < b.params
		case a.fixed != b.fixed:
			return a.fixed > b.fixed
		}
		return a.order < b.order
	})
	return t, errs
}

func (e *entry) compile() error {
	groups := 0
	if e.ep.PathRegex != "" {
		re, err := compileRegex(e.ep.PathRegex)
		if err != nil {
			return err
		}
		e.re, e.regex, groups = re, true, re.NumSubexp()
	} else {
		p, err := compilePath(e.ep.Path)
		if err != nil {
			return err
		}
		e.params, e.fixed, groups = p.params, p.fixed, p.params
		if p.literal == "" || e.ep.PathReplacement != "" {
			if e.re, err = regexp.Compile(p.re); err != nil {
				return err
			}
		}
		e.literal = p.literal
	}
	if e.ep.PathReplacement != "" {
		tmpl, err := replacement(e.ep.PathReplacement, groups)
		if err != nil {
			return err
		}
		e.template, e.rewrite = tmpl, true
	}
	return nil
}

// Over returns a table that looks a request up in t first, and in under
// only when no endpoint of t matches it, whatever the specificity of
// under's endpoints. The edge puts its route file's table over the
// cluster's, so that a runtime route cannot take over requests a file
// route serves (and the tokens they carry), not even with a more specific
// path.
func (t *Table) Over(under *Table) *Table {
	c := *t
	c.under = under
	c.apis = append(slices.Clone(t.apis), under.APIs()...)
	SortByID(c.apis)
	c.endpoints += under.Len()
	return &c
}

// APIs returns the table's APIs, by id.
func (t *Table) APIs() []*API { return t.apis }

// Len returns the number of endpoints.
func (t *Table) Len() int { return t.endpoints }

// Lookup finds the endpoint for a request's method and decoded, normalised
// path. Without one, it returns the methods the path has endpoints for
// (405 when there are some, 404 when none).
func (t *Table) Lookup(method, path string) (*Match, []string) {
	m, allow := t.lookup(method, path)
	if m != nil || t.under == nil {
		return m, allow
	}
	m, more := t.under.Lookup(method, path)
	if m != nil {
		return m, nil
	}
	allow = append(allow, more...)
	slices.Sort(allow)
	return nil, slices.Compact(allow)
}

func (t *Table) lookup(method, path string) (*Match, []string) {
	var allow []string
	for _, e := range t.exact[path] {
		if e.ep.Method == method {
			return e.match(path, nil), nil
		}
		allow = append(allow, e.ep.Method)
	}
	for _, e := range t.patterns {
		var idx []int
		if e.rewrite {
			if idx = e.re.FindStringSubmatchIndex(path); idx == nil {
				continue
			}
		} else if !e.re.MatchString(path) {
			continue
		}
		if e.ep.Method == method {
			return e.match(path, idx), nil
		}
		allow = append(allow, e.ep.Method)
	}
	slices.Sort(allow)
	return nil, slices.Compact(allow)
}

func (e *entry) match(path string, idx []int) *Match {
	m := &Match{API: e.api, Endpoint: e.ep, Path: path, Base: e.base, BaseErr: e.baseErr}
	if e.rewrite {
		if idx == nil {
			idx = e.re.FindStringSubmatchIndex(path)
		}
		p := string(e.re.ExpandString(nil, e.template, path, idx))
		if len(p) == 0 || p[0] != '/' {
			p = "/" + p
		}
		m.Path = p
	}
	return m
}

// SortByID orders apis by id, the order every edge builds its table in.
func SortByID(apis []*API) {
	sort.Slice(apis, func(i, j int) bool { return apis[i].ID < apis[j].ID })
}
