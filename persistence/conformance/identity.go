package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/identity"
)

// RunIdentity checks identity.Persister: create, read by id and by email (normalized),
// unique emails, update, delete, pagination, enrollment once, single-use TOTP steps and
// recovery codes (also under concurrency), and transactions that roll back.
func RunIdentity(t *testing.T, newStore func(t *testing.T) identity.Persister) {
	run(t, newStore, identityCreateGet, identityUpdate, identityDelete, identityList, identityConsumeTOTPStepConcurrent, identityRecoveryCodesAndEnrollment, identityTransaction)
}

// NewIdentity creates an identity with this email and a fake password hash.
func NewIdentity(t *testing.T, p IdentityCreator, email string) *identity.Identity {
	t.Helper()
	i := &identity.Identity{Email: email, PasswordHash: "$argon2id$fake"}
	if err := p.CreateIdentity(context.Background(), i); err != nil {
		t.Fatalf("create %s: %v", email, err)
	}
	return i
}

func identityCreateGet(t *testing.T, p identity.Persister) {
	ctx := context.Background()
	before := time.Now().UTC().Add(-time.Second)
	a := &identity.Identity{
		Email:        "Alice@Example.com",
		PasswordHash: "hash-a",
		Traits:       json.RawMessage(`{"department":{"id":"d1","name":"Ops"}}`),
		Permissions:  []string{"files.read", "files.write"},
		IsSuperAdmin: true,
	}
	must(t, p.CreateIdentity(ctx, a))
	b := NewIdentity(t, p, "bob@example.com")
	if a.ID <= 0 || b.ID <= a.ID {
		t.Fatalf("ids not generated in order: a=%d b=%d", a.ID, b.ID)
	}
	if a.State != identity.StateActive || a.CreatedAt.Before(before) || a.CreatedAt.Nanosecond() != 0 {
		t.Fatalf("defaults/timestamps wrong: %+v", a)
	}
	got, err := p.GetIdentity(ctx, a.ID)
	must(t, err)
	if got.Email != "Alice@Example.com" || got.PasswordHash != "hash-a" || !got.IsSuperAdmin ||
		got.State != identity.StateActive || got.PasskeyPromptStatus != identity.PromptPending ||
		got.MFAEnabled || got.TOTPSecret != "" || got.TypedTraits().Department.Name != "Ops" ||
		len(got.Permissions) != 2 || got.Permissions[1] != "files.write" {
		t.Fatalf("round trip mismatch: %+v", got)
	}
	if !got.CreatedAt.Equal(a.CreatedAt) || got.CreatedAt.Location() != time.UTC {
		t.Fatalf("created_at %v (%v), want %v UTC", got.CreatedAt, got.CreatedAt.Location(), a.CreatedAt)
	}
	gb, err := p.GetIdentity(ctx, b.ID)
	must(t, err)
	if string(gb.Traits) != "{}" || gb.Permissions == nil || len(gb.Permissions) != 0 {
		t.Fatalf("empty traits/permissions must read as {} and []: %s %#v", gb.Traits, gb.Permissions)
	}
	// Email lookups and uniqueness are case-insensitive.
	f, err := p.FindIdentityByEmail(ctx, "  alice@EXAMPLE.com ")
	if err != nil || f.ID != a.ID {
		t.Fatalf("find by email: %v %v", f, err)
	}
	wantErr(t, "duplicate email", p.CreateIdentity(ctx, &identity.Identity{Email: "ALICE@example.COM"}), identity.ErrDuplicateEmail)
	_, err = p.GetIdentity(ctx, 999999)
	wantErr(t, "get unknown", err, identity.ErrNotFound)
	_, err = p.FindIdentityByEmail(ctx, "nobody@example.com")
	wantErr(t, "find unknown", err, identity.ErrNotFound)
}

