package passkey

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// View is a passkey as the API shows it.
type View struct {
	ID              string     `json:"id"`
	CredentialID    string     `json:"credentialId"`
	UserID          int64      `json:"userId"`
	Name            string     `json:"name"`
	AttestationType string     `json:"attestationType"`
	AAGUID          string     `json:"aaguid"`
	SignCount       int64      `json:"signCount"`
	CloneWarning    bool       `json:"cloneWarning"`
	BackupEligible  bool       `json:"backupEligible"`
	BackupState     bool       `json:"backupState"`
	TransportFlags  []string   `json:"transportFlags"`
	IsActive        bool       `json:"isActive"`
	LastUsedAt      *time.Time `json:"lastUsedAt"`
	CreatedAt       time.Time  `json:"createdAt"`
	UpdatedAt       time.Time  `json:"updatedAt"`
}

// NewView is c as the API shows it.
func NewView(c *Credential) View {
	var tr []string
	_ = json.Unmarshal([]byte(c.Transports), &tr)
	if tr == nil {
		tr = []string{}
	}
	return View{ID: c.ID, CredentialID: c.CredentialID, UserID: c.IdentityID, Name: c.Name, AttestationType: c.AttestationType,
		AAGUID: c.AAGUID, SignCount: c.SignCount, CloneWarning: c.CloneWarning, BackupEligible: c.BackupEligible,
		BackupState: c.BackupState, TransportFlags: tr, IsActive: c.IsActive, LastUsedAt: c.LastUsedAt,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

// Passkeys lists uid's active passkeys.
func (s *Service) Passkeys(ctx context.Context, uid int64) ([]View, error) {
	return s.views(ctx, uid, true)
}

// AdminPasskeys lists every passkey of an identity, the deleted ones too.
func (s *Service) AdminPasskeys(ctx context.Context, uid int64) ([]View, error) {
	if err := identity.MustExist(ctx, s.d.IdentityPersister(), uid); err != nil {
		return nil, err
	}
	return s.views(ctx, uid, false)
}

func (s *Service) views(ctx context.Context, uid int64, activeOnly bool) ([]View, error) {
	cs, err := s.d.PasskeyPersister().ListPasskeys(ctx, uid, activeOnly)
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(cs))
	for i := range cs {
		out = append(out, NewView(&cs[i]))
	}
	return out, nil
}

// PromptRequest is the answer to the prompt to add a passkey.
type PromptRequest struct {
	Status string `json:"status"`
}

func (b *PromptRequest) Validate() error {
	return x.FirstError(x.Required("status", b.Status),
		x.OneOf("status", b.Status, identity.PromptPending, identity.PromptAccepted, identity.PromptDeclined, identity.PromptDismissed))
}

// SetPrompt records uid's answer to the prompt to add a passkey.
func (s *Service) SetPrompt(ctx context.Context, uid int64, status string) error {
	return s.d.IdentityPersister().UpdatePasskeyPromptStatus(ctx, uid, status)
}

// Rename renames uid's passkey pid.
func (s *Service) Rename(ctx context.Context, uid int64, pid, name string) error {
	if _, err := uuid.Parse(pid); err != nil {
		return ErrPasskeyNotFound
	}
	ok, err := s.d.PasskeyPersister().RenamePasskey(ctx, uid, pid, name)
	if err != nil {
		return err
	}
	if !ok {
		return ErrPasskeyNotFound
	}
	return nil
}

// Remove deletes uid's passkey pid and ends every session it signed in (by is "user"
// or "admin", for the event).
func (s *Service) Remove(ctx context.Context, uid int64, pid, by string) error {
	return s.keys.Remove(ctx, uid, pid, by)
}

// RemoveAll deletes every passkey of an identity and ends the sessions they signed in;
// it returns how many it deleted.
func (s *Service) RemoveAll(ctx context.Context, uid int64) (int, error) {
	return s.keys.RemoveAll(ctx, uid)
}

// removal removes passkeys with the passkey event.
func removal(d serviceDeps) *devicekey.Authenticators {
	return &devicekey.Authenticators{
		Kind: session.AuthenticatorPasskey, NotFound: ErrPasskeyNotFound,
		Event: func(uid int64, pid string, md map[string]any) audit.Event {
			if pid == "" {
				md["event"] = "delete_all"
			} else {
				md["event"], md["passkeyId"] = "delete", pid
			}
			return event(uid, md)
		},
		Audit: d.AuditLogger(), Tokens: d.Tokens(), Identities: d.IdentityPersister(),
	}
}
