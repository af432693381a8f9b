package sql

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// pipeDB opens the pipelining driver on the test server with one connection (so that a
// connection left in a transaction shows at once) and a table of its own.
func pipeDB(t *testing.T) (*stdsql.DB, string) {
	t.Helper()
	dsn := os.Getenv("TEST_DATABASE_POSTGRESQL")
	if dsn == "" {
		t.Skip("TEST_DATABASE_POSTGRESQL not set")
	}
	db, err := stdsql.Open(pipeDriverName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	table := "pipe_" + uuid.NewString()[:8]
	if _, err := db.Exec(fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text); INSERT INTO %s VALUES (1, 'a')", table, table)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP TABLE " + table)
		_ = db.Close()
	})
	return db, table
}

// lockedElsewhere tells whether another session finds row 1 of table locked.
func lockedElsewhere(t *testing.T, table string) bool {
	t.Helper()
	c, err := pgx.Connect(context.Background(), os.Getenv("TEST_DATABASE_POSTGRESQL"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close(context.Background()) }()
	_, err = c.Exec(context.Background(), "SELECT id FROM "+table+" WHERE id = 1 FOR UPDATE NOWAIT")
	return err != nil
}

// A transaction whose context ends (its deadline, the client gone) and is then rolled
// back does not go back to the pool still open and holding its locks.
func TestPipeRollbackAfterCancel(t *testing.T) {
	db, table := pipeDB(t)
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE "+table+" SET v = $1 WHERE id = $2", "b", 1); err != nil {
			t.Fatal(err)
		}
		cancel()
		_ = tx.Rollback()
		if lockedElsewhere(t, table) {
			t.Fatal("a rolled-back transaction still holds its row lock")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE "+table+" SET v = $1 WHERE id = $2", "c", 1); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	_ = tx.Rollback()
	if lockedElsewhere(t, table) {
		t.Fatal("a transaction past its deadline still holds its row lock")
	}
	var v string
	if err := db.QueryRow("SELECT v FROM " + table + " WHERE id = 1").Scan(&v); err != nil || v != "a" {
		t.Fatalf("after the rollbacks: %q %v", v, err)
	}
}

// Deferred statements that never went out (the pipeline failed before sending: an
// argument pgx cannot encode) make the commit fail, even though the server's
// transaction is healthy and the caller went on; and a deferred statement keeps the
// values it was given, not what the caller changes afterwards.
func TestPipeDeferredStatements(t *testing.T) {
	db, table := pipeDB(t)
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" VALUES ($1, $2)", 10, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, deferred+"INSERT INTO "+table+" VALUES ($1::int4, $2)", int64(1)<<40, "bad"); err != nil {
		t.Fatalf("a deferred statement answered at once: %v", err)
	}
	_, _ = tx.ExecContext(ctx, deferred+"INSERT INTO "+table+" VALUES ($1, $2)", 11, "good")
	if _, err := tx.ExecContext(ctx, "SELECT id FROM "+table+" WHERE id = $1", 10); err == nil {
		t.Fatal("the statement the failed ones went with succeeded")
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("a transaction whose deferred statements were lost committed")
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table + " WHERE id IN (10, 11)").Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows of the failed transaction: %d %v", n, err)
	}

	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := "kept"
	buf := []byte("kept")
	if _, err := tx.ExecContext(ctx, deferred+"INSERT INTO "+table+" VALUES ($1, $2), ($3, convert_from($4, 'UTF8'))", 20, &v, 21, buf); err != nil {
		t.Fatal(err)
	}
	v, buf[0] = "changed", 'X'
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query("SELECT v FROM " + table + " WHERE id IN (20, 21)")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var got string
		if err := rows.Scan(&got); err != nil || got != "kept" {
			t.Fatalf("a deferred value: %q %v", got, err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d deferred rows committed, want 2", n)
	}
}
