package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times; 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// ProcSample is one reading of a process's resident memory and CPU time.
type ProcSample struct {
	At       time.Time
	RSS      int64   // bytes (VmRSS)
	CPU      float64 // seconds, user + system
	Threads  int
	Readable bool
}

// readProc reads /proc/<pid>/status (VmRSS) and /proc/<pid>/stat (utime,
// stime).
func readProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		switch k {
		case "VmRSS":
			if len(f) == 2 && f[1] == "kB" {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				s.RSS = kb << 10
			}
		case "Threads":
			if len(f) == 1 {
				s.Threads, _ = strconv.Atoi(f[0])
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) may hold spaces; fields count from after it.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseFloat(f[11], 64) // field 14
	stime, _ := strconv.ParseFloat(f[12], 64) // field 15
	s.CPU = (utime + stime) / clockTicks
	s.Readable = true
	return s, nil
}

// Proc names a server process to watch.
type Proc struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
}

// ProcUsage is a process's resources over a phase.
type ProcUsage struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid"`
	RSSBefore  int64   `json:"rss_before"`
	RSSAfter   int64   `json:"rss_after"`
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPercent float64 `json:"cpu_percent"` // of one core, over the phase
}

func usage(p Proc, a, b ProcSample) ProcUsage {
	u := ProcUsage{Name: p.Name, PID: p.PID, RSSBefore: a.RSS, RSSAfter: b.RSS, CPUSeconds: b.CPU - a.CPU}
	if el := b.At.Sub(a.At).Seconds(); el > 0 {
		u.CPUPercent = 100 * u.CPUSeconds / el
	}
	return u
}

// sampleAll reads every process; one that cannot be read gives a zero sample.
func sampleAll(ps []Proc) []ProcSample {
	out := make([]ProcSample, len(ps))
	for i, p := range ps {
		out[i], _ = readProc(p.PID)
	}
	return out
}

func usages(ps []Proc, a, b []ProcSample) []ProcUsage {
	out := make([]ProcUsage, len(ps))
	for i, p := range ps {
		out[i] = usage(p, a[i], b[i])
	}
	return out
}
