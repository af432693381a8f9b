package sql_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/persistence/conformance"
	sqlp "github.com/pvpipe/pvauth/persistence/sql"
)

// TestPipelinedTransactions: on PostgreSQL a transaction's BEGIN goes out with its first
// statement and its audit events with its COMMIT. What commits together is unchanged:
// a change and its event commit or fail together (also when the event is what fails,
// and when the event is all there is), a statement that failed fails the commit even
// when the caller went on, a transaction reads its own writes, and the pool's
// connections come back clean from every failure (more failures than the pool holds).
func TestPipelinedTransactions(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		p := testdb.Persister(t, dsn)
		ctx := context.Background()
		exec := func(ctx context.Context, q string, args ...any) error {
			return p.Connection(ctx).RawQuery(q, args...).Exec()
		}
		insert := "INSERT INTO audit_events (id, type, ip, result, created_at) VALUES (?, ?, ?, ?, ?)"
		row := func(id string) []any {
			return []any{id, "test.row", "127.0.0.1", "success", time.Now().UTC().Truncate(time.Second)}
		}
		event := func(id string) audit.Event {
			return audit.Event{ID: id, Type: "test.event", Result: audit.ResultSuccess, CreatedAt: time.Now()}
		}
		taken := insertEvent(t, ctx, p)

		for range 40 {
			// The change goes out with BEGIN, its event (a duplicate id) with COMMIT.
			change := uuid.NewString()
			err := p.Transaction(ctx, func(ctx context.Context) error {
				if err := exec(ctx, insert, row(change)...); err != nil {
					return err
				}
				return p.InsertAuditEvents(ctx, []audit.Event{event(taken)})
			})
			if !sqlp.IsUniqueViolation(err) {
				t.Fatalf("a failing event at commit: %v", err)
			}
			if eventExists(t, ctx, p, change) {
				t.Fatal("the change of a transaction whose event failed was committed")
			}

			// Events alone: all or none.
			first := uuid.NewString()
			err = p.Transaction(ctx, func(ctx context.Context) error {
				if err := p.InsertAuditEvents(ctx, []audit.Event{event(first)}); err != nil {
					return err
				}
				return p.InsertAuditEvents(ctx, []audit.Event{event(taken)})
			})
			if !sqlp.IsUniqueViolation(err) || eventExists(t, ctx, p, first) {
				t.Fatalf("events alone, the second failing: %v (first committed: %v)", err, eventExists(t, ctx, p, first))
			}

			// An error before anything was sent.
			want := errors.New("refused")
			if err := p.Transaction(ctx, func(context.Context) error { return want }); !errors.Is(err, want) {
				t.Fatalf("an empty transaction's error: %v", err)
			}
		}

		// A statement whose failure the caller ignores still fails the commit on
		// PostgreSQL (the transaction is aborted); SQLite carries on without it.
		kept := uuid.NewString()
		err := p.Transaction(ctx, func(ctx context.Context) error {
			if err := exec(ctx, insert, row(kept)...); err != nil {
				return err
			}
			_ = exec(ctx, insert, row(taken)...)
			return nil
		})
		if p.Dialect() == sqlp.DialectPostgres {
			if err == nil || eventExists(t, ctx, p, kept) {
				t.Fatalf("a transaction with a failed statement committed: %v", err)
			}
		} else if err != nil || !eventExists(t, ctx, p, kept) {
			t.Fatalf("SQLite: %v", err)
		}

		// A transaction that starts with a query, reads its own writes, and commits its
		// change and its event.
		change, ev := uuid.NewString(), uuid.NewString()
		err = p.Transaction(ctx, func(ctx context.Context) error {
			if eventExists(t, ctx, p, change) {
				t.Error("the row exists before it is written")
			}
			if err := exec(ctx, insert, row(change)...); err != nil {
				return err
			}
			if !eventExists(t, ctx, p, change) {
				t.Error("the transaction does not see its own write")
			}
			return p.InsertAuditEvents(ctx, []audit.Event{event(ev)})
		})
		if err != nil || !eventExists(t, ctx, p, change) || !eventExists(t, ctx, p, ev) {
			t.Fatalf("a change and its event: %v", err)
		}

		// Token rows wait for the next statement: a read in the transaction sees them,
		// and a failing one (a duplicate signature) is the answer of the statement it
		// went out with, and undoes the transaction.
		tok := conformance.NewTokenRow("pipe-"+uuid.NewString(), "fam-"+uuid.NewString(), "client", nil)
		err = p.Transaction(ctx, func(ctx context.Context) error {
			if err := p.InsertToken(ctx, provider.KindAccess, tok); err != nil {
				return err
			}
			got, err := p.GetToken(ctx, provider.KindAccess, tok.Signature)
			if err != nil || got.RequestID != tok.RequestID {
				t.Errorf("the transaction's own token: %v %+v", err, got)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		other := uuid.NewString()
		err = p.Transaction(ctx, func(ctx context.Context) error {
			if err := p.InsertToken(ctx, provider.KindAccess, tok); err != nil && p.Dialect() == sqlp.DialectPostgres {
				t.Errorf("a deferred insert answered at once: %v", err)
			} else if err != nil {
				return err
			}
			return exec(ctx, insert, row(other)...)
		})
		if !sqlp.IsUniqueViolation(err) || eventExists(t, ctx, p, other) {
			t.Fatalf("a duplicate token row: %v (the statement after it committed: %v)", err, eventExists(t, ctx, p, other))
		}
	})
}
