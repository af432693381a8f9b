package conformance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
)

// RunAudit checks audit.Persister: events listed newest first with each filter (user,
// exact type, "prefix.*" with LIKE wildcards taken literally, since in any zone, all
// combined), BeforeID paging, a lossless round trip of every field, ids and times given
// to bare events, and batches stored whole or not at all.
func RunAudit(t *testing.T, newStore func(t *testing.T) audit.Persister) {
	run(t, newStore, auditListing, auditRoundTrip, auditBatches)
}

// AuditFixture builds n events with increasing UUIDv7 ids and creation times one minute
// apart, starting at base. Users alternate 1, 2, 3; types cycle through three values.
func AuditFixture(t *testing.T, n int, base time.Time) []audit.Event {
	t.Helper()
	types := []string{audit.TypeLogin, audit.TypeIdentityCreate, audit.TypeIdentityOTPReset}
	out := make([]audit.Event, n)
	for i := range out {
		id, err := uuid.NewV7()
		must(t, err)
		out[i] = audit.Event{ID: id.String(), Type: types[i%len(types)], UserID: audit.Int64(int64(i%3 + 1)),
			IP: "192.0.2.1", UserAgent: "test-agent", Result: audit.ResultSuccess,
			CreatedAt: base.Add(time.Duration(i) * time.Minute), Metadata: map[string]any{"i": i}}
	}
	return out
}

func eventIDs(events []audit.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// NewestFirst returns the ids of events (given oldest first) that match keep, newest first.
func NewestFirst(events []audit.Event, keep func(audit.Event) bool) []string {
	var out []string
	for i := len(events) - 1; i >= 0; i-- {
		if keep(events[i]) {
			out = append(out, events[i].ID)
		}
	}
	return out
}

func every(audit.Event) bool { return true }

func equalIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: got %d ids %v\nwant %d ids %v", what, len(got), got, len(want), want)
	}
}

// list lists events with f, failing the test on an error.
func list(t *testing.T, p audit.Persister, f audit.Filter) []audit.Event {
	t.Helper()
	got, err := p.ListAuditEvents(context.Background(), f)
	must(t, err)
	return got
}

// wantNone fails unless a listing found nothing.
func wantNone(t *testing.T, what string, got []audit.Event) {
	t.Helper()
	if len(got) != 0 {
		t.Fatalf("%s: got %d events", what, len(got))
	}
}

// listAll pages through f's listing with BeforeID and returns every id seen.
func listAll(t *testing.T, p audit.Persister, f audit.Filter) []string {
	t.Helper()
	var seen []string
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		page := list(t, p, f)
		if len(page) == 0 {
			return seen
		}
		seen = append(seen, eventIDs(page)...)
		f.BeforeID = page[len(page)-1].ID
	}
}
