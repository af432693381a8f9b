// Package conformance checks a storage implementation against the contracts of pvauth's
// persister interfaces, as dex's storage/conformance does: each Run<Interface> takes a
// constructor of a fresh, migrated, empty store and runs every check of that interface
// on a store of its own. persistence/sql runs all of them on SQLite and PostgreSQL; a
// new implementation (or a new database) passes them before it is used.
package conformance

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// run runs each check as a subtest named after its function, on a fresh store.
func run[P any](t *testing.T, newStore func(t *testing.T) P, checks ...func(t *testing.T, p P)) {
	t.Helper()
	for _, c := range checks {
		t.Run(checkName(c), func(t *testing.T) { c(t, newStore(t)) })
	}
}

// checkName is a check function's name without its package ("identityList").
func checkName(fn any) string {
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	return name[strings.LastIndex(name, ".")+1:]
}

var seq atomic.Int64

// newIdentity creates an identity with a unique email and returns its id.
func newIdentity(t *testing.T, p IdentityCreator) int64 {
	t.Helper()
	return NewIdentity(t, p, fmt.Sprintf("conformance-%d@example.com", seq.Add(1))).ID
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
