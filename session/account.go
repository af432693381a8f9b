package session

import (
	"context"
	"errors"
	"time"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/identity"
)

// Profile is GET /me.
type Profile struct {
	ID                  int64               `json:"id"`
	Email               string              `json:"email"`
	Department          identity.Department `json:"department"`
	Employee            identity.Employee   `json:"employee"`
	IsSuperAdmin        bool                `json:"isSuperAdmin"`
	MFAEnabled          bool                `json:"mfaEnabled"`
	Permissions         []string            `json:"permissions"`
	PasskeyPromptStatus string              `json:"passkeyPromptStatus"`
	Signature           string              `json:"signature"`
	SignatureExpiresAt  time.Time           `json:"signatureExpiresAt"`
}

type accountDeps interface {
	TokensProvider
	audit.LoggerProvider
	identity.PersisterProvider
}

// Account is what a signed-in user does with the session itself, whatever login
// started it: read the profile, refresh the tokens, log out.
type Account struct{ d accountDeps }

// NewAccount builds the service.
func NewAccount(d accountDeps) *Account { return &Account{d: d} }

// Profile is the caller's identity as GET /me shows it, with a file signature that
// expires with the access token.
func (a *Account) Profile(ctx context.Context, p *Principal) (*Profile, error) {
	if p == nil || p.IdentityID == 0 {
		return nil, ErrNotAUser
	}
	id, err := a.d.IdentityPersister().GetIdentity(ctx, p.IdentityID)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, ErrTokenInvalid
	} else if err != nil {
		return nil, err
	}
	t := id.TypedTraits()
	prof := &Profile{
		ID: id.ID, Email: id.Email, IsSuperAdmin: id.IsSuperAdmin, MFAEnabled: id.MFAEnabled,
		Permissions: id.Permissions, PasskeyPromptStatus: id.PasskeyPromptStatus,
		Signature:          a.d.Tokens().FileSigner().Sign(id.ID, p.ExpiresAt),
		SignatureExpiresAt: p.ExpiresAt,
	}
	if t.Department != nil {
		prof.Department = *t.Department
	}
	if t.Employee != nil {
		prof.Employee = *t.Employee
	}
	if prof.Permissions == nil {
		prof.Permissions = []string{}
	}
	if prof.PasskeyPromptStatus == "" {
		prof.PasskeyPromptStatus = identity.PromptPending
	}
	return prof, nil
}

// Refresh rotates a refresh token (see RefreshTokens).
func (a *Account) Refresh(ctx context.Context, refreshToken string) (*TokenSet, error) {
	return RefreshTokens(ctx, a.d, refreshToken)
}

// Logout ends the caller's session and, when refreshToken belongs to another of the
// caller's own sessions, that one too; a token of anyone else is ignored.
func (a *Account) Logout(ctx context.Context, p *Principal, refreshToken string) error {
	t := a.d.Tokens()
	other := ""
	if refreshToken != "" {
		if owner, sid, err := t.Refreshable(ctx, refreshToken); err == nil && sid != p.SessionID && owner == p.Subject {
			other = sid
		}
	}
	// The revocations and their event commit together.
	al := a.d.AuditLogger()
	return al.Tx(ctx, func(ctx context.Context) error {
		if err := t.RevokeSession(ctx, p.SessionID); err != nil {
			return err
		}
		md := map[string]any{"sessionId": p.SessionID}
		if other != "" {
			if err := t.RevokeSession(ctx, other); err != nil {
				return err
			}
			md["otherSessionId"] = other
		}
		return al.LogTx(ctx, audit.Event{Type: audit.TypeLogout, UserID: audit.Int64(p.IdentityID), Metadata: md})
	})
}
