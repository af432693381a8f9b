package sql

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/oauth2"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/selfservice/password"
)

// tokenTables maps token kinds to their tables; kinds are never taken from input.
var tokenTables = map[string]string{
	provider.KindAccess:  "oauth2_access",
	provider.KindRefresh: "oauth2_refresh",
	provider.KindCode:    "oauth2_code",
	provider.KindOIDC:    "oauth2_oidc",
	provider.KindPKCE:    "oauth2_pkce",
}

func tokenTable(kind string) string {
	t, ok := tokenTables[kind]
	if !ok {
		panic(fmt.Sprintf("unknown token kind %q", kind))
	}
	return t
}

const tokenColumns = "signature, request_id, requested_at, client_id, scope, granted_scope, requested_audience, granted_audience, form_data, session_data, subject, device_id, active, expires_at"

func (p *Persister) InsertToken(ctx context.Context, kind string, r *provider.TokenRow) error {
	args := []any{r.Signature, r.RequestID, dbTime(r.RequestedAt), r.ClientID, r.Scope, r.GrantedScope,
		r.RequestedAudience, r.GrantedAudience, r.Form, r.SessionData, r.Subject, r.DeviceID, r.Active, dbTimePtr(r.ExpiresAt)}
	// In a transaction the row goes out with the next statement or COMMIT: its
	// signature is random, so an error is the database's, and it fails the commit.
	q := p.deferrable("INSERT INTO " + tokenTable(kind) + " (" + tokenColumns)
	const values = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
	switch kind {
	case provider.KindRefresh:
		q += ", access_token_signature, passkey_id) VALUES (" + values + ", ?, "
		args = append(args, r.AccessSignature)
	case provider.KindAccess:
		q += ", passkey_id) VALUES (" + values + ", "
	default:
		q += ") VALUES (" + values + ")"
	}
	if kind == provider.KindRefresh || kind == provider.KindAccess {
		switch {
		case r.PasskeyID != nil:
			q += "?)"
			args = append(args, *r.PasskeyID)
		case r.PasskeyFromFamily:
			// Rotation: the family's older refresh rows are still there (deactivated).
			q += "(SELECT passkey_id FROM oauth2_refresh WHERE request_id = ? AND passkey_id IS NOT NULL LIMIT 1))"
			args = append(args, r.RequestID)
		default:
			q += "NULL)"
		}
	}
	_, err := p.execPrepared(ctx, q, args...)
	return err
}

func (p *Persister) GetToken(ctx context.Context, kind, signature string) (*provider.TokenRow, error) {
	var r provider.TokenRow
	err := p.getPrepared(ctx, "SELECT "+tokenColumns+" FROM "+tokenTable(kind)+" WHERE signature = ?", []any{signature},
		&r.Signature, &r.RequestID, &r.RequestedAt, &r.ClientID, &r.Scope, &r.GrantedScope, &r.RequestedAudience,
		&r.GrantedAudience, &r.Form, &r.SessionData, &r.Subject, &r.DeviceID, &r.Active, &r.ExpiresAt)
	if IsNotFound(err) {
		return nil, provider.ErrTokenNotFound
	}
	if err != nil {
		return nil, err
	}
	r.RequestedAt, r.ExpiresAt = r.RequestedAt.UTC(), utcPtr(r.ExpiresAt)
	return &r, nil
}

func (p *Persister) DeleteToken(ctx context.Context, kind, signature string) error {
	if kind == provider.KindRefresh && p.Dialect() == DialectPostgres {
		// fosite deletes a reused refresh token before it revokes the family: take the
		// owner's exclusive lock before the row's, as every revocation does, or a
		// rotation holding the shared lock and waiting for this row deadlocks with it.
		if _, err := p.execPrepared(ctx, "SELECT id FROM identities WHERE id = (SELECT "+subjectID+
			" FROM oauth2_refresh WHERE signature = ?) FOR NO KEY UPDATE", signature); err != nil {
			return err
		}
	}
	return p.Connection(ctx).RawQuery("DELETE FROM "+tokenTable(kind)+" WHERE signature = ?", signature).Exec()
}

