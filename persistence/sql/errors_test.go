package sql_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testdb"
	sqlp "github.com/pvpipe/pvauth/persistence/sql"
)

// TestUniqueViolationByDriverCode provokes real constraint failures on both databases:
// a duplicate primary key and a duplicate unique index are unique violations (also
// wrapped, and inside a transaction); NOT NULL and foreign key failures are not, and
// neither is an error that merely reads like one.
func TestUniqueViolationByDriverCode(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ctx := context.Background()
		exec := func(q string, args ...any) error { return p.Connection(ctx).RawQuery(q, args...).Exec() }

		id := insertEvent(t, ctx, p)
		pk := exec("INSERT INTO audit_events (id, type, result, created_at) VALUES (?, ?, ?, ?)", id, "dup", "failure", time.Now().UTC())
		if !sqlp.IsUniqueViolation(pk) || !sqlp.IsUniqueViolation(fmt.Errorf("wrapped: %w", pk)) {
			t.Fatalf("duplicate primary key: %v", pk)
		}

		ins := "INSERT INTO identities (email, email_normalized, password_hash, traits, permissions, is_super_admin, state, totp_last_step, passkey_prompt_status, created_at, updated_at) VALUES (?, ?, '', '{}', '[]', ?, 'active', 0, 'pending', ?, ?)"
		now := time.Now().UTC().Truncate(time.Second)
		if err := exec(ins, "u@example.com", "u@example.com", false, now, now); err != nil {
			t.Fatal(err)
		}
		uniq := p.Transaction(ctx, func(ctx context.Context) error {
			return p.Connection(ctx).RawQuery(ins, "U@example.com", "u@example.com", false, now, now).Exec()
		})
		if !sqlp.IsUniqueViolation(uniq) {
			t.Fatalf("duplicate unique index in a transaction: %v", uniq)
		}

		notNull := exec("INSERT INTO audit_events (id, type, result, created_at) VALUES (?, NULL, ?, ?)", "not-null", "failure", now)
		fk := exec("INSERT INTO webauthn_user_handles (identity_id, handle) VALUES (?, ?)", 999999, "h")
		for what, err := range map[string]error{"NOT NULL": notNull, "foreign key": fk} {
			if err == nil || sqlp.IsUniqueViolation(err) {
				t.Fatalf("%s failure: %v (IsUniqueViolation=%v)", what, err, sqlp.IsUniqueViolation(err))
			}
		}
		if sqlp.IsUniqueViolation(errors.New("UNIQUE constraint failed: x.y")) ||
			sqlp.IsUniqueViolation(errors.New(`ERROR: duplicate key value violates unique constraint (SQLSTATE 23505)`)) {
			t.Fatal("a message alone is not a driver's unique violation")
		}
	})
}
