//go:build !sqlite

package sql

// isSQLiteUniqueViolation: without the sqlite build tag there is no SQLite driver, so no
// SQLite error to recognise.
func isSQLiteUniqueViolation(error) bool { return false }
