package sql

import (
	"context"
	stdsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/identity"
)

// identityColumns is the column list every identity SELECT reads, in identityRow order.
const identityColumns = `id, email, password_hash, traits, permissions, is_super_admin, state,
	totp_secret, totp_last_step, passkey_prompt_status, created_at, updated_at`

// maxIdentityPage caps a listing whatever the caller asks for.
const maxIdentityPage = 1000

type identityRow struct {
	ID                  int64             `db:"id"`
	Email               string            `db:"email"`
	PasswordHash        string            `db:"password_hash"`
	Traits              string            `db:"traits"`
	Permissions         string            `db:"permissions"`
	IsSuperAdmin        bool              `db:"is_super_admin"`
	State               string            `db:"state"`
	TOTPSecret          stdsql.NullString `db:"totp_secret"`
	TOTPLastStep        int64             `db:"totp_last_step"`
	PasskeyPromptStatus string            `db:"passkey_prompt_status"`
	CreatedAt           time.Time         `db:"created_at"`
	UpdatedAt           time.Time         `db:"updated_at"`
}

type idRow struct {
	ID int64 `db:"id"`
}

func (r *identityRow) toIdentity() (*identity.Identity, error) {
	i := &identity.Identity{
		ID:                  r.ID,
		Email:               r.Email,
		IsSuperAdmin:        r.IsSuperAdmin,
		State:               r.State,
		CreatedAt:           r.CreatedAt.UTC(),
		UpdatedAt:           r.UpdatedAt.UTC(),
		PasswordHash:        r.PasswordHash,
		PasskeyPromptStatus: r.PasskeyPromptStatus,
		TOTPLastStep:        r.TOTPLastStep,
	}
	if r.TOTPSecret.Valid {
		i.TOTPSecret = r.TOTPSecret.String
	}
	i.MFAEnabled = i.TOTPSecret != ""
	traits := strings.TrimSpace(r.Traits)
	if traits == "" || traits == "null" {
		traits = "{}"
	}
	i.Traits = json.RawMessage(traits)
	i.Permissions = []string{}
	if p := strings.TrimSpace(r.Permissions); p != "" && p != "null" {
		if err := json.Unmarshal([]byte(p), &i.Permissions); err != nil {
			return nil, fmt.Errorf("identity %d: stored permissions are not a JSON string array: %w", r.ID, err)
		}
		if i.Permissions == nil {
			i.Permissions = []string{}
		}
	}
	return i, nil
}

// encodeIdentityDocs returns the TEXT forms of traits and permissions, never "null".
func encodeIdentityDocs(i *identity.Identity) (traits, perms string, err error) {
	traits = strings.TrimSpace(string(i.Traits))
	if traits == "" || traits == "null" {
		traits = "{}"
	}
	if !json.Valid([]byte(traits)) {
		return "", "", errors.New("identity traits are not valid JSON")
	}
	p := i.Permissions
	if p == nil {
		p = []string{}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return "", "", err
	}
	return traits, string(b), nil
}

func nullString(s string) stdsql.NullString {
	return stdsql.NullString{String: s, Valid: s != ""}
}

