//go:build sqlite

package sql

import (
	"errors"

	// The sqlite build tag compiles pop's SQLite dialect (mattn/go-sqlite3, cgo) into the binary.
	"github.com/mattn/go-sqlite3"
)

// isSQLiteUniqueViolation tells SQLite's UNIQUE and PRIMARY KEY constraint failures
// (both read "UNIQUE constraint failed") from its other constraint errors.
func isSQLiteUniqueViolation(err error) bool {
	var e sqlite3.Error
	return errors.As(err, &e) &&
		(e.ExtendedCode == sqlite3.ErrConstraintUnique || e.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}
