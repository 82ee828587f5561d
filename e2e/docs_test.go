package e2e

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
)

// configDoc is the file whose table documents every setting. The test reads
// the table, so a new setting needs only a row there.
const configDoc = "../docs/CONFIGURATION.md"

// helpLine is one setting in --help: "  --inbound-port, INBOUND_PORT  (default 4000)".
var helpLine = regexp.MustCompile(`^  --([a-z0-9-]+), ([A-Z][A-Z0-9_]*)  \(default (.*)\)$`)

// helpSetting is a setting as --help lists it.
type helpSetting struct{ flag, def string }

// binaryHelp runs a binary with --help in an environment of only TMPDIR
// (so defaults derived from it are known, and the caller's environment
// cannot change them) and returns its settings by variable name.
func binaryHelp(t *testing.T, path string, env []string) map[string]helpSetting {
	t.Helper()
	cmd := exec.Command(path, "--help")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", filepath.Base(path), err, out)
	}
	settings := map[string]helpSetting{}
	for _, line := range strings.Split(string(out), "\n") {
		m := helpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		def := m[3]
		if def == `""` {
			def = ""
		}
		settings[m[2]] = helpSetting{flag: m[1], def: def}
	}
	if len(settings) == 0 {
		t.Fatalf("%s --help lists no settings (the test's pattern no longer matches its lines?):\n%s", filepath.Base(path), out)
	}
	return settings
}

// configRow is one row of the configuration table: a default per binary.
type configRow struct {
	line     int
	defaults map[string]string // binary -> default as the table writes it ("" when it shows none)
}

// codeSpan is inline code in a table cell.
var codeSpan = regexp.MustCompile("`([^`]*)`")

// readConfigTable reads the table under the header "| variable | binary |
// default | meaning |". A binary cell is "edge", "ingest", "both" or a
// comma-separated list; a default cell's first code span is the default
// (none, as in "none", means an empty one), and a cell such as "`rig-edge`
// / `rig-ingest`" gives one per binary, in the binary cell's order.
func readConfigTable(t *testing.T, path string) map[string]configRow {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]configRow{}
	in := false
	for i, line := range strings.Split(string(b), "\n") {
		cells := tableCells(line)
		if !in {
			in = slices.Equal(cells, []string{"variable", "binary", "default", "meaning"})
			continue
		}
		if cells == nil {
			break
		}
		if strings.Trim(cells[0], "-: ") == "" {
			continue // the header's separator
		}
		if len(cells) != 4 {
			t.Errorf("%s:%d: a row of the configuration table has %d cells, want 4: %s", path, i+1, len(cells), line)
			continue
		}
		names := codeSpan.FindAllStringSubmatch(cells[0], -1)
		if len(names) != 1 {
			t.Errorf("%s:%d: the variable cell %q should hold one `NAME`", path, i+1, cells[0])
			continue
		}
		name := names[0][1]
		if prev, dup := rows[name]; dup {
			t.Errorf("%s:%d: %s has a row already, at line %d", path, i+1, name, prev.line)
			continue
		}
		var binaries []string
		if cells[1] == "both" {
			binaries = []string{"edge", "ingest"}
		} else {
			for _, bin := range strings.Split(cells[1], ",") {
				binaries = append(binaries, strings.TrimSpace(bin))
			}
		}
		parts := []string{cells[2]}
		if p := strings.Split(cells[2], " / "); len(p) == len(binaries) {
			parts = p
		}
		row := configRow{line: i + 1, defaults: map[string]string{}}
		for j, bin := range binaries {
			part := parts[min(j, len(parts)-1)]
			def := ""
			if m := codeSpan.FindStringSubmatch(part); m != nil {
				def = m[1]
			}
			row.defaults[bin] = def
		}
		rows[name] = row
	}
	if !in {
		t.Fatalf("%s has no table with the header | variable | binary | default | meaning |", path)
	}
	return rows
}

// tableCells splits a Markdown table row into its trimmed cells; nil for a
// line that is no row.
func tableCells(line string) []string {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "|") || !strings.HasSuffix(line, "|") || len(line) < 2 {
		return nil
	}
	var cells []string
	var cell strings.Builder
	inner := line[1 : len(line)-1]
	for i := 0; i < len(inner); i++ {
		switch {
		case inner[i] == '\\' && i+1 < len(inner) && inner[i+1] == '|':
			cell.WriteByte('|')
			i++
		case inner[i] == '|':
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(inner[i])
		}
	}
	return append(cells, strings.TrimSpace(cell.String()))
}

// placeholder is a part of a documented default that differs per machine
// or process, such as <hostname> or <pid>.
var placeholder = regexp.MustCompile(`<[a-z]+>`)

// sameDefault reports whether the table's default doc means what --help
// printed: the same text, the same duration (5m is 5m0s), or the same once
// $VARIABLES are expanded from env and each <placeholder> matches a word.
func sameDefault(doc, help string, env []string) bool {
	if doc == help {
		return true
	}
	if d, err := time.ParseDuration(doc); err == nil {
		if h, err := time.ParseDuration(help); err == nil && d == h {
			return true
		}
	}
	expanded := os.Expand(doc, func(name string) string {
		for _, kv := range env {
			if k, v, _ := strings.Cut(kv, "="); k == name {
				return v
			}
		}
		return "$" + name
	})
	var re strings.Builder
	re.WriteString("^")
	last := 0
	for _, loc := range placeholder.FindAllStringIndex(expanded, -1) {
		re.WriteString(regexp.QuoteMeta(expanded[last:loc[0]]))
		re.WriteString(`\S+`)
		last = loc[1]
	}
	re.WriteString(regexp.QuoteMeta(expanded[last:]) + "$")
	return regexp.MustCompile(re.String()).MatchString(help)
}

