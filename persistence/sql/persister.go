// Package sql is pvauth's one Persister: pop connections, transactions carried in the
// context, embedded migrations, and one persister_<domain>.go file per domain interface.
package sql

import (
	"context"
	stdsql "database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gobuffalo/pop/v6"
	"github.com/gobuffalo/pop/v6/logging"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Persister implements every domain's storage interface on one pop connection.
type Persister struct {
	conn  *pop.Connection
	stmts *stmtCache
	// reads serves hot reads outside transactions. On an SQLite file it is a pool of
	// query-only connections (WAL readers run beside the writer); elsewhere it is stmts.
	reads  *stmtCache
	readDB *stdsql.DB
	sqlite bool
	group  *grouper
	closed atomic.Bool
	// PostgreSQL only: the pool's dial gate, the name its pgx config is registered
	// under, and how long one database call may take (see bound).
	gate    *dialGate
	pgName  string
	timeout atomic.Int64 // a time.Duration
}

func init() {
	// pop logs every migration and, in debug, every query with its arguments; route the
	// former to slog at debug level and never print arguments.
	pop.SetLogger(func(lvl logging.Level, s string, args ...any) {
		if lvl == logging.SQL {
			return
		}
		slog.Debug("pop: " + fmt.Sprintf(s, args...))
	})
	pop.Debug = false
}

// Dialect names as pop calls them.
const (
	DialectSQLite   = "sqlite3"
	DialectPostgres = "postgres"
)

// New opens a connection for dsn: "memory", "sqlite://PATH?...", "postgres://..."
// (CockroachDB cannot be run or tested here, so it is not offered). SQLite gets one
// writer connection: writes are serialized by SQLite
// anyway, and one connection keeps an in-memory database alive and free of lock errors.
// An SQLite file also gets a pool of query-only connections for hot reads (WAL readers
// never wait for the writer). pop's own SQLite mutex is turned off (lock=false): with one
// connection database/sql already serializes, and pop's mutex, held while waiting for
// that connection, deadlocks a transaction that reads against any concurrent read. mattn
// keeps up to 128 prepared statements per connection (_stmt_cache_size) for pop's queries.
func New(ctx context.Context, dsn string) (*Persister, error) {
	deets, err := connectionDetails(dsn)
	if err != nil {
		return nil, err
	}
	c, err := pop.NewConnection(deets)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	var gate *dialGate
	var pgName string
	if deets.Dialect == DialectPostgres {
		if gate, pgName, err = registerPostgres(deets); err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
	}
	if err := c.Open(); err != nil {
		if pgName != "" {
			stdlib.UnregisterConnConfig(pgName)
		}
		return nil, fmt.Errorf("database: %w", err)
	}
	db, ok := c.Store.(preparer)
	if !ok {
		_ = c.Close()
		return nil, fmt.Errorf("database: pop store %T cannot prepare statements", c.Store)
	}
	p := &Persister{conn: c, stmts: newStmtCache(db, c.Dialect.TranslateSQL), gate: gate, pgName: pgName}
	if gate != nil {
		p.timeout.Store(int64(DefaultTimeout))
	}
	p.reads = p.stmts
	p.sqlite = deets.Dialect == DialectSQLite
	p.group = newGrouper()
	if deets.Dialect == DialectSQLite && !isMemory(deets) {
		// WAL lets readers (our read pool, the CLI) proceed while the one writer writes.
		if err := c.RawQuery("PRAGMA journal_mode=WAL").Exec(); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("database: %w", err)
		}
		_ = c.RawQuery("PRAGMA synchronous=NORMAL").Exec()
		rdb, err := stdsql.Open(c.Dialect.DefaultDriver(), c.Dialect.URL()+"&_query_only=true")
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("database: %w", err)
		}
		n := max(2, runtime.GOMAXPROCS(0))
		rdb.SetMaxOpenConns(n)
		rdb.SetMaxIdleConns(n)
		p.readDB, p.reads = rdb, newStmtCache(rdb, c.Dialect.TranslateSQL)
	}
	return p, nil
}

