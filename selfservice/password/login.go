package password

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// Errors of the password step and of pending tokens (the second factor's are in otp.go).
var (
	ErrBadCredentials = x.ErrUnauthorized.Derive("Invalid email or password.")
	ErrPendingInvalid = x.ErrUnauthorized.Derive("The login session is invalid or expired. Log in again.")
)

// LoginResult is the answer of the password step.
type LoginResult struct {
	RegisterOTP bool   `json:"registerOtp"`
	Token       string `json:"token"`
}

// Login checks the password and starts a pending login.
func (s *Service) Login(ctx context.Context, email, password string, rememberMe bool) (*LoginResult, error) {
	email = identity.NormalizeEmail(email)
	// Failures only are counted, per email and client network (so an attacker elsewhere
	// cannot lock the user out of the network the user signs in from) and per email from
	// anywhere (a guesser spread over many networks); a success clears its network's count.
	netKey := ratelimit.Key{Rule: ratelimit.RuleLogin, Key: email + "|" + x.ClientNetwork(x.ClientIPFromContext(ctx))}
	attempt, err := s.d.RateLimiter().Reserve(ctx, netKey, ratelimit.Key{Rule: ratelimit.RuleLoginEmail, Key: email})
	if err != nil {
		s.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypeLogin, Result: audit.ResultFailure, Reason: "rate_limited"})
		return nil, err
	}
	counted := false // a failed guess or a success; anything else (a server error) is no guess
	defer func() {
		if !counted {
			attempt.Refund(ctx)
		}
	}()
	id, err := s.checkPassword(ctx, email, password)
	if err != nil {
		counted = errors.Is(err, ErrBadCredentials)
		return nil, err
	}
	res, err := s.startFlow(ctx, id, rememberMe)
	if err != nil {
		return nil, err
	}
	counted = true
	attempt.Succeed(ctx, netKey)
	return res, nil
}

// checkPassword returns the active identity of email if password is its password, and
// ErrBadCredentials (logged with the reason) for every kind of wrong guess.
func (s *Service) checkPassword(ctx context.Context, email, password string) (*identity.Identity, error) {
	hasher := s.d.IdentityHasher()
	id, err := s.d.IdentityPersister().FindIdentityByEmail(ctx, email)
	if errors.Is(err, identity.ErrNotFound) {
		// Same work and the same answer as a wrong password (and the same 503 when no
		// hashing slot is free, so that overload reveals nothing either).
		if err := hasher.CompareDummy(ctx, password); errors.Is(err, identity.ErrHasherBusy) {
			return nil, err
		}
		s.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypeLogin, Result: audit.ResultFailure, Reason: "unknown_email"})
		return nil, ErrBadCredentials
	} else if err != nil {
		return nil, err
	}
	var cmpErr error
	if id.PasswordHash == "" {
		cmpErr = hasher.CompareDummy(ctx, password)
	} else {
		cmpErr = hasher.Compare(ctx, password, id.PasswordHash)
	}
	if errors.Is(cmpErr, identity.ErrHasherBusy) {
		return nil, cmpErr // no guess was checked: not counted as a failure
	}
	if cmpErr == nil && id.State == identity.StateActive {
		return id, nil
	}
	reason := "wrong_password"
	if cmpErr == nil {
		reason = "identity_disabled"
	} else if !errors.Is(cmpErr, identity.ErrMismatchedPassword) {
		if ctx.Err() != nil {
			return nil, x.ErrUnavailable.WithCause(cmpErr)
		}
		reason = "unreadable_hash"
	}
	s.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypeLogin, UserID: audit.Int64(id.ID), Result: audit.ResultFailure, Reason: reason})
	return nil, ErrBadCredentials
}

// startFlow stores the pending login of id and returns its token.
func (s *Service) startFlow(ctx context.Context, id *identity.Identity, rememberMe bool) (*LoginResult, error) {
	tok, err := newPendingToken()
	if err != nil {
		return nil, err
	}
	tok = session.PendingTokenPrefix + tok
	f := &Flow{
		ID: uuid.NewString(), TokenHash: x.SHA256Hex(tok), IdentityID: id.ID, State: FlowPending,
		RememberMe: rememberMe, ExpiresAt: time.Now().Add(s.d.Config().TTL.PendingLogin),
	}
	// The pending login and its event commit together.
	al := s.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := s.d.LoginFlowPersister().CreateLoginFlow(ctx, f); err != nil {
			return err
		}
		return al.LogTx(ctx, audit.Event{Type: audit.TypeLogin, UserID: audit.Int64(id.ID), Result: audit.ResultSuccess,
			Metadata: map[string]any{"step": "password", "registerOtp": !id.MFAEnabled}})
	}); err != nil {
		return nil, err
	}
	return &LoginResult{RegisterOTP: !id.MFAEnabled, Token: tok}, nil
}

// pending resolves a pending token to its live flow and identity.
func (s *Service) pending(ctx context.Context, tok string) (*Flow, *identity.Identity, error) {
	if !strings.HasPrefix(tok, session.PendingTokenPrefix) || len(tok) > 256 {
		return nil, nil, ErrPendingInvalid
	}
	f, err := s.d.LoginFlowPersister().GetLoginFlowByTokenHash(ctx, x.SHA256Hex(tok))
	if errors.Is(err, ErrFlowNotFound) {
		return nil, nil, ErrPendingInvalid
	} else if err != nil {
		return nil, nil, err
	}
	if !f.Usable(time.Now()) {
		return nil, nil, ErrPendingInvalid
	}
	id, err := s.d.IdentityPersister().GetIdentity(ctx, f.IdentityID)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, nil, ErrPendingInvalid
	} else if err != nil {
		return nil, nil, err
	}
	if id.State != identity.StateActive {
		return nil, nil, ErrPendingInvalid
	}
	return f, id, nil
}

// PendingCheck reports whether tok is a live pending token (for the 403 on full endpoints).
func (s *Service) PendingCheck(ctx context.Context, tok string) bool {
	f, err := s.d.LoginFlowPersister().GetLoginFlowByTokenHash(ctx, x.SHA256Hex(tok))
	return err == nil && f.Usable(time.Now())
}