// TestConfigTableMatchesHelp checks the configuration table against what
// edge --help and ingest --help print, both ways: every setting a binary
// takes has a row naming that binary and showing its default, and every
// row names settings the binaries it names take. It also checks the flag
// spelling the table leaves out: INBOUND_PORT is --inbound-port.
func TestConfigTableMatchesHelp(t *testing.T) {
	env := []string{"TMPDIR=" + t.TempDir()}
	help := map[string]map[string]helpSetting{
		"edge":   binaryHelp(t, bin.edge, env),
		"ingest": binaryHelp(t, bin.ingest, env),
	}
	rows := readConfigTable(t, configDoc)
	for _, binary := range []string{"edge", "ingest"} {
		for name, s := range help[binary] {
			if want := strings.ReplaceAll(strings.ToLower(name), "_", "-"); s.flag != want {
				t.Errorf("%s --help: %s has the flag --%s, but the documented rule makes it --%s", binary, name, s.flag, want)
			}
			row, ok := rows[name]
			if !ok {
				t.Errorf("%s: no row for %s, which %s --help lists (default %q): add `| `%s` | %s | `%s` | ... |`",
					configDoc, name, binary, s.def, name, binary, s.def)
				continue
			}
			def, ok := row.defaults[binary]
			if !ok {
				t.Errorf("%s:%d: the row of %s does not name %s, whose --help lists it", configDoc, row.line, name, binary)
				continue
			}
			if !sameDefault(def, s.def, env) {
				t.Errorf("%s:%d: %s on %s: the table says the default is %q, %s --help says %q", configDoc, row.line, name, binary, def, binary, s.def)
			}
		}
	}
	for name, row := range rows {
		for binary := range row.defaults {
			h, known := help[binary]
			if !known {
				t.Errorf("%s:%d: the row of %s names the binary %q; want edge, ingest or both", configDoc, row.line, name, binary)
				continue
			}
			if _, ok := h[name]; !ok {
				t.Errorf("%s:%d: the table lists %s for %s, but %s --help does not: remove it, or drop %s from its binary cell", configDoc, row.line, name, binary, binary, binary)
			}
		}
	}
}

// mdLink is an inline Markdown link or image: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^()\s]+)\)`)

// TestDocLinks checks that every relative link in the repository's
// Markdown files names a file or directory that exists and, with a
// #fragment into a Markdown file, one of its headings (as GitHub makes
// anchors of them). Links to other sites are not fetched.
func TestDocLinks(t *testing.T) {
	var files []string
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", ".data", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(files, filepath.Join("..", "README.md")) {
		t.Fatalf("found no README.md among %v", files)
	}
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := map[string]bool{}
		counts := map[string]int{}
		for _, l := range markdownLines(t, path) {
			if l.code || !strings.HasPrefix(l.text, "#") {
				continue
			}
			title := strings.TrimLeft(l.text, "#")
			if title == "" || title[0] != ' ' {
				continue
			}
			slug := headingSlug(title)
			if n := counts[slug]; n > 0 {
				a[fmt.Sprintf("%s-%d", slug, n)] = true
			} else {
				a[slug] = true
			}
			counts[slug]++
		}
		anchors[path] = a
		return a
	}
	links := 0
	for _, file := range files {
		for _, l := range markdownLines(t, file) {
			if l.code {
				continue
			}
			for _, m := range mdLink.FindAllStringSubmatch(stripCodeSpans(l.text), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				links++
				path, frag, _ := strings.Cut(target, "#")
				dest := file
				if path != "" {
					dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
					if _, err := os.Stat(dest); err != nil {
						t.Errorf("%s:%d: the link %q names %s, which does not exist", file, l.n, target, dest)
						continue
					}
				}
				if frag != "" {
					if !strings.HasSuffix(dest, ".md") {
						t.Errorf("%s:%d: the link %q has a #fragment into a file that is not Markdown", file, l.n, target)
					} else if !anchorsOf(dest)[frag] {
						t.Errorf("%s:%d: the link %q names no heading of %s", file, l.n, target, dest)
					}
				}
			}
		}
	}
	if links == 0 {
		t.Fatalf("found no relative links in %v (the test's pattern no longer matches?)", files)
	}
}

// mdLine is one line of a Markdown file, and whether it is inside a fenced
// code block (where neither links nor headings count).
type mdLine struct {
	n    int
	text string
	code bool
}

func markdownLines(t *testing.T, path string) []mdLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []mdLine
	fence := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		trimmed := strings.TrimSpace(text)
		switch {
		case fence == "" && (strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~")):
			fence = trimmed[:3]
			lines = append(lines, mdLine{n, text, true})
		case fence != "":
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			lines = append(lines, mdLine{n, text, true})
		default:
			lines = append(lines, mdLine{n, text, false})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return lines
}

// stripCodeSpans blanks inline code, where brackets are no link.
func stripCodeSpans(s string) string { return codeSpan.ReplaceAllString(s, "``") }

// headingSlug is the anchor GitHub gives a heading: lower case, without
// punctuation, spaces as hyphens.
func headingSlug(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(title)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
