package testkit

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
)

// Outcome is what one of a burst of concurrent requests got.
type Outcome struct {
	Status int
	Body   []byte
	Err    error
}

// Race sends n requests at once (released together) and returns their outcomes.
func Race(n int, send func(i int) (int, []byte, error)) []Outcome {
	out := make([]Outcome, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i].Status, out[i].Body, out[i].Err = send(i)
		}()
	}
	close(start)
	wg.Wait()
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
			var e ErrorBody
			if err := json.Unmarshal(o.Body, &e); err != nil || e.StatusCode != o.Status || e.Message == "" {
				t.Errorf("%s #%d: bad error body %s", what, i, o.Body)
			}
		}
	}
	t.Logf("%s: statuses %v", what, hist)
	return ok
}
