package passkey

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/session"
)

// LoginBegin starts a login: with the passkeys of email, or, when email is blank, with
// whichever discoverable passkey the authenticator offers.
func (s *Service) LoginBegin(ctx context.Context, email string) (*BeginResult, error) {
	var (
		assertion *protocol.CredentialAssertion
		sd        *webauthn.SessionData
		uid       *int64
		err       error
	)
	if strings.TrimSpace(email) == "" {
		assertion, sd, err = s.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	} else {
		id, ferr := s.d.IdentityPersister().FindIdentityByEmail(ctx, identity.NormalizeEmail(email))
		if errors.Is(ferr, identity.ErrNotFound) || (ferr == nil && id.State != identity.StateActive) {
			return nil, ErrNoPasskeys
		} else if ferr != nil {
			return nil, ferr
		}
		u, lerr := s.loadUser(ctx, id)
		if lerr != nil {
			return nil, lerr
		}
		if len(u.creds) == 0 {
			return nil, ErrNoPasskeys
		}
		uid = &id.ID
		assertion, sd, err = s.wa.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationRequired))
	}
	if err != nil {
		return nil, err
	}
	sid, err := s.saveSession(ctx, KindLogin, uid, nil, sd)
	if err != nil {
		return nil, err
	}
	return &BeginResult{PublicKey: assertion.Response, SessionID: sid}, nil
}

// LoginResult is a finished login.
type LoginResult struct {
	Success bool              `json:"success"`
	Tokens  *session.TokenSet `json:"tokens"`
}

// LoginFinish checks the assertion of b's login ceremony and signs its owner in.
func (s *Service) LoginFinish(ctx context.Context, b *FinishRequest) (*LoginResult, error) {
	cer, sd, err := s.consume(ctx, b.SessionID, KindLogin)
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(b.Response)
	if err != nil {
		s.fail(ctx, nil, "login", "malformed assertion")
		return nil, malformed(err)
	}
	stored, id, err := s.assertionOwner(ctx, cer, parsed)
	if err != nil {
		return nil, err
	}
	u, err := s.loadUser(ctx, id)
	if err != nil {
		return nil, err
	}
	var cred *webauthn.Credential
	if cer.IdentityID != nil {
		cred, err = s.wa.ValidateLogin(u, *sd, parsed)
	} else {
		cred, err = s.wa.ValidateDiscoverableLogin(func(rawID, userHandle []byte) (webauthn.User, error) {
			return u, nil
		}, *sd, parsed)
	}
	if err != nil {
		s.fail(ctx, &id.ID, "login", protocolDetails(err))
		return nil, ErrVerification
	}
	data, _ := json.Marshal(cred)
	if err := s.d.PasskeyPersister().UpdatePasskeyUse(ctx, stored.ID, string(data), int64(cred.Authenticator.SignCount),
		cred.Authenticator.CloneWarning, time.Now()); err != nil {
		return nil, err
	}
	if cred.Authenticator.CloneWarning && !stored.CloneWarning {
		s.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypePasskey, UserID: audit.Int64(id.ID), Result: audit.ResultFailure,
			Reason: "sign counter regressed: possible cloned authenticator", Metadata: map[string]any{"event": "clone_warning", "passkeyId": stored.ID}})
	}
	ts, err := s.issue(ctx, id, stored, cer.IdentityID == nil, b.RememberMe)
	if err != nil {
		return nil, err
	}
	return &LoginResult{Success: true, Tokens: ts}, nil
}

// assertionOwner finds the active passkey an assertion names and its active owner, who
// must be the ceremony's identity when it was started for one.
func (s *Service) assertionOwner(ctx context.Context, cer *Session, parsed *protocol.ParsedCredentialAssertionData) (*Credential, *identity.Identity, error) {
	stored, err := s.d.PasskeyPersister().GetPasskeyByCredentialID(ctx, base64.RawURLEncoding.EncodeToString(parsed.RawID))
	if errors.Is(err, ErrNotFound) || (err == nil && !stored.IsActive) {
		s.fail(ctx, nil, "login", "unknown or deleted credential")
		return nil, nil, ErrVerification
	} else if err != nil {
		return nil, nil, err
	}
	if cer.IdentityID != nil && *cer.IdentityID != stored.IdentityID {
		s.fail(ctx, cer.IdentityID, "login", "credential of another user")
		return nil, nil, ErrVerification
	}
	id, err := s.d.IdentityPersister().GetIdentity(ctx, stored.IdentityID)
	if err != nil && !errors.Is(err, identity.ErrNotFound) {
		return nil, nil, err // the database failing, not the identity gone
	}
	if err != nil || id.State != identity.StateActive {
		s.fail(ctx, &stored.IdentityID, "login", "identity disabled or deleted")
		return nil, nil, ErrVerification
	}
	return stored, id, nil
}

// issue issues the tokens of a login with passkey stored. It runs under the identity's
// lock (see provider.TokenPersister): a deletion of the passkey that committed first
// refuses the login; one that comes after ends it. The login's event commits with the
// tokens.
func (s *Service) issue(ctx context.Context, id *identity.Identity, stored *Credential, discoverable, rememberMe bool) (*session.TokenSet, error) {
	sid := uuid.NewString()
	return s.d.Tokens().Issue(ctx, session.IssueRequest{IdentityID: id.ID, Email: id.Email, AMR: []string{session.AMRWebAuthn},
		PasskeyID: stored.ID, RememberMe: rememberMe, SessionID: sid,
		InTx: func(ctx context.Context) error {
			c, err := s.d.PasskeyPersister().GetPasskeyByCredentialID(ctx, stored.CredentialID)
			if errors.Is(err, ErrNotFound) || (err == nil && !c.IsActive) {
				return ErrVerification
			} else if err != nil {
				return err
			}
			return s.d.AuditLogger().LogTx(ctx, audit.Event{Type: audit.TypePasskey, UserID: audit.Int64(id.ID), Result: audit.ResultSuccess,
				Metadata: map[string]any{"event": "login", "passkeyId": stored.ID, "discoverable": discoverable, "sessionId": sid}})
		}})
}
