package passkey

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// Errors.
var (
	ErrSessionExpired  = x.ErrBadRequest.Derive("Passkey session expired or not found")
	ErrNoPasskeys      = x.ErrBadRequest.Derive("No passkey is registered for this email.")
	ErrVerification    = x.ErrUnauthorized.Derive("Passkey verification failed.")
	ErrPasskeyNotFound = x.ErrNotFound.Derive("Passkey not found")
)

type serviceDeps interface {
	audit.LoggerProvider
	devicekey.NotifierProvider
	identity.PersisterProvider
	session.TokensProvider
	PersisterProvider
	Config() *config.Config
}

// Service runs the WebAuthn ceremonies and manages passkeys; the handlers only decode
// requests and write answers.
type Service struct {
	d    serviceDeps
	wa   *webauthn.WebAuthn
	keys *devicekey.Authenticators
}

// NewService builds the service and the relying party of webauthn.rp.*.
func NewService(d serviceDeps) (*Service, error) {
	c := d.Config()
	ttl := c.TTL.WebAuthnSession
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          c.WebAuthn.RP.ID,
		RPDisplayName: c.WebAuthn.RP.DisplayName,
		RPOrigins:     c.WebAuthn.RP.Origins,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationRequired,
		},
		AttestationPreference: protocol.PreferNoAttestation,
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: ttl, TimeoutUVD: ttl},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: ttl, TimeoutUVD: ttl},
		},
	})
	if err != nil {
		return nil, err
	}
	return &Service{d: d, wa: wa, keys: removal(d)}, nil
}

// user adapts an identity and its passkeys to go-webauthn.
type user struct {
	id     *identity.Identity
	handle []byte
	creds  []webauthn.Credential
}

func (u *user) WebAuthnID() []byte   { return u.handle }
func (u *user) WebAuthnName() string { return u.id.Email }
func (u *user) WebAuthnDisplayName() string {
	if n := u.id.TypedTraits().Employee; n != nil && n.Name != "" {
		return n.Name
	}
	return u.id.Email
}
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func newHandle() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// loadUser builds the go-webauthn user with its active credentials.
func (s *Service) loadUser(ctx context.Context, id *identity.Identity) (*user, error) {
	p := s.d.PasskeyPersister()
	handle, err := p.UserHandle(ctx, id.ID, newHandle)
	if err != nil {
		return nil, err
	}
	stored, err := p.ListPasskeys(ctx, id.ID, true)
	if err != nil {
		return nil, err
	}
	u := &user{id: id, handle: handle}
	for _, c := range stored {
		var wc webauthn.Credential
		if err := json.Unmarshal([]byte(c.Data), &wc); err != nil {
			return nil, err
		}
		u.creds = append(u.creds, wc)
	}
	return u, nil
}

// Caller is the signed-in identity uid; one deleted since its token was issued is the
// token's fault.
func (s *Service) Caller(ctx context.Context, uid int64) (*identity.Identity, error) {
	id, err := s.d.IdentityPersister().GetIdentity(ctx, uid)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, session.ErrTokenInvalid
	}
	return id, err
}

// HasPasskeys reports whether an active identity of email has an active passkey. An
// unknown email and an email without passkeys answer alike.
func (s *Service) HasPasskeys(ctx context.Context, email string) (bool, error) {
	id, err := s.d.IdentityPersister().FindIdentityByEmail(ctx, identity.NormalizeEmail(email))
	if errors.Is(err, identity.ErrNotFound) {
		return false, nil
	} else if err != nil || id.State != identity.StateActive {
		return false, err
	}
	cs, err := s.d.PasskeyPersister().ListPasskeys(ctx, id.ID, true)
	return len(cs) > 0, err
}

// BeginResult is the options of a ceremony for navigator.credentials and its id.
type BeginResult struct {
	PublicKey any    `json:"publicKey"`
	SessionID string `json:"sessionId"`
}

func (s *Service) saveSession(ctx context.Context, kind string, identityID *int64, name *string, sd *webauthn.SessionData) (string, error) {
	raw, err := json.Marshal(sd)
	if err != nil {
		return "", err
	}
	c := &Session{ID: uuid.NewString(), Kind: kind, IdentityID: identityID, Name: name, Data: string(raw),
		ExpiresAt: time.Now().Add(s.d.Config().TTL.WebAuthnSession)}
	if err := s.d.PasskeyPersister().CreatePasskeySession(ctx, c); err != nil {
		return "", err
	}
	return c.ID, nil
}

// consume loads a ceremony of kind and spends it: every ceremony is single use, whether
// it then verifies or not.
func (s *Service) consume(ctx context.Context, id, kind string) (*Session, *webauthn.SessionData, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, nil, ErrSessionExpired
	}
	p := s.d.PasskeyPersister()
	c, err := p.GetPasskeySession(ctx, id)
	if errors.Is(err, ErrSessionNotFound) {
		return nil, nil, ErrSessionExpired
	} else if err != nil {
		return nil, nil, err
	}
	if c.Kind != kind {
		return nil, nil, ErrSessionExpired
	}
	ok, err := p.ConsumePasskeySession(ctx, id, time.Now())
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, ErrSessionExpired
	}
	var sd webauthn.SessionData
	if err := json.Unmarshal([]byte(c.Data), &sd); err != nil {
		return nil, nil, err
	}
	// The database keeps expiries in whole seconds (rounded up); the ceremony's own
	// expiry is exact. Past it, the answer is the contract's 400 "expired", not the 401
	// that go-webauthn's timeout check would turn into.
	if !sd.Expires.IsZero() && time.Now().After(sd.Expires) {
		return nil, nil, ErrSessionExpired
	}
	return c, &sd, nil
}

// FinishRequest finishes a ceremony with the browser's PublicKeyCredential.
type FinishRequest struct {
	SessionID  string          `json:"sessionId"`
	Response   json.RawMessage `json:"response"`
	RememberMe bool            `json:"rememberMe"`
	Name       string          `json:"name"`
}

func (b *FinishRequest) Validate() error {
	if err := x.RequiredMaxLen("sessionId", b.SessionID, 64); err != nil {
		return err
	}
	if len(b.Response) == 0 || string(b.Response) == "null" || !strings.HasPrefix(strings.TrimSpace(string(b.Response)), "{") {
		return x.ErrBadRequest.WithMessage("Field 'response' is required and must be the PublicKeyCredential JSON object.")
	}
	return nil
}

func protocolDetails(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		return pe.Details
	}
	return "the response could not be verified"
}

// malformed is the 400 of a response go-webauthn cannot parse.
func malformed(err error) error {
	return x.ErrBadRequest.WithMessage("Invalid passkey response: " + protocolDetails(err))
}

func (s *Service) fail(ctx context.Context, uid *int64, event, reason string) {
	s.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypePasskey, UserID: uid, Result: audit.ResultFailure, Reason: reason,
		Metadata: map[string]any{"event": event}})
}

// event is a passkey event of uid, in metadata md's "event".
func event(uid int64, md map[string]any) audit.Event {
	return audit.Event{Type: audit.TypePasskey, UserID: audit.Int64(uid), Metadata: md}
}
