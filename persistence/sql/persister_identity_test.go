package sql_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/internal/testdb"
	sqlp "github.com/pvpipe/pvauth/persistence/sql"
)

func newIdentity(t *testing.T, p *sqlp.Persister, email string) *identity.Identity {
	t.Helper()
	i := &identity.Identity{Email: email, PasswordHash: "$argon2id$fake"}
	if err := p.CreateIdentity(context.Background(), i); err != nil {
		t.Fatalf("create %s: %v", email, err)
	}
	return i
}

func TestIdentityCRUD(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		p := testdb.Persister(t, dsn)

		before := time.Now().UTC().Add(-time.Second)
		a := &identity.Identity{
			Email:        "Alice@Example.com",
			PasswordHash: "hash-a",
			Traits:       json.RawMessage(`{"department":{"id":"d1","name":"Ops"}}`),
			Permissions:  []string{"files.read", "files.write"},
			IsSuperAdmin: true,
		}
		if err := p.CreateIdentity(ctx, a); err != nil {
			t.Fatal(err)
		}
		b := newIdentity(t, p, "bob@example.com")
		if a.ID <= 0 || b.ID <= a.ID {
			t.Fatalf("ids not generated in order: a=%d b=%d", a.ID, b.ID)
		}
		if a.State != identity.StateActive || a.CreatedAt.Before(before) || a.CreatedAt.Nanosecond() != 0 {
			t.Fatalf("defaults/timestamps wrong: %+v", a)
		}

		got, err := p.GetIdentity(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
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
		if err != nil {
			t.Fatal(err)
		}
		if string(gb.Traits) != "{}" || gb.Permissions == nil || len(gb.Permissions) != 0 {
			t.Fatalf("empty traits/permissions must read as {} and []: %s %#v", gb.Traits, gb.Permissions)
		}

		// Email lookups and uniqueness are case-insensitive.
		f, err := p.FindIdentityByEmail(ctx, "  alice@EXAMPLE.com ")
		if err != nil || f.ID != a.ID {
			t.Fatalf("find by email: %v %v", f, err)
		}
		if err := p.CreateIdentity(ctx, &identity.Identity{Email: "ALICE@example.COM"}); !errors.Is(err, identity.ErrDuplicateEmail) {
			t.Fatalf("duplicate email: %v", err)
		}
		if _, err := p.GetIdentity(ctx, 999999); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("get unknown: %v", err)
		}
		if _, err := p.FindIdentityByEmail(ctx, "nobody@example.com"); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("find unknown: %v", err)
		}

		// Update.
		got.Email = "alice2@example.com"
		got.Permissions = nil
		got.Traits = json.RawMessage(`{"employee":{"id":"e1"}}`)
		got.IsSuperAdmin = false
		got.State = identity.StateDisabled
		if err := p.UpdateIdentity(ctx, got); err != nil {
			t.Fatal(err)
		}
		u, _ := p.GetIdentity(ctx, a.ID)
		if u.Email != "alice2@example.com" || len(u.Permissions) != 0 || u.IsSuperAdmin || u.State != identity.StateDisabled ||
			u.TypedTraits().Employee.ID != "e1" || u.PasswordHash != "hash-a" {
			t.Fatalf("update mismatch: %+v", u)
		}
		u.Email = "BOB@example.com"
		if err := p.UpdateIdentity(ctx, u); !errors.Is(err, identity.ErrDuplicateEmail) {
			t.Fatalf("update to a taken email: %v", err)
		}
		if err := p.UpdateIdentity(ctx, &identity.Identity{ID: 999999, Email: "x@example.com", State: "active"}); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("update unknown: %v", err)
		}

		if err := p.UpdatePasswordHash(ctx, a.ID, "hash-new"); err != nil {
			t.Fatal(err)
		}
		if err := p.UpdatePasskeyPromptStatus(ctx, a.ID, identity.PromptDeclined); err != nil {
			t.Fatal(err)
		}
		u, _ = p.GetIdentity(ctx, a.ID)
		if u.PasswordHash != "hash-new" || u.PasskeyPromptStatus != identity.PromptDeclined {
			t.Fatalf("password/prompt not stored: %+v", u)
		}
		if err := p.UpdatePasswordHash(ctx, 999999, "x"); !errors.Is(err, identity.ErrNotFound) {
			t.Fatal(err)
		}
		if err := p.UpdatePasskeyPromptStatus(ctx, 999999, "x"); !errors.Is(err, identity.ErrNotFound) {
			t.Fatal(err)
		}

		// Delete cascades to recovery codes.
		if err := p.EnrollTOTP(ctx, b.ID, "enc", 1, []string{"h1", "h2"}); err != nil {
			t.Fatal(err)
		}
		if err := p.DeleteIdentity(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if err := p.DeleteIdentity(ctx, b.ID); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		var n int
		if err := p.Connection(ctx).RawQuery("SELECT COUNT(*) FROM recovery_codes WHERE identity_id = ?", b.ID).First(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("%d recovery codes survived the identity", n)
		}
		// The freed email can be used again.
		newIdentity(t, p, "bob@example.com")
	})
}

func TestIdentityList(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		p := testdb.Persister(t, dsn)
		var ids []int64
		for k := 0; k < 7; k++ {
			ids = append(ids, newIdentity(t, p, fmt.Sprintf("user%d@example.com", k)).ID)
		}
		var seen []int64
		after := int64(0)
		for {
			page, err := p.ListIdentities(ctx, identity.ListParams{PageSize: 3, AfterID: after})
			if err != nil {
				t.Fatal(err)
			}
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
	})
}

