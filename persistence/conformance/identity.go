package conformance

import (
	"context"
	"errors"
	"testing"

	"github.com/pvpipe/pvauth/identity"
)

// RunIdentity checks identity.Persister: create, read by id and by email (normalized),
// unique emails, update, delete, pagination, single-use TOTP steps and recovery codes,
// enrollment once, and transactions that roll back.
func RunIdentity[P identity.Persister](t *testing.T, newStore func(t *testing.T) P) {
	run(t, newStore, []check[P]{
		{"CreateGetFind", identityCreateGetFind[P]},
		{"UpdateDelete", identityUpdateDelete[P]},
		{"List", identityList[P]},
		{"TOTP", identityTOTP[P]},
		{"Transaction", identityTransaction[P]},
	})
}

func identityCreateGetFind[P identity.Persister](t *testing.T, p P) {
	ctx := context.Background()
	a := &identity.Identity{Email: "Ann@Example.com", PasswordHash: "h", Permissions: []string{"p1"}}
	must(t, p.CreateIdentity(ctx, a))
	if a.ID <= 0 || a.State != identity.StateActive {
		t.Fatalf("created: %+v", a)
	}
	got, err := p.GetIdentity(ctx, a.ID)
	must(t, err)
	if got.Email != "Ann@Example.com" || got.PasswordHash != "h" || len(got.Permissions) != 1 || got.Permissions[0] != "p1" {
		t.Fatalf("round trip: %+v", got)
	}
	wantUTC(t, "created_at", got.CreatedAt, a.CreatedAt)
	f, err := p.FindIdentityByEmail(ctx, " ann@EXAMPLE.com ")
	if err != nil || f.ID != a.ID {
		t.Fatalf("find by normalized email: %v %v", f, err)
	}
	wantErr(t, "duplicate email", p.CreateIdentity(ctx, &identity.Identity{Email: "ANN@example.com"}), identity.ErrDuplicateEmail)
	_, err = p.GetIdentity(ctx, a.ID+1000)
	wantErr(t, "get unknown", err, identity.ErrNotFound)
	_, err = p.FindIdentityByEmail(ctx, "nobody@example.com")
	wantErr(t, "find unknown", err, identity.ErrNotFound)
}

func identityUpdateDelete[P identity.Persister](t *testing.T, p P) {
	ctx := context.Background()
	a, b := newIdentity(t, p), newIdentity(t, p)
	i, err := p.GetIdentity(ctx, a)
	must(t, err)
	i.Email, i.State = "renamed@example.com", identity.StateDisabled
	must(t, p.UpdateIdentity(ctx, i))
	if u, _ := p.GetIdentity(ctx, a); u.Email != "renamed@example.com" || u.State != identity.StateDisabled {
		t.Fatalf("update: %+v", u)
	}
	bi, err := p.GetIdentity(ctx, b)
	must(t, err)
	bi.Email = "RENAMED@example.com"
	wantErr(t, "update to a taken email", p.UpdateIdentity(ctx, bi), identity.ErrDuplicateEmail)
	must(t, p.UpdatePasswordHash(ctx, a, "new"))
	must(t, p.UpdatePasskeyPromptStatus(ctx, a, identity.PromptDeclined))
	if u, _ := p.GetIdentity(ctx, a); u.PasswordHash != "new" || u.PasskeyPromptStatus != identity.PromptDeclined {
		t.Fatalf("password/prompt: %+v", u)
	}
	must(t, p.DeleteIdentity(ctx, a))
	wantErr(t, "second delete", p.DeleteIdentity(ctx, a), identity.ErrNotFound)
	wantErr(t, "update deleted", p.UpdateIdentity(ctx, i), identity.ErrNotFound)
	wantErr(t, "password of deleted", p.UpdatePasswordHash(ctx, a, "x"), identity.ErrNotFound)
	wantErr(t, "prompt of deleted", p.UpdatePasskeyPromptStatus(ctx, a, "x"), identity.ErrNotFound)
	wantErr(t, "reset TOTP of deleted", p.ResetTOTP(ctx, a), identity.ErrNotFound)
}

func identityList[P identity.Persister](t *testing.T, p P) {
	ctx := context.Background()
	var ids []int64
	for range 5 {
		ids = append(ids, newIdentity(t, p))
	}
	page, err := p.ListIdentities(ctx, identity.ListParams{PageSize: 2})
	must(t, err)
	if len(page) != 2 || page[0].ID != ids[0] || page[1].ID != ids[1] {
		t.Fatalf("first page: %+v", page)
	}
	page, err = p.ListIdentities(ctx, identity.ListParams{PageSize: 10, AfterID: ids[1]})
	must(t, err)
	if len(page) != 3 || page[0].ID != ids[2] || page[2].ID != ids[4] {
		t.Fatalf("after %d: %+v", ids[1], page)
	}
	one, _ := p.GetIdentity(ctx, ids[3])
	page, err = p.ListIdentities(ctx, identity.ListParams{Email: one.Email})
	must(t, err)
	if len(page) != 1 || page[0].ID != ids[3] {
		t.Fatalf("by email: %+v", page)
	}
}

func identityTOTP[P identity.Persister](t *testing.T, p P) {
	ctx := context.Background()
	id := newIdentity(t, p)
	must(t, p.EnrollTOTP(ctx, id, "enc", 10, []string{"c1", "c2"}))
	wantErr(t, "second enrollment", p.EnrollTOTP(ctx, id, "enc2", 11, nil), identity.ErrAlreadyEnrolled)
	wantErr(t, "enroll unknown", p.EnrollTOTP(ctx, id+1000, "enc", 1, nil), identity.ErrNotFound)
	if i, _ := p.GetIdentity(ctx, id); i.TOTPSecret != "enc" || !i.MFAEnabled {
		t.Fatalf("enrolled: %+v", i)
	}
	ok, err := p.ConsumeTOTPStep(ctx, id, 10)
	wantOK(t, "the enrollment's own step", ok, err, false)
	ok, err = p.ConsumeTOTPStep(ctx, id, 11)
	wantOK(t, "a newer step", ok, err, true)
	ok, err = p.ConsumeTOTPStep(ctx, id, 11)
	wantOK(t, "the same step again", ok, err, false)
	ok, err = p.ConsumeRecoveryCode(ctx, id, "c1")
	wantOK(t, "a recovery code", ok, err, true)
	ok, err = p.ConsumeRecoveryCode(ctx, id, "c1")
	wantOK(t, "the used recovery code", ok, err, false)
	must(t, p.ResetTOTP(ctx, id))
	ok, err = p.ConsumeRecoveryCode(ctx, id, "c2")
	wantOK(t, "a code after reset", ok, err, false)
	must(t, p.EnrollTOTP(ctx, id, "enc3", 1, nil))
}

func identityTransaction[P identity.Persister](t *testing.T, p P) {
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
