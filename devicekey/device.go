// Package devicekey is what device keys are, whoever uses them: the Device model and its
// storage, public-key parsing, challenges and their signature checks, the FCM token a
// device may carry and a notifier that pushes a data message to a user's devices.
// selfservice/biometric (registration, mobile login) and selfservice/confirmation
// (approving actions) both build on it; it has no HTTP in it.
package devicekey

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/x"
)

// Device types.
const (
	TypeMobile  = "mobile"
	TypeDesktop = "desktop"
	TypeTablet  = "tablet"
)

// Device is a registered key of a user's device.
type Device struct {
	ID                string     `json:"id" db:"id"`
	UserID            int64      `json:"userId" db:"identity_id"`
	DeviceName        string     `json:"deviceName" db:"device_name"`
	DeviceType        string     `json:"deviceType" db:"device_type"`
	DeviceFingerprint string     `json:"deviceFingerprint" db:"device_fingerprint"`
	KeyAlgorithm      string     `json:"keyAlgorithm" db:"key_algorithm"`
	PublicKey         string     `json:"publicKey" db:"public_key"`
	FCMToken          *string    `json:"fcmToken" db:"fcm_token"`
	IsActive          bool       `json:"isActive" db:"is_active"`
	LastUsedAt        *time.Time `json:"lastUsedAt" db:"last_used_at"`
	CreatedAt         time.Time  `json:"createdAt" db:"created_at"`
	UpdatedAt         time.Time  `json:"updatedAt" db:"updated_at"`
}

// VerifyChallenge checks signedChallenge (base64) over the challenge whose SHA-256 (hex)
// was stored, with the device's key.
func (d *Device) VerifyChallenge(challengeHash, signedChallenge string) error {
	return VerifyChallenge(d.PublicKey, d.KeyAlgorithm, challengeHash, signedChallenge)
}

// Errors of the persister.
var (
	ErrDeviceNotFound   = errors.New("device not found")
	ErrFingerprintTaken = errors.New("fingerprint already registered")
)

// Errors as clients see them (API.md §1 messages that seed clients match on).
var (
	ErrDeviceInactive = x.ErrNotFound.Derive("Device not found or inactive")
	ErrBadSignature   = x.ErrUnauthorized.Derive(ErrSignature.Error())
)

// Persister stores devices.
type Persister interface {
	// CreateDevice inserts an active device; ErrFingerprintTaken when another active
	// device has the fingerprint.
	CreateDevice(ctx context.Context, d *Device) error
	GetDevice(ctx context.Context, id string) (*Device, error)
	FindActiveDeviceByFingerprint(ctx context.Context, fingerprint string) (*Device, error)
	ListDevices(ctx context.Context, identityID int64, activeOnly bool) ([]Device, error)
	// DeactivateDevice deactivates an active device of identityID; false if none.
	DeactivateDevice(ctx context.Context, identityID int64, id string) (bool, error)
	UpdateDeviceFCMToken(ctx context.Context, identityID int64, id string, encToken *string) (bool, error)
	TouchDevice(ctx context.Context, id string, at time.Time) error
}

// PersisterProvider is implemented by the registry.
type PersisterProvider interface {
	DevicePersister() Persister
}

// ActiveDevice returns the active device id of userID, or ErrDeviceInactive (also for a
// malformed id, another user's device or one that was removed).
func ActiveDevice(ctx context.Context, p Persister, userID int64, id string) (*Device, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, ErrDeviceInactive
	}
	d, err := p.GetDevice(ctx, id)
	if errors.Is(err, ErrDeviceNotFound) || (err == nil && (d.UserID != userID || !d.IsActive)) {
		return nil, ErrDeviceInactive
	} else if err != nil {
		return nil, err
	}
	return d, nil
}
