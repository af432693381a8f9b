package sql

import (
	stdsql "database/sql"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgUniqueViolation is PostgreSQL's SQLSTATE unique_violation (primary keys included).
const pgUniqueViolation = "23505"

// IsUniqueViolation reports a unique or primary key violation by the driver's error code
// (messages change with versions and locales): PostgreSQL's SQLSTATE 23505, SQLite's
// extended constraint codes (isSQLiteUniqueViolation, in the sqlite build only).
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == pgUniqueViolation
	}
	return isSQLiteUniqueViolation(err)
}

// IsNotFound reports "no rows" (pgx's ErrNoRows wraps database/sql's in recent versions;
// both are named so that neither depends on the other).
func IsNotFound(err error) bool {
	return errors.Is(err, stdsql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows)
}
