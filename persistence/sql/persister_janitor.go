package sql

import (
	"context"
	"fmt"
	"time"
)

// expiringTables are the tables the janitor may clean, with their key column; the names
// are never taken from input.
var expiringTables = map[string]string{
	"device_challenges":    "id",
	"webauthn_sessions":    "id",
	"login_flows":          "id",
	"oauth2_flows":         "id",
	"oauth2_code":          "signature",
	"oauth2_oidc":          "signature",
	"oauth2_pkce":          "signature",
	"oauth2_access":        "signature",
	"oauth2_refresh":       "signature",
	"oauth2_ciba_requests": "id",
	"login_sessions":       "id",
}

// DeleteExpired deletes at most limit rows of table whose expires_at is before t, in
// one short statement (the expires_at indexes find them).
func (p *Persister) DeleteExpired(ctx context.Context, table string, before time.Time, limit int) (int64, error) {
	key, ok := expiringTables[table]
	if !ok {
		return 0, fmt.Errorf("janitor: unknown table %q", table)
	}
	q := "DELETE FROM " + table + " WHERE " + key + " IN (SELECT " + key + " FROM " + table +
		" WHERE expires_at IS NOT NULL AND expires_at < ? LIMIT ?)"
	n, err := p.Connection(ctx).RawQuery(q, dbTime(before), limit).ExecWithCount()
	return int64(n), err
}
