// Package testdb gives tests real databases: an in-memory SQLite and, when the test
// command has started one, a fresh PostgreSQL database per call.
package testdb

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"

	sqlp "github.com/pvpipe/pvauth/persistence/sql"
)

// EnvPostgres names the variable the test command sets to its PostgreSQL server's DSN.
const EnvPostgres = "TEST_DATABASE_POSTGRESQL"

// ForEach runs fn as a subtest once per database kind ("sqlite", "postgres"), each with
// a fresh, empty database DSN. SQLite is a file, as `serve --dev` runs it (WAL, one
// writer and a pool of readers), not the single-connection "memory" database. Without
// TEST_DATABASE_POSTGRESQL the postgres subtest is skipped, or fails when CI is set.
func ForEach(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLiteFile(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t)) })
}

// ForEachKind runs fn as a subtest once per database kind, like ForEach, handing it a
// constructor of fresh databases of that kind instead of one database: a storage
// conformance suite gives each of its checks a store of its own. The PostgreSQL ones
// are copies of one database migrated up front (CREATE DATABASE ... TEMPLATE), which is
// much faster than migrating each.
func ForEachKind(t *testing.T, fn func(t *testing.T, newDSN func(t testing.TB) string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLiteFile) })
	t.Run("postgres", func(t *testing.T) {
		template := Postgres(t) // skips here once (or fails under CI), not in every check
		ctx := context.Background()
		p, err := sqlp.New(ctx, template)
		if err != nil {
			t.Fatalf("open postgres: %v", err)
		}
		err = p.MigrateUp(ctx)
		// A template must have no connections when it is copied.
		if cerr := p.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("migrate postgres: %v", err)
		}
		fn(t, func(t testing.TB) string { return createPostgres(t, template) })
	})
}

// SQLiteFile returns the DSN of a new SQLite file in the test's temporary directory.
func SQLiteFile(t testing.TB) string {
	t.Helper()
	return "sqlite://" + filepath.Join(t.TempDir(), "pvauth.sqlite") + "?_fk=true"
}

// Postgres creates a fresh database on the test server and returns its DSN; it is
// dropped when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	return createPostgres(t, "")
}

// createPostgres creates a database, a copy of the one at templateDSN when that is not
// empty, and returns its DSN; it is dropped when the test ends.
func createPostgres(t testing.TB, templateDSN string) string {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: run the tests with scripts/test.sh, which starts PostgreSQL", EnvPostgres)
		}
		t.Skipf("%s is not set; run scripts/test.sh for the PostgreSQL tests", EnvPostgres)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer admin.Close()
	name := "pvauth_test_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	create := "CREATE DATABASE " + name
	if templateDSN != "" {
		tu, err := url.Parse(templateDSN)
		if err != nil {
			t.Fatalf("postgres: bad template %q: %v", templateDSN, err)
		}
		create += " TEMPLATE " + strings.TrimPrefix(tu.Path, "/")
	}
	if _, err := admin.ExecContext(context.Background(), create); err != nil {
		t.Fatalf("postgres: create database: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("postgres: bad %s: %v", EnvPostgres, err)
	}
	u.Path = "/" + name
	return u.String()
}

// Persister opens dsn, migrates it and closes it when the test ends.
func Persister(t testing.TB, dsn string) *sqlp.Persister {
	t.Helper()
	ctx := context.Background()
	p, err := sqlp.New(ctx, dsn)
	if err != nil {
		t.Fatalf("open %s: %v", kind(dsn), err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := p.MigrateUp(ctx); err != nil {
		t.Fatalf("migrate %s: %v", kind(dsn), err)
	}
	return p
}

func kind(dsn string) string {
	if i := strings.Index(dsn, "://"); i > 0 {
		return dsn[:i]
	}
	return fmt.Sprint(dsn)
}
