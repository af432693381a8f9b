package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/pvpipe/pvauth/schema"
	"github.com/pvpipe/pvauth/x"
)

// Limits of identity fields.
const (
	MaxEmailLength      = 320
	MinPasswordLength   = 8
	MaxPasswordLength   = 1024
	MaxPermissionLength = 100
	MaxPermissions      = 200
)

// Client-facing errors of the manager.
var (
	ErrEmailTaken       = x.ErrConflict.Derive("An identity with this email already exists.")
	ErrIdentityNotFound = x.ErrNotFound.Derive("Identity not found.")
)

// Manager creates and changes identities: it validates every field (400s that name the
// field), hashes passwords and maps storage errors to the contract's statuses.
type Manager struct {
	p      Persister
	h      *Hasher
	traits *schema.Validator
}

// ManagerProvider is implemented by the registry.
type ManagerProvider interface {
	IdentityManager() *Manager
}

// NewManager returns a manager. traits may be nil, then traits only need to be a JSON
// object.
func NewManager(p Persister, h *Hasher, traits *schema.Validator) *Manager {
	return &Manager{p: p, h: h, traits: traits}
}

// CreateParams are the fields of a new identity. A nil Password creates an identity
// that cannot log in with a password (passkeys only, or a password set later).
type CreateParams struct {
	Email        string
	Password     *string
	Traits       json.RawMessage
	Permissions  []string
	IsSuperAdmin bool
	// InTx, when set, runs in the transaction that stores the identity, after it (the
	// audit event): its error undoes the creation.
	InTx func(ctx context.Context, i *Identity) error
}

// PatchParams changes the fields that are not nil.
type PatchParams struct {
	Email        *string
	Traits       *json.RawMessage
	Permissions  *[]string
	IsSuperAdmin *bool
	State        *string
	// InTx, when set, runs in the transaction that stores the change, after it (a
	// disable revokes the identity's sessions there): its error undoes the change.
	InTx func(ctx context.Context, i *Identity) error
}

// Empty reports whether the patch changes nothing.
func (pp PatchParams) Empty() bool {
	return pp.Email == nil && pp.Traits == nil && pp.Permissions == nil && pp.IsSuperAdmin == nil && pp.State == nil
}

// Create validates params, hashes the password and stores the identity.
func (m *Manager) Create(ctx context.Context, cp CreateParams) (*Identity, error) {
	email, err := ValidateEmail("email", cp.Email)
	if err != nil {
		return nil, err
	}
	traits, err := m.ValidateTraits(cp.Traits)
	if err != nil {
		return nil, err
	}
	perms, err := ValidatePermissions(cp.Permissions)
	if err != nil {
		return nil, err
	}
	i := &Identity{
		Email:               email,
		Traits:              traits,
		Permissions:         perms,
		IsSuperAdmin:        cp.IsSuperAdmin,
		State:               StateActive,
		PasskeyPromptStatus: PromptPending,
	}
	if cp.Password != nil {
		if err := ValidatePassword(*cp.Password, email); err != nil {
			return nil, err
		}
		if i.PasswordHash, err = m.h.Hash(ctx, *cp.Password); err != nil {
			return nil, fmt.Errorf("hash password: %w", err)
		}
	}
	// The password was hashed above, outside the transaction.
	return m.write(ctx, i, m.p.CreateIdentity, cp.InTx)
}

// write stores i with store and runs inTx (when set) in the same transaction.
func (m *Manager) write(ctx context.Context, i *Identity, store, inTx func(context.Context, *Identity) error) (*Identity, error) {
	err := m.p.Transaction(ctx, func(ctx context.Context) error {
		if err := store(ctx, i); err != nil {
			return err
		}
		if inTx != nil {
			return inTx(ctx, i)
		}
		return nil
	})
	if err != nil {
		return nil, mapPersisterError(err)
	}
	return i, nil
}

// Get loads an identity; unknown ids are a 404.
func (m *Manager) Get(ctx context.Context, id int64) (*Identity, error) {
	i, err := m.p.GetIdentity(ctx, id)
	if err != nil {
		return nil, mapPersisterError(err)
	}
	return i, nil
}

// Update applies the non-nil fields of pp; unknown ids are a 404, a taken email a 409.
func (m *Manager) Update(ctx context.Context, id int64, pp PatchParams) (*Identity, error) {
	// Validate everything before touching storage, so a bad request is a 400 even for an
	// unknown id.
	var (
		email  string
		traits json.RawMessage
		perms  []string
		err    error
	)
	if pp.Email != nil {
		if email, err = ValidateEmail("email", *pp.Email); err != nil {
			return nil, err
		}
	}
	if pp.Traits != nil {
		if traits, err = m.ValidateTraits(*pp.Traits); err != nil {
			return nil, err
		}
	}
	if pp.Permissions != nil {
		if perms, err = ValidatePermissions(*pp.Permissions); err != nil {
			return nil, err
		}
	}
	if pp.State != nil {
		if err := x.OneOf("state", *pp.State, StateActive, StateDisabled); err != nil {
			return nil, err
		}
	}
	i, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if pp.Empty() {
		return i, nil
	}
	if pp.Email != nil {
		i.Email = email
	}
	if pp.Traits != nil {
		i.Traits = traits
	}
	if pp.Permissions != nil {
		i.Permissions = perms
	}
	if pp.IsSuperAdmin != nil {
		i.IsSuperAdmin = *pp.IsSuperAdmin
	}
	if pp.State != nil {
		i.State = *pp.State
	}
	return m.write(ctx, i, m.p.UpdateIdentity, pp.InTx)
}