func (p *Persister) DeactivateToken(ctx context.Context, kind, signature string) (bool, error) {
	q := "UPDATE " + tokenTable(kind) + " SET active = ? WHERE signature = ? AND active = ?"
	args := []any{false, signature, true}
	if kind == provider.KindRefresh {
		q = "UPDATE oauth2_refresh SET active = ?, first_used_at = ? WHERE signature = ? AND active = ?"
		args = []any{false, now(), signature, true}
		if err := p.refreshSubjectActive(ctx, signature); err != nil {
			return false, err
		}
	} else if kind == provider.KindCode && p.Dialect() == DialectPostgres {
		// Spending a code is the gate of a transaction that then mints tokens: take the
		// owner's shared lock first (see lockSubject).
		if _, err := p.execPrepared(ctx, "SELECT id FROM identities WHERE id = (SELECT "+subjectID+
			" FROM oauth2_code WHERE signature = ?) FOR SHARE", signature); err != nil {
			return false, err
		}
	}
	n, err := p.execPrepared(ctx, q, args...)
	return n == 1, err
}

// refreshSubjectActive refuses the rotation of a refresh token whose identity is not
// active. On PostgreSQL it also takes the identity's shared lock (see lockSubject), in
// one statement: rotating is the gate of a transaction that then mints tokens. A token
// unknown here is left to the rotation's update to refuse.
func (p *Persister) refreshSubjectActive(ctx context.Context, signature string) error {
	join := "i.id = r.subject" // SQLite compares by the integer column's affinity
	if !p.sqlite {
		n, err := p.execPrepared(ctx, "SELECT id FROM identities WHERE id = (SELECT "+subjectID+
			" FROM oauth2_refresh WHERE signature = ?) AND state = ? FOR SHARE", signature, identity.StateActive)
		if err != nil || n == 1 {
			return err
		}
		join = "i.id = " + subjectID
	}
	// SQLite, or no active identity found: is the subject an identity at all?
	var subject string
	var state *string
	err := p.getPrepared(ctx, "SELECT r.subject, i.state FROM oauth2_refresh r LEFT JOIN identities i ON "+join+
		" WHERE r.signature = ?", []any{signature}, &subject, &state)
	if IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	id, err := strconv.ParseInt(subject, 10, 64)
	if err != nil || id <= 0 {
		return nil // not an identity: nothing to check
	}
	if state == nil || *state != identity.StateActive {
		return provider.ErrSubjectInactive
	}
	if !p.sqlite {
		// Enabled between the two statements: take the lock after all.
		if ok, err := p.SubjectActive(ctx, id); err != nil || !ok {
			return cmp.Or(err, provider.ErrSubjectInactive)
		}
	}
	return nil
}

func (p *Persister) DeactivateFamily(ctx context.Context, kind, requestID string) (int64, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE "+tokenTable(kind)+" SET active = ? WHERE request_id = ? AND active = ?", false, requestID, true).ExecWithCount()
	return int64(n), err
}

// Complete revocation on PostgreSQL. A transaction that mints tokens (a login, a refresh
// rotation, a code exchange) passes a gate first (a conditional UPDATE of the refresh
// row or code, a pending login completed, a challenge consumed) and inserts the new rows
// after. In READ COMMITTED a revocation's UPDATE does not see rows inserted by a
// transaction still in flight, and waiting on the gate's row lock does not make it see
// them either (its snapshot predates them): a logout racing a refresh left the fresh
// tokens alive. Ordering the statements cannot close this for good (a client refreshing
// again with the fresh token opens a new gate on a row the revocation has not seen), so
// the identity row is the lock of all of an identity's tokens: every minting transaction
// takes it shared (SubjectActive, DeactivateToken) before its gate, every revocation
// takes it exclusively (lockSubject) before it touches a row. A mint in flight then
// commits before the revocation's statements take their snapshots, and a mint that comes
// later finds its gate closed or the identity disabled. SQLite runs one write
// transaction at a time, which orders them the same way.

// subjectID is the identity id of a token row's subject as SQL, NULL for the subjects
// that are not identities (OAuth2 clients acting for themselves).
const subjectID = "CASE WHEN subject ~ '^[0-9]{1,18}$' THEN CAST(subject AS BIGINT) END"

