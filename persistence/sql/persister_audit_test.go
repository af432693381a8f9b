package sql_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/internal/testdb"
)

// auditFixture builds n events with increasing UUIDv7 ids and creation times one minute
// apart, starting at base. Users alternate 1, 2, 3; types cycle through three values.
func auditFixture(t *testing.T, n int, base time.Time) []audit.Event {
	t.Helper()
	types := []string{audit.TypeLogin, audit.TypeIdentityCreate, audit.TypeIdentityOTPReset}
	out := make([]audit.Event, n)
	for i := range out {
		id, err := uuid.NewV7()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = audit.Event{
			ID:        id.String(),
			Type:      types[i%len(types)],
			UserID:    audit.Int64(int64(i%3 + 1)),
			IP:        "192.0.2.1",
			UserAgent: "test-agent",
			Result:    audit.ResultSuccess,
			CreatedAt: base.Add(time.Duration(i) * time.Minute),
			Metadata:  map[string]any{"i": i},
		}
	}
	return out
}

func ids(events []audit.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// newestFirst returns the ids of events (given oldest first) that match keep, newest first.
func newestFirst(events []audit.Event, keep func(audit.Event) bool) []string {
	var out []string
	for i := len(events) - 1; i >= 0; i-- {
		if keep(events[i]) {
			out = append(out, events[i].ID)
		}
	}
	return out
}

func equalIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: got %d ids %v\nwant %d ids %v", what, len(got), got, len(want), want)
	}
}

