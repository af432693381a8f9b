// Package session is the token service of pvauth's self-service flows, on the OAuth2
// provider (package oauth2/provider): it issues a login's tokens, rotates refresh
// tokens with reuse detection, authenticates and introspects access tokens, revokes
// sessions, and guards the self-service API (RequireUser).
package session

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"

	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/x"
)

// Authentication methods (the amr claim).
const (
	AMRPassword = provider.AMRPassword
	AMROTP      = provider.AMROTP
	AMRHardware = provider.AMRHardware
	AMRWebAuthn = provider.AMRWebAuthn
)

// TokenSet is what every self-service login and refresh returns.
type TokenSet struct {
	AccessToken           string    `json:"accessToken"`
	AccessTokenExpiresAt  time.Time `json:"accessTokenExpiresAt"`
	RefreshToken          string    `json:"refreshToken"`
	RefreshTokenExpiresAt time.Time `json:"refreshTokenExpiresAt"`
	Signature             string    `json:"signature"`
	// SessionID is the token family, for audit events; not part of the response.
	SessionID string `json:"-"`
}

// IssueRequest describes an authenticated self-service login.
type IssueRequest struct {
	IdentityID int64
	Email      string
	AMR        []string
	DeviceID   string
	// PasskeyID is the passkey of a passkey login: deleting it ends the session.
	PasskeyID  string
	RememberMe bool
	// AuthTime is when the user authenticated; zero means now. A flow that finishes a
	// login started earlier (an approval on a device) passes the real time.
	AuthTime time.Time
	// SessionID, when set, is the id of the new token family (the caller's audit event
	// names it from InTx, before the tokens exist); empty means a fresh one.
	SessionID string
	// InTx, when set, runs inside the transaction that stores the new tokens, before
	// them: its error (returned by Issue as is) stores nothing. A login that consumes a
	// challenge does it here, so the challenge and the tokens commit together, and
	// writes its audit event here (audit.Logger.LogTx).
	InTx func(ctx context.Context) error
}

// Principal is the caller behind a valid access token.
type Principal struct {
	IdentityID int64
	Subject    string
	Email      string
	SessionID  string
	AMR        []string
	DeviceID   string
	ClientID   string
	Scopes     []string
	ExpiresAt  time.Time
	// AuthTime is when the user actually authenticated (kept across refreshes).
	AuthTime time.Time
}

// Tokens is the token service of the self-service flows, on the OAuth2 provider:
// it issues a login's tokens through the first-party grant, rotates refresh tokens,
// authenticates access tokens and revokes sessions.
type Tokens struct {
	provider *provider.Provider
	p        provider.TokenPersister
	files    *FileSigner
	cfg      *config.Config
	hooks    TokenHooks
}

// TokenHooks are what Tokens asks of other services; each may be nil.
type TokenHooks struct {
	// SubjectCheck says why the inactive refresh token of an identity that may no
	// longer log in is refused (the rotation itself refuses such an identity).
	SubjectCheck func(ctx context.Context, identityID int64) error
	// PendingCheck reports whether a token is a live pending (MFA) token.
	PendingCheck func(ctx context.Context, token string) bool
	// OnStepUpRefused is told of an enrolment call refused for an old login
	// (the audit log).
	OnStepUpRefused func(ctx context.Context, p *Principal, path string)
}

// TokensProvider is implemented by the registry.
type TokensProvider interface {
	Tokens() *Tokens
}

// NewTokens builds the token service on the provider prov, whose tokens p stores.
func NewTokens(cfg *config.Config, prov *provider.Provider, p provider.TokenPersister, h TokenHooks) *Tokens {
	return &Tokens{provider: prov, p: p, files: NewFileSigner(cfg.Secrets.FileSignature), cfg: cfg, hooks: h}
}

// Keys exposes the signing keys.
func (t *Tokens) Keys() *provider.KeyManager { return t.provider.Keys() }

// FileSigner exposes the file-access signer.
func (t *Tokens) FileSigner() *FileSigner { return t.files }

// Issue mints a token set for an authenticated self-service login.
func (t *Tokens) Issue(ctx context.Context, in IssueRequest) (*TokenSet, error) {
	sess := provider.NewSession(in.IdentityID)
	sess.Email = in.Email
	sess.AMR = in.AMR
	sess.DeviceID = in.DeviceID
	sess.RememberMe = in.RememberMe
	sess.AuthTime = in.AuthTime.UTC().Truncate(time.Second)
	if in.AuthTime.IsZero() {
		sess.AuthTime = time.Now().UTC().Truncate(time.Second)
	}
	sess.SessionID = in.SessionID
	if sess.SessionID == "" {
		sess.SessionID = uuid.NewString()
	}
	ar, err := t.provider.NewSelfServiceRequest(ctx, sess)
	if err != nil {
		return nil, err
	}
	if in.PasskeyID != "" {
		ctx = provider.WithPasskey(ctx, in.PasskeyID)
	}
	// In the transaction that stores the tokens: the identity's shared lock and state
	// (a disable or revocation in flight is waited for, see provider.TokenPersister),
	// then the caller's gate.
	var inTxErr error
	ctx = provider.WithIssueTx(ctx, func(ctx context.Context) error {
		ok, err := t.p.SubjectActive(ctx, in.IdentityID)
		if err != nil {
			return err
		}
		if !ok {
			inTxErr = ErrIdentityInactive
			return inTxErr
		}
		if in.InTx != nil {
			inTxErr = in.InTx(ctx)
		}
		return inTxErr
	})
	resp, err := t.provider.NewAccessResponse(ctx, ar)
	if inTxErr != nil {
		return nil, inTxErr
	}
	if err != nil {
		return nil, x.ErrInternal.WithCause(err)
	}
	return t.tokenSet(resp, sess), nil
}

