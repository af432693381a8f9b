package sql_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/persistence/conformance"
	sqlp "github.com/pvpipe/pvauth/persistence/sql"
)

// identity.Persister's contract is checked by persistence/conformance (TestConformance);
// these tests look at the rows it leaves behind.

// recoveryCodes counts the stored recovery codes of an identity.
func recoveryCodes(t *testing.T, ctx context.Context, p *sqlp.Persister, id int64) int {
	t.Helper()
	var n int
	if err := p.Connection(ctx).RawQuery("SELECT COUNT(*) FROM recovery_codes WHERE identity_id = ?", id).First(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Delete cascades to recovery codes.
func TestDeleteIdentityCascades(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		p := testdb.Persister(t, dsn)
		b := conformance.NewIdentity(t, p, "bob@example.com")
		if err := p.EnrollTOTP(ctx, b.ID, "enc", 1, []string{"h1", "h2"}); err != nil {
			t.Fatal(err)
		}
		if err := p.DeleteIdentity(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if n := recoveryCodes(t, ctx, p, b.ID); n != 0 {
			t.Fatalf("%d recovery codes survived the identity", n)
		}
	})
}

// Concurrent enrolments: exactly one wins, the others see ErrAlreadyEnrolled.
func TestEnrollTOTPConcurrent(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		p := testdb.Persister(t, dsn)
		i := conformance.NewIdentity(t, p, "race@example.com")
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
		if n := recoveryCodes(t, ctx, p, i.ID); n != 1 {
			t.Fatalf("%d recovery codes, want the winner's 1", n)
		}
	})
}
