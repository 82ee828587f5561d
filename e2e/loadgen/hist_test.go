package main

import (
	"math"
	"testing"
	"time"
)

func TestHistBuckets(t *testing.T) {
	prev := -1
	for _, us := range []int64{0, 1, 1023, 1024, 1025, 2047, 2048, 5000, 1e6, 3e9} {
		b := bucketOf(us)
		if b < prev {
			t.Fatalf("bucket of %d (%d) below the previous (%d)", us, b, prev)
		}
		prev = b
		low := lowOf(b)
		if low > us || float64(us-low) > float64(us)/512+1 {
			t.Errorf("value %d in bucket %d starting at %d", us, b, low)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	h := NewHist()
	for i := 1; i <= 10000; i++ {
		h.Add(time.Duration(i) * time.Microsecond) // 1 µs .. 10 ms
	}
	o := NewHist()
	o.Merge(h)
	for q, want := range map[float64]float64{0.5: 5, 0.99: 9.9, 0.999: 9.99} {
		if got := o.Quantile(q); math.Abs(got-want) > want/200 {
			t.Errorf("q%.3f = %.3f ms, want %.3f", q, got, want)
		}
	}
	if o.N != 10000 || o.Max != 10000 {
		t.Errorf("n %d max %d", o.N, o.Max)
	}
}
