// Package passkey serves WebAuthn / FIDO2 passkeys: registration, login with an email or
// username-less (discoverable), and credential management.
//
// handler.go maps each route to a Service method: service.go holds the relying party and
// what the ceremonies share, register.go and login.go the two ceremonies, manage.go the
// listing, renaming and removal (devicekey.Authenticators, shared with device keys).
package passkey

import (
	"context"
	"errors"
	"time"
)

// Credential is a stored passkey. Data is the go-webauthn credential record (JSON), the
// source of truth for verification; the other columns serve listings and audits.
type Credential struct {
	ID              string     `db:"id"`
	IdentityID      int64      `db:"identity_id"`
	CredentialID    string     `db:"credential_id"`
	Name            string     `db:"name"`
	Data            string     `db:"credential_data"`
	AttestationType string     `db:"attestation_type"`
	AAGUID          string     `db:"aaguid"`
	SignCount       int64      `db:"sign_count"`
	CloneWarning    bool       `db:"clone_warning"`
	Transports      string     `db:"transports"`
	BackupEligible  bool       `db:"backup_eligible"`
	BackupState     bool       `db:"backup_state"`
	IsActive        bool       `db:"is_active"`
	LastUsedAt      *time.Time `db:"last_used_at"`
	CreatedAt       time.Time  `db:"created_at"`
	UpdatedAt       time.Time  `db:"updated_at"`
}

// Ceremony kinds.
const (
	KindRegister = "register"
	KindLogin    = "login"
)

// Session is a pending ceremony.
type Session struct {
	ID         string     `db:"id"`
	Kind       string     `db:"kind"`
	IdentityID *int64     `db:"identity_id"`
	Name       *string    `db:"name"`
	Data       string     `db:"session_data"`
	UsedAt     *time.Time `db:"used_at"`
	ExpiresAt  time.Time  `db:"expires_at"`
	CreatedAt  time.Time  `db:"created_at"`
}

// Errors of the persister.
var (
	ErrNotFound            = errors.New("passkey not found")
	ErrSessionNotFound     = errors.New("passkey session not found")
	ErrDuplicateCredential = errors.New("credential already registered")
)

// Persister stores passkeys, user handles and ceremonies.
type Persister interface {
	// UserHandle returns the identity's WebAuthn user handle, creating it on first use.
	UserHandle(ctx context.Context, identityID int64, create func() []byte) ([]byte, error)
	IdentityByUserHandle(ctx context.Context, handle []byte) (int64, error)

	CreatePasskeySession(ctx context.Context, s *Session) error
	GetPasskeySession(ctx context.Context, id string) (*Session, error)
	ConsumePasskeySession(ctx context.Context, id string, now time.Time) (bool, error)

	CreatePasskey(ctx context.Context, c *Credential) error
	ListPasskeys(ctx context.Context, identityID int64, activeOnly bool) ([]Credential, error)
	GetPasskeyByCredentialID(ctx context.Context, credentialID string) (*Credential, error)
	UpdatePasskeyUse(ctx context.Context, id, data string, signCount int64, cloneWarning bool, at time.Time) error
	RenamePasskey(ctx context.Context, identityID int64, id, name string) (bool, error)
	DeactivatePasskey(ctx context.Context, identityID int64, id string) (bool, error)
}

// PersisterProvider is implemented by the registry.
type PersisterProvider interface {
	PasskeyPersister() Persister
}
