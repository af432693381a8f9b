package sql

import (
	"context"
	stdsql "database/sql"
	"database/sql/driver"
	"strings"

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
// transaction (a deferred insert's error is the answer of the statement it went with).
type pipeDriver struct{}

const pipeDriverName = "pvauth-pgx"

// deferred marks an INSERT that may wait for the transaction's next statement or its
// COMMIT: the caller needs no answer from it but success, and the transaction's later
// statements see its row (it goes before them). Outside a pipeDriver transaction the
// marked statement simply runs (the mark is a comment).
const deferred = "/* deferred */ "

func init() { stdsql.Register(pipeDriverName, pipeDriver{}) }

func (pipeDriver) Open(name string) (driver.Conn, error) {
	c, err := stdlib.GetDefaultDriver().Open(name)
	if err != nil {
		return nil, err
	}
	return &pipeConn{Conn: c.(*stdlib.Conn)}, nil
}

type pipeConn struct {
	*stdlib.Conn
	tx *pipeTx
}

// pipeTx is a transaction whose BEGIN may not have been sent yet.
type pipeTx struct {
	c       *pipeConn
	ctx     context.Context
	begun   bool
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

func args(named []driver.NamedValue) []any {
	a := make([]any, len(named))
	for i, v := range named {
		a[i] = v.Value
	}
	return a
}

func (c *pipeConn) ExecContext(ctx context.Context, query string, named []driver.NamedValue) (driver.Result, error) {
	tx := c.tx
	switch {
	case tx == nil:
		return c.Conn.ExecContext(ctx, query, named)
	case strings.HasPrefix(query, deferred):
		tx.pending = append(tx.pending, queued{query, args(named)})
		return driver.RowsAffected(0), nil
	case len(named) == 0:
		// Without arguments pgx sends the text by the simple protocol, which may hold
		// several statements (a migration does) and cannot share a pipeline.
		if err := tx.flush(ctx); err != nil {
			return nil, err
		}
		return c.Conn.ExecContext(ctx, query, named)
	}
	tags, err := tx.send(ctx, tx.batch(&queued{query, args(named)}))
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(tags[len(tags)-1].RowsAffected()), nil
}

func (c *pipeConn) QueryContext(ctx context.Context, query string, named []driver.NamedValue) (driver.Rows, error) {
	if c.tx != nil {
		if err := c.tx.flush(ctx); err != nil {
			return nil, err
		}
	}
	return c.Conn.QueryContext(ctx, query, named)
}

func (c *pipeConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if c.tx != nil {
		if err := c.tx.flush(ctx); err != nil {
			return nil, err
		}
	}
	return c.Conn.PrepareContext(ctx, query)
}

// batch is what has to go out before the statement next (nil: nothing more): BEGIN when
// not yet sent, and the deferred statements, which it takes.
func (tx *pipeTx) batch(next *queued) *pgx.Batch {
	b := &pgx.Batch{}
	if !tx.begun {
		b.Queue("begin")
	}
	for _, q := range tx.pending {
		b.Queue(q.sql, q.args...)
	}
	tx.pending = nil
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
// then says whether the server holds a transaction open for this connection.
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
	if err != nil && pgconn.SafeToRetry(err) && !tx.begun {
		return nil, driver.ErrBadConn
	}
	return tags, err
}

func (tx *pipeTx) Commit() error {
	defer func() { tx.c.tx = nil }()
	if !tx.begun && len(tx.pending) == 0 {
		return nil // nothing was sent: there is nothing to commit
	}
	var b *pgx.Batch
	if tx.begun {
		b = tx.batch(&queued{sql: "commit"})
	} else {
		// Deferred statements alone: one pipeline is one implicit transaction.
		b = &pgx.Batch{}
		for _, q := range tx.pending {
			b.Queue(q.sql, q.args...)
		}
		tx.pending = nil
	}
	began := tx.begun
	tags, err := tx.send(tx.ctx, b)
	if err == nil && began && tags[len(tags)-1].String() == "ROLLBACK" {
		err = pgx.ErrTxCommitRollback // COMMIT of a transaction that had failed
	}
	if tx.begun {
		// The pipeline failed before its COMMIT: end the aborted transaction (a
		// connection still in one is discarded by ResetSession).
		_, _ = tx.c.Conn.Conn().Exec(tx.ctx, "rollback")
	}
	return err
}

func (tx *pipeTx) Rollback() error {
	defer func() { tx.c.tx = nil }()
	tx.pending = nil
	if !tx.begun {
		return nil
	}
	_, err := tx.c.Conn.Conn().Exec(tx.ctx, "rollback")
	return err
}