func identityUpdate(t *testing.T, p identity.Persister) {
	ctx := context.Background()
	a := &identity.Identity{Email: "Alice@Example.com", PasswordHash: "hash-a", Permissions: []string{"files.read"}, IsSuperAdmin: true}
	must(t, p.CreateIdentity(ctx, a))
	NewIdentity(t, p, "bob@example.com")
	got, err := p.GetIdentity(ctx, a.ID)
	must(t, err)
	got.Email = "alice2@example.com"
	got.Permissions = nil
	got.Traits = json.RawMessage(`{"employee":{"id":"e1"}}`)
	got.IsSuperAdmin = false
	got.State = identity.StateDisabled
	must(t, p.UpdateIdentity(ctx, got))
	u, _ := p.GetIdentity(ctx, a.ID)
	if u.Email != "alice2@example.com" || len(u.Permissions) != 0 || u.IsSuperAdmin || u.State != identity.StateDisabled ||
		u.TypedTraits().Employee.ID != "e1" || u.PasswordHash != "hash-a" {
		t.Fatalf("update mismatch: %+v", u)
	}
	u.Email = "BOB@example.com"
	wantErr(t, "update to a taken email", p.UpdateIdentity(ctx, u), identity.ErrDuplicateEmail)
	wantErr(t, "update unknown", p.UpdateIdentity(ctx, &identity.Identity{ID: 999999, Email: "x@example.com", State: "active"}), identity.ErrNotFound)

	must(t, p.UpdatePasswordHash(ctx, a.ID, "hash-new"))
	must(t, p.UpdatePasskeyPromptStatus(ctx, a.ID, identity.PromptDeclined))
	u, _ = p.GetIdentity(ctx, a.ID)
	if u.PasswordHash != "hash-new" || u.PasskeyPromptStatus != identity.PromptDeclined {
		t.Fatalf("password/prompt not stored: %+v", u)
	}
	wantErr(t, "password of unknown", p.UpdatePasswordHash(ctx, 999999, "x"), identity.ErrNotFound)
	wantErr(t, "prompt of unknown", p.UpdatePasskeyPromptStatus(ctx, 999999, "x"), identity.ErrNotFound)
}

func identityDelete(t *testing.T, p identity.Persister) {
	ctx := context.Background()
	b := NewIdentity(t, p, "bob@example.com")
	must(t, p.EnrollTOTP(ctx, b.ID, "enc", 1, []string{"h1", "h2"}))
	must(t, p.DeleteIdentity(ctx, b.ID))
	wantErr(t, "second delete", p.DeleteIdentity(ctx, b.ID), identity.ErrNotFound)
	if ok, err := p.ConsumeRecoveryCode(ctx, b.ID, "h1"); err != nil || ok {
		t.Fatalf("a recovery code survived its identity: %v %v", ok, err)
	}
	// The freed email can be used again.
	NewIdentity(t, p, "bob@example.com")
}

func identityList(t *testing.T, p identity.Persister) {
	ctx := context.Background()
	var ids []int64
	for k := 0; k < 7; k++ {
		ids = append(ids, NewIdentity(t, p, fmt.Sprintf("user%d@example.com", k)).ID)
	}
	var seen []int64
	after := int64(0)
	for {
		page, err := p.ListIdentities(ctx, identity.ListParams{PageSize: 3, AfterID: after})
		must(t, err)
		if len(page) == 0 {
			break
		}
		if len(page) > 3 {
			t.Fatalf("page of %d", len(page))
		}
		for _, i := range page {
			seen = append(seen, i.ID)
		}
		after = page[len(page)-1].ID
	}
	if fmt.Sprint(seen) != fmt.Sprint(ids) {
		t.Fatalf("paged ids %v, want %v", seen, ids)
	}
	page, err := p.ListIdentities(ctx, identity.ListParams{PageSize: 10, Email: "USER3@example.com"})
	if err != nil || len(page) != 1 || page[0].ID != ids[3] {
		t.Fatalf("email filter: %v %v", page, err)
	}
	page, err = p.ListIdentities(ctx, identity.ListParams{PageSize: 10, Email: "user3@example.com", AfterID: ids[3]})
	if err != nil || len(page) != 0 {
		t.Fatalf("email filter after the match: %v %v", page, err)
	}
}

func identityTransaction(t *testing.T, p identity.Persister) {
	ctx := context.Background()
	id := newIdentity(t, p)
	boom := errors.New("boom")
	err := p.Transaction(ctx, func(ctx context.Context) error {
		must(t, p.UpdatePasswordHash(ctx, id, "inside"))
		return p.Transaction(ctx, func(ctx context.Context) error { return boom })
	})
	wantErr(t, "transaction", err, boom)
	if i, _ := p.GetIdentity(ctx, id); i.PasswordHash == "inside" {
		t.Fatal("a failed transaction kept its write")
	}
}