// DefaultTimeout bounds one database call on PostgreSQL (waiting for a pooled connection
// included), so that a database that hangs is answered 503 within the contract's 5 s
// instead of holding requests. Migrations are not bounded.
const DefaultTimeout = 4 * time.Second

// connectTimeout bounds a connection attempt when the DSN does not say (connect_timeout).
const connectTimeout = 2 * time.Second

// registerPostgres gives pgx the pool's dial gate and a connect timeout: pop opens the
// pgx driver by DSN, so the config goes to pgx's registry and pop is handed its name.
func registerPostgres(deets *pop.ConnectionDetails) (*dialGate, string, error) {
	cfg, err := pgx.ParseConfig(deets.URL)
	if err != nil {
		return nil, "", err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	g := &dialGate{}
	cfg.DialFunc = g.dial(cfg.DialFunc)
	cfg.AfterNetConnect = g.afterNetConnect
	cfg.AfterConnect = g.afterConnect
	name := stdlib.RegisterConnConfig(cfg)
	deets.URL = name
	return g, name, nil
}

// DialStats reports the PostgreSQL pool's connection attempts that went out and those
// the backoff held back (zero on SQLite).
func (p *Persister) DialStats() (attempts, heldBack int64) {
	if p.gate == nil {
		return 0, 0
	}
	return p.gate.attempts.Load(), p.gate.refused.Load()
}

// SetTimeout changes how long one database call may take on PostgreSQL (tests).
func (p *Persister) SetTimeout(d time.Duration) {
	if p.gate != nil {
		p.timeout.Store(int64(d))
	}
}

// bound gives a database call on PostgreSQL its deadline (an earlier one of the caller
// stays). Its error when the time is up is context.DeadlineExceeded, which IsUnavailable
// counts as the database failing.
func (p *Persister) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	d := time.Duration(p.timeout.Load())
	if d <= 0 {
		return ctx, func() {}
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// isMemory tells an in-memory SQLite database: it lives in its one connection, so it
// has no read pool and no WAL.
func isMemory(d *pop.ConnectionDetails) bool {
	return d.Options["mode"] == "memory" || strings.Contains(d.Database, ":memory:")
}

func connectionDetails(dsn string) (*pop.ConnectionDetails, error) {
	switch {
	case dsn == "memory":
		// A uniquely named shared-cache memory database, so parallel tests do not collide.
		return &pop.ConnectionDetails{
			URL:  "sqlite3://file:pvauth-" + uuid.NewString() + "?mode=memory&cache=shared&_fk=true&_busy_timeout=10000&lock=false&_stmt_cache_size=128",
			Pool: 1, IdlePool: 1,
		}, nil
	case strings.HasPrefix(dsn, "sqlite://"), strings.HasPrefix(dsn, "sqlite3://"):
		u := dsn
		for _, opt := range []string{"_fk=true", "lock=false", "_busy_timeout=10000", "_stmt_cache_size=128"} {
			if strings.Contains(u, strings.SplitN(opt, "=", 2)[0]+"=") {
				continue
			}
			if strings.Contains(u, "?") {
				u += "&" + opt
			} else {
				u += "?" + opt
			}
		}
		return &pop.ConnectionDetails{URL: u, Pool: 1, IdlePool: 1}, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return &pop.ConnectionDetails{URL: "postgres://" + strings.SplitN(dsn, "://", 2)[1], Driver: pipeDriverName,
			Pool: 32, IdlePool: 16, ConnMaxLifetime: 5 * time.Minute}, nil
	default:
		return nil, fmt.Errorf("dsn: unsupported scheme in %q (want memory, sqlite:// or postgres://)", redactDSN(dsn))
	}
}

// redactDSN hides the password of a DSN for error messages.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Dialect is the pop dialect name ("sqlite3" or "postgres").
func (p *Persister) Dialect() string { return p.conn.Dialect.Name() }

// Close closes the connection pool.
func (p *Persister) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	p.group.stop()
	errs := []error{p.stmts.close()}
	if p.readDB != nil {
		errs = append(errs, p.reads.close(), p.readDB.Close())
	}
	errs = append(errs, p.conn.Close())
	if p.pgName != "" {
		stdlib.UnregisterConnConfig(p.pgName)
	}
	return errors.Join(errs...)
}

// PoolStats reports database/sql's pool statistics: the writer (the only pool on
// PostgreSQL), and SQLite's read pool (ok false when there is none).
func (p *Persister) PoolStats() (writer stdsql.DBStats, reader stdsql.DBStats, ok bool) {
	if st, isPool := p.conn.Store.(interface{ Stats() stdsql.DBStats }); isPool {
		writer = st.Stats()
	}
	if p.readDB != nil {
		return writer, p.readDB.Stats(), true
	}
	return writer, reader, false
}

// errClosed answers every call after Close (a readiness probe during shutdown).
var errClosed = errors.New("database connection is closed")

// Ping checks that the database answers (readiness).
func (p *Persister) Ping(ctx context.Context) error {
	if p.closed.Load() {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var one int
	return p.Connection(ctx).RawQuery("SELECT 1").First(&one)
}

// driverCtx is the context handed to the SQLite driver for writes and transactions: none
// that can be cancelled. mattn runs every cancellable Exec (BEGIN included) on a new
// goroutine and waits for it; on the one writer connection that scheduling hop is paid
// while every other writer waits, and a statement takes microseconds, too short to be
// worth interrupting. PostgreSQL keeps the request's context.
func (p *Persister) driverCtx(ctx context.Context) context.Context {
	if p.sqlite {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

type txKey struct{}

// Connection returns the transaction carried by ctx, or the pool bound to ctx (with the
// deadline of one database call, see bound).
func (p *Persister) Connection(ctx context.Context) *pop.Connection {
	if tx := p.txConnection(ctx); tx != nil {
		return tx
	}
	ctx, cancel := p.bound(ctx)
	// pop's connection has nothing to hang cancel on. The timer goes when the request's
	// context ends (with the request), or lapses after the timeout.
	_ = cancel
	return p.conn.WithContext(ctx)
}

// InTransaction reports whether ctx carries a write transaction (audit.Transactor:
// audit.Logger.LogTx writes the event of a change into it).
func (p *Persister) InTransaction(ctx context.Context) bool { return p.txConnection(ctx) != nil }

func (p *Persister) txConnection(ctx context.Context) *pop.Connection {
	tx, _ := ctx.Value(txKey{}).(*pop.Connection)
	return tx
}

// Transaction runs fn in a transaction carried by the context it receives; inside an
// existing transaction it joins it. Any error rolls everything back.
func (p *Persister) Transaction(ctx context.Context, fn func(ctx context.Context) error) error {
	if p.txConnection(ctx) != nil {
		return fn(ctx)
	}
	if p.closed.Load() {
		return errClosed
	}
	ctx, cancel := p.bound(ctx)
	defer cancel()
	h := &afterCommit{}
	err := p.conn.WithContext(p.driverCtx(ctx)).Transaction(func(tx *pop.Connection) error {
		return fn(context.WithValue(context.WithValue(ctx, txKey{}, tx), afterCommitKey{}, h))
	})
	if err == nil {
		h.run()
	}
	return err
}

// afterCommit holds what runs once a transaction has committed (AfterCommit). A
// transaction runs on one goroutine, so it needs no lock.
type afterCommit struct{ fns []func() }

type afterCommitKey struct{}

func (h *afterCommit) run() {
	for _, fn := range h.fns {
		fn()
	}
}

// AfterCommit runs fn once the transaction ctx carries has committed, and never if it
// rolls back; outside a transaction it runs fn at once.
func (p *Persister) AfterCommit(ctx context.Context, fn func()) {
	if h, _ := ctx.Value(afterCommitKey{}).(*afterCommit); h != nil && p.txConnection(ctx) != nil {
		h.fns = append(h.fns, fn)
		return
	}
	fn()
}

// BeginTX, Commit and Rollback implement fosite's storage.Transactional.
func (p *Persister) BeginTX(ctx context.Context) (context.Context, error) {
	if p.txConnection(ctx) != nil {
		return ctx, errors.New("a transaction is already open in this context")
	}
	if p.closed.Load() {
		return ctx, errClosed
	}
	ctx, cancel := p.bound(ctx)
	tx, err := p.conn.NewTransactionContext(p.driverCtx(ctx))
	if err != nil {
		cancel()
		return ctx, err
	}
	ctx = context.WithValue(context.WithValue(ctx, txKey{}, tx), txCancelKey{}, cancel)
	return context.WithValue(ctx, afterCommitKey{}, &afterCommit{}), nil
}

// txCancelKey carries the cancel of a BeginTX transaction's deadline to its end.
type txCancelKey struct{}

func endTX(ctx context.Context) {
	if cancel, ok := ctx.Value(txCancelKey{}).(context.CancelFunc); ok {
		cancel()
	}
}

func (p *Persister) Commit(ctx context.Context) error {
	tx, ok := ctx.Value(txKey{}).(*pop.Connection)
	if !ok || tx.TX == nil {
		return errors.New("commit: no transaction in context")
	}
	defer endTX(ctx)
	if err := tx.TX.Commit(); err != nil {
		return err
	}
	if h, _ := ctx.Value(afterCommitKey{}).(*afterCommit); h != nil {
		h.run()
	}
	return nil
}

func (p *Persister) Rollback(ctx context.Context) error {
	tx, ok := ctx.Value(txKey{}).(*pop.Connection)
	if !ok || tx.TX == nil {
		return errors.New("rollback: no transaction in context")
	}
	defer endTX(ctx)
	if err := tx.TX.Rollback(); err != nil && !errors.Is(err, stdsql.ErrTxDone) {
		return err
	}
	return nil
}

func (p *Persister) migrationBox() (pop.MigrationBox, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return pop.MigrationBox{}, err
	}
	mb, err := pop.NewMigrationBox(sub, p.conn)
	if err != nil {
		return pop.MigrationBox{}, err
	}
	mb.SchemaPath = ""
	return mb, nil
}

// MigrateUp applies every pending migration.
func (p *Persister) MigrateUp(ctx context.Context) error {
	mb, err := p.migrationBox()
	if err != nil {
		return err
	}
	return mb.Up()
}

// MigrationStatus writes a table of migrations and their state.
func (p *Persister) MigrationStatus(ctx context.Context, w io.Writer) error {
	mb, err := p.migrationBox()
	if err != nil {
		return err
	}
	return mb.Status(w)
}

// PendingMigrations counts migrations of this dialect that are not applied yet.
func (p *Persister) PendingMigrations(ctx context.Context) (int, error) {
	mb, err := p.migrationBox()
	if err != nil {
		return 0, err
	}
	if err := mb.CreateSchemaMigrations(); err != nil {
		return 0, err
	}
	name := p.conn.Dialect.Name()
	n := 0
	for _, m := range mb.UpMigrations.Migrations {
		if m.DBType != "all" && m.DBType != name {
			continue
		}
		exists, err := p.Connection(ctx).Where("version = ?", m.Version).Exists(p.conn.MigrationTableName())
		if err != nil {
			return 0, err
		}
		if !exists {
			n++
		}
	}
	return n, nil
}

// now is the time stored in the database: UTC, whole seconds, so that SQLite's text
// timestamps compare correctly in SQL.
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

// dbTime normalizes a time the same way before it is stored or compared.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// dbExpiry normalizes an expiry like dbTime but rounds up, so that a stored lifetime is
// never shorter than the one configured.
func dbExpiry(t time.Time) time.Time {
	u := t.UTC()
	if u.Equal(u.Truncate(time.Second)) {
		return u
	}
	return u.Truncate(time.Second).Add(time.Second)
}