// SetPassword validates and hashes password and replaces the identity's password; inTx,
// when not nil, runs in the same transaction after the change (its error undoes it).
func (m *Manager) SetPassword(ctx context.Context, id int64, password string, inTx func(ctx context.Context) error) error {
	if err := ValidatePassword(password, ""); err != nil {
		return err
	}
	i, err := m.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := ValidatePassword(password, i.Email); err != nil {
		return err
	}
	hash, err := m.h.Hash(ctx, password)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	err = m.p.Transaction(ctx, func(ctx context.Context) error {
		if err := m.p.UpdatePasswordHash(ctx, id, hash); err != nil {
			return err
		}
		if inTx != nil {
			return inTx(ctx)
		}
		return nil
	})
	return mapPersisterError(err)
}

// Delete deletes an identity; unknown ids are a 404.
func (m *Manager) Delete(ctx context.Context, id int64) error {
	return mapPersisterError(m.p.DeleteIdentity(ctx, id))
}

// ResetTOTP removes the TOTP secret and recovery codes; unknown ids are a 404.
func (m *Manager) ResetTOTP(ctx context.Context, id int64) error {
	return mapPersisterError(m.p.ResetTOTP(ctx, id))
}

func mapPersisterError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return ErrIdentityNotFound.WithCause(err)
	case errors.Is(err, ErrDuplicateEmail):
		return ErrEmailTaken.WithCause(err)
	default:
		return err
	}
}

// ValidateEmail checks a bare address (no display name, at most 320 characters) and
// returns it trimmed. field names the field in the error.
func ValidateEmail(field, email string) (string, error) {
	email = strings.TrimSpace(email)
	if err := x.Required(field, email); err != nil {
		return "", err
	}
	if utf8.RuneCountInString(email) > MaxEmailLength {
		return "", x.ErrBadRequest.WithMessagef("Field '%s' must be at most %d characters.", field, MaxEmailLength)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return "", x.ErrBadRequest.WithMessagef("Field '%s' must be a valid email address.", field)
	}
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return "", x.ErrBadRequest.WithMessagef("Field '%s' must be a valid email address.", field)
	}
	return email, nil
}

// ValidatePassword checks the length (8 to 1024 characters) and, when email is given,
// that the password is not the email address.
func ValidatePassword(password, email string) error {
	n := utf8.RuneCountInString(password)
	if n < MinPasswordLength {
		return x.ErrBadRequest.WithMessagef("Field 'password' must be at least %d characters.", MinPasswordLength)
	}
	if n > MaxPasswordLength {
		return x.ErrBadRequest.WithMessagef("Field 'password' must be at most %d characters.", MaxPasswordLength)
	}
	if email != "" && NormalizeEmail(password) == NormalizeEmail(email) {
		return x.ErrBadRequest.WithMessage("Field 'password' must not be the email address.")
	}
	return nil
}

// ValidatePermissions checks count (≤200) and each entry (non-empty, ≤100 characters)
// and returns the list without duplicates, in order; nil becomes empty.
func ValidatePermissions(perms []string) ([]string, error) {
	if len(perms) > MaxPermissions {
		return nil, x.ErrBadRequest.WithMessagef("Field 'permissions' must have at most %d entries.", MaxPermissions)
	}
	out := make([]string, 0, len(perms))
	seen := make(map[string]bool, len(perms))
	for k, p := range perms {
		field := fmt.Sprintf("permissions[%d]", k)
		if strings.TrimSpace(p) == "" {
			return nil, x.ErrBadRequest.WithMessagef("Field '%s' must not be empty.", field)
		}
		if err := x.MaxLen(field, p, MaxPermissionLength); err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// ValidateTraits checks that raw is a JSON object valid against the traits schema and
// returns its compact canonical form; empty or null is {}. Errors name the offending
// key as traits.<path>.
func (m *Manager) ValidateTraits(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return json.RawMessage("{}"), nil
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, x.ErrBadRequest.WithMessage("Field 'traits' must be a JSON object.")
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, x.ErrBadRequest.WithMessage("Field 'traits' must be a JSON object.")
	}
	if m.traits != nil {
		if err := m.traits.Validate(obj); err != nil {
			var se *schema.Error
			if !errors.As(err, &se) || len(se.Problems) == 0 {
				return nil, x.ErrBadRequest.WithMessage("Field 'traits' is invalid.").WithCause(err)
			}
			parts := make([]string, 0, len(se.Problems))
			for _, p := range se.Problems {
				key := "traits"
				if p.Key != "" {
					key += "." + p.Key
				}
				parts = append(parts, fmt.Sprintf("Field '%s' is invalid: %s.", key, strings.TrimSuffix(p.Message, ".")))
			}
			return nil, x.ErrBadRequest.WithMessage(strings.Join(parts, " "))
		}
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, x.ErrBadRequest.WithMessage("Field 'traits' must be a JSON object.")
	}
	return b, nil
}
