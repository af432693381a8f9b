//go:build sqlite

package sql

// The sqlite build tag compiles pop's SQLite dialect (mattn/go-sqlite3, cgo) into the binary.
import _ "github.com/mattn/go-sqlite3"
