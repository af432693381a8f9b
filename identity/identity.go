// Package identity holds the Identity model, password hashing, trait validation, the
// Manager and Admin services and the thin admin handlers over them.
package identity

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/pvpipe/pvauth/x"
)

// States of an identity.
const (
	StateActive   = "active"
	StateDisabled = "disabled"
)

// Passkey prompt states (shown as passkeyPromptStatus in /me).
const (
	PromptPending   = "pending"
	PromptAccepted  = "accepted"
	PromptDeclined  = "declined"
	PromptDismissed = "dismissed"
)

// Identity is a user. Credentials (password hash, TOTP secret) never leave the server.
type Identity struct {
	ID           int64           `json:"id"`
	Email        string          `json:"email"`
	Traits       json.RawMessage `json:"traits"`
	Permissions  []string        `json:"permissions"`
	IsSuperAdmin bool            `json:"isSuperAdmin"`
	MFAEnabled   bool            `json:"mfaEnabled"`
	State        string          `json:"state"`
	CreatedAt    time.Time       `json:"createdAt"`
	UpdatedAt    time.Time       `json:"updatedAt"`

	PasswordHash        string `json:"-"`
	PasskeyPromptStatus string `json:"-"`
	// TOTPSecret is the encrypted TOTP secret ("" when not enrolled).
	TOTPSecret string `json:"-"`
	// TOTPLastStep is the last accepted TOTP time step (replay protection).
	TOTPLastStep int64 `json:"-"`
}

// Traits is the typed view of the traits document (.schema/identity.schema.json).
type Traits struct {
	Department *Department `json:"department,omitempty"`
	Employee   *Employee   `json:"employee,omitempty"`
}

type Department struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type Employee struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	AvatarFileID string `json:"avatarFileId"`
}

// TypedTraits decodes Traits; malformed stored traits give an empty value.
func (i *Identity) TypedTraits() Traits {
	var t Traits
	if len(i.Traits) > 0 {
		_ = json.Unmarshal(i.Traits, &t)
	}
	return t
}

// NormalizeEmail is the form emails are compared in: trimmed, lower-cased.
func NormalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// Errors the persister returns.
var (
	ErrNotFound       = errors.New("identity not found")
	ErrDuplicateEmail = errors.New("an identity with this email already exists")
)

// ListParams pages through identities ordered by id.
type ListParams struct {
	PageSize int
	AfterID  int64
	// Email filters by exact (normalized) email.
	Email string
}

// Persister is what the identity domain needs from storage.
type Persister interface {
	CreateIdentity(ctx context.Context, i *Identity) error
	GetIdentity(ctx context.Context, id int64) (*Identity, error)
	FindIdentityByEmail(ctx context.Context, email string) (*Identity, error)
	ListIdentities(ctx context.Context, p ListParams) ([]Identity, error)
	// UpdateIdentity stores email, traits, permissions, isSuperAdmin and state.
	UpdateIdentity(ctx context.Context, i *Identity) error
	DeleteIdentity(ctx context.Context, id int64) error
	UpdatePasswordHash(ctx context.Context, id int64, hash string) error
	UpdatePasskeyPromptStatus(ctx context.Context, id int64, status string) error

	// EnrollTOTP sets the (encrypted) secret, records step as used, and replaces the
	// recovery codes with the given hashes, atomically. It fails with ErrAlreadyEnrolled
	// when a secret is already set.
	EnrollTOTP(ctx context.Context, id int64, encSecret string, step int64, recoveryCodeHashes []string) error
	// ResetTOTP clears the secret, the last step and the recovery codes.
	ResetTOTP(ctx context.Context, id int64) error
	// ConsumeTOTPStep records step as used if it is newer than the last accepted one;
	// false means the code was already used (replay) or an older step.
	ConsumeTOTPStep(ctx context.Context, id int64, step int64) (bool, error)
	// ConsumeRecoveryCode marks an unused code with this hash used; false if none.
	ConsumeRecoveryCode(ctx context.Context, id int64, codeHash string) (bool, error)

	// Transaction runs fn in a transaction carried by the context it receives (joining
	// one already there); fn's error rolls it back.
	Transaction(ctx context.Context, fn func(ctx context.Context) error) error
}

// ErrAlreadyEnrolled is returned by EnrollTOTP when TOTP is already set up.
var ErrAlreadyEnrolled = errors.New("TOTP is already enrolled")

// PersisterProvider is implemented by the registry.
type PersisterProvider interface {
	IdentityPersister() Persister
}

// ErrIdentityMissing is the 404 of admin routes under /admin/identities/{id}.
var ErrIdentityMissing = x.ErrNotFound.Derive("Identity not found.")

// MustExist answers nil when the identity exists, ErrIdentityMissing when it does not.
func MustExist(ctx context.Context, p Persister, id int64) error {
	if _, err := p.GetIdentity(ctx, id); errors.Is(err, ErrNotFound) {
		return ErrIdentityMissing
	} else if err != nil {
		return err
	}
	return nil
}
