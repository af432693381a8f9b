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
)

// Concurrent GroupTransactions share commits on SQLite; each caller still gets exactly
// its own outcome: a failing or panicking one leaves none of its writes and takes
// nobody else's with it.
func TestGroupTransactionIsolatesCallers(t *testing.T) {
	forEachSQLiteToo(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		errBoom := errors.New("boom")
		const n = 120
		outcome := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outcome[i] = p.GroupTransaction(ctx, func(ctx context.Context) error {
					// Two writes each, so that a failure after the first must be undone.
					if err := p.InsertToken(ctx, provider.KindAccess, tokenRow(fmt.Sprintf("a-%d", i))); err != nil {
						return err
					}
					if err := p.InsertToken(ctx, provider.KindRefresh, tokenRow(fmt.Sprintf("r-%d", i))); err != nil {
						return err
					}
					switch i % 3 {
					case 1:
						return errBoom
					case 2:
						if i%6 == 2 {
							panic("bug in a caller")
						}
					}
					return nil
				})
			}()
		}
		wg.Wait()
		for i := range n {
			_, errA := p.GetToken(ctx, provider.KindAccess, fmt.Sprintf("a-%d", i))
			_, errR := p.GetToken(ctx, provider.KindRefresh, fmt.Sprintf("r-%d", i))
			switch {
			case i%3 == 1:
				if !errors.Is(outcome[i], errBoom) {
					t.Errorf("%d: error %v, want its own", i, outcome[i])
				}
			case i%6 == 2:
				if outcome[i] == nil {
					t.Errorf("%d: a panic was reported as success", i)
				}
			default:
				if outcome[i] != nil || errA != nil || errR != nil {
					t.Errorf("%d: succeeded with %v, reads %v %v", i, outcome[i], errA, errR)
				}
				continue
			}
			if !errors.Is(errA, provider.ErrTokenNotFound) || !errors.Is(errR, provider.ErrTokenNotFound) {
				t.Errorf("%d: a failed transaction left writes (%v, %v)", i, errA, errR)
			}
		}
	})
}

// A unique violation in one caller (an SQL error, not a Go one) is undone by its savepoint.
func TestGroupTransactionSQLError(t *testing.T) {
	forEachSQLiteToo(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ctx := context.Background()
		if err := p.InsertToken(ctx, provider.KindAccess, tokenRow("taken")); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 20)
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = p.GroupTransaction(ctx, func(ctx context.Context) error {
					if err := p.InsertToken(ctx, provider.KindRefresh, tokenRow(fmt.Sprintf("mine-%d", i))); err != nil {
						return err
					}
					if i%2 == 0 {
						return p.InsertToken(ctx, provider.KindAccess, tokenRow("taken")) // duplicate key
					}
					return nil
				})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			_, read := p.GetToken(ctx, provider.KindRefresh, fmt.Sprintf("mine-%d", i))
			if i%2 == 0 && (err == nil || !errors.Is(read, provider.ErrTokenNotFound)) {
				t.Errorf("%d: duplicate key gave %v and left its first write (%v)", i, err, read)
			}
			if i%2 == 1 && (err != nil || read != nil) {
				t.Errorf("%d: %v, read %v", i, err, read)
			}
		}
	})
}

// Inside a transaction GroupTransaction joins it; after Close it fails without hanging.
func TestGroupTransactionJoinsAndCloses(t *testing.T) {
	forEachSQLiteToo(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		boom := errors.New("outer fails")
		err := p.Transaction(ctx, func(ctx context.Context) error {
			if err := p.GroupTransaction(ctx, func(ctx context.Context) error {
				return p.InsertToken(ctx, provider.KindAccess, tokenRow("joined"))
			}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("outer = %v", err)
		}
		if _, err := p.GetToken(ctx, provider.KindAccess, "joined"); !errors.Is(err, provider.ErrTokenNotFound) {
			t.Fatalf("a joined write survived the outer rollback: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.GroupTransaction(ctx, func(context.Context) error { return nil }); err == nil {
			t.Fatal("GroupTransaction after Close succeeded")
		}
	})
}

// Transactions that wait for the writer share one commit once it is free.
func TestGroupTransactionSharesCommits(t *testing.T) {
	p := testdb.Persister(t, testdb.SQLiteFile(t))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	release := make(chan struct{})
	holding := make(chan struct{})
	go func() {
		_ = p.Transaction(ctx, func(ctx context.Context) error { // holds the one writer
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.GroupTransaction(ctx, func(ctx context.Context) error {
				return p.InsertToken(ctx, provider.KindAccess, tokenRow(fmt.Sprintf("g-%d", i)))
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // all 20 queue behind the held writer
	close(release)
	wg.Wait()
	txs, commits := p.GroupStats()
	if txs != n || commits > 2 {
		t.Fatalf("%d transactions took %d commits, want %d in at most 2", txs, commits, n)
	}
	for i := range n {
		if _, err := p.GetToken(ctx, provider.KindAccess, fmt.Sprintf("g-%d", i)); err != nil {
			t.Errorf("g-%d: %v", i, err)
		}
	}
}
