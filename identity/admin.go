package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/x"
)

// Listing page sizes.
const (
	DefaultPageSize = 100
	MaxPageSize     = 500
)

// SessionRevoker ends every session (all access and refresh tokens) of an identity.
type SessionRevoker interface {
	RevokeIdentitySessions(ctx context.Context, identityID int64) (int, error)
}

// SessionRevokerProvider is implemented by the registry.
type SessionRevokerProvider interface {
	SessionRevoker() SessionRevoker
}

type adminDeps interface {
	ManagerProvider
	PersisterProvider
	audit.LoggerProvider
	SessionRevokerProvider
}

// Admin is what the admin identity API does beyond the Manager: every change commits
// with its audit event, and the changes that must log the identity out (disable,
// delete, password reset) end its sessions in the same transaction.
type Admin struct {
	d adminDeps
}

// NewAdmin returns the admin service.
func NewAdmin(d adminDeps) *Admin { return &Admin{d: d} }

// Create stores a new identity with its audit event.
func (a *Admin) Create(ctx context.Context, cp CreateParams) (*Identity, error) {
	cp.InTx = func(ctx context.Context, i *Identity) error {
		return a.auditTx(ctx, audit.TypeIdentityCreate, i.ID, map[string]any{
			"email": i.Email, "isSuperAdmin": i.IsSuperAdmin, "permissions": i.Permissions, "password": cp.Password != nil,
		})
	}
	return a.d.IdentityManager().Create(ctx, cp)
}

// Get returns identity id.
func (a *Admin) Get(ctx context.Context, id int64) (*Identity, error) {
	return a.d.IdentityManager().Get(ctx, id)
}

// List returns up to size identities after pageToken ("" for the first page), of email
// when it is not empty, and the token of the next page ("" on the last one).
func (a *Admin) List(ctx context.Context, size int, pageToken, email string) ([]Identity, string, error) {
	var after int64
	if pageToken != "" {
		var err error
		if after, err = decodePageToken(pageToken); err != nil {
			return nil, "", err
		}
	}
	ids, err := a.d.IdentityPersister().ListIdentities(ctx, ListParams{
		PageSize: size + 1, AfterID: after, Email: NormalizeEmail(email),
	})
	if err != nil {
		return nil, "", err
	}
	if len(ids) > size {
		return ids[:size], encodePageToken(ids[size-1].ID), nil
	}
	return ids, "", nil
}

// Page tokens are opaque to clients: unpadded URL-safe base64 of the last id served.
func encodePageToken(lastID int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(lastID, 10)))
}

func decodePageToken(tok string) (int64, error) {
	bad := x.ErrBadRequest.WithMessage("Query parameter 'page_token' is invalid.")
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, bad
	}
	id, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || id <= 0 {
		return 0, bad
	}
	return id, nil
}

// Update applies pp with its audit event. Disabling ends everything of the identity in
// the transaction that disables it: when this returns, nothing of it works
// (re-disabling ends anything left).
func (a *Admin) Update(ctx context.Context, id int64, pp PatchParams) (*Identity, error) {
	disable := pp.State != nil && *pp.State == StateDisabled
	pp.InTx = func(ctx context.Context, _ *Identity) error {
		md := map[string]any{"fields": patchedFields(pp)}
		if disable {
			revoked, err := a.revokeAll(ctx, id)
			if err != nil {
				return err
			}
			md["sessionsRevoked"] = revoked
		}
		return a.auditTx(ctx, audit.TypeIdentityUpdate, id, md)
	}
	return a.d.IdentityManager().Update(ctx, id, pp)
}

func patchedFields(pp PatchParams) []string {
	var f []string
	if pp.Email != nil {
		f = append(f, "email")
	}
	if pp.Traits != nil {
		f = append(f, "traits")
	}
	if pp.Permissions != nil {
		f = append(f, "permissions")
	}
	if pp.IsSuperAdmin != nil {
		f = append(f, "isSuperAdmin")
	}
	if pp.State != nil {
		f = append(f, "state")
	}
	return f
}

// Delete deletes identity id. Tokens reference the identity by subject only: they end
// before the identity goes, in one transaction with the deletion and its event.
func (a *Admin) Delete(ctx context.Context, id int64) error {
	m := a.d.IdentityManager()
	if _, err := m.Get(ctx, id); err != nil {
		return err
	}
	return a.d.IdentityPersister().Transaction(ctx, func(ctx context.Context) error {
		n, err := a.revokeAll(ctx, id)
		if err != nil {
			return err
		}
		if err := m.Delete(ctx, id); err != nil {
			return err
		}
		return a.auditTx(ctx, audit.TypeIdentityDelete, id, map[string]any{"sessionsRevoked": n})
	})
}

// SetPassword sets the password of identity id. A password reset must log out sessions
// an attacker may hold: in the transaction that changes the password, so neither
// happens without the other.
func (a *Admin) SetPassword(ctx context.Context, id int64, password string) error {
	return a.d.IdentityManager().SetPassword(ctx, id, password, func(ctx context.Context) error {
		n, err := a.revokeAll(ctx, id)
		if err != nil {
			return err
		}
		return a.auditTx(ctx, audit.TypeIdentityPassword, id, map[string]any{"sessionsRevoked": n})
	})
}

// ResetOTP removes the TOTP enrolment of identity id.
func (a *Admin) ResetOTP(ctx context.Context, id int64) error {
	return a.d.IdentityPersister().Transaction(ctx, func(ctx context.Context) error {
		if err := a.d.IdentityManager().ResetTOTP(ctx, id); err != nil {
			return err
		}
		return a.auditTx(ctx, audit.TypeIdentityOTPReset, id, nil)
	})
}

// RevokeSessions ends every session of identity id and returns how many ended.
func (a *Admin) RevokeSessions(ctx context.Context, id int64) (int, error) {
	if _, err := a.d.IdentityManager().Get(ctx, id); err != nil {
		return 0, err
	}
	var n int
	err := a.d.IdentityPersister().Transaction(ctx, func(ctx context.Context) (err error) {
		if n, err = a.revokeAll(ctx, id); err != nil {
			return err
		}
		return a.auditTx(ctx, audit.TypeIdentitySessions, id, map[string]any{"revoked": n})
	})
	return n, err
}

// auditTx writes the event of an admin change in the transaction that makes it.
func (a *Admin) auditTx(ctx context.Context, typ string, id int64, md map[string]any) error {
	return a.d.AuditLogger().LogTx(ctx, audit.Event{Type: typ, UserID: audit.Int64(id), Result: audit.ResultSuccess, Metadata: md})
}

func (a *Admin) revokeAll(ctx context.Context, id int64) (int, error) {
	rv := a.d.SessionRevoker()
	if rv == nil {
		return 0, x.ErrInternal.WithCause(errors.New("identity: no session revoker configured"))
	}
	n, err := rv.RevokeIdentitySessions(ctx, id)
	if err != nil {
		return 0, x.AsError(err)
	}
	return n, nil
}