// lockSubject takes the exclusive lock of subject for a revocation (PostgreSQL).
func (p *Persister) lockSubject(ctx context.Context, subject string) error {
	if p.Dialect() != DialectPostgres {
		return nil
	}
	id, err := strconv.ParseInt(subject, 10, 64)
	if err != nil || id <= 0 {
		return nil // not an identity: no refresh tokens, no logins
	}
	_, err = p.execPrepared(ctx, "SELECT id FROM identities WHERE id = ? FOR NO KEY UPDATE", id)
	return err
}

func (p *Persister) SubjectActive(ctx context.Context, identityID int64) (bool, error) {
	if p.Dialect() == DialectPostgres {
		// The row count answers, so that the lock (often a transaction's first
		// statement) goes out with BEGIN.
		n, err := p.execPrepared(ctx, "SELECT id FROM identities WHERE id = ? AND state = ? FOR SHARE", identityID, identity.StateActive)
		return n == 1, err
	}
	q := "SELECT state FROM identities WHERE id = ?"
	var state string
	err := p.getPrepared(ctx, q, []any{identityID}, &state)
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return state == identity.StateActive, nil
}

func (p *Persister) RevokeFamily(ctx context.Context, requestID string) error {
	return p.Transaction(ctx, func(ctx context.Context) error {
		if p.Dialect() == DialectPostgres {
			// The owner of the family, when it is an identity (a family without refresh
			// rows is never rotated: nothing to wait for).
			if _, err := p.execPrepared(ctx, "SELECT id FROM identities WHERE id = (SELECT "+subjectID+
				" FROM oauth2_refresh WHERE request_id = ? LIMIT 1) FOR NO KEY UPDATE", requestID); err != nil {
				return err
			}
		}
		for _, kind := range []string{provider.KindRefresh, provider.KindAccess} {
			if _, err := p.DeactivateFamily(ctx, kind, requestID); err != nil {
				return err
			}
		}
		return nil
	})
}

