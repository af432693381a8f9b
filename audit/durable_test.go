package audit_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/internal/testdb"
	sqlp "github.com/pvpipe/pvauth/persistence/sql"
)

func TestLogTxNeedsATransaction(t *testing.T) {
	p := testdb.Persister(t, testdb.SQLiteFile(t))
	l := audit.NewLogger(p)
	defer l.Close()
	if err := l.LogTx(context.Background(), audit.Event{Type: audit.TypeLogin}); !errors.Is(err, audit.ErrNoTransaction) {
		t.Fatalf("LogTx outside a transaction = %v, want ErrNoTransaction", err)
	}
	if got := len(listAll(t, p, audit.Filter{})); got != 0 {
		t.Fatalf("LogTx outside a transaction stored %d events", got)
	}
}

// A change and its event commit together or not at all: an error after the event undoes
// both, and an event the database refuses (a real unique constraint) undoes the change.
func TestLogTxCommitsAndRollsBackWithTheChange(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		l := audit.NewLogger(p)
		defer l.Close()
		ctx := context.Background()
		// The metrics hook hears of an event once its transaction commits, never of one
		// that rolls back.
		var mu sync.Mutex
		observed := map[string]int{}
		l.OnLog(func(e audit.Event) {
			mu.Lock()
			defer mu.Unlock()
			observed[e.Type]++
		})
		wantObserved := func(typ string, n int) {
			t.Helper()
			mu.Lock()
			defer mu.Unlock()
			if observed[typ] != n {
				t.Fatalf("%s observed %d times, want %d", typ, observed[typ], n)
			}
		}
		create := func(ctx context.Context, email string) (int64, error) {
			i := &identity.Identity{Email: email, Traits: json.RawMessage(`{}`)}
			err := p.CreateIdentity(ctx, i)
			return i.ID, err
		}
		exists := func(email string) bool {
			_, err := p.FindIdentityByEmail(ctx, email)
			if err != nil && !errors.Is(err, identity.ErrNotFound) {
				t.Fatal(err)
			}
			return err == nil
		}

		// Committed: both are readable at once, with no Flush.
		evID := uuid.Must(uuid.NewV7()).String()
		err := l.Tx(ctx, func(ctx context.Context) error {
			id, err := create(ctx, "kept@example.com")
			if err != nil {
				return err
			}
			return l.LogTx(ctx, audit.Event{ID: evID, Type: audit.TypeIdentityCreate, UserID: audit.Int64(id)})
		})
		if err != nil {
			t.Fatal(err)
		}
		if !exists("kept@example.com") || len(listAll(t, p, audit.Filter{Type: audit.TypeIdentityCreate})) != 1 {
			t.Fatal("a committed change or its event is missing")
		}
		wantObserved(audit.TypeIdentityCreate, 1)

		// The transaction fails after the event was written: neither exists.
		injected := errors.New("injected")
		err = l.Tx(ctx, func(ctx context.Context) error {
			id, err := create(ctx, "undone@example.com")
			if err != nil {
				return err
			}
			if err := l.LogTx(ctx, audit.Event{Type: audit.TypeIdentityUpdate, UserID: audit.Int64(id)}); err != nil {
				return err
			}
			return injected
		})
		if !errors.Is(err, injected) {
			t.Fatalf("Tx = %v, want the injected error", err)
		}
		if exists("undone@example.com") || len(listAll(t, p, audit.Filter{Type: audit.TypeIdentityUpdate})) != 0 {
			t.Fatal("a rolled-back change or its event survived")
		}
		wantObserved(audit.TypeIdentityUpdate, 0)

		// The event is refused (its id is taken): the change is undone with it.
		err = l.Tx(ctx, func(ctx context.Context) error {
			id, err := create(ctx, "unrecorded@example.com")
			if err != nil {
				return err
			}
			return l.LogTx(ctx, audit.Event{ID: evID, Type: audit.TypeIdentityDelete, UserID: audit.Int64(id)})
		})
		if err == nil {
			t.Fatal("an event with a taken id was stored")
		}
		if exists("unrecorded@example.com") {
			t.Fatal("a change survived the failure of its event")
		}
		wantObserved(audit.TypeIdentityDelete, 0)

		// fosite's transactions (BeginTX, Commit, Rollback) too.
		for _, commit := range []bool{false, true} {
			txCtx, err := p.BeginTX(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.LogTx(txCtx, audit.Event{Type: audit.TypeTokenRefresh}); err != nil {
				t.Fatal(err)
			}
			wantObserved(audit.TypeTokenRefresh, 0)
			if commit {
				err = p.Commit(txCtx)
			} else {
				err = p.Rollback(txCtx)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		wantObserved(audit.TypeTokenRefresh, 1)
	})
}

// awayPersister is the real persister behind a switch that makes the database
// unreachable for the Logger: writes and pings fail while it is on (SQLite has no
// server to stop; on PostgreSQL the test stops the real database instead).
type awayPersister struct {
	*sqlp.Persister
	away atomic.Bool
}

var errAway = errors.New("dial tcp: connection refused (database away)")

func (a *awayPersister) InsertAuditEvents(ctx context.Context, events []audit.Event) error {
	if a.away.Load() {
		return errAway
	}
	return a.Persister.InsertAuditEvents(ctx, events)
}

func (a *awayPersister) Ping(ctx context.Context) error {
	if a.away.Load() {
		return errAway
	}
	return a.Persister.Ping(ctx)
}

// outage makes the test's database unreachable and returns the function that brings it
// back. On PostgreSQL it is the real thing: the test's own database refuses new
// connections and its sessions are terminated, from an admin connection.
func outage(t *testing.T, dsn string, p *sqlp.Persister) (audit.Persister, func(), func()) {
	t.Helper()
	if !strings.HasPrefix(dsn, "postgres") {
		a := &awayPersister{Persister: p}
		return a, func() { a.away.Store(true) }, func() { a.away.Store(false) }
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	admin, err := sql.Open("pgx", os.Getenv(testdb.EnvPostgres))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := admin.ExecContext(context.Background(), q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	down := func() {
		exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS false")
		exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
	}
	up := func() { exec("ALTER DATABASE " + name + " ALLOW_CONNECTIONS true") }
	t.Cleanup(up)
	return p, down, up
}

// While the database is away the background writer keeps its events and retries; once
// it is back, every event lands and none is dropped.
func TestLoggerKeepsEventsWhileDatabaseAway(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ap, down, up := outage(t, dsn, p)
		l := audit.NewLogger(ap)
		defer l.Close()
		var hook atomic.Int64
		l.OnDrop(func() { hook.Add(1) })

		down()
		const n = 500
		for i := range n {
			l.Log(context.Background(), audit.Event{Type: audit.TypeLogin, Result: audit.ResultFailure, Metadata: map[string]any{"i": i}})
			if i == 0 {
				time.Sleep(50 * time.Millisecond) // the writer fails on the first one
			}
		}
		time.Sleep(1500 * time.Millisecond) // several failed retries
		if l.Dropped() != 0 {
			t.Fatalf("%d events dropped while the database was away", l.Dropped())
		}
		up()
		if !l.Flush() {
			t.Fatal("the queue did not empty once the database was back")
		}
		if got := len(listAll(t, p, audit.Filter{})); got != n || l.Dropped() != 0 || hook.Load() != 0 {
			t.Fatalf("stored %d of %d events, dropped %d (hook %d)", got, n, l.Dropped(), hook.Load())
		}
	})
}

// During an outage the queue fills to its bound; what does not fit is dropped, and
// every drop is counted (the OnDrop hook is pvauth_audit_dropped_total): what was kept
// lands when the database is back, so stored + dropped = logged.
func TestLoggerCountsDropsWhenQueueFullDuringOutage(t *testing.T) {
	p := testdb.Persister(t, testdb.SQLiteFile(t))
	a := &awayPersister{Persister: p}
	l := audit.NewLogger(a)
	defer l.Close()
	var hook atomic.Int64
	l.OnDrop(func() { hook.Add(1) })

	a.away.Store(true)
	const total = audit.QueueSize + 1000
	for range total {
		l.Log(context.Background(), audit.Event{Type: audit.TypeRateLimited, Result: audit.ResultFailure})
	}
	if l.Dropped() == 0 || hook.Load() != l.Dropped() {
		t.Fatalf("dropped %d (hook %d): a full queue must drop and count", l.Dropped(), hook.Load())
	}
	a.away.Store(false)
	if !l.Flush() {
		t.Fatal("the queue did not empty")
	}
	stored := int64(len(listAll(t, p, audit.Filter{})))
	if stored+l.Dropped() != total || stored < audit.QueueSize {
		t.Fatalf("stored %d + dropped %d, logged %d (queue %d)", stored, l.Dropped(), total, audit.QueueSize)
	}
}

// Close does not hang while the database is away: it waits the shutdown wait, then
// drops what is left and counts it.
func TestLoggerCloseGivesUpWhileDatabaseAway(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ap, down, up := outage(t, dsn, p)
		defer up()
		l := audit.NewLogger(ap)
		l.SetShutdownWait(500 * time.Millisecond)
		var hook atomic.Int64
		l.OnDrop(func() { hook.Add(1) })
		down()
		for range 20 {
			l.Log(context.Background(), audit.Event{Type: audit.TypeLogin})
		}
		if l.Flush() {
			t.Fatal("Flush reported an empty queue while the database was away")
		}
		start := time.Now()
		l.Close()
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Close took %s while the database was away", d)
		}
		if l.Dropped() != 20 || hook.Load() != 20 {
			t.Fatalf("dropped %d (hook %d), want 20", l.Dropped(), hook.Load())
		}
	})
}
