package main

import (
	"os"
	"testing"
)

func TestReadProc(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS < 1<<20 || s.CPU < 0 || s.Threads < 1 || !s.Readable {
		t.Errorf("implausible sample of this process: %+v", s)
	}
	busy := 0
	for i := range 50_000_000 {
		busy += i
	}
	s2, _ := readProc(os.Getpid())
	if busy == 0 || s2.CPU < s.CPU {
		t.Errorf("CPU time went from %v to %v", s.CPU, s2.CPU)
	}
}
