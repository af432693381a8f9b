package sql

import (
	"context"
	"strings"
	"time"

	"github.com/gobuffalo/pop/v6"
)

// insertRow inserts one row into table: args are the values of columns, in their order.
func (p *Persister) insertRow(ctx context.Context, table, columns string, args ...any) error {
	q := "INSERT INTO " + table + " (" + columns + ") VALUES (?" + strings.Repeat(", ?", len(args)-1) + ")"
	return p.Connection(ctx).RawQuery(q, args...).Exec()
}

// getRow reads the one row of q into a new T and normalizes it (times read back in UTC);
// no row is notFound, the domain's error.
func getRow[T any](c *pop.Connection, notFound error, normalize func(*T), q string, args ...any) (*T, error) {
	v := new(T)
	err := c.RawQuery(q, args...).First(v)
	if IsNotFound(err) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	normalize(v)
	return v, nil
}

// listOwned lists an identity's rows of table, only the active ones when activeOnly,
// oldest first, each normalized.
func listOwned[T any](c *pop.Connection, table, columns string, identityID int64, activeOnly bool, normalize func(*T)) ([]T, error) {
	q := "SELECT " + columns + " FROM " + table + " WHERE identity_id = ?"
	args := []any{identityID}
	if activeOnly {
		q += " AND is_active = ?"
		args = append(args, true)
	}
	rows := []T{}
	if err := c.RawQuery(q+" ORDER BY created_at, id", args...).All(&rows); err != nil {
		return nil, err
	}
	for i := range rows {
		normalize(&rows[i])
	}
	return rows, nil
}

// dbTimePtr is dbTime of a nullable time.
func dbTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := dbTime(*t)
	return &u
}

// utcPtr gives a nullable time read back from the database the UTC location.
func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