func TestConsumeTOTPStepConcurrent(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		p := testdb.Persister(t, dsn)
		i := newIdentity(t, p, "totp@example.com")
		if err := p.EnrollTOTP(ctx, i.ID, "enc-secret", 100, nil); err != nil {
			t.Fatal(err)
		}
		for round, step := range []int64{101, 102, 200} {
			var wins atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, 20)
			for g := 0; g < 20; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					ok, err := p.ConsumeTOTPStep(ctx, i.ID, step)
					if err != nil {
						errs <- err
						return
					}
					if ok {
						wins.Add(1)
					}
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if w := wins.Load(); w != 1 {
				t.Fatalf("round %d: %d goroutines consumed step %d, want exactly 1", round, w, step)
			}
		}
		// Older and equal steps are refused; the enrolment step counts as used.
		for _, step := range []int64{100, 150, 200} {
			if ok, err := p.ConsumeTOTPStep(ctx, i.ID, step); err != nil || ok {
				t.Fatalf("step %d accepted after 200: %v %v", step, ok, err)
			}
		}
		got, _ := p.GetIdentity(ctx, i.ID)
		if got.TOTPLastStep != 200 {
			t.Fatalf("last step %d", got.TOTPLastStep)
		}
		if ok, err := p.ConsumeTOTPStep(ctx, 999999, 1); err != nil || ok {
			t.Fatalf("unknown identity: %v %v", ok, err)
		}
	})
}

func TestRecoveryCodesAndEnrollment(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		p := testdb.Persister(t, dsn)
		i := newIdentity(t, p, "codes@example.com")
		other := newIdentity(t, p, "other@example.com")

		if err := p.EnrollTOTP(ctx, i.ID, "enc-1", 10, []string{"c1", "c2", "c3"}); err != nil {
			t.Fatal(err)
		}
		got, _ := p.GetIdentity(ctx, i.ID)
		if !got.MFAEnabled || got.TOTPSecret != "enc-1" || got.TOTPLastStep != 10 {
			t.Fatalf("after enroll: %+v", got)
		}
		if err := p.EnrollTOTP(ctx, i.ID, "enc-2", 11, []string{"d1"}); !errors.Is(err, identity.ErrAlreadyEnrolled) {
			t.Fatalf("second enroll: %v", err)
		}
		// The failed enrolment changed nothing.
		got, _ = p.GetIdentity(ctx, i.ID)
		if got.TOTPSecret != "enc-1" || got.TOTPLastStep != 10 {
			t.Fatalf("failed enroll modified the identity: %+v", got)
		}
		if ok, _ := p.ConsumeRecoveryCode(ctx, i.ID, "d1"); ok {
			t.Fatal("codes of a failed enrolment were stored")
		}
		if err := p.EnrollTOTP(ctx, 999999, "enc", 1, nil); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("enroll unknown: %v", err)
		}

		// A code is good once, only for its owner.
		if ok, err := p.ConsumeRecoveryCode(ctx, other.ID, "c1"); err != nil || ok {
			t.Fatalf("another identity used c1: %v %v", ok, err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for g := 0; g < 10; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := p.ConsumeRecoveryCode(ctx, i.ID, "c1")
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("c1 consumed %d times", wins.Load())
		}
		if ok, _ := p.ConsumeRecoveryCode(ctx, i.ID, "c2"); !ok {
			t.Fatal("c2 refused")
		}
		if ok, _ := p.ConsumeRecoveryCode(ctx, i.ID, "nope"); ok {
			t.Fatal("unknown code accepted")
		}

		// Reset clears everything; enrolment works again and replaces the codes.
		if err := p.ResetTOTP(ctx, i.ID); err != nil {
			t.Fatal(err)
		}
		got, _ = p.GetIdentity(ctx, i.ID)
		if got.MFAEnabled || got.TOTPSecret != "" || got.TOTPLastStep != 0 {
			t.Fatalf("after reset: %+v", got)
		}
		if ok, _ := p.ConsumeRecoveryCode(ctx, i.ID, "c3"); ok {
			t.Fatal("a code survived the reset")
		}
		if err := p.ResetTOTP(ctx, 999999); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("reset unknown: %v", err)
		}
		if err := p.EnrollTOTP(ctx, i.ID, "enc-3", 5, []string{"e1", "e2"}); err != nil {
			t.Fatal(err)
		}
		if ok, _ := p.ConsumeRecoveryCode(ctx, i.ID, "e2"); !ok {
			t.Fatal("new code refused")
		}
	})
}

// Concurrent enrolments: exactly one wins, the others see ErrAlreadyEnrolled.
func TestEnrollTOTPConcurrent(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		p := testdb.Persister(t, dsn)
		i := newIdentity(t, p, "race@example.com")
		var wins, already atomic.Int32
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				err := p.EnrollTOTP(ctx, i.ID, fmt.Sprint("enc-", g), 1, []string{fmt.Sprint("code-", g)})
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, identity.ErrAlreadyEnrolled):
					already.Add(1)
				default:
					t.Error(err)
				}
			}(g)
		}
		wg.Wait()
		if wins.Load() != 1 || already.Load() != 7 {
			t.Fatalf("wins %d, already enrolled %d", wins.Load(), already.Load())
		}
		var n int
		if err := p.Connection(ctx).RawQuery("SELECT COUNT(*) FROM recovery_codes WHERE identity_id = ?", i.ID).First(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("%d recovery codes, want the winner's 1", n)
		}
	})
}
