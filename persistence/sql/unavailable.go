package sql

import (
	"context"
	stdsql "database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pvpipe/pvauth/x"
)

func init() {
	// Handlers answer a database failure 503 wherever it surfaces (x.AsError), also
	// when it comes back wrapped by fosite or by a handler's 401.
	x.RegisterUnavailable(IsUnavailable)
}

// IsUnavailable reports whether err is the database failing, not the request: the server
// unreachable (refused, reset, timed out, closed under us), starting up, shutting down,
// out of connections or resources, a dial held back by the backoff, a pool or query that
// ran out of time, or this persister closed. SQLite's "database is locked" is not one: it
// means a long write, and busy_timeout already waited for it.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return unavailableCode(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr):
		return true
	case errors.Is(err, errDialBackoff), errors.Is(err, errClosed):
		return true
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return true
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, stdsql.ErrConnDone),
		errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return false
}

// unavailableCode tells the SQLSTATEs of a server that cannot serve now from those of a
// query that is wrong (constraint violations and the like stay what they are).
func unavailableCode(code string) bool {
	switch code {
	case "57P01", // admin_shutdown: pg_ctl stop -m fast, a failover
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now: starting up, or in recovery
		"57014": // query_canceled: statement_timeout
		return true
	}
	// 08: connection exceptions; 53: insufficient resources (too many connections, disk
	// full, out of memory); 58: system errors (I/O).
	return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") || strings.HasPrefix(code, "58")
}
