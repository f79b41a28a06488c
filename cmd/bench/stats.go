package main

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"
)

// Percentiles of a set of durations, in milliseconds.
type Percentiles struct {
	Samples int     `json:"samples"`
	P50ms   float64 `json:"p50_ms"`
	P95ms   float64 `json:"p95_ms"`
	P99ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// percentiles uses the nearest-rank method on the sorted samples: with few
// samples p99 is the largest one, never an interpolation below it.
func percentiles(samples []time.Duration) Percentiles {
	p := Percentiles{Samples: len(samples)}
	if len(samples) == 0 {
		return p
	}
	s := append([]time.Duration(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return ms(s[max(i, 0)])
	}
	p.P50ms, p.P95ms, p.P99ms, p.MaxMs = rank(0.50), rank(0.95), rank(0.99), ms(s[len(s)-1])
	return p
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*10) / 10 }

// ratio is a/b rounded to three places, 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*1000) / 1000
}

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(n)/d.Seconds()*10) / 10
}

// forEach runs fn for 0..n-1 on `workers` goroutines and returns the first
// error, after every call has returned.
func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range min(workers, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// collector gathers durations from many goroutines.
type collector struct {
	mu sync.Mutex
	d  []time.Duration
}

func (c *collector) add(d time.Duration) {
	c.mu.Lock()
	c.d = append(c.d, d)
	c.mu.Unlock()
}

func (c *collector) all() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.d...)
}
