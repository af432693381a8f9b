// Package conformance checks a storage implementation against the contracts of pvauth's
// persister interfaces, as dex's storage/conformance does: each Run<Interface> takes a
// constructor of a fresh, migrated, empty store and runs every check of that interface
// on a store of its own. persistence/sql runs all of them on SQLite and PostgreSQL; a
// new implementation (or a new database) passes them before it is used.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/identity"
)

// IdentityCreator is what a suite whose rows belong to an identity needs besides its own
// interface: identities to own them (foreign keys).
type IdentityCreator interface {
	CreateIdentity(ctx context.Context, i *identity.Identity) error
}

// check is one named contract check of a suite.
type check[P any] struct {
	name string
	run  func(t *testing.T, p P)
}

// run runs each check as a subtest on a fresh store.
func run[P any](t *testing.T, newStore func(t *testing.T) P, checks []check[P]) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.run(t, newStore(t)) })
	}
}

var seq atomic.Int64

// newIdentity creates an identity with a unique email and returns its id.
func newIdentity(t *testing.T, p IdentityCreator) int64 {
	t.Helper()
	return NewIdentity(t, p, fmt.Sprintf("conformance-%d-%s@example.com", seq.Add(1), uuid.NewString()[:8])).ID
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr fails unless err is want (errors.Is).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

// wantOK fails unless a conditional change reports want and no error.
func wantOK(t *testing.T, what string, ok bool, err error, want bool) {
	t.Helper()
	if err != nil || ok != want {
		t.Fatalf("%s: got %v, %v; want %v", what, ok, err, want)
	}
}

// wantUTC fails unless got is want to the second, in UTC: stores keep whole seconds and
// give times back in UTC.
func wantUTC(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if got.Location() != time.UTC || !got.Equal(want.UTC().Truncate(time.Second)) {
		t.Fatalf("%s: got %v, want %v UTC", what, got, want.UTC().Truncate(time.Second))
	}
}

// wantOrdered fails unless rows hold exactly the ids, oldest first and by id within a
// second (creation times are whole seconds).
func wantOrdered[T any](t *testing.T, what string, rows []T, key func(T) (time.Time, string), ids ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for i, r := range rows {
		at, id := key(r)
		if !want[id] {
			t.Fatalf("%s: unexpected row %s", what, id)
		}
		if i > 0 {
			prevAt, prevID := key(rows[i-1])
			if at.Before(prevAt) || (at.Equal(prevAt) && id < prevID) {
				t.Fatalf("%s: %s (%v) listed after %s (%v)", what, id, at, prevID, prevAt)
			}
		}
	}
	if len(rows) != len(ids) {
		t.Fatalf("%s: %d rows, want %d", what, len(rows), len(ids))
	}
}

func ptr[T any](v T) *T { return &v }
