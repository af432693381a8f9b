package sql_test

import (
	"context"
	stdsql "database/sql"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit/testnet"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pvpipe/pvauth/internal/testpg"
	sqlp "github.com/pvpipe/pvauth/persistence/sql"
	"github.com/pvpipe/pvauth/x"
)

// wantUnavailable checks that err is classified as the database failing and that the
// HTTP layer answers it 503 with Retry-After, whatever wraps it.
func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if !sqlp.IsUnavailable(err) {
		t.Fatalf("%s: %v (%T) is not classified as unavailable", what, err, err)
	}
	// Wrapped as a handler would wrap a failed token lookup.
	e := x.AsError(x.ErrUnauthorized.WithCause(err))
	if e.Status != http.StatusServiceUnavailable || e.RetryAfter <= 0 || e.Code != "service_unavailable" {
		t.Fatalf("%s: answered %d %q Retry-After %d", what, e.Status, e.Code, e.RetryAfter)
	}
}

// Connection refused, and the dial backoff: while the server is away the pool sends a
// handful of connection attempts, not one per call.
func TestUnavailableRefusedAndBackoff(t *testing.T) {
	ctx := t.Context()
	p, err := sqlp.New(ctx, "postgres://postgres@127.0.0.1:"+strconv.Itoa(testnet.FreePort(t))+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Ping(ctx)
	wantUnavailable(t, "refused", err)
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("refused: want a pgconn.ConnectError, got %T", err)
	}

	// 8 callers for 1.5 s: 50, 100, 200, 400 and 800 ms apart, the attempts are few.
	var wg sync.WaitGroup
	var calls, slow int64
	var mu sync.Mutex
	end := time.Now().Add(1500 * time.Millisecond)
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(end) {
				t0 := time.Now()
				err := p.Connection(ctx).RawQuery("SELECT 1").Exec()
				mu.Lock()
				calls++
				if time.Since(t0) > 100*time.Millisecond {
					slow++
				}
				mu.Unlock()
				if !sqlp.IsUnavailable(err) {
					t.Errorf("call while away: %v", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	attempts, held := p.DialStats()
	t.Logf("1.5 s refused: %d calls, %d dials sent, %d held back", calls, attempts, held)
	if attempts > 10 || held == 0 {
		t.Fatalf("dials sent %d (want at most 10), held back %d", attempts, held)
	}
	if slow > 0 {
		t.Fatalf("%d calls took over 100 ms: a held-back dial must fail at once", slow)
	}
}

// A server that goes away and comes back: refused while down, SQLSTATE 57P03 while it
// refuses new sessions, 57P01 (or a broken connection) for a session that a fast
// shutdown ends, and the same Persister serves again once it is back, without a restart.
//
// A pool that has no free connection within the call's deadline answers 503, fast.
// Both on one private server (initdb costs seconds).
func TestUnavailablePrivateServer(t *testing.T) {
	srv := testpg.New(t)
	t.Run("pool timeout", func(t *testing.T) { testPoolTimeout(t, srv) })
	t.Run("restart", func(t *testing.T) { testRestart(t, srv) })
}

func testRestart(t *testing.T, srv *testpg.Server) {
	ctx := t.Context()
	p, err := sqlp.New(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	// A smart shutdown waits for the open session and refuses new ones with 57P03.
	held, err := p.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Connection(held).RawQuery("SELECT 1").Exec(); err != nil {
		t.Fatal(err)
	}
	srv.Stop("smart", false)
	other, err := sqlp.New(ctx, srv.DSN()) // a fresh pool: it must open a new session
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var pgErr *pgconn.PgError
	for i := 0; ; i++ {
		err = other.Ping(ctx)
		if errors.As(err, &pgErr) || i == 100 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pgErr == nil || pgErr.Code != "57P03" {
		t.Fatalf("new session during a smart shutdown: want SQLSTATE 57P03, got %v", err)
	}
	wantUnavailable(t, "57P03", err)
	_ = p.Rollback(held)
	srv.Stop("fast", true) // a smart shutdown would wait for the pool's idle sessions

	srv.Start(true)
	// Back: the first call may still meet the dial backoff; within its cap it works.
	deadline := time.Now().Add(3 * time.Second)
	for err = p.Ping(ctx); err != nil && time.Now().Before(deadline); err = p.Ping(ctx) {
		wantUnavailable(t, "reconnecting", err)
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the persister did not recover: %v", err)
	}

	// A fast shutdown ends an open session.
	held, err = p.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Connection(held).RawQuery("SELECT 1").Exec(); err != nil {
		t.Fatal(err)
	}
	srv.Stop("fast", true)
	err = p.Connection(held).RawQuery("SELECT 1").Exec()
	t.Logf("session ended by a fast shutdown: %v", err)
	wantUnavailable(t, "fast shutdown", err)
	_ = p.Rollback(held)
	wantUnavailable(t, "down", p.Ping(ctx))
}

func testPoolTimeout(t *testing.T, srv *testpg.Server) {
	ctx := t.Context()
	p, err := sqlp.New(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetTimeout(time.Minute)
	var txs []context.Context
	for {
		tx, err := p.BeginTX(ctx)
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
		if w, _, _ := p.PoolStats(); w.InUse >= w.MaxOpenConnections {
			break
		}
	}
	defer func() {
		for _, tx := range txs {
			_ = p.Rollback(tx)
		}
	}()
	p.SetTimeout(300 * time.Millisecond)
	t0 := time.Now()
	err = p.Connection(ctx).RawQuery("SELECT 1").Exec()
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("waited %s for a connection", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the deadline, got %v", err)
	}
	wantUnavailable(t, "pool timeout", err)
}

// What is not the database failing keeps its meaning.
func TestUnavailableNotForQueryErrors(t *testing.T) {
	for _, err := range []error{
		stdsql.ErrNoRows,
		&pgconn.PgError{Code: "23505"}, // unique_violation
		&pgconn.PgError{Code: "40P01"}, // deadlock_detected
		context.Canceled,
		errors.New("sqlite3: database is locked"),
	} {
		if sqlp.IsUnavailable(err) || x.IsUnavailable(err) {
			t.Errorf("%v classified as unavailable", err)
		}
	}
	for _, code := range []string{"57P01", "57P02", "57P03", "53300", "08006", "08001", "57014"} {
		if !sqlp.IsUnavailable(&pgconn.PgError{Code: code}) {
			t.Errorf("SQLSTATE %s not classified as unavailable", code)
		}
	}
}
