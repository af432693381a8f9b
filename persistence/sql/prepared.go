package sql

import (
	"context"
	stdsql "database/sql"
	"errors"
	"sync"
)

// Hot paths (mobile login, token issue and lookup, audit batches) skip pop: pop builds,
// translates and prepares every query afresh and maps results by reflection, which on
// SQLite's single connection cost a third of a biometric login's database time. On
// SQLite their statements are prepared once per connection by database/sql and kept for
// the life of the Persister; inside a transaction carried by the context they are bound
// to it.

type preparer interface {
	PrepareContext(ctx context.Context, query string) (*stdsql.Stmt, error)
	querier
}

type stmtCache struct {
	db        preparer
	translate func(string) string
	mu        sync.RWMutex
	stmts     map[string]*stdsql.Stmt
	pending   map[string]bool
	closed    bool
}

func newStmtCache(db preparer, translate func(string) string) *stmtCache {
	return &stmtCache{db: db, translate: translate, stmts: map[string]*stdsql.Stmt{}, pending: map[string]bool{}}
}

func (c *stmtCache) lookup(q string) *stdsql.Stmt {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.stmts[q]
}

// get returns the statement for q (written with ? placeholders), preparing it on first use.
func (c *stmtCache) get(ctx context.Context, q string) (*stdsql.Stmt, error) {
	if s := c.lookup(q); s != nil {
		return s, nil
	}
	// Prepared without the request's deadline: the statement outlives the request.
	s, err := c.db.PrepareContext(context.WithoutCancel(ctx), c.translate(q))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev := c.stmts[q]; prev != nil || c.closed {
		_ = s.Close()
		return prev, nil
	}
	c.stmts[q] = s
	return s, nil
}

// warm prepares q in the background. A transaction that meets an unprepared statement
// cannot prepare it on the pool: on SQLite the transaction holds the only connection.
func (c *stmtCache) warm(q string) {
	c.mu.Lock()
	if c.pending[q] || c.closed {
		c.mu.Unlock()
		return
	}
	c.pending[q] = true
	c.mu.Unlock()
	go func() {
		_, _ = c.get(context.Background(), q)
		c.mu.Lock()
		delete(c.pending, q)
		c.mu.Unlock()
	}()
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for q, s := range c.stmts {
		errs = append(errs, s.Close())
		delete(c.stmts, q)
	}
	return errors.Join(errs...)
}

// prepared returns q's statement, bound to the context's transaction if there is one,
// and a function that releases it (SQLite only).
func (p *Persister) prepared(ctx context.Context, q string, read bool) (*stdsql.Stmt, func(), error) {
	tx := p.sqlTx(ctx)
	if tx == nil {
		cache := p.stmts
		if read {
			cache = p.reads
		}
		s, err := cache.get(ctx, q)
		if err != nil {
			return nil, nil, err
		}
		return s, func() {}, nil
	}
	var ts *stdsql.Stmt
	if s := p.stmts.lookup(q); s != nil {
		ts = tx.StmtContext(ctx, s)
	} else {
		p.stmts.warm(q)
		var err error
		if ts, err = tx.PrepareContext(ctx, p.stmts.translate(q)); err != nil {
			return nil, nil, err
		}
	}
	return ts, func() { _ = ts.Close() }, nil
}

func (p *Persister) sqlTx(ctx context.Context) *stdsql.Tx {
	tx := p.txConnection(ctx)
	if tx == nil || tx.TX == nil || tx.TX.Tx == nil {
		return nil
	}
	return tx.TX.Tx.Tx
}

// querier is what *sql.Tx and the pool share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (stdsql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *stdsql.Row
}

// direct is where a query goes unprepared: the context's transaction, or the pool.
// PostgreSQL's driver (pgx) already keeps prepared statements per connection, so there
// the hot queries go this way, as pop's queries do.
func (p *Persister) direct(ctx context.Context) querier {
	if tx := p.sqlTx(ctx); tx != nil {
		return tx
	}
	return p.stmts.db
}

// execPrepared runs a prepared statement and returns the number of rows it changed.
func (p *Persister) execPrepared(ctx context.Context, q string, args ...any) (int64, error) {
	if p.closed.Load() {
		return 0, errClosed
	}
	if p.sqlTx(ctx) == nil {
		var cancel context.CancelFunc
		ctx, cancel = p.bound(ctx)
		defer cancel()
	}
	var res stdsql.Result
	var err error
	if p.sqlite {
		s, release, perr := p.prepared(ctx, q, false)
		if perr != nil {
			return 0, perr
		}
		defer release()
		res, err = s.ExecContext(p.driverCtx(ctx), args...)
	} else {
		res, err = p.direct(ctx).ExecContext(ctx, p.stmts.translate(q), args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// getPrepared scans the one row of a prepared query into dest; no row is sql.ErrNoRows.
// Outside a transaction it reads from the read pool, which sees every committed write.
func (p *Persister) getPrepared(ctx context.Context, q string, args []any, dest ...any) error {
	if p.closed.Load() {
		return errClosed
	}
	if p.sqlTx(ctx) == nil {
		var cancel context.CancelFunc
		ctx, cancel = p.bound(ctx)
		defer cancel()
	}
	if !p.sqlite {
		return p.direct(ctx).QueryRowContext(ctx, p.stmts.translate(q), args...).Scan(dest...)
	}
	s, release, err := p.prepared(ctx, q, true)
	if err != nil {
		return err
	}
	defer release()
	return s.QueryRowContext(ctx, args...).Scan(dest...)
}