// revokeWhere ends every live family of subject that matches cond (a condition on the
// token rows, with its args), counting the families that still had an active refresh
// token. Both go through the (subject, device_id) indexes.
func (p *Persister) revokeWhere(ctx context.Context, subject, cond string, args ...any) (n int, err error) {
	where := "subject = ? AND active = ?" + cond
	args = append([]any{subject, true}, args...)
	err = p.Transaction(ctx, func(ctx context.Context) error {
		if err := p.lockSubject(ctx, subject); err != nil {
			return err
		}
		c := p.Connection(ctx)
		if err := c.RawQuery("SELECT COUNT(DISTINCT request_id) FROM oauth2_refresh WHERE "+where, args...).First(&n); err != nil {
			return err
		}
		for _, t := range []string{"oauth2_refresh", "oauth2_access"} {
			if err := c.RawQuery("UPDATE "+t+" SET active = ? WHERE "+where, append([]any{false}, args...)...).Exec(); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

func (p *Persister) RevokeSubject(ctx context.Context, subject string) (n int, err error) {
	err = p.Transaction(ctx, func(ctx context.Context) error {
		if err := p.lockSubject(ctx, subject); err != nil {
			return err
		}
		c := p.Connection(ctx)
		if id, err := strconv.ParseInt(subject, 10, 64); err == nil {
			// Pending logins and hand-offs of the identity end with its sessions.
			if err := c.RawQuery("UPDATE login_flows SET state = ? WHERE identity_id = ? AND state = ?",
				password.FlowRevoked, id, password.FlowPending).Exec(); err != nil {
				return err
			}
			if err := c.RawQuery("UPDATE oauth2_flows SET state = ? WHERE identity_id = ? AND state IN (?, ?, ?)",
				oauth2.FlowRevoked, id, oauth2.FlowLoginAccepted, oauth2.FlowConsent, oauth2.FlowConsentAccepted).Exec(); err != nil {
				return err
			}
			// So do its browser login sessions (their tokens are among those revoked below).
			if err := c.RawQuery("DELETE FROM login_sessions WHERE identity_id = ?", id).Exec(); err != nil {
				return err
			}
		}
		if err := c.RawQuery("UPDATE oauth2_code SET active = ? WHERE subject = ? AND active = ?", false, subject, true).Exec(); err != nil {
			return err
		}
		n, err = p.revokeWhere(ctx, subject, "")
		return err
	})
	return n, err
}

func (p *Persister) RevokeDevice(ctx context.Context, subject, deviceID string) (int, error) {
	return p.revokeWhere(ctx, subject, " AND device_id = ?", deviceID)
}

func (p *Persister) RemoveAuthenticators(ctx context.Context, subject, kind, id string) (removed, sessions int, err error) {
	identityID, err := strconv.ParseInt(subject, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("remove authenticators: subject %q is not an identity", subject)
	}
	var table, set, column string
	switch kind {
	case provider.AuthenticatorDevice:
		table, set, column = "devices", "is_active = ?, fcm_token = NULL, updated_at = ?", "device_id"
	case provider.AuthenticatorPasskey:
		table, set, column = "webauthn_credentials", "is_active = ?, updated_at = ?", "passkey_id"
	default:
		return 0, 0, fmt.Errorf("remove authenticators: unknown kind %q", kind)
	}
	err = p.Transaction(ctx, func(ctx context.Context) error {
		// The lock first: a login with the authenticator in flight commits before.
		if err := p.lockSubject(ctx, subject); err != nil {
			return err
		}
		where, args := " WHERE identity_id = ? AND is_active = ?", []any{identityID, true}
		if id != "" {
			where, args = where+" AND id = ?", append(args, id)
		}
		c := p.Connection(ctx)
		n, err := c.RawQuery("UPDATE "+table+" SET "+set+where, append([]any{false, now()}, args...)...).ExecWithCount()
		if err != nil {
			return err
		}
		if removed = n; removed == 0 {
			return nil
		}
		cond, cargs := " AND "+column+" IS NOT NULL", []any{}
		if id != "" {
			cond, cargs = " AND "+column+" = ?", []any{id}
		}
		sessions, err = p.revokeWhere(ctx, subject, cond, cargs...)
		return err
	})
	return removed, sessions, err
}

func (p *Persister) ListSigningKeys(ctx context.Context) ([]provider.StoredKey, error) {
	var ks []provider.StoredKey
	if err := p.Connection(ctx).RawQuery("SELECT kid, alg, private_key, public_jwk, state, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid DESC").All(&ks); err != nil {
		return nil, err
	}
	for i := range ks {
		ks[i].CreatedAt, ks[i].RetiredAt = ks[i].CreatedAt.UTC(), utcPtr(ks[i].RetiredAt)
	}
	return ks, nil
}

// InsertSigningKey keeps created_at to the microsecond (not dbTime's second): it orders
// rotations, and the newest active key signs.
func (p *Persister) InsertSigningKey(ctx context.Context, k *provider.StoredKey) error {
	return p.Connection(ctx).RawQuery("INSERT INTO signing_keys (kid, alg, private_key, public_jwk, state, created_at, retired_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
		k.KID, k.Alg, k.PrivateKey, k.PublicJWK, k.State, k.CreatedAt.UTC().Truncate(time.Microsecond), k.RetiredAt).Exec()
}

// RetireSigningKeys retires only the active keys older than keep (created_at, then kid:
// the order in which KeyManager picks the signing key). Two replicas rotating at once
// (or starting at once on an empty database) would otherwise retire each other's new key
// and leave none active.
func (p *Persister) RetireSigningKeys(ctx context.Context, keep string, t time.Time) error {
	return p.Connection(ctx).RawQuery("UPDATE signing_keys SET state = ?, retired_at = ? WHERE state = ? AND kid <> ? AND EXISTS "+
		"(SELECT 1 FROM signing_keys k WHERE k.kid = ? AND (k.created_at > signing_keys.created_at OR (k.created_at = signing_keys.created_at AND k.kid > signing_keys.kid)))",
		provider.KeyRetired, dbTime(t), provider.KeyActive, keep, keep).Exec()
}
