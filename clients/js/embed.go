// Package rigjs carries clients/js's module files into Go binaries, so that
// the edge's demo page (internal/demo) can serve the client it uses from
// the same origin, exactly as this directory holds it. Go's embed cannot
// reach a parent directory, hence a package here rather than in the edge.
package rigjs

import "embed"

// FS holds the module (index.js and what it imports) and its declarations.
//
//go:embed *.js *.d.ts
var FS embed.FS
