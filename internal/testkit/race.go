package testkit

import (
	"net/http"
	"sync"
	"testing"

	"github.com/pvpipe/pvauth/internal/testserver"
)

// Outcome is what one of a burst of concurrent requests got.
type Outcome struct {
	Status int
	Body   []byte
	Err    error
}

// Together calls fn(i) for every i < n, each in a goroutine of its own, releases them
// all at once when every goroutine is ready, and returns when all have returned.
func Together(n int, fn func(i int)) {
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	for i := 0; i < n; i++ {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			fn(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}

// Race sends n requests at once (released together) and returns their outcomes.
func Race(n int, send func(i int) (int, []byte, error)) []Outcome {
	out := make([]Outcome, n)
	Together(n, func(i int) { out[i].Status, out[i].Body, out[i].Err = send(i) })
	return out
}

// RaceResponses sends n requests at once (released together) and returns the answers;
// send must not fail the test (testkit.Send, PublicRequest).
func RaceResponses(n int, send func(i int) *testserver.Response) []*testserver.Response {
	out := make([]*testserver.Response, n)
	Together(n, func(i int) { out[i] = send(i) })
	return out
}

// Tally fails on transport errors, 5xx and statuses other than 200 and allowed, and
// checks every refusal carries the error body. It returns how many requests got 200.
func Tally(t *testing.T, what string, outs []Outcome, allowed ...int) int {
	t.Helper()
	ok := 0
	hist := map[int]int{}
	for i, o := range outs {
		if o.Err != nil {
			t.Fatalf("%s #%d: %v", what, i, o.Err)
		}
		hist[o.Status]++
		switch {
		case o.Status == http.StatusOK:
			ok++
		case o.Status >= 500:
			t.Errorf("%s #%d: %d %s", what, i, o.Status, o.Body)
		default:
			allowedStatus := false
			for _, a := range allowed {
				allowedStatus = allowedStatus || a == o.Status
			}
			if !allowedStatus {
				t.Errorf("%s #%d: unexpected %d %s", what, i, o.Status, o.Body)
			}
			if _, ok := validErrorBody(o.Body, o.Status); !ok {
				t.Errorf("%s #%d: bad error body %s", what, i, o.Body)
			}
		}
	}
	t.Logf("%s: statuses %v", what, hist)
	return ok
}