func (t *Tokens) tokenSet(resp fosite.AccessResponder, sess *provider.Session) *TokenSet {
	rt, _ := resp.GetExtra("refresh_token").(string)
	at := sess.GetExpiresAt(fosite.AccessToken)
	return &TokenSet{
		AccessToken:           resp.GetAccessToken(),
		AccessTokenExpiresAt:  at,
		RefreshToken:          rt,
		RefreshTokenExpiresAt: sess.GetExpiresAt(fosite.RefreshToken),
		Signature:             t.files.Sign(sess.IdentityID, at),
		SessionID:             sess.SessionID,
	}
}

// Refresh errors.
var (
	ErrRefreshInvalid = x.ErrUnauthorized.Derive("The refresh token is invalid, expired or revoked.")
	ErrRefreshReused  = x.ErrUnauthorized.Derive("The refresh token was already used; the session has been revoked.")
)

// RefreshOutcome is what a refresh transaction did, for its audit event.
type RefreshOutcome = provider.RefreshOutcome

// Refresh rotates a self-service refresh token through fosite's refresh grant. A token
// that was already rotated revokes its whole family (fosite's reuse detection). inTx,
// when not nil, runs in the transaction of the rotation or of the reuse revocation,
// before it commits (the audit event); its error undoes the transaction.
func (t *Tokens) Refresh(ctx context.Context, refreshToken string, inTx func(ctx context.Context, o RefreshOutcome) error) (*TokenSet, *provider.Session, error) {
	if refreshToken == "" || len(refreshToken) > 512 {
		return nil, nil, ErrRefreshInvalid
	}
	// The client is the one the token was issued to; find it from the stored row so the
	// caller does not have to say.
	row, err := t.refreshRow(ctx, refreshToken)
	if errors.Is(err, provider.ErrTokenNotFound) {
		return nil, nil, ErrRefreshInvalid
	} else if err != nil {
		return nil, nil, err
	}
	// The owner, for the caller's audit event even when the refresh fails.
	owner := &provider.Session{Subject: row.Subject}
	owner.IdentityID, _ = strconv.ParseInt(row.Subject, 10, 64)
	if !provider.IsFirstPartyClient(row.ClientID) {
		return nil, owner, ErrRefreshInvalid
	}
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
		"client_id":     {row.ClientID},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if inTx != nil {
		ctx = provider.WithCommitHook(ctx, owner.IdentityID, inTx)
	}
	// A rotation refuses an identity that is not active, under its lock; an inactive
	// token (revoked, as disabling revokes them all) says why only here.
	if !row.Active && t.hooks.SubjectCheck != nil && owner.IdentityID != 0 {
		if err := t.hooks.SubjectCheck(ctx, owner.IdentityID); err != nil {
			return nil, owner, ErrRefreshInvalid.WithCause(err)
		}
	}
	sess := &provider.Session{}
	// fosite reads the row again to validate the grant; it gets the one just read.
	ar, err := t.provider.NewAccessRequest(provider.WithRead(ctx, provider.KindRefresh, row), req, sess)
	if err != nil {
		return nil, owner, refreshError(err)
	}
	wctx, lost := t.provider.Store().WatchRotation(ctx)
	resp, err := t.provider.NewAccessResponse(wctx, ar)
	if err != nil {
		if reused, rerr := lost(ctx); errors.Is(rerr, provider.ErrSubjectInactive) {
			return nil, owner, ErrRefreshInvalid.WithCause(rerr)
		} else if rerr != nil {
			return nil, owner, rerr
		} else if reused {
			return nil, owner, ErrRefreshReused.WithCause(err)
		}
		return nil, owner, refreshError(err)
	}
	s, _ := ar.GetSession().(*provider.Session)
	if s == nil {
		return nil, nil, x.ErrInternal
	}
	return t.tokenSet(resp, s), s, nil
}

// refreshRow loads the stored row of a refresh token.
func (t *Tokens) refreshRow(ctx context.Context, refreshToken string) (*provider.TokenRow, error) {
	return t.p.GetToken(ctx, provider.KindRefresh, x.SHA256Hex(refreshSignature(refreshToken)))
}

func refreshSignature(token string) string {
	if i := strings.LastIndexByte(token, '.'); i >= 0 {
		return token[i+1:]
	}
	return token
}

