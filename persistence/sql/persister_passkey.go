package sql

import (
	"context"
	"encoding/base64"
	"time"

	"github.com/pvpipe/pvauth/selfservice/passkey"
)

func (p *Persister) UserHandle(ctx context.Context, identityID int64, create func() []byte) ([]byte, error) {
	var out []byte
	err := p.Transaction(ctx, func(ctx context.Context) error {
		c := p.Connection(ctx)
		var h string
		err := c.RawQuery("SELECT handle FROM webauthn_user_handles WHERE identity_id = ?", identityID).First(&h)
		if err == nil {
			out, err = base64.RawURLEncoding.DecodeString(h)
			return err
		}
		if !IsNotFound(err) {
			return err
		}
		b := create()
		if err := c.RawQuery("INSERT INTO webauthn_user_handles (identity_id, handle) VALUES (?, ?)", identityID, base64.RawURLEncoding.EncodeToString(b)).Exec(); err != nil {
			return err
		}
		out = b
		return nil
	})
	if IsUniqueViolation(err) {
		// Another request created it first.
		return p.UserHandle(ctx, identityID, create)
	}
	return out, err
}

func (p *Persister) IdentityByUserHandle(ctx context.Context, handle []byte) (int64, error) {
	var id int64
	err := p.Connection(ctx).RawQuery("SELECT identity_id FROM webauthn_user_handles WHERE handle = ?", base64.RawURLEncoding.EncodeToString(handle)).First(&id)
	if IsNotFound(err) {
		return 0, passkey.ErrNotFound
	}
	return id, err
}

const passkeySessionColumns = "id, kind, identity_id, name, session_data, used_at, expires_at, created_at"

func (p *Persister) CreatePasskeySession(ctx context.Context, s *passkey.Session) error {
	s.CreatedAt, s.ExpiresAt = now(), dbExpiry(s.ExpiresAt)
	return p.insertRow(ctx, "webauthn_sessions", passkeySessionColumns,
		s.ID, s.Kind, s.IdentityID, s.Name, s.Data, s.UsedAt, s.ExpiresAt, s.CreatedAt)
}

func (p *Persister) GetPasskeySession(ctx context.Context, id string) (*passkey.Session, error) {
	return getRow(p.Connection(ctx), passkey.ErrSessionNotFound, func(s *passkey.Session) {
		s.ExpiresAt, s.CreatedAt = s.ExpiresAt.UTC(), s.CreatedAt.UTC()
	}, "SELECT "+passkeySessionColumns+" FROM webauthn_sessions WHERE id = ?", id)
}

func (p *Persister) ConsumePasskeySession(ctx context.Context, id string, at time.Time) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE webauthn_sessions SET used_at = ? WHERE id = ? AND used_at IS NULL AND expires_at > ?",
		dbTime(at), id, dbTime(at)).ExecWithCount()
	return n == 1, err
}

const passkeyColumns = "id, identity_id, credential_id, name, credential_data, attestation_type, aaguid, sign_count, clone_warning, transports, backup_eligible, backup_state, is_active, last_used_at, created_at, updated_at"

func (p *Persister) CreatePasskey(ctx context.Context, c *passkey.Credential) error {
	c.CreatedAt, c.UpdatedAt, c.IsActive = now(), now(), true
	err := p.insertRow(ctx, "webauthn_credentials", passkeyColumns, c.ID, c.IdentityID, c.CredentialID, c.Name, c.Data, c.AttestationType, c.AAGUID, c.SignCount, c.CloneWarning,
		c.Transports, c.BackupEligible, c.BackupState, c.IsActive, c.LastUsedAt, c.CreatedAt, c.UpdatedAt)
	if IsUniqueViolation(err) {
		return passkey.ErrDuplicateCredential
	}
	return err
}

func normalizePasskey(c *passkey.Credential) {
	c.CreatedAt, c.UpdatedAt, c.LastUsedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC(), utcPtr(c.LastUsedAt)
}

func (p *Persister) ListPasskeys(ctx context.Context, identityID int64, activeOnly bool) ([]passkey.Credential, error) {
	return listOwned(p.Connection(ctx), "webauthn_credentials", passkeyColumns, identityID, activeOnly, normalizePasskey)
}

func (p *Persister) GetPasskeyByCredentialID(ctx context.Context, credentialID string) (*passkey.Credential, error) {
	return getRow(p.Connection(ctx), passkey.ErrNotFound, normalizePasskey,
		"SELECT "+passkeyColumns+" FROM webauthn_credentials WHERE credential_id = ?", credentialID)
}

func (p *Persister) UpdatePasskeyUse(ctx context.Context, id, data string, signCount int64, cloneWarning bool, at time.Time) error {
	return p.Connection(ctx).RawQuery("UPDATE webauthn_credentials SET credential_data = ?, sign_count = ?, clone_warning = ?, last_used_at = ?, updated_at = ? WHERE id = ?",
		data, signCount, cloneWarning, dbTime(at), dbTime(at), id).Exec()
}

func (p *Persister) RenamePasskey(ctx context.Context, identityID int64, id, name string) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE webauthn_credentials SET name = ?, updated_at = ? WHERE id = ? AND identity_id = ? AND is_active = ?",
		name, now(), id, identityID, true).ExecWithCount()
	return n == 1, err
}

func (p *Persister) DeactivatePasskey(ctx context.Context, identityID int64, id string) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE webauthn_credentials SET is_active = ?, updated_at = ? WHERE id = ? AND identity_id = ? AND is_active = ?",
		false, now(), id, identityID, true).ExecWithCount()
	return n == 1, err
}
