// Package confirmation holds sensitive actions until the user approves them with a
// registered device key (or rejects them). Initiating one pushes it to the user's devices.
//
// The lifecycle is a Service (service.go) with no HTTP in it, so that another package
// (the OAuth2 CIBA grant) can start a confirmation and wait for its outcome in Go; the
// handlers only decode, call and encode.
package confirmation

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Statuses.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusRejected = "rejected"
	StatusExpired  = "expired"
)

// Confirmation is one pending or decided action.
type Confirmation struct {
	ID            string  `db:"id"`
	IdentityID    int64   `db:"identity_id"`
	ActionType    string  `db:"action_type"`
	ActionPayload *string `db:"action_payload"`
	// ActionHash is the base64url SHA-256 of the JCS form of the payload ({} if none).
	ActionHash    *string `db:"action_hash"`
	ChallengeHash string  `db:"challenge_hash"`
	// MatchCodeHash is set when number matching was on at initiation: verify must
	// repeat the code. MatchFailures counts wrong or missing codes.
	MatchCodeHash *string    `db:"match_code_hash"`
	MatchFailures int        `db:"match_failures"`
	Status        string     `db:"status"`
	DeviceID      *string    `db:"device_id"`
	Reason        *string    `db:"reason"`
	ApprovedAt    *time.Time `db:"approved_at"`
	ConsumedAt    *time.Time `db:"consumed_at"`
	ExpiresAt     time.Time  `db:"expires_at"`
	CreatedAt     time.Time  `db:"created_at"`
	UpdatedAt     time.Time  `db:"updated_at"`
}

// EffectiveStatus reports "expired" as soon as a pending confirmation's time has passed;
// no background job is needed.
func (c *Confirmation) EffectiveStatus(now time.Time) string {
	if c.Status == StatusPending && !now.Before(c.ExpiresAt) {
		return StatusExpired
	}
	return c.Status
}

// Final reports whether the confirmation can no longer change status.
func (c *Confirmation) Final(now time.Time) bool { return c.EffectiveStatus(now) != StatusPending }

// Payload returns the action payload as raw JSON (null when absent).
func (c *Confirmation) Payload() json.RawMessage {
	if c.ActionPayload == nil {
		return json.RawMessage("null")
	}
	return json.RawMessage(*c.ActionPayload)
}

// Hash returns the action hash (computed for rows stored before it was kept).
func (c *Confirmation) Hash() string {
	if c.ActionHash != nil {
		return *c.ActionHash
	}
	var p []byte
	if c.ActionPayload != nil {
		p = []byte(*c.ActionPayload)
	}
	h, _ := ActionHash(p)
	return h
}

// ErrNotFound is returned for unknown confirmations.
var ErrNotFound = errors.New("confirmation not found")

// Persister stores confirmations. Every state change is one conditional UPDATE whose
// row count says whether it happened.
type Persister interface {
	CreateConfirmation(ctx context.Context, c *Confirmation) error
	GetConfirmation(ctx context.Context, id string) (*Confirmation, error)
	// GetConfirmationVersions returns the updated_at and status of each existing id in
	// one query (the events poller); unknown ids are left out.
	GetConfirmationVersions(ctx context.Context, ids []string) (map[string]Version, error)
	// DecideConfirmation moves a pending, unexpired confirmation to status with one
	// conditional update (approving also sets approved_at); false when it was not
	// pending any more or has expired.
	DecideConfirmation(ctx context.Context, id, status string, deviceID, reason *string, now time.Time) (bool, error)
	// CountMatchFailure adds one wrong match code to a pending, unexpired confirmation;
	// false when it was not pending any more or has expired.
	CountMatchFailure(ctx context.Context, id string, now time.Time) (bool, error)
	// RejectOnMatchFailures rejects a pending confirmation that has at least max match
	// failures; true for the one call that did it.
	RejectOnMatchFailures(ctx context.Context, id string, max int, reason string, now time.Time) (bool, error)
	// ConsumeConfirmation marks an approved, unconsumed confirmation consumed; false
	// when it is not approved or was consumed already.
	ConsumeConfirmation(ctx context.Context, id string, now time.Time) (bool, error)
}

// Version identifies a state of a stored confirmation.
type Version struct {
	Status    string
	UpdatedAt time.Time
}

// PersisterProvider is implemented by the registry.
type PersisterProvider interface {
	ConfirmationPersister() Persister
}