func TestAuditPersister(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ctx := context.Background()
		base := time.Date(2025, 8, 20, 14, 30, 0, 0, time.UTC)
		all := auditFixture(t, 12, base)

		if err := p.InsertAuditEvents(ctx, nil); err != nil {
			t.Fatalf("empty batch: %v", err)
		}
		if err := p.InsertAuditEvents(ctx, all); err != nil {
			t.Fatalf("insert: %v", err)
		}

		t.Run("newest first", func(t *testing.T) {
			got, err := p.ListAuditEvents(ctx, audit.Filter{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			equalIDs(t, "all", ids(got), newestFirst(all, func(audit.Event) bool { return true }))
			for i := 1; i < len(got); i++ {
				if !got[i].CreatedAt.Before(got[i-1].CreatedAt) {
					t.Fatalf("event %d at %s is not older than event %d at %s", i, got[i].CreatedAt, i-1, got[i-1].CreatedAt)
				}
			}
		})

		t.Run("default limit", func(t *testing.T) {
			got, err := p.ListAuditEvents(ctx, audit.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(all) {
				t.Fatalf("got %d events, want %d", len(got), len(all))
			}
		})

		t.Run("limit", func(t *testing.T) {
			got, err := p.ListAuditEvents(ctx, audit.Filter{Limit: 5})
			if err != nil {
				t.Fatal(err)
			}
			equalIDs(t, "limit 5", ids(got), newestFirst(all, func(audit.Event) bool { return true })[:5])
		})

		t.Run("userId", func(t *testing.T) {
			got, err := p.ListAuditEvents(ctx, audit.Filter{UserID: audit.Int64(2), Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			equalIDs(t, "user 2", ids(got), newestFirst(all, func(e audit.Event) bool { return *e.UserID == 2 }))
			got, err = p.ListAuditEvents(ctx, audit.Filter{UserID: audit.Int64(99), Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 0 {
				t.Fatalf("unknown user: got %d events", len(got))
			}
		})

		t.Run("type exact", func(t *testing.T) {
			got, err := p.ListAuditEvents(ctx, audit.Filter{Type: audit.TypeIdentityCreate, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			equalIDs(t, "type", ids(got), newestFirst(all, func(e audit.Event) bool { return e.Type == audit.TypeIdentityCreate }))
			// A prefix without ".*" is not a prefix match.
			got, err = p.ListAuditEvents(ctx, audit.Filter{Type: "admin.identity", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 0 {
				t.Fatalf("partial type matched %d events", len(got))
			}
		})

		t.Run("type prefix", func(t *testing.T) {
			got, err := p.ListAuditEvents(ctx, audit.Filter{Type: "admin.*", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			equalIDs(t, "admin.*", ids(got), newestFirst(all, func(e audit.Event) bool { return e.Type != audit.TypeLogin }))
			// LIKE wildcards in the prefix match literally: "_" is not "any character".
			got, err = p.ListAuditEvents(ctx, audit.Filter{Type: "admin_*", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 0 {
				t.Fatalf("admin_*: got %d events", len(got))
			}
			got, err = p.ListAuditEvents(ctx, audit.Filter{Type: "admin.identity.otp%.*", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 0 {
				t.Fatalf("%% in prefix: got %d events", len(got))
			}
		})

		t.Run("since", func(t *testing.T) {
			since := base.Add(7 * time.Minute) // inclusive: events 7..11
			got, err := p.ListAuditEvents(ctx, audit.Filter{Since: &since, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			equalIDs(t, "since", ids(got), newestFirst(all, func(e audit.Event) bool { return !e.CreatedAt.Before(since) }))
			if len(got) != 5 {
				t.Fatalf("since: got %d events, want 5", len(got))
			}
			// A since in another zone means the same instant.
			local := since.In(time.FixedZone("UTC+5", 5*3600))
			got2, err := p.ListAuditEvents(ctx, audit.Filter{Since: &local, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			equalIDs(t, "since in UTC+5", ids(got2), ids(got))
			future := base.Add(time.Hour)
			got, err = p.ListAuditEvents(ctx, audit.Filter{Since: &future, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 0 {
				t.Fatalf("future since: got %d events", len(got))
			}
		})

		t.Run("filters combine", func(t *testing.T) {
			since := base.Add(3 * time.Minute)
			got, err := p.ListAuditEvents(ctx, audit.Filter{UserID: audit.Int64(1), Type: audit.TypeLogin, Since: &since, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			equalIDs(t, "combined", ids(got), newestFirst(all, func(e audit.Event) bool {
				return *e.UserID == 1 && e.Type == audit.TypeLogin && !e.CreatedAt.Before(since)
			}))
		})

		t.Run("paging with BeforeID", func(t *testing.T) {
			var seen []string
			f := audit.Filter{Limit: 5}
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatal("paging does not end")
				}
				page, err := p.ListAuditEvents(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				seen = append(seen, ids(page)...)
				f.BeforeID = page[len(page)-1].ID
			}
			equalIDs(t, "paged", seen, newestFirst(all, func(audit.Event) bool { return true }))

			// Paging keeps the other filters.
			seen = nil
			f = audit.Filter{UserID: audit.Int64(3), Limit: 2}
			for {
				page, err := p.ListAuditEvents(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				seen = append(seen, ids(page)...)
				f.BeforeID = page[len(page)-1].ID
			}
			equalIDs(t, "paged user 3", seen, newestFirst(all, func(e audit.Event) bool { return *e.UserID == 3 }))
		})
	})
}

func TestAuditPersisterRoundTrip(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ctx := context.Background()
		dev := uuid.NewString()
		created := time.Date(2025, 8, 20, 14, 30, 15, 987654321, time.FixedZone("CEST", 2*3600))
		full := audit.Event{
			ID:        uuid.Must(uuid.NewV7()).String(),
			Type:      audit.TypeBiometricLogin,
			UserID:    audit.Int64(9007199254740993), // 2^53+1: not exact as a float64
			DeviceID:  &dev,
			IP:        "2001:db8::1",
			UserAgent: "PVPipe/1.0 (iPhone; iOS 18) — ünïcode",
			Result:    audit.ResultFailure,
			Reason:    "Invalid signature: signature verification failed",
			CreatedAt: created,
			Metadata: map[string]any{
				"challengeHash": audit.Hash("challenge"),
				"attempt":       3,
				"big":           int64(9007199254740993),
				"ratio":         0.25,
				"ok":            false,
				"none":          nil,
				"list":          []any{"a", 1, true},
				"nested":        map[string]any{"k": "v", "n": map[string]any{"deep": 1}},
			},
		}
		bare := audit.Event{ // no user, device, reason, metadata, id or time
			Type:   audit.TypeAdminAuthFailure,
			IP:     "127.0.0.1",
			Result: audit.ResultFailure,
		}
		before := time.Now().UTC().Truncate(time.Second)
		if err := p.InsertAuditEvents(ctx, []audit.Event{full, bare}); err != nil {
			t.Fatal(err)
		}
		after := time.Now().UTC()

		got, err := p.ListAuditEvents(ctx, audit.Filter{Type: audit.TypeBiometricLogin})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("got %d events", len(got))
		}
		g := got[0]
		if g.ID != full.ID || g.Type != full.Type || g.IP != full.IP || g.UserAgent != full.UserAgent ||
			g.Result != full.Result || g.Reason != full.Reason {
			t.Fatalf("scalar fields differ:\n got %+v\nwant %+v", g, full)
		}
		if g.UserID == nil || *g.UserID != *full.UserID {
			t.Fatalf("userId = %v, want %d", g.UserID, *full.UserID)
		}
		if g.DeviceID == nil || *g.DeviceID != dev {
			t.Fatalf("deviceId = %v, want %s", g.DeviceID, dev)
		}
		wantTime := created.UTC().Truncate(time.Second)
		if !g.CreatedAt.Equal(wantTime) || g.CreatedAt.Location() != time.UTC {
			t.Fatalf("createdAt = %s (%s), want %s in UTC", g.CreatedAt, g.CreatedAt.Location(), wantTime)
		}
		gotMeta, _ := json.Marshal(g.Metadata)
		wantMeta, _ := json.Marshal(full.Metadata)
		if string(gotMeta) != string(wantMeta) {
			t.Fatalf("metadata:\n got %s\nwant %s", gotMeta, wantMeta)
		}

		got, err = p.ListAuditEvents(ctx, audit.Filter{Type: audit.TypeAdminAuthFailure})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("bare: got %d events", len(got))
		}
		b := got[0]
		if _, err := uuid.Parse(b.ID); err != nil || uuid.MustParse(b.ID).Version() != 7 {
			t.Fatalf("bare: id %q is not a UUIDv7", b.ID)
		}
		if b.UserID != nil || b.DeviceID != nil || b.Reason != "" {
			t.Fatalf("bare: nullable fields set: %+v", b)
		}
		if b.Metadata == nil || len(b.Metadata) != 0 {
			t.Fatalf("bare: metadata = %#v, want empty map", b.Metadata)
		}
		if b.CreatedAt.Before(before) || b.CreatedAt.After(after) || b.CreatedAt.Nanosecond() != 0 {
			t.Fatalf("bare: createdAt %s not a whole second in [%s, %s]", b.CreatedAt, before, after)
		}
		js, _ := json.Marshal(b)
		var m map[string]any
		_ = json.Unmarshal(js, &m)
		if md, ok := m["metadata"].(map[string]any); !ok || len(md) != 0 {
			t.Fatalf("bare: JSON metadata = %v, want {}", m["metadata"])
		}
	})
}

func TestAuditPersisterBatches(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ctx := context.Background()

		// More rows than one INSERT statement carries.
		big := auditFixture(t, 250, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		if err := p.InsertAuditEvents(ctx, big); err != nil {
			t.Fatal(err)
		}
		got, err := p.ListAuditEvents(ctx, audit.Filter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		equalIDs(t, "250 events", ids(got), newestFirst(big, func(audit.Event) bool { return true }))

		// One transaction: a batch with a bad row (duplicate id) stores nothing.
		bad := auditFixture(t, 150, time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC))
		bad[120].ID = big[0].ID
		if err := p.InsertAuditEvents(ctx, bad); err == nil {
			t.Fatal("batch with a duplicate id was accepted")
		}
		got, err = p.ListAuditEvents(ctx, audit.Filter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(big) {
			t.Fatalf("after failed batch: %d events stored, want %d (no partial batch)", len(got), len(big))
		}
	})
}
