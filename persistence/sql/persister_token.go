package sql

import (
	"context"
	"fmt"
	"time"

	"github.com/pvpipe/pvauth/session"
)

var (
	_ session.TokenPersister = (*Persister)(nil)
	_ session.KeyPersister   = (*Persister)(nil)
)

// tokenTables maps token kinds to their tables; kinds are never taken from input.
var tokenTables = map[string]string{
	session.KindAccess:  "oauth2_access",
	session.KindRefresh: "oauth2_refresh",
	session.KindCode:    "oauth2_code",
	session.KindOIDC:    "oauth2_oidc",
	session.KindPKCE:    "oauth2_pkce",
}

func tokenTable(kind string) string {
	t, ok := tokenTables[kind]
	if !ok {
		panic(fmt.Sprintf("unknown token kind %q", kind))
	}
	return t
}

const tokenColumns = "signature, request_id, requested_at, client_id, scope, granted_scope, requested_audience, granted_audience, form_data, session_data, subject, device_id, active, expires_at"

func (p *Persister) InsertToken(ctx context.Context, kind string, r *session.TokenRow) error {
	var exp *time.Time
	if r.ExpiresAt != nil {
		t := dbTime(*r.ExpiresAt)
		exp = &t
	}
	args := []any{r.Signature, r.RequestID, dbTime(r.RequestedAt), r.ClientID, r.Scope, r.GrantedScope,
		r.RequestedAudience, r.GrantedAudience, r.Form, r.SessionData, r.Subject, r.DeviceID, r.Active, exp}
	q := "INSERT INTO " + tokenTable(kind) + " (" + tokenColumns
	if kind == session.KindRefresh {
		q += ", access_token_signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
		args = append(args, r.AccessSignature)
	} else {
		q += ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	}
	_, err := p.execPrepared(ctx, q, args...)
	return err
}

func (p *Persister) GetToken(ctx context.Context, kind, signature string) (*session.TokenRow, error) {
	var r session.TokenRow
	err := p.getPrepared(ctx, "SELECT "+tokenColumns+" FROM "+tokenTable(kind)+" WHERE signature = ?", []any{signature},
		&r.Signature, &r.RequestID, &r.RequestedAt, &r.ClientID, &r.Scope, &r.GrantedScope, &r.RequestedAudience,
		&r.GrantedAudience, &r.Form, &r.SessionData, &r.Subject, &r.DeviceID, &r.Active, &r.ExpiresAt)
	if IsNotFound(err) {
		return nil, session.ErrTokenNotFound
	}
	if err != nil {
		return nil, err
	}
	r.RequestedAt = r.RequestedAt.UTC()
	if r.ExpiresAt != nil {
		t := r.ExpiresAt.UTC()
		r.ExpiresAt = &t
	}
	return &r, nil
}

func (p *Persister) DeleteToken(ctx context.Context, kind, signature string) error {
	return p.Connection(ctx).RawQuery("DELETE FROM "+tokenTable(kind)+" WHERE signature = ?", signature).Exec()
}

func (p *Persister) DeactivateToken(ctx context.Context, kind, signature string) (bool, error) {
	q := "UPDATE " + tokenTable(kind) + " SET active = ? WHERE signature = ? AND active = ?"
	args := []any{false, signature, true}
	if kind == session.KindRefresh {
		q = "UPDATE oauth2_refresh SET active = ?, first_used_at = ? WHERE signature = ? AND active = ?"
		args = []any{false, now(), signature, true}
	}
	n, err := p.execPrepared(ctx, q, args...)
	return n == 1, err
}

func (p *Persister) DeactivateFamily(ctx context.Context, kind, requestID string) (int64, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE "+tokenTable(kind)+" SET active = ? WHERE request_id = ? AND active = ?", false, requestID, true).ExecWithCount()
	return int64(n), err
}

// revokeWhere ends every live family of subject (of one of its devices when deviceID is
// set), counting the families that still had an active refresh token. Both go through
// the (subject, device_id) indexes.
func (p *Persister) revokeWhere(ctx context.Context, subject string, deviceID *string) (n int, err error) {
	where, args := "subject = ? AND active = ?", []any{subject, true}
	if deviceID != nil {
		where, args = "subject = ? AND device_id = ? AND active = ?", []any{subject, *deviceID, true}
	}
	err = p.Transaction(ctx, func(ctx context.Context) error {
		c := p.Connection(ctx)
		var count int
		if err := c.RawQuery("SELECT COUNT(DISTINCT request_id) FROM oauth2_refresh WHERE "+where, args...).First(&count); err != nil {
			return err
		}
		n = count
		if err := c.RawQuery("UPDATE oauth2_refresh SET active = ? WHERE "+where, append([]any{false}, args...)...).Exec(); err != nil {
			return err
		}
		return c.RawQuery("UPDATE oauth2_access SET active = ? WHERE "+where, append([]any{false}, args...)...).Exec()
	})
	return n, err
}

func (p *Persister) RevokeSubject(ctx context.Context, subject string) (int, error) {
	return p.revokeWhere(ctx, subject, nil)
}

func (p *Persister) RevokeDevice(ctx context.Context, subject, deviceID string) (int, error) {
	return p.revokeWhere(ctx, subject, &deviceID)
}

func (p *Persister) DeleteExpiredTokens(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for _, t := range []string{"oauth2_access", "oauth2_refresh", "oauth2_code", "oauth2_oidc", "oauth2_pkce"} {
		n, err := p.Connection(ctx).RawQuery("DELETE FROM "+t+" WHERE expires_at IS NOT NULL AND expires_at < ?", dbTime(before)).ExecWithCount()
		if err != nil {
			return total, err
		}
		total += int64(n)
	}
	return total, nil
}

func (p *Persister) ListSigningKeys(ctx context.Context) ([]session.StoredKey, error) {
	var ks []session.StoredKey
	if err := p.Connection(ctx).RawQuery("SELECT kid, alg, private_key, public_jwk, state, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid DESC").All(&ks); err != nil {
		return nil, err
	}
	for i := range ks {
		ks[i].CreatedAt = ks[i].CreatedAt.UTC()
		if ks[i].RetiredAt != nil {
			t := ks[i].RetiredAt.UTC()
			ks[i].RetiredAt = &t
		}
	}
	return ks, nil
}

func (p *Persister) InsertSigningKey(ctx context.Context, k *session.StoredKey) error {
	return p.Connection(ctx).RawQuery("INSERT INTO signing_keys (kid, alg, private_key, public_jwk, state, created_at, retired_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
		k.KID, k.Alg, k.PrivateKey, k.PublicJWK, k.State, dbTime(k.CreatedAt), k.RetiredAt).Exec()
}

func (p *Persister) RetireSigningKeys(ctx context.Context, keep string, t time.Time) error {
	return p.Connection(ctx).RawQuery("UPDATE signing_keys SET state = ?, retired_at = ? WHERE state = ? AND kid <> ?",
		session.KeyRetired, dbTime(t), session.KeyActive, keep).Exec()
}