// CreateIdentity inserts i and fills in its generated id and timestamps. Empty state,
// prompt status, traits and permissions get their defaults.
func (p *Persister) CreateIdentity(ctx context.Context, i *identity.Identity) error {
	if i.State == "" {
		i.State = identity.StateActive
	}
	if i.PasskeyPromptStatus == "" {
		i.PasskeyPromptStatus = identity.PromptPending
	}
	traits, perms, err := encodeIdentityDocs(i)
	if err != nil {
		return err
	}
	t := now()
	var row idRow
	err = p.Connection(ctx).RawQuery(`INSERT INTO identities
		(email, email_normalized, password_hash, traits, permissions, is_super_admin, state,
		 totp_secret, totp_last_step, passkey_prompt_status, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		i.Email, identity.NormalizeEmail(i.Email), i.PasswordHash, traits, perms, i.IsSuperAdmin, i.State,
		nullString(i.TOTPSecret), i.TOTPLastStep, i.PasskeyPromptStatus, t, t,
	).First(&row)
	if err != nil {
		if IsUniqueViolation(err) {
			return identity.ErrDuplicateEmail
		}
		return fmt.Errorf("insert identity: %w", err)
	}
	i.ID = row.ID
	i.CreatedAt, i.UpdatedAt = t, t
	i.Traits = json.RawMessage(traits)
	if i.Permissions == nil {
		i.Permissions = []string{}
	}
	i.MFAEnabled = i.TOTPSecret != ""
	return nil
}

func (p *Persister) getIdentityWhere(ctx context.Context, where string, args ...any) (*identity.Identity, error) {
	var row identityRow
	err := p.Connection(ctx).RawQuery("SELECT "+identityColumns+" FROM identities WHERE "+where, args...).First(&row)
	if err != nil {
		if IsNotFound(err) {
			return nil, identity.ErrNotFound
		}
		return nil, fmt.Errorf("select identity: %w", err)
	}
	return row.toIdentity()
}

// GetIdentity loads an identity by id.
func (p *Persister) GetIdentity(ctx context.Context, id int64) (*identity.Identity, error) {
	return p.getIdentityWhere(ctx, "id = ?", id)
}

// FindIdentityByEmail loads an identity by email, compared in normalized form.
func (p *Persister) FindIdentityByEmail(ctx context.Context, email string) (*identity.Identity, error) {
	return p.getIdentityWhere(ctx, "email_normalized = ?", identity.NormalizeEmail(email))
}

// ListIdentities returns up to PageSize identities with an id above AfterID, by id.
func (p *Persister) ListIdentities(ctx context.Context, lp identity.ListParams) ([]identity.Identity, error) {
	limit := lp.PageSize
	if limit <= 0 {
		limit = 100
	}
	if limit > maxIdentityPage {
		limit = maxIdentityPage
	}
	q := "SELECT " + identityColumns + " FROM identities WHERE id > ?"
	args := []any{lp.AfterID}
	if lp.Email != "" {
		q += " AND email_normalized = ?"
		args = append(args, identity.NormalizeEmail(lp.Email))
	}
	q += " ORDER BY id LIMIT ?"
	args = append(args, limit)
	var rows []identityRow
	if err := p.Connection(ctx).RawQuery(q, args...).All(&rows); err != nil {
		return nil, fmt.Errorf("list identities: %w", err)
	}
	out := make([]identity.Identity, 0, len(rows))
	for k := range rows {
		i, err := rows[k].toIdentity()
		if err != nil {
			return nil, err
		}
		out = append(out, *i)
	}
	return out, nil
}

// UpdateIdentity stores email, traits, permissions, isSuperAdmin and state, and sets
// i.UpdatedAt.
func (p *Persister) UpdateIdentity(ctx context.Context, i *identity.Identity) error {
	traits, perms, err := encodeIdentityDocs(i)
	if err != nil {
		return err
	}
	t := now()
	n, err := p.Connection(ctx).RawQuery(`UPDATE identities SET email = ?, email_normalized = ?, traits = ?,
		permissions = ?, is_super_admin = ?, state = ?, updated_at = ? WHERE id = ?`,
		i.Email, identity.NormalizeEmail(i.Email), traits, perms, i.IsSuperAdmin, i.State, t, i.ID,
	).ExecWithCount()
	if err != nil {
		if IsUniqueViolation(err) {
			return identity.ErrDuplicateEmail
		}
		return fmt.Errorf("update identity: %w", err)
	}
	if n == 0 {
		return identity.ErrNotFound
	}
	i.UpdatedAt = t
	i.Traits = json.RawMessage(traits)
	if i.Permissions == nil {
		i.Permissions = []string{}
	}
	return nil
}

// DeleteIdentity deletes an identity; its credentials go with it (ON DELETE CASCADE).
func (p *Persister) DeleteIdentity(ctx context.Context, id int64) error {
	return p.execOnIdentity(ctx, "delete identity", "DELETE FROM identities WHERE id = ?", id)
}

// execOnIdentity runs a statement that changes one identity's row; a statement that
// changed no row is identity.ErrNotFound, a failing one is wrapped with what.
func (p *Persister) execOnIdentity(ctx context.Context, what, q string, args ...any) error {
	n, err := p.Connection(ctx).RawQuery(q, args...).ExecWithCount()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return identity.ErrNotFound
	}
	return nil
}

// UpdatePasswordHash replaces the password hash ("" removes password login).
func (p *Persister) UpdatePasswordHash(ctx context.Context, id int64, hash string) error {
	return p.execOnIdentity(ctx, "update password hash", "UPDATE identities SET password_hash = ?, updated_at = ? WHERE id = ?",
		hash, now(), id)
}

// UpdatePasskeyPromptStatus stores the user's answer to the passkey prompt.
func (p *Persister) UpdatePasskeyPromptStatus(ctx context.Context, id int64, status string) error {
	return p.execOnIdentity(ctx, "update passkey prompt status", "UPDATE identities SET passkey_prompt_status = ? WHERE id = ?",
		status, id)
}

// identityExists tells ErrNotFound apart from a failed condition after a 0-row UPDATE.
func (p *Persister) identityExists(ctx context.Context, id int64) (bool, error) {
	var row idRow
	err := p.Connection(ctx).RawQuery("SELECT id FROM identities WHERE id = ?", id).First(&row)
	if IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("select identity: %w", err)
	}
	return true, nil
}

// EnrollTOTP sets the secret (only when none is set), records step as used and replaces
// the recovery codes, in one transaction.
func (p *Persister) EnrollTOTP(ctx context.Context, id int64, encSecret string, step int64, recoveryCodeHashes []string) error {
	if encSecret == "" {
		return errors.New("enroll TOTP: empty secret")
	}
	return p.Transaction(ctx, func(ctx context.Context) error {
		t := now()
		n, err := p.Connection(ctx).RawQuery(`UPDATE identities SET totp_secret = ?, totp_last_step = ?, updated_at = ?
			WHERE id = ? AND (totp_secret IS NULL OR totp_secret = '')`,
			encSecret, step, t, id).ExecWithCount()
		if err != nil {
			return fmt.Errorf("enroll TOTP: %w", err)
		}
		if n == 0 {
			exists, err := p.identityExists(ctx, id)
			if err != nil {
				return err
			}
			if !exists {
				return identity.ErrNotFound
			}
			return identity.ErrAlreadyEnrolled
		}
		if err := p.Connection(ctx).RawQuery("DELETE FROM recovery_codes WHERE identity_id = ?", id).Exec(); err != nil {
			return fmt.Errorf("enroll TOTP: delete recovery codes: %w", err)
		}
		if len(recoveryCodeHashes) == 0 {
			return nil
		}
		var sb strings.Builder
		sb.WriteString("INSERT INTO recovery_codes (id, identity_id, code_hash, used_at, created_at) VALUES ")
		args := make([]any, 0, 4*len(recoveryCodeHashes))
		for k, h := range recoveryCodeHashes {
			if k > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(?, ?, ?, NULL, ?)")
			args = append(args, uuid.NewString(), id, h, t)
		}
		if err := p.Connection(ctx).RawQuery(sb.String(), args...).Exec(); err != nil {
			return fmt.Errorf("enroll TOTP: insert recovery codes: %w", err)
		}
		return nil
	})
}

// ResetTOTP clears the secret, the last accepted step and every recovery code.
func (p *Persister) ResetTOTP(ctx context.Context, id int64) error {
	return p.Transaction(ctx, func(ctx context.Context) error {
		err := p.execOnIdentity(ctx, "reset TOTP", `UPDATE identities SET totp_secret = NULL, totp_last_step = 0, updated_at = ?
			WHERE id = ?`, now(), id)
		if err != nil {
			return err
		}
		if err := p.Connection(ctx).RawQuery("DELETE FROM recovery_codes WHERE identity_id = ?", id).Exec(); err != nil {
			return fmt.Errorf("reset TOTP: delete recovery codes: %w", err)
		}
		return nil
	})
}

// ConsumeTOTPStep is one conditional UPDATE: of any number of concurrent callers with the
// same step exactly one sees true.
func (p *Persister) ConsumeTOTPStep(ctx context.Context, id int64, step int64) (bool, error) {
	n, err := p.Connection(ctx).RawQuery(
		"UPDATE identities SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?",
		step, id, step).ExecWithCount()
	if err != nil {
		return false, fmt.Errorf("consume TOTP step: %w", err)
	}
	return n == 1, nil
}

// ConsumeRecoveryCode marks one unused code of this identity with this hash as used, in
// one conditional UPDATE; false when there is none.
func (p *Persister) ConsumeRecoveryCode(ctx context.Context, id int64, codeHash string) (bool, error) {
	n, err := p.Connection(ctx).RawQuery(`UPDATE recovery_codes SET used_at = ?
		WHERE used_at IS NULL AND id = (
			SELECT id FROM recovery_codes WHERE identity_id = ? AND code_hash = ? AND used_at IS NULL LIMIT 1)`,
		now(), id, codeHash).ExecWithCount()
	if err != nil {
		return false, fmt.Errorf("consume recovery code: %w", err)
	}
	return n > 0, nil
}
