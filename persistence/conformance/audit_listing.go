package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/audit"
)

// auditCase is one listing case over the fixture stored by auditListing.
type auditCase struct {
	name string
	run  func(t *testing.T, p audit.Persister, all []audit.Event, base time.Time)
}

func auditListing(t *testing.T, p audit.Persister) {
	ctx := context.Background()
	base := time.Date(2025, 8, 20, 14, 30, 0, 0, time.UTC)
	all := AuditFixture(t, 12, base)
	if err := p.InsertAuditEvents(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	if err := p.InsertAuditEvents(ctx, all); err != nil {
		t.Fatalf("insert: %v", err)
	}
	for _, c := range []auditCase{
		{"newest first", auditNewestFirst}, {"limits", auditLimits}, {"userId", auditByUser},
		{"type exact", auditTypeExact}, {"type prefix", auditTypePrefix}, {"since", auditSince},
		{"filters combine", auditCombined}, {"paging with BeforeID", auditPaging},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, p, all, base) })
	}
}

func auditNewestFirst(t *testing.T, p audit.Persister, all []audit.Event, _ time.Time) {
	got := list(t, p, audit.Filter{Limit: 100})
	equalIDs(t, "all", eventIDs(got), NewestFirst(all, every))
	for i := 1; i < len(got); i++ {
		if !got[i].CreatedAt.Before(got[i-1].CreatedAt) {
			t.Fatalf("event %d at %s is not older than event %d at %s", i, got[i].CreatedAt, i-1, got[i-1].CreatedAt)
		}
	}
}

func auditLimits(t *testing.T, p audit.Persister, all []audit.Event, _ time.Time) {
	if got := list(t, p, audit.Filter{}); len(got) != len(all) {
		t.Fatalf("default limit: got %d events, want %d", len(got), len(all))
	}
	equalIDs(t, "limit 5", eventIDs(list(t, p, audit.Filter{Limit: 5})), NewestFirst(all, every)[:5])
}

func auditByUser(t *testing.T, p audit.Persister, all []audit.Event, _ time.Time) {
	got := list(t, p, audit.Filter{UserID: audit.Int64(2), Limit: 100})
	equalIDs(t, "user 2", eventIDs(got), NewestFirst(all, func(e audit.Event) bool { return *e.UserID == 2 }))
	wantNone(t, "unknown user", list(t, p, audit.Filter{UserID: audit.Int64(99), Limit: 100}))
}

func auditTypeExact(t *testing.T, p audit.Persister, all []audit.Event, _ time.Time) {
	got := list(t, p, audit.Filter{Type: audit.TypeIdentityCreate, Limit: 100})
	equalIDs(t, "type", eventIDs(got), NewestFirst(all, func(e audit.Event) bool { return e.Type == audit.TypeIdentityCreate }))
	// A prefix without ".*" is not a prefix match.
	wantNone(t, "partial type", list(t, p, audit.Filter{Type: "admin.identity", Limit: 100}))
}

func auditTypePrefix(t *testing.T, p audit.Persister, all []audit.Event, _ time.Time) {
	got := list(t, p, audit.Filter{Type: "admin.*", Limit: 100})
	equalIDs(t, "admin.*", eventIDs(got), NewestFirst(all, func(e audit.Event) bool { return e.Type != audit.TypeLogin }))
	// LIKE wildcards in the prefix match literally: "_" is not "any character".
	wantNone(t, "admin_*", list(t, p, audit.Filter{Type: "admin_*", Limit: 100}))
	wantNone(t, "% in prefix", list(t, p, audit.Filter{Type: "admin.identity.otp%.*", Limit: 100}))
}

func auditSince(t *testing.T, p audit.Persister, all []audit.Event, base time.Time) {
	since := base.Add(7 * time.Minute) // inclusive: events 7..11
	got := list(t, p, audit.Filter{Since: &since, Limit: 100})
	equalIDs(t, "since", eventIDs(got), NewestFirst(all, func(e audit.Event) bool { return !e.CreatedAt.Before(since) }))
	if len(got) != 5 {
		t.Fatalf("since: got %d events, want 5", len(got))
	}
	// A since in another zone means the same instant.
	local := since.In(time.FixedZone("UTC+5", 5*3600))
	equalIDs(t, "since in UTC+5", eventIDs(list(t, p, audit.Filter{Since: &local, Limit: 100})), eventIDs(got))
	future := base.Add(time.Hour)
	wantNone(t, "future since", list(t, p, audit.Filter{Since: &future, Limit: 100}))
}

func auditCombined(t *testing.T, p audit.Persister, all []audit.Event, base time.Time) {
	since := base.Add(3 * time.Minute)
	got := list(t, p, audit.Filter{UserID: audit.Int64(1), Type: audit.TypeLogin, Since: &since, Limit: 100})
	equalIDs(t, "combined", eventIDs(got), NewestFirst(all, func(e audit.Event) bool {
		return *e.UserID == 1 && e.Type == audit.TypeLogin && !e.CreatedAt.Before(since)
	}))
}

func auditPaging(t *testing.T, p audit.Persister, all []audit.Event, _ time.Time) {
	equalIDs(t, "paged", listAll(t, p, audit.Filter{Limit: 5}), NewestFirst(all, every))
	// Paging keeps the other filters.
	equalIDs(t, "paged user 3", listAll(t, p, audit.Filter{UserID: audit.Int64(3), Limit: 2}),
		NewestFirst(all, func(e audit.Event) bool { return *e.UserID == 3 }))
}
