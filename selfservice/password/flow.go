// Package password is the password + TOTP login: /login, /otp/setup, /otp/verify, and
// the service-to-service /admin/otp/verify. The session it ends in is package session's
// (/me, /refresh, /logout).
package password

import (
	"context"
	"errors"
	"time"
)

// Flow states.
const (
	FlowPending   = "pending"
	FlowCompleted = "completed"
	// FlowRevoked is a pending login ended by a disable, a password reset or a sessions
	// delete of its identity.
	FlowRevoked = "revoked"
)

// MaxOTPFailures is how many wrong codes a pending token survives.
const MaxOTPFailures = 5

// Flow is a login between the password step and the second factor. Its token (the
// "pending" token) is stored only as a hash.
type Flow struct {
	ID                string    `db:"id"`
	TokenHash         string    `db:"token_hash"`
	IdentityID        int64     `db:"identity_id"`
	PendingTOTPSecret *string   `db:"pending_totp_secret"`
	FailedAttempts    int       `db:"failed_attempts"`
	State             string    `db:"state"`
	RememberMe        bool      `db:"remember_me"`
	ExpiresAt         time.Time `db:"expires_at"`
	CreatedAt         time.Time `db:"created_at"`
}

// Usable reports whether the pending token may still be used.
func (f *Flow) Usable(now time.Time) bool {
	return f.State == FlowPending && f.FailedAttempts < MaxOTPFailures && now.Before(f.ExpiresAt)
}

// ErrFlowNotFound is returned for unknown pending tokens.
var ErrFlowNotFound = errors.New("login flow not found")

// FlowPersister stores login flows.
type FlowPersister interface {
	CreateLoginFlow(ctx context.Context, f *Flow) error
	GetLoginFlowByTokenHash(ctx context.Context, tokenHash string) (*Flow, error)
	SetLoginFlowTOTPSecret(ctx context.Context, id, encSecret string) error
	// ReserveLoginFlowAttempt counts one attempt before the code is checked, with one
	// conditional update: false when the flow is not pending or has no attempts left, so
	// parallel guesses cannot exceed MaxOTPFailures.
	ReserveLoginFlowAttempt(ctx context.Context, id string) (bool, error)
	// CompleteLoginFlow flips a pending flow to completed and gives back the attempt the
	// successful code reserved; false if another request completed it first.
	CompleteLoginFlow(ctx context.Context, id string) (bool, error)
}

// FlowPersisterProvider is implemented by the registry.
type FlowPersisterProvider interface {
	LoginFlowPersister() FlowPersister
}
