package provider

import (
	"context"
	"errors"
	"time"
)

// Token kinds, one table each.
const (
	KindAccess  = "access"
	KindRefresh = "refresh"
	KindCode    = "code"
	KindOIDC    = "oidc"
	KindPKCE    = "pkce"
)

// TokenRow is one stored token. Signature is already the SHA-256 hex of fosite's signature.
type TokenRow struct {
	Signature         string     `db:"signature"`
	RequestID         string     `db:"request_id"`
	RequestedAt       time.Time  `db:"requested_at"`
	ClientID          string     `db:"client_id"`
	Scope             string     `db:"scope"`
	GrantedScope      string     `db:"granted_scope"`
	RequestedAudience string     `db:"requested_audience"`
	GrantedAudience   string     `db:"granted_audience"`
	Form              string     `db:"form_data"`
	SessionData       string     `db:"session_data"`
	Subject           string     `db:"subject"`
	DeviceID          *string    `db:"device_id"`
	Active            bool       `db:"active"`
	ExpiresAt         *time.Time `db:"expires_at"`
	// AccessSignature links a refresh token to the access token issued with it.
	AccessSignature *string `db:"-"`
	// PasskeyID is the passkey a self-service session signed in with (access and refresh
	// rows only). PasskeyFromFamily, when PasskeyID is nil, copies it from the family's
	// stored refresh rows: rotation keeps it without the session having to carry it.
	PasskeyID         *string `db:"-"`
	PasskeyFromFamily bool    `db:"-"`
}

// Authenticator kinds whose sessions can be ended together (RemoveAuthenticators).
const (
	AuthenticatorDevice  = "device"
	AuthenticatorPasskey = "passkey"
)

// ErrTokenNotFound is returned for unknown signatures.
var ErrTokenNotFound = errors.New("token not found")

// ErrSubjectInactive is DeactivateToken's refusal to rotate the refresh token of an
// identity that was disabled or deleted.
var ErrSubjectInactive = errors.New("the token's identity is disabled or deleted")

// TokenPersister is what fosite's storage needs, in plain rows.
type TokenPersister interface {
	InsertToken(ctx context.Context, kind string, row *TokenRow) error
	GetToken(ctx context.Context, kind, signature string) (*TokenRow, error)
	DeleteToken(ctx context.Context, kind, signature string) error
	// DeactivateToken flips one active token to inactive; false when it was not active.
	// A refresh token of an identity that is not active is refused (ErrSubjectInactive)
	// and stays as it was.
	DeactivateToken(ctx context.Context, kind, signature string) (bool, error)
	// DeactivateFamily deactivates every token of kind with this request id.
	DeactivateFamily(ctx context.Context, kind, requestID string) (int64, error)

	// Revocation is complete: each of the Revoke methods first takes the lock of the
	// subject that every token-minting transaction (login, refresh rotation, code
	// exchange) takes too (SubjectActive, DeactivateToken), so a mint in flight commits
	// before the revocation looks at the rows, and a later one finds its gate closed.

	// RevokeFamily deactivates every access and refresh token with this request id.
	RevokeFamily(ctx context.Context, requestID string) error
	// RevokeSubject ends everything of a subject: every access and refresh token, its
	// unexchanged authorization codes, its pending password logins and its unfinished
	// OAuth2 hand-offs. It returns how many sessions (families with an active refresh
	// token) it ended.
	RevokeSubject(ctx context.Context, subject string) (int, error)
	// RevokeDevice does the same for the tokens of subject issued through a device.
	RevokeDevice(ctx context.Context, subject, deviceID string) (int, error)
	// RemoveAuthenticators deactivates the active authenticators of kind
	// (AuthenticatorDevice, AuthenticatorPasskey) of subject, only the one with id when
	// id is not empty, and ends the sessions they signed in, in one transaction. It
	// returns how many authenticators it deactivated and how many sessions it ended.
	RemoveAuthenticators(ctx context.Context, subject, kind, id string) (removed, sessions int, err error)
	// SubjectActive runs inside a token-minting transaction: it takes the subject's
	// shared lock (see above) and reports whether the identity may still get tokens.
	SubjectActive(ctx context.Context, identityID int64) (bool, error)

	// GroupTransaction runs fn in a write transaction that concurrent callers may share
	// (each in its own savepoint); fn's error undoes only fn's writes.
	GroupTransaction(ctx context.Context, fn func(ctx context.Context) error) error

	BeginTX(ctx context.Context) (context.Context, error)
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// StoredKey is a signing key as stored: the private key is encrypted.
type StoredKey struct {
	KID        string     `db:"kid"`
	Alg        string     `db:"alg"`
	PrivateKey string     `db:"private_key"`
	PublicJWK  string     `db:"public_jwk"`
	State      string     `db:"state"`
	CreatedAt  time.Time  `db:"created_at"`
	RetiredAt  *time.Time `db:"retired_at"`
}

// Key states.
const (
	KeyActive  = "active"
	KeyRetired = "retired"
)

// KeyPersister stores signing keys.
type KeyPersister interface {
	ListSigningKeys(ctx context.Context) ([]StoredKey, error)
	InsertSigningKey(ctx context.Context, k *StoredKey) error
	// RetireSigningKeys marks every active key older than keep as retired at t (a newer
	// one, from a rotation at the same moment elsewhere, stays active and signs).
	RetireSigningKeys(ctx context.Context, keep string, t time.Time) error
}
