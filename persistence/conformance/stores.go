package conformance

import (
	"context"

	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/janitor"
	"github.com/pvpipe/pvauth/oauth2"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/selfservice/biometric"
	"github.com/pvpipe/pvauth/selfservice/confirmation"
	"github.com/pvpipe/pvauth/selfservice/passkey"
	"github.com/pvpipe/pvauth/selfservice/password"
)

// The stores the suites take: an interface under test with what its rows refer to
// (foreign keys), mostly identities to own them.

// IdentityCreator is what a suite whose rows belong to an identity needs besides its own
// interface: identities to own them (foreign keys).
type IdentityCreator interface {
	CreateIdentity(ctx context.Context, i *identity.Identity) error
}

// ConfirmationStore is confirmation.Persister with identities to own confirmations.
type ConfirmationStore interface {
	confirmation.Persister
	IdentityCreator
}

// CIBAStore holds CIBA requests with what they refer to: a client, an identity and the
// confirmation the user answers.
type CIBAStore interface {
	OAuth2Store
	confirmation.Persister
}

// DeviceStore is biometric.Persister (devicekey.Persister and device challenges) with
// identities to own the devices.
type DeviceStore interface {
	biometric.Persister
	IdentityCreator
}

// JanitorStore is janitor.Persister with rows to expire (passkey ceremonies).
type JanitorStore interface {
	janitor.Persister
	passkey.Persister
}

// OAuth2Store is oauth2.Persister with identities to own flows, consents and sessions.
type OAuth2Store interface {
	oauth2.Persister
	IdentityCreator
}

// PasskeyStore is passkey.Persister with identities to own handles and credentials.
type PasskeyStore interface {
	passkey.Persister
	IdentityCreator
}

// LoginFlowStore is password.FlowPersister with identities to own the flows.
type LoginFlowStore interface {
	password.FlowPersister
	IdentityCreator
}

// TokenStore is provider.TokenPersister with identities to be the subjects of tokens.
type TokenStore interface {
	provider.TokenPersister
	identity.Persister
}