func refreshError(err error) error {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		switch {
		case errors.Is(err, fosite.ErrInactiveToken):
			return ErrRefreshReused.WithCause(err)
		case rfc.ErrorField == fosite.ErrServerError.ErrorField:
			return x.ErrInternal.WithCause(err)
		case strings.Contains(rfc.HintField, "already used"):
			return ErrRefreshReused.WithCause(err)
		default:
			return ErrRefreshInvalid.WithCause(err)
		}
	}
	return x.ErrInternal.WithCause(err)
}

// ErrTokenInvalid is the 401 for a missing, malformed, expired or revoked access token.
var ErrTokenInvalid = x.ErrUnauthorized.Derive("The access token is missing, invalid, expired or revoked.")

// Authenticate validates an access token: signature and expiry through the signer, and
// liveness through the store, so logout and revocation take effect at once.
func (t *Tokens) Authenticate(ctx context.Context, token string) (*Principal, error) {
	if token == "" || len(token) > 4096 || strings.Count(token, ".") != 2 {
		return nil, ErrTokenInvalid
	}
	sess := &provider.Session{}
	use, ar, err := t.provider.IntrospectToken(ctx, token, fosite.AccessToken, sess)
	if err != nil || use != fosite.AccessToken {
		// A token that could not be looked up is not an invalid one: a database failure
		// keeps its cause (x.AsError answers it 503).
		if err != nil && (provider.IsServerError(err) || x.IsUnavailable(err)) {
			return nil, x.ErrInternal.WithCause(err)
		}
		return nil, ErrTokenInvalid
	}
	s, _ := ar.GetSession().(*provider.Session)
	if s == nil {
		return nil, ErrTokenInvalid
	}
	return &Principal{
		IdentityID: s.IdentityID,
		Subject:    s.Subject,
		Email:      s.Email,
		SessionID:  ar.GetID(),
		AMR:        s.AMR,
		DeviceID:   s.DeviceID,
		ClientID:   ar.GetClient().GetID(),
		Scopes:     ar.GetGrantedScopes(),
		ExpiresAt:  s.GetExpiresAt(fosite.AccessToken),
		AuthTime:   s.AuthTime,
	}, nil
}

// Introspect answers RFC 7662 for any token pvauth issued; everything else is
// {active:false}.
func (t *Tokens) Introspect(ctx context.Context, token, hint string) (*provider.Introspection, error) {
	return t.provider.Introspect(ctx, token, hint)
}

// ErrIdentityInactive refuses tokens to an identity disabled or deleted while it was
// logging in.
var ErrIdentityInactive = x.ErrUnauthorized.Derive("The account cannot log in.")

// RevokeSession revokes every token of a family (logout), including one that a refresh
// in flight is minting.
func (t *Tokens) RevokeSession(ctx context.Context, sessionID string) error {
	return t.p.RevokeFamily(ctx, sessionID)
}

// RevokeIdentitySessions revokes everything of an identity: every token, unexchanged
// authorization codes, pending logins and unfinished OAuth2 hand-offs; it returns how
// many sessions ended. Inside a transaction carried by ctx it joins it.
func (t *Tokens) RevokeIdentitySessions(ctx context.Context, identityID int64) (int, error) {
	return t.p.RevokeSubject(ctx, strconv.FormatInt(identityID, 10))
}

// InIdentityTx runs fn in one write transaction holding the identity's shared lock (see
// TokenPersister), as a login's token transaction does: an identity disabled or
// revoked first is refused with ErrIdentityInactive, and a revocation that comes later
// sees everything fn wrote. fn should only touch the database.
func (t *Tokens) InIdentityTx(ctx context.Context, identityID int64, fn func(ctx context.Context) error) error {
	return t.p.GroupTransaction(ctx, func(ctx context.Context) error {
		ok, err := t.p.SubjectActive(ctx, identityID)
		if err != nil {
			return err
		}
		if !ok {
			return ErrIdentityInactive
		}
		return fn(ctx)
	})
}

// Authenticator kinds whose sessions RemoveAuthenticators ends together.
const (
	AuthenticatorDevice  = provider.AuthenticatorDevice
	AuthenticatorPasskey = provider.AuthenticatorPasskey
)

// RemoveAuthenticators deactivates the active devices or passkeys (kind
// AuthenticatorDevice, AuthenticatorPasskey) of an identity, only the one with id when id
// is not empty, and ends every session they signed in, atomically. It returns how many
// it deactivated and how many sessions ended.
func (t *Tokens) RemoveAuthenticators(ctx context.Context, identityID int64, kind, id string) (removed, sessions int, err error) {
	return t.p.RemoveAuthenticators(ctx, strconv.FormatInt(identityID, 10), kind, id)
}

// Refreshable returns the subject and family of a refresh token that is still active.
func (t *Tokens) Refreshable(ctx context.Context, refreshToken string) (string, string, error) {
	row, err := t.refreshRow(ctx, refreshToken)
	if err != nil {
		return "", "", err
	}
	if !row.Active {
		return "", "", ErrRefreshInvalid
	}
	return row.Subject, row.RequestID, nil
}
