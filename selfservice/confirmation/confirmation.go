// Package confirmation holds sensitive actions until the user approves them with a
// registered device key (or rejects them). Initiating one pushes it to the user's devices.
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
	ID            string    `db:"id"`
	IdentityID    int64     `db:"identity_id"`
	ActionType    string    `db:"action_type"`
	ActionPayload *string   `db:"action_payload"`
	ChallengeHash string    `db:"challenge_hash"`
	Status        string    `db:"status"`
	DeviceID      *string   `db:"device_id"`
	Reason        *string   `db:"reason"`
	ExpiresAt     time.Time `db:"expires_at"`
	CreatedAt     time.Time `db:"created_at"`
	UpdatedAt     time.Time `db:"updated_at"`
}

// EffectiveStatus reports "expired" as soon as a pending confirmation's time has passed;
// no background job is needed.
func (c *Confirmation) EffectiveStatus(now time.Time) string {
	if c.Status == StatusPending && !now.Before(c.ExpiresAt) {
		return StatusExpired
	}
	return c.Status
}

// Payload returns the action payload as raw JSON (null when absent).
func (c *Confirmation) Payload() json.RawMessage {
	if c.ActionPayload == nil {
		return json.RawMessage("null")
	}
	return json.RawMessage(*c.ActionPayload)
}

// ErrNotFound is returned for unknown confirmations.
var ErrNotFound = errors.New("confirmation not found")

// Persister stores confirmations.
type Persister interface {
	CreateConfirmation(ctx context.Context, c *Confirmation) error
	GetConfirmation(ctx context.Context, id string) (*Confirmation, error)
	// DecideConfirmation moves a pending, unexpired confirmation to status with one
	// conditional update; false when it was not pending any more or has expired.
	DecideConfirmation(ctx context.Context, id, status string, deviceID, reason *string, now time.Time) (bool, error)
}

// PersisterProvider is implemented by the registry.
type PersisterProvider interface {
	ConfirmationPersister() Persister
}
