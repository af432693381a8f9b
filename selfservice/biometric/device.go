// Package biometric serves device keys: registration of a phone's public key by a signed
// challenge, mobile login by signing a fresh challenge, device management and keygen.
// What a device key is (model, key parsing, signature checks, pushes, removal with its
// sessions) lives in devicekey.
//
// handler.go maps each route to a Service method (service.go: registration, management,
// keygen; login.go: mobile login); the handlers only decode and answer.
package biometric

import (
	"context"
	"errors"
	"time"

	"github.com/pvpipe/pvauth/devicekey"
)

// Device is a registered key of a user's device.
type Device = devicekey.Device

// Challenge kinds.
const (
	ChallengeRegister = "register"
	ChallengeLogin    = "login"
)

// Challenge is a pending registration or login. For a registration it carries the device
// that will be created.
type Challenge struct {
	ID                string     `db:"id"`
	Kind              string     `db:"kind"`
	IdentityID        int64      `db:"identity_id"`
	DeviceID          string     `db:"device_id"`
	ChallengeHash     string     `db:"challenge_hash"`
	DeviceName        *string    `db:"device_name"`
	DeviceType        *string    `db:"device_type"`
	DeviceFingerprint *string    `db:"device_fingerprint"`
	KeyAlgorithm      *string    `db:"key_algorithm"`
	PublicKey         *string    `db:"public_key"`
	UsedAt            *time.Time `db:"used_at"`
	ExpiresAt         time.Time  `db:"expires_at"`
	CreatedAt         time.Time  `db:"created_at"`
}

// Owner is what a login needs of a device's identity.
type Owner struct {
	Email string
	State string
}

// ErrChallengeNotFound is returned for unknown challenges.
var ErrChallengeNotFound = errors.New("challenge not found")

// Persister stores devices and their challenges.
type Persister interface {
	devicekey.Persister
	CreateDeviceChallenge(ctx context.Context, c *Challenge) error
	// CreateLoginChallenge stores c as a login challenge of the active device with this
	// fingerprint, whose device and identity ids the stored row takes in the same
	// statement (c's own are not filled in); false when no active device has it.
	CreateLoginChallenge(ctx context.Context, fingerprint string, c *Challenge) (bool, error)
	GetDeviceChallenge(ctx context.Context, id string) (*Challenge, error)
	// ConsumeDeviceChallenge marks an unused, unexpired challenge used; false otherwise.
	ConsumeDeviceChallenge(ctx context.Context, id string, now time.Time) (bool, error)
	// GetLoginChallenge loads a login challenge with its device and the device owner's
	// email and state in one read (the hot path of a biometric login).
	GetLoginChallenge(ctx context.Context, id string) (*Challenge, *Device, *Owner, error)
}

// PersisterProvider is implemented by the registry.
type PersisterProvider interface {
	BiometricPersister() Persister
}
