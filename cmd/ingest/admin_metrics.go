package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rig-go/rig/internal/stats"
)

// metrics is `ingest admin metrics`: the last sample of GET
// /v1/admin/metrics (the console's charts), one row per edge.
func (a *admin) metrics(ctx context.Context) error {
	var m stats.Series
	data, err := a.call(ctx, "GET", "/v1/admin/metrics", nil, &m)
	if err != nil {
		return err
	}
	if a.json {
		_, err := a.out.Write(append(bytes.TrimSpace(data), '\n'))
		return err
	}
	n := len(m.T)
	if n == 0 {
		fmt.Fprintf(a.out, "no sample yet: ingest takes one every %gs\n", m.IntervalSeconds)
		return nil
	}
	at := time.UnixMilli(int64(m.T[n-1] * 1000))
	span := time.Duration((m.T[n-1] - m.T[0]) * float64(time.Second)).Round(time.Second)
	fmt.Fprintf(a.out, "last sample %s, one every %gs (%d samples over %s)\n\n", at.Format(time.TimeOnly), m.IntervalSeconds, n, span)
	ms := func(vs []*float64) string { return figure(lastOf(vs), 1000, " ms") }
	fmt.Fprintf(a.out, "stored %s; publish latency p50 %s, p95 %s, p99 %s\n\n", figure(lastOf(m.MessagesIn), 1, " msg/s"),
		ms(m.PublishLatency.P50), ms(m.PublishLatency.P95), ms(m.PublishLatency.P99))
	var rows [][]string
	for _, edge := range m.Edges {
		out := lineOf(m.MessagesOut, edge)
		state := "answering"
		if lastOf(lineOf(m.Answered, edge)) == nil {
			state = "not answering"
		}
		var conns []string
		for _, l := range m.Connections {
			if v := lastOf(l.Values); l.Edge == edge && v != nil && *v > 0 {
				conns = append(conns, fmt.Sprintf("%s %g", l.Transport, *v))
			}
		}
		if len(conns) == 0 {
			conns = []string{"-"}
		}
		rows = append(rows, []string{edge, state, strings.Join(conns, ", "), figure(lastOf(out), 1, ""),
			total(lineOf(m.SlowClientsClosed, edge)), total(lineOf(m.SessionsKilled, edge))})
	}
	if err := a.table("EDGE\tSTATE\tCONNECTIONS\tDELIVERED/S\tSLOW CLOSED\tKILLED", rows); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "\nslow clients closed and sessions killed: totals over the %s shown\n", span)
	return nil
}

func lineOf(lines []stats.Line, edge string) []*float64 {
	for _, l := range lines {
		if l.Edge == edge {
			return l.Values
		}
	}
	return nil
}

func lastOf(vs []*float64) *float64 {
	if len(vs) == 0 {
		return nil
	}
	return vs[len(vs)-1]
}

// figure prints v times scale with three significant digits (all of a
// whole part of 100 or more), or "-" for a gap (null).
func figure(v *float64, scale float64, unit string) string {
	if v == nil {
		return "-"
	}
	x := *v * scale
	if x >= 100 {
		return strconv.FormatFloat(x, 'f', 0, 64) + unit
	}
	return strconv.FormatFloat(x, 'g', 3, 64) + unit
}

func total(vs []*float64) string {
	sum, any := 0.0, false
	for _, v := range vs {
		if v != nil {
			sum, any = sum+*v, true
		}
	}
	if !any {
		return "-"
	}
	return strconv.FormatFloat(sum, 'f', -1, 64)
}
