package sql

import (
	"context"
	stdsql "database/sql"
	"database/sql/driver"
	"errors"
	"reflect"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pipeDriver is pgx's database/sql driver with transactions that cost fewer round trips.
// A round trip to PostgreSQL costs more CPU (both sides: syscalls and wake-ups) than most
// of our statements do, and a state change is BEGIN, a gate, its writes, its audit event
// and COMMIT. Here nothing goes out until a statement needs an answer: BEGIN waits for
// the transaction's first statement, and statements marked deferred (inserts whose only
// answer is success: token rows, audit events) wait for the next statement or COMMIT,
// and each goes out in one pipeline with it. Order and atomicity are unchanged: the
// statements run in the order they were issued, and an error anywhere aborts the
// transaction (a deferred insert's error is the answer of the statement it went with,
// and a transaction that had any error cannot commit).
type pipeDriver struct{}

const pipeDriverName = "pvauth-pgx"

// deferred marks an INSERT that may wait for the transaction's next statement or its
// COMMIT: the caller needs no answer from it but success, and the transaction's later
// statements see its row (it goes before them). Outside a pipeDriver transaction the
// marked statement simply runs (the mark is a comment).
const deferred = "/* deferred */ "

// deferrable marks q deferred on PostgreSQL (SQLite runs every statement in process).
func (p *Persister) deferrable(q string) string {
	if p.sqlite {
		return q
	}
	return deferred + q
}

// endTimeout bounds the ROLLBACK that ends a failed transaction.
const endTimeout = 2 * time.Second

// errTxFailed refuses the commit of a transaction one of whose pipelines failed: its
// deferred statements may not all have run.
var errTxFailed = errors.New("database: the transaction had failed and was rolled back")

func init() { stdsql.Register(pipeDriverName, pipeDriver{}) }

func (pipeDriver) Open(name string) (driver.Conn, error) {
	c, err := stdlib.GetDefaultDriver().Open(name)
	if err != nil {
		return nil, err
	}
	return &pipeConn{Conn: c.(*stdlib.Conn)}, nil
}

// OpenConnector keeps pgx's connector, so that a dial honours the caller's context.
func (pipeDriver) OpenConnector(name string) (driver.Connector, error) {
	c, err := stdlib.GetDefaultDriver().(driver.DriverContext).OpenConnector(name)
	if err != nil {
		return nil, err
	}
	return pipeConnector{c}, nil
}

type pipeConnector struct{ driver.Connector }

func (c pipeConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pipeConn{Conn: conn.(*stdlib.Conn)}, nil
}

func (pipeConnector) Driver() driver.Driver { return pipeDriver{} }

type pipeConn struct {
	*stdlib.Conn
	tx *pipeTx
}

// pipeTx is a transaction whose BEGIN may not have been sent yet.
type pipeTx struct {
	c       *pipeConn
	ctx     context.Context
	begun   bool
	failed  bool // a pipeline of it failed: it can only roll back
	pending []queued
}

type queued struct {
	sql  string
	args []any
}

func (c *pipeConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if c.Conn.Conn().IsClosed() {
		return nil, driver.ErrBadConn
	}
	if opts.Isolation != driver.IsolationLevel(stdsql.LevelDefault) || opts.ReadOnly || c.tx != nil {
		return c.Conn.BeginTx(ctx, opts)
	}
	c.tx = &pipeTx{c: c, ctx: ctx}
	return c.tx, nil
}

// args are the values of a statement. A deferred one keeps copies: the caller may
// change what it passed by reference once ExecContext has answered.
func args(named []driver.NamedValue, keep bool) []any {
	a := make([]any, len(named))
	for i, v := range named {
		a[i] = v.Value
		if !keep || v.Value == nil {
			continue
		}
		switch val := v.Value.(type) {
		case []byte:
			a[i] = append([]byte(nil), val...)
		case driver.Valuer:
		default:
			if rv := reflect.ValueOf(val); rv.Kind() == reflect.Pointer {
				if rv.IsNil() {
					a[i] = nil
				} else {
					a[i] = rv.Elem().Interface()
				}
			}
		}
	}
	return a
}

func (c *pipeConn) ExecContext(ctx context.Context, query string, named []driver.NamedValue) (driver.Result, error) {
	tx := c.tx
	switch {
	case tx == nil:
		return c.Conn.ExecContext(ctx, query, named)
	case strings.HasPrefix(query, deferred):
		tx.pending = append(tx.pending, queued{query, args(named, true)})
		return driver.RowsAffected(0), nil
	case len(named) == 0:
		// Without arguments pgx sends the text by the simple protocol, which may hold
		// several statements (a migration does) and cannot share a pipeline.
		if err := tx.flush(ctx); err != nil {
			return nil, err
		}
		return c.Conn.ExecContext(ctx, query, named)
	}
	tags, err := tx.send(ctx, tx.batch(&queued{query, args(named, false)}))
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(tags[len(tags)-1].RowsAffected()), nil
}

func (c *pipeConn) QueryContext(ctx context.Context, query string, named []driver.NamedValue) (driver.Rows, error) {
	if err := c.flush(ctx); err != nil {
		return nil, err
	}
	return c.Conn.QueryContext(ctx, query, named)
}

func (c *pipeConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if err := c.flush(ctx); err != nil {
		return nil, err
	}
	s, err := c.Conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &pipeStmt{Stmt: s.(*stdlib.Stmt), c: c}, nil
}

// takePending queues the deferred statements on b, in their order.
func (tx *pipeTx) takePending(b *pgx.Batch) {
	for _, q := range tx.pending {
		b.Queue(q.sql, q.args...)
	}
	tx.pending = nil
}

// flush sends what waits in the connection's transaction, if any.
func (c *pipeConn) flush(ctx context.Context) error {
	if c.tx == nil {
		return nil
	}
	return c.tx.flush(ctx)
}

// pipeStmt is a prepared statement that runs after what waits in the transaction (a
// statement prepared earlier and run later would otherwise overtake it).
type pipeStmt struct {
	*stdlib.Stmt
	c *pipeConn
}

func (s *pipeStmt) ExecContext(ctx context.Context, named []driver.NamedValue) (driver.Result, error) {
	if err := s.c.flush(ctx); err != nil {
		return nil, err
	}
	return s.Stmt.ExecContext(ctx, named)
}

func (s *pipeStmt) QueryContext(ctx context.Context, named []driver.NamedValue) (driver.Rows, error) {
	if err := s.c.flush(ctx); err != nil {
		return nil, err
	}
	return s.Stmt.QueryContext(ctx, named)
}

// batch is what has to go out before the statement next (nil: nothing more): BEGIN when
// not yet sent, and the deferred statements, which it takes.
func (tx *pipeTx) batch(next *queued) *pgx.Batch {
	b := &pgx.Batch{}
	if !tx.begun {
		b.Queue("begin")
	}
	tx.takePending(b)
	if next != nil {
		b.Queue(next.sql, next.args...)
	}
	return b
}

// flush sends what waits (BEGIN, deferred statements) before a statement that cannot
// share its pipeline.
func (tx *pipeTx) flush(ctx context.Context) error {
	if tx.begun && len(tx.pending) == 0 {
		return nil
	}
	_, err := tx.send(ctx, tx.batch(nil))
	return err
}

// send runs b in one pipeline and returns its command tags. Whatever happened, begun
// then says whether the server holds a transaction open for this connection; any error
// marks the transaction failed (deferred statements of b may not have run).
func (tx *pipeTx) send(ctx context.Context, b *pgx.Batch) ([]pgconn.CommandTag, error) {
	conn := tx.c.Conn.Conn()
	br := conn.SendBatch(ctx, b)
	tags := make([]pgconn.CommandTag, 0, b.Len())
	var err error
	for range b.Len() {
		var tag pgconn.CommandTag
		if tag, err = br.Exec(); err != nil {
			break
		}
		tags = append(tags, tag)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	tx.begun = conn.PgConn().TxStatus() != 'I'
	if err != nil {
		tx.failed = true
		if pgconn.SafeToRetry(err) && !tx.begun {
			return nil, driver.ErrBadConn
		}
	}
	return tags, err
}

func (tx *pipeTx) Commit() error {
	defer func() { tx.c.tx = nil }()
	if tx.failed {
		return errors.Join(errTxFailed, tx.end())
	}
	if !tx.begun && len(tx.pending) == 0 {
		return nil // nothing was sent: there is nothing to commit
	}
	var b *pgx.Batch
	if tx.begun {
		b = tx.batch(&queued{sql: "commit"})
	} else {
		// Deferred statements alone: one pipeline is one implicit transaction.
		b = &pgx.Batch{}
		tx.takePending(b)
	}
	began := tx.begun
	tags, err := tx.send(tx.ctx, b)
	if err == nil && began && tags[len(tags)-1].String() == "ROLLBACK" {
		err = pgx.ErrTxCommitRollback // COMMIT of a transaction that had failed
	}
	if tx.begun {
		// The pipeline failed before its COMMIT: end the aborted transaction.
		return errors.Join(err, tx.end())
	}
	return err
}

func (tx *pipeTx) Rollback() error {
	defer func() { tx.c.tx = nil }()
	tx.pending = nil
	if !tx.begun {
		return nil
	}
	return tx.end()
}

// end rolls back the open transaction, even when the transaction's context is done (a
// connection left in a transaction would keep its locks in the pool). A connection that
// cannot be brought back is closed, and database/sql told so.
func (tx *pipeTx) end() error {
	conn := tx.c.Conn.Conn()
	if conn.IsClosed() {
		return driver.ErrBadConn
	}
	if conn.PgConn().TxStatus() == 'I' {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(tx.ctx), endTimeout)
	defer cancel()
	_, err := conn.Exec(ctx, "rollback")
	if err != nil || conn.PgConn().TxStatus() != 'I' {
		_ = tx.c.Conn.Close()
		return errors.Join(driver.ErrBadConn, err)
	}
	return nil
}
