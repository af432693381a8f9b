package sql_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/persistence/conformance"
)

// tokenRow is a token of its own family.
func tokenRow(sig string) *provider.TokenRow {
	return conformance.NewTokenRow(sig, "family-"+sig, "s", nil)
}

// forEachSQLiteToo adds the single-connection in-memory database to testdb.ForEach.
func forEachSQLiteToo(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("memory", func(t *testing.T) { fn(t, "memory") })
	testdb.ForEach(t, fn)
}

// A hot statement met for the first time inside a transaction is prepared on that
// transaction: preparing it on the pool would wait forever for SQLite's one writer
// connection, which the transaction holds.
func TestPreparedStatementFirstUsedInTransaction(t *testing.T) {
	forEachSQLiteToo(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		for i := range 3 { // first use, then (once warmed in the background) cached
			sig := fmt.Sprintf("in-tx-%d", i)
			err := p.Transaction(ctx, func(ctx context.Context) error {
				if err := p.InsertToken(ctx, provider.KindAccess, tokenRow(sig)); err != nil {
					return err
				}
				r, err := p.GetToken(ctx, provider.KindAccess, sig) // the transaction sees its own write
				if err != nil {
					return err
				}
				if !r.Active || r.Subject != "s" {
					return fmt.Errorf("read back %+v", r)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			if _, err := p.GetToken(ctx, provider.KindAccess, sig); err != nil {
				t.Fatalf("round %d: committed token: %v", i, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// A rolled-back transaction leaves nothing, prepared statements or not.
		boom := errors.New("boom")
		err := p.Transaction(ctx, func(ctx context.Context) error {
			if err := p.InsertToken(ctx, provider.KindAccess, tokenRow("rolled-back")); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("transaction = %v", err)
		}
		if _, err := p.GetToken(ctx, provider.KindAccess, "rolled-back"); !errors.Is(err, provider.ErrTokenNotFound) {
			t.Fatalf("rolled-back token: %v", err)
		}
	})
}

// Hot reads go to SQLite's read pool; each must see every write committed before it,
// also while other goroutines write.
func TestReadsSeeCommittedWrites(t *testing.T) {
	forEachSQLiteToo(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					sig := fmt.Sprintf("w%d-%d", w, i)
					if err := p.InsertToken(ctx, provider.KindRefresh, tokenRow(sig)); err != nil {
						errs <- err
						return
					}
					if r, err := p.GetToken(ctx, provider.KindRefresh, sig); err != nil || !r.Active {
						errs <- fmt.Errorf("%s right after insert: %+v %v", sig, r, err)
						return
					}
					if ok, err := p.DeactivateToken(ctx, provider.KindRefresh, sig); err != nil || !ok {
						errs <- fmt.Errorf("%s deactivate: %v %v", sig, ok, err)
						return
					}
					if r, err := p.GetToken(ctx, provider.KindRefresh, sig); err != nil || r.Active {
						errs <- fmt.Errorf("%s right after deactivate: %+v %v", sig, r, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// After Close every call fails cleanly, prepared statements included.
func TestClosedPersister(t *testing.T) {
	forEachSQLiteToo(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ctx := context.Background()
		if err := p.InsertToken(ctx, provider.KindAccess, tokenRow("before-close")); err != nil {
			t.Fatal(err)
		}
		if _, err := p.GetToken(ctx, provider.KindAccess, "before-close"); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := p.GetToken(ctx, provider.KindAccess, "before-close"); err == nil {
			t.Fatal("GetToken after Close succeeded")
		}
		if err := p.InsertToken(ctx, provider.KindAccess, tokenRow("after-close")); err == nil {
			t.Fatal("InsertToken after Close succeeded")
		}
	})
}
