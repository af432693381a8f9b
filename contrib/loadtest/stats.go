package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// opResult is what one iteration of a scenario reports: its latency (the timed part
// only), an error label ("" on success) and whether the worker must stop (nothing
// left to do, such as no unused recovery codes).
type opResult struct {
	Latency time.Duration
	Err     string
	Stop    bool
}

// op runs one iteration for worker w.
type op func(ctx context.Context, w int) opResult

// result is the measurement of one scenario.
type result struct {
	Name     string
	Requests int
	Errors   map[string]int
	Elapsed  time.Duration
	// Latencies of every request, sorted.
	Latencies []time.Duration
	// StoppedEarly is set when a worker ran out of work before the time was up.
	StoppedEarly bool
	Notes        []string
}

// OK is the number of successful requests.
func (r *result) OK() int { return r.Requests - r.ErrorCount() }

// ErrorCount is the number of failed requests.
func (r *result) ErrorCount() int {
	n := 0
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// Rate is requests per second of wall time.
func (r *result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Percentile is the nearest-rank percentile p (0 < p ≤ 100) of the latencies.
func (r *result) Percentile(p float64) time.Duration {
	n := len(r.Latencies)
	if n == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(n))) - 1
	return r.Latencies[min(max(i, 0), n-1)]
}

// Max is the slowest request.
func (r *result) Max() time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	return r.Latencies[len(r.Latencies)-1]
}

// ErrorSummary is "401×3, transport×1" or "none".
func (r *result) ErrorSummary() string {
	if len(r.Errors) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, r.Errors[k])
	}
	return strings.Join(parts, ", ")
}

// runLoad runs fn on conc workers for d and records every request. Requests in flight
// when the time is up finish and are counted; the elapsed time includes them.
func runLoad(ctx context.Context, name string, conc int, d time.Duration, fn op) *result {
	type workerStats struct {
		lat     []time.Duration
		errs    map[string]int
		stopped bool
	}
	stats := make([]workerStats, conc)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &stats[w]
			s.lat = make([]time.Duration, 0, 4096)
			s.errs = map[string]int{}
			for ctx.Err() == nil && time.Now().Before(deadline) {
				r := fn(ctx, w)
				if r.Stop {
					s.stopped = true
					return
				}
				if ctx.Err() != nil {
					return // interrupted: this request says nothing about the server
				}
				s.lat = append(s.lat, r.Latency)
				if r.Err != "" {
					s.errs[r.Err]++
				}
			}
		}()
	}
	wg.Wait()
	res := &result{Name: name, Elapsed: time.Since(start), Errors: map[string]int{}}
	for _, s := range stats {
		res.Latencies = append(res.Latencies, s.lat...)
		for k, v := range s.errs {
			res.Errors[k] += v
		}
		res.StoppedEarly = res.StoppedEarly || s.stopped
	}
	res.Requests = len(res.Latencies)
	slices.Sort(res.Latencies)
	return res
}

// statusLabel is the error label of an HTTP answer: "" for 2xx, else the status (with
// a prefix naming the step when a scenario makes several requests), or "transport".
func statusLabel(prefix string, status int, err error) string {
	var l string
	switch {
	case err != nil:
		l = "transport"
	case status >= 200 && status <= 299:
		return ""
	default:
		l = fmt.Sprint(status)
	}
	if prefix != "" {
		return prefix + " " + l
	}
	return l
}

// fmtDur prints a latency with three significant digits in a fitting unit.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}
