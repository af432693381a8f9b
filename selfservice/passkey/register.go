package passkey

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/x"
)

// NameRequest names a passkey.
type NameRequest struct {
	Name string `json:"name"`
}

func (b *NameRequest) Validate() error {
	b.Name = strings.TrimSpace(b.Name)
	return x.RequiredMaxLen("name", b.Name, 255)
}

// RegisterBegin starts the registration of a passkey named name for id (the Caller),
// excluding the authenticators that hold one of its passkeys already.
func (s *Service) RegisterBegin(ctx context.Context, id *identity.Identity, name string) (*BeginResult, error) {
	u, err := s.loadUser(ctx, id)
	if err != nil {
		return nil, err
	}
	exclude := make([]protocol.CredentialDescriptor, 0, len(u.creds))
	for _, c := range u.creds {
		exclude = append(exclude, c.Descriptor())
	}
	creation, sd, err := s.wa.BeginRegistration(u, webauthn.WithExclusions(exclude))
	if err != nil {
		return nil, err
	}
	sid, err := s.saveSession(ctx, KindRegister, &id.ID, &name, sd)
	if err != nil {
		return nil, err
	}
	return &BeginResult{PublicKey: creation.Response, SessionID: sid}, nil
}

// RegisterFinish checks the attestation of id's (the Caller's) registration ceremony
// and stores the passkey.
func (s *Service) RegisterFinish(ctx context.Context, id *identity.Identity, b *FinishRequest) (*Credential, error) {
	cer, sd, err := s.consume(ctx, b.SessionID, KindRegister)
	if err == nil && (cer.IdentityID == nil || *cer.IdentityID != id.ID) {
		err = ErrSessionExpired
	}
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(b.Response)
	if err != nil {
		s.fail(ctx, &id.ID, "register", "malformed attestation")
		return nil, malformed(err)
	}
	u, err := s.loadUser(ctx, id)
	if err != nil {
		return nil, err
	}
	cred, err := s.wa.CreateCredential(u, *sd, parsed)
	if err != nil {
		s.fail(ctx, &id.ID, "register", protocolDetails(err))
		return nil, ErrVerification
	}
	c := newCredential(id.ID, cer, cred)
	al := s.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := s.d.PasskeyPersister().CreatePasskey(ctx, c); err != nil {
			return err
		}
		return al.LogTx(ctx, event(id.ID, map[string]any{"event": "register", "passkeyId": c.ID, "aaguid": c.AAGUID}))
	}); errors.Is(err, ErrDuplicateCredential) {
		return nil, x.ErrConflict.WithMessage("This passkey is already registered.")
	} else if err != nil {
		return nil, err
	}
	s.d.DeviceNotifier().AuthenticatorAdded(ctx, id.ID, devicekey.AuthenticatorPasskey, c.ID, c.Name, "")
	return c, nil
}

// newCredential is the passkey go-webauthn created in ceremony cer, to be stored.
func newCredential(uid int64, cer *Session, cred *webauthn.Credential) *Credential {
	data, _ := json.Marshal(cred)
	transports := make([]string, 0, len(cred.Transport))
	for _, t := range cred.Transport {
		transports = append(transports, string(t))
	}
	tr, _ := json.Marshal(transports)
	name := ""
	if cer.Name != nil {
		name = *cer.Name
	}
	aaguid := ""
	if g, err := uuid.FromBytes(cred.Authenticator.AAGUID); err == nil {
		aaguid = g.String()
	}
	return &Credential{
		ID: uuid.NewString(), IdentityID: uid, CredentialID: base64.RawURLEncoding.EncodeToString(cred.ID), Name: name,
		Data: string(data), AttestationType: cred.AttestationType, AAGUID: aaguid, SignCount: int64(cred.Authenticator.SignCount),
		Transports: string(tr), BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState,
	}
}
