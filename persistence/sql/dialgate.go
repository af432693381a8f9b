package sql

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// While PostgreSQL is away every request would dial it (measured: about 380 refused
// dials a second under load), which costs the database a storm of connection attempts
// when it comes back. The pool's dials pass a gate instead: once a connection attempt
// failed, one attempt at a time goes out, after a wait that doubles up to
// dialBackoffMax; the others fail at once (the request answers 503). A connection that
// completes its start-up (PostgreSQL answering "starting up" is a failure too) opens the
// gate again.

// errDialBackoff is the error of a dial held back by the gate.
var errDialBackoff = errors.New("database: not dialling, the last connection attempt failed (backing off)")

const (
	dialBackoffMin = 50 * time.Millisecond
	dialBackoffMax = time.Second
)

type dialGate struct {
	mu      sync.Mutex
	failing bool
	next    time.Time     // while failing, no attempt before next
	wait    time.Duration // the wait after the next failed attempt

	attempts, refused atomic.Int64
}

// dial wraps the driver's dial function.
func (g *dialGate) dial(inner pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !g.admit(time.Now()) {
			g.refused.Add(1)
			return nil, errDialBackoff
		}
		g.attempts.Add(1)
		c, err := inner(ctx, network, addr)
		if err != nil {
			g.failed(time.Now())
		}
		return c, err
	}
}

// afterNetConnect wraps the connection (after TLS, if any), so that its close before the
// start-up completed counts as a failed attempt.
func (g *dialGate) afterNetConnect(_ context.Context, _ *pgconn.Config, c net.Conn) (net.Conn, error) {
	return &gatedConn{Conn: c, g: g}, nil
}

// afterConnect opens the gate: the connection passed PostgreSQL's start-up.
func (g *dialGate) afterConnect(_ context.Context, pc *pgconn.PgConn) error {
	if c, ok := pc.Conn().(*gatedConn); ok {
		c.ready.Store(true)
	}
	g.mu.Lock()
	g.failing, g.wait = false, 0
	g.mu.Unlock()
	return nil
}

func (g *dialGate) admit(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.failing {
		return true
	}
	if now.Before(g.next) {
		return false
	}
	// This attempt is the probe: the next one waits, whatever this one finds.
	g.next = now.Add(g.wait)
	g.wait = min(2*g.wait, dialBackoffMax)
	return true
}

func (g *dialGate) failed(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failing {
		return // admit already moved the next attempt out
	}
	g.failing = true
	g.next = now.Add(dialBackoffMin)
	g.wait = 2 * dialBackoffMin
}

// gatedConn reports a connection closed before its start-up completed (refused by a
// server that is starting up or full) as a failed attempt.
type gatedConn struct {
	net.Conn
	g      *dialGate
	ready  atomic.Bool
	closed atomic.Bool
}

func (c *gatedConn) Close() error {
	if !c.closed.Swap(true) && !c.ready.Load() {
		c.g.failed(time.Now())
	}
	return c.Conn.Close()
}
