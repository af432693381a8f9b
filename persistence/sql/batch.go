package sql

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Group commit for SQLite. Every write transaction on SQLite's one writer connection ends
// in a WAL commit that writes each page it touched; concurrent logins touch many of the
// same pages (the right-most leaves of tables and of time-ordered indexes, the upper
// levels of every B-tree). GroupTransaction lets them share one transaction: a writer
// goroutine takes whatever is waiting, runs each in its own SAVEPOINT and commits once.

// maxGroup bounds how many transactions share one commit.
const maxGroup = 64

type groupReq struct {
	ctx  context.Context
	fn   func(ctx context.Context) error
	done chan error
}

type grouper struct {
	txs, commits atomic.Int64
	once         sync.Once
	reqs         chan *groupReq
	quit         chan struct{}
	wg           sync.WaitGroup
}

func newGrouper() *grouper {
	return &grouper{reqs: make(chan *groupReq), quit: make(chan struct{})}
}

// GroupTransaction runs fn in a write transaction carried by the context it receives, as
// Transaction does: fn's error undoes fn's writes and is returned. On SQLite the
// transaction may be shared with concurrent callers (each in its own savepoint); either
// way GroupTransaction returns only once fn's writes are committed or undone. Inside an
// existing transaction it joins it. A panic in fn comes back as its error (on SQLite it
// would otherwise run on the writer goroutine). fn should only touch the database:
// other callers wait for it.
func (p *Persister) GroupTransaction(ctx context.Context, fn func(ctx context.Context) error) error {
	if p.txConnection(ctx) != nil || !p.sqlite {
		return p.Transaction(ctx, func(ctx context.Context) error { return runGuarded(ctx, fn) })
	}
	if p.closed.Load() {
		return errClosed
	}
	g := p.group
	g.once.Do(func() {
		g.wg.Add(1)
		go p.runGroups()
	})
	r := &groupReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case g.reqs <- r:
	case <-g.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once taken, the request is answered even if ctx ends: only then is it known
	// whether its writes were committed.
	return <-r.done
}

func (p *Persister) runGroups() {
	g := p.group
	defer g.wg.Done()
	batch := make([]*groupReq, 0, maxGroup)
	for {
		select {
		case r := <-g.reqs:
			batch = append(batch[:0], r)
		case <-g.quit:
			return
		}
	more:
		for len(batch) < maxGroup {
			select {
			case r := <-g.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		p.commitGroup(batch)
		clear(batch)
	}
}

// commitGroup runs a batch in one transaction and answers every request.
func (p *Persister) commitGroup(batch []*groupReq) {
	results := make([]error, len(batch))
	after := make([]afterCommit, len(batch)) // each request's own: its savepoint may roll back
	err := p.Transaction(context.Background(), func(txCtx context.Context) error {
		tx := p.txConnection(txCtx)
		for i, r := range batch {
			if err := r.ctx.Err(); err != nil {
				results[i] = err // gave up before it ran: nothing written
				continue
			}
			if _, err := p.execPrepared(txCtx, "SAVEPOINT grouped"); err != nil {
				return err
			}
			ctx := context.WithValue(context.WithValue(context.WithoutCancel(r.ctx), txKey{}, tx), afterCommitKey{}, &after[i])
			if results[i] = runGuarded(ctx, r.fn); results[i] != nil {
				if _, err := p.execPrepared(txCtx, "ROLLBACK TO grouped"); err != nil {
					return err
				}
			}
			if _, err := p.execPrepared(txCtx, "RELEASE grouped"); err != nil {
				return err
			}
		}
		return nil
	})
	// Counted before anyone is answered, so that a caller that reads the stats after
	// its transaction returned sees it.
	p.group.txs.Add(int64(len(batch)))
	p.group.commits.Add(1)
	for i, r := range batch {
		if err != nil && results[i] == nil {
			results[i] = fmt.Errorf("group commit: %w", err)
		}
		if results[i] == nil {
			after[i].run()
		}
		r.done <- results[i]
	}
}

// runGuarded turns a panic of fn into its error, so that one caller's bug cannot take
// the other callers' transactions with it.
func runGuarded(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic in transaction: %v", v)
		}
	}()
	return fn(ctx)
}

// GroupStats counts the transactions GroupTransaction has run through the writer
// goroutine and the commits they took.
func (p *Persister) GroupStats() (txs, commits int64) {
	return p.group.txs.Load(), p.group.commits.Load()
}

// stop ends the writer goroutine; requests not yet taken get errClosed.
func (g *grouper) stop() {
	select {
	case <-g.quit:
		return
	default:
	}
	close(g.quit)
	g.wg.Wait()
}
