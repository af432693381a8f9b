package conformance

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
)

// onlyEvent lists the events of type typ and fails unless there is exactly one.
func onlyEvent(t *testing.T, p audit.Persister, what, typ string) audit.Event {
	t.Helper()
	got := list(t, p, audit.Filter{Type: typ})
	if len(got) != 1 {
		t.Fatalf("%s: got %d events", what, len(got))
	}
	return got[0]
}

func auditRoundTrip(t *testing.T, p audit.Persister) {
	dev := uuid.NewString()
	created := time.Date(2025, 8, 20, 14, 30, 15, 987654321, time.FixedZone("CEST", 2*3600))
	full := audit.Event{
		ID: uuid.Must(uuid.NewV7()).String(), Type: audit.TypeBiometricLogin,
		UserID:   audit.Int64(9007199254740993), // 2^53+1: not exact as a float64
		DeviceID: &dev, IP: "2001:db8::1", UserAgent: "PVPipe/1.0 (iPhone; iOS 18) — ünïcode",
		Result: audit.ResultFailure, Reason: "Invalid signature: signature verification failed", CreatedAt: created,
		Metadata: map[string]any{
			"challengeHash": audit.Hash("challenge"), "attempt": 3, "big": int64(9007199254740993), "ratio": 0.25,
			"ok": false, "none": nil, "list": []any{"a", 1, true},
			"nested": map[string]any{"k": "v", "n": map[string]any{"deep": 1}},
		},
	}
	bare := audit.Event{ // no user, device, reason, metadata, id or time
		Type:   audit.TypeAdminAuthFailure,
		IP:     "127.0.0.1",
		Result: audit.ResultFailure,
	}
	before := time.Now().UTC().Truncate(time.Second)
	must(t, p.InsertAuditEvents(context.Background(), []audit.Event{full, bare}))
	after := time.Now().UTC()
	auditWantFull(t, p, full)
	auditWantBare(t, p, before, after)
}

// auditWantFull checks that every field of full came back as stored.
func auditWantFull(t *testing.T, p audit.Persister, full audit.Event) {
	g := onlyEvent(t, p, "full", audit.TypeBiometricLogin)
	if g.ID != full.ID || g.Type != full.Type || g.IP != full.IP || g.UserAgent != full.UserAgent ||
		g.Result != full.Result || g.Reason != full.Reason {
		t.Fatalf("scalar fields differ:\n got %+v\nwant %+v", g, full)
	}
	if g.UserID == nil || *g.UserID != *full.UserID {
		t.Fatalf("userId = %v, want %d", g.UserID, *full.UserID)
	}
	if g.DeviceID == nil || *g.DeviceID != *full.DeviceID {
		t.Fatalf("deviceId = %v, want %s", g.DeviceID, *full.DeviceID)
	}
	wantTime := full.CreatedAt.UTC().Truncate(time.Second)
	if !g.CreatedAt.Equal(wantTime) || g.CreatedAt.Location() != time.UTC {
		t.Fatalf("createdAt = %s (%s), want %s in UTC", g.CreatedAt, g.CreatedAt.Location(), wantTime)
	}
	gotMeta, _ := json.Marshal(g.Metadata)
	wantMeta, _ := json.Marshal(full.Metadata)
	if string(gotMeta) != string(wantMeta) {
		t.Fatalf("metadata:\n got %s\nwant %s", gotMeta, wantMeta)
	}
}

// auditWantBare checks what the store gave the bare event: a UUIDv7, a whole second
// between before and after, empty metadata and no nullable fields.
func auditWantBare(t *testing.T, p audit.Persister, before, after time.Time) {
	b := onlyEvent(t, p, "bare", audit.TypeAdminAuthFailure)
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
}

func auditBatches(t *testing.T, p audit.Persister) {
	ctx := context.Background()
	// More rows than one INSERT statement carries.
	big := AuditFixture(t, 250, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	must(t, p.InsertAuditEvents(ctx, big))
	equalIDs(t, "250 events", eventIDs(list(t, p, audit.Filter{Limit: 1000})), NewestFirst(big, every))

	// One transaction: a batch with a bad row (duplicate id) stores nothing.
	bad := AuditFixture(t, 150, time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC))
	bad[120].ID = big[0].ID
	if err := p.InsertAuditEvents(ctx, bad); err == nil {
		t.Fatal("batch with a duplicate id was accepted")
	}
	if got := list(t, p, audit.Filter{Limit: 1000}); len(got) != len(big) {
		t.Fatalf("after failed batch: %d events stored, want %d (no partial batch)", len(got), len(big))
	}
}
