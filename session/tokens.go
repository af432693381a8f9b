package session

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"

	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/x"
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

// Tokens is the one token mechanism: a fosite provider with pvauth's storage, keys and
// self-service grant.
type Tokens struct {
	provider fosite.OAuth2Provider
	fcfg     *fosite.Config
	store    *Store
	p        TokenPersister
	keys     *KeyManager
	files    *FileSigner
	cfg      *config.Config
	// SubjectCheck, when set, refuses refreshes for identities that no longer may log in.
	SubjectCheck func(ctx context.Context, identityID int64) error
	// PendingCheck, when set, reports whether a token is a live pending (MFA) token.
	PendingCheck func(ctx context.Context, token string) bool
	// OnStepUpRefused, when set, is told of an enrolment call refused for an old login
	// (the audit log).
	OnStepUpRefused func(ctx context.Context, p *Principal, path string)
}

// TokensProvider is implemented by the registry.
type TokensProvider interface {
	Tokens() *Tokens
}

// NewTokens composes the fosite provider. Extra factories (the OAuth2 flows) are
// appended by the oauth2 package through Compose options.
func NewTokens(cfg *config.Config, p TokenPersister, keys *KeyManager, extra ...compose.Factory) *Tokens {
	secrets := make([][]byte, 0, len(cfg.Secrets.Default))
	for _, s := range cfg.Secrets.Default {
		secrets = append(secrets, []byte(s))
	}
	issuer := cfg.Issuer()
	fcfg := &fosite.Config{
		AccessTokenLifespan:            cfg.TTL.AccessToken,
		RefreshTokenLifespan:           cfg.TTL.RefreshToken,
		AuthorizeCodeLifespan:          10 * time.Minute,
		IDTokenLifespan:                cfg.TTL.AccessToken,
		AccessTokenIssuer:              issuer,
		IDTokenIssuer:                  issuer,
		TokenURL:                       issuer + "/oauth2/token",
		GlobalSecret:                   secrets[0],
		RotatedGlobalSecrets:           secrets[1:],
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       fosite.DefaultAudienceMatchingStrategy,
		RefreshTokenScopes:             []string{"offline_access", "offline"},
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: false,
		SendDebugMessagesToClients:     false,
		TokenEntropy:                   32,
		MinParameterEntropy:            fosite.MinParameterEntropy,
	}
	store := NewStore(p, selfServiceClients(cfg.Tokens.Audience, cfg.TTL.RefreshToken, cfg.TTL.RefreshTokenRememberMe), nil)
	signer := keys.Signer()
	core := &oauth2.DefaultJWTStrategy{Signer: signer, HMACSHAStrategy: compose.NewOAuth2HMACStrategy(fcfg), Config: fcfg}
	strategy := &compose.CommonStrategy{
		CoreStrategy:               core,
		OpenIDConnectTokenStrategy: &openid.DefaultStrategy{Signer: signer, Config: fcfg},
		Signer:                     signer,
	}
	grant := func(c fosite.Configurator, st any, s any) any {
		return &selfServiceGrant{strategy: core, store: store, config: fcfg}
	}
	factories := append([]compose.Factory{
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2PKCEFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
		grant,
	}, extra...)
	provider := compose.Compose(fcfg, store, strategy, factories...)
	return &Tokens{provider: provider, fcfg: fcfg, store: store, p: p, keys: keys, files: NewFileSigner(cfg.Secrets.FileSignature), cfg: cfg}
}

// Provider exposes the fosite provider to the OAuth2 endpoints.
func (t *Tokens) Provider() fosite.OAuth2Provider { return t.provider }

// FositeConfig exposes fosite's configuration (the OAuth2 package adds handlers to it).
func (t *Tokens) FositeConfig() *fosite.Config { return t.fcfg }

// Store exposes the fosite storage.
func (t *Tokens) Store() *Store { return t.store }

// Keys exposes the signing keys.
func (t *Tokens) Keys() *KeyManager { return t.keys }

// FileSigner exposes the file-access signer.
func (t *Tokens) FileSigner() *FileSigner { return t.files }

// Issue mints a token set for an authenticated self-service login.
func (t *Tokens) Issue(ctx context.Context, in IssueRequest) (*TokenSet, error) {
	clientID := ClientSelfService
	if in.RememberMe {
		clientID = ClientSelfServiceRemember
	}
	client, err := t.store.GetClient(ctx, clientID)
	if err != nil {
		return nil, err
	}
	sess := NewSession(in.IdentityID)
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

	ar := fosite.NewAccessRequest(sess)
	ar.ID = sess.SessionID
	ar.RequestedAt = time.Now().UTC().Truncate(time.Second)
	ar.Client = client
	ar.GrantTypes = fosite.Arguments{GrantSelfService}
	ar.Form = url.Values{}
	for _, s := range selfServiceScopes {
		ar.RequestedScope = append(ar.RequestedScope, s)
		ar.GrantScope(s)
	}
	for _, a := range t.cfg.Tokens.Audience {
		ar.RequestedAudience = append(ar.RequestedAudience, a)
		ar.GrantAudience(a)
	}
	if in.PasskeyID != "" {
		ctx = context.WithValue(ctx, passkeyKey{}, in.PasskeyID)
	}
	// In the transaction that stores the tokens: the identity's shared lock and state
	// (a disable or revocation in flight is waited for, see TokenPersister), then the
	// caller's gate.
	var inTxErr error
	ctx = context.WithValue(ctx, inTxKey{}, func(ctx context.Context) error {
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

func (t *Tokens) tokenSet(resp fosite.AccessResponder, sess *Session) *TokenSet {
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

// RefreshOutcome is what a refresh transaction did, for its audit event: the session of
// the rotated family, or (Reused) the family revoked because a rotated token came back.
type RefreshOutcome struct {
	Reused     bool
	IdentityID int64  // the token's owner (0 for a subject that is no identity)
	FamilyID   string // the session: the token family's request id
	DeviceID   string // the device the session signed in with (not on reuse)
}

// Refresh rotates a self-service refresh token through fosite's refresh grant. A token
// that was already rotated revokes its whole family (fosite's reuse detection). inTx,
// when not nil, runs in the transaction of the rotation or of the reuse revocation,
// before it commits (the audit event); its error undoes the transaction.
func (t *Tokens) Refresh(ctx context.Context, refreshToken string, inTx func(ctx context.Context, o RefreshOutcome) error) (*TokenSet, *Session, error) {
	if refreshToken == "" || len(refreshToken) > 512 {
		return nil, nil, ErrRefreshInvalid
	}
	// The client is the one the token was issued to; find it from the stored row so the
	// caller does not have to say.
	row, err := t.refreshRow(ctx, refreshToken)
	if errors.Is(err, ErrTokenNotFound) {
		return nil, nil, ErrRefreshInvalid
	} else if err != nil {
		return nil, nil, err
	}
	// The owner, for the caller's audit event even when the refresh fails.
	owner := &Session{Subject: row.Subject}
	owner.IdentityID, _ = strconv.ParseInt(row.Subject, 10, 64)
	if row.ClientID != ClientSelfService && row.ClientID != ClientSelfServiceRemember {
		return nil, owner, ErrRefreshInvalid
	}
	if t.SubjectCheck != nil {
		if id, err := strconv.ParseInt(row.Subject, 10, 64); err == nil {
			if err := t.SubjectCheck(ctx, id); err != nil {
				return nil, owner, ErrRefreshInvalid.WithCause(err)
			}
		}
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
		ctx = context.WithValue(ctx, commitHookKey{}, &commitHook{fn: inTx, identityID: owner.IdentityID})
	}
	sess := &Session{}
	ar, err := t.provider.NewAccessRequest(ctx, req, sess)
	if err != nil {
		return nil, owner, refreshError(err)
	}
	wctx, lost := t.store.WatchRotation(ctx)
	resp, err := t.provider.NewAccessResponse(wctx, ar)
	if err != nil {
		if reused, rerr := lost(ctx); rerr != nil {
			return nil, owner, rerr
		} else if reused {
			return nil, owner, ErrRefreshReused.WithCause(err)
		}
		return nil, owner, refreshError(err)
	}
	s, _ := ar.GetSession().(*Session)
	if s == nil {
		return nil, nil, x.ErrInternal
	}
	return t.tokenSet(resp, s), s, nil
}

// refreshRow loads the stored row of a refresh token.
func (t *Tokens) refreshRow(ctx context.Context, refreshToken string) (*TokenRow, error) {
	return t.p.GetToken(ctx, KindRefresh, x.SHA256Hex(refreshSignature(refreshToken)))
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
	sess := &Session{}
	use, ar, err := t.provider.IntrospectToken(ctx, token, fosite.AccessToken, sess)
	if err != nil || use != fosite.AccessToken {
		// A token that could not be looked up is not an invalid one: a database failure
		// keeps its cause (x.AsError answers it 503).
		if err != nil && (isServerError(err) || x.IsUnavailable(err)) {
			return nil, x.ErrInternal.WithCause(err)
		}
		return nil, ErrTokenInvalid
	}
	s, _ := ar.GetSession().(*Session)
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

func isServerError(err error) bool {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		return rfc.ErrorField == fosite.ErrServerError.ErrorField
	}
	return false
}

// Introspection is the RFC 7662 response.
type Introspection struct {
	Active    bool     `json:"active"`
	Aud       []string `json:"aud,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	Jti       string   `json:"jti,omitempty"`
	Nbf       int64    `json:"nbf,omitempty"`
	Scope     string   `json:"scope,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	TokenUse  string   `json:"token_use,omitempty"`
	Username  string   `json:"username,omitempty"`
	Sid       string   `json:"sid,omitempty"`
	Amr       []string `json:"amr,omitempty"`
	Did       string   `json:"did,omitempty"`
	AuthTime  int64    `json:"auth_time,omitempty"`
}

// Introspect answers for any token pvauth issued; everything else is {active:false}.
func (t *Tokens) Introspect(ctx context.Context, token, hint string) (*Introspection, error) {
	use := fosite.AccessToken
	if hint == "refresh_token" {
		use = fosite.RefreshToken
	}
	if token == "" || len(token) > 4096 {
		return &Introspection{Active: false}, nil
	}
	sess := &Session{}
	gotUse, ar, err := t.provider.IntrospectToken(ctx, token, use, sess)
	if err != nil {
		if isServerError(err) || x.IsUnavailable(err) {
			return nil, err
		}
		return &Introspection{Active: false}, nil
	}
	s, _ := ar.GetSession().(*Session)
	if s == nil {
		return &Introspection{Active: false}, nil
	}
	out := &Introspection{
		Active:   true,
		Aud:      ar.GetGrantedAudience(),
		ClientID: ar.GetClient().GetID(),
		Iss:      t.cfg.Issuer(),
		Scope:    strings.Join(ar.GetGrantedScopes(), " "),
		Sub:      s.Subject,
		Username: s.Email,
		Sid:      ar.GetID(),
		Amr:      s.AMR,
		Did:      s.DeviceID,
	}
	if !s.AuthTime.IsZero() {
		out.AuthTime = s.AuthTime.Unix()
	}
	if gotUse == fosite.AccessToken {
		out.TokenType, out.TokenUse = "Bearer", "access_token"
		out.Exp = s.GetExpiresAt(fosite.AccessToken).Unix()
		// The JWT was verified by fosite above; read its registered claims.
		if c := jwtPayload(token); c != nil {
			out.Jti, _ = c["jti"].(string)
			out.Iat = num(c["iat"])
			out.Nbf = num(c["nbf"])
			if e := num(c["exp"]); e > 0 {
				out.Exp = e
			}
		}
	} else {
		out.TokenType, out.TokenUse = "refresh_token", "refresh_token"
		out.Exp = s.GetExpiresAt(fosite.RefreshToken).Unix()
		out.Iat = ar.GetRequestedAt().Unix()
	}
	return out, nil
}

func jwtPayload(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

func num(v any) int64 {
	switch n := v.(type) {
	case float64:
		return int64(n)
	case int64:
		return n
	case int:
		return int64(n)
	case json.Number:
		i, _ := n.Int64()
		return i
	}
	return 0
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

// RemoveAuthenticators deactivates the active devices or passkeys (kind
// AuthenticatorDevice, AuthenticatorPasskey) of an identity, only the one with id when id
// is not empty, and ends every session they signed in, atomically. It returns how many
// it deactivated and how many sessions ended.
func (t *Tokens) RemoveAuthenticators(ctx context.Context, identityID int64, kind, id string) (removed, sessions int, err error) {
	return t.p.RemoveAuthenticators(ctx, strconv.FormatInt(identityID, 10), kind, id)
}

// RevokeDeviceSessions revokes every token issued through a device of identityID.
func (t *Tokens) RevokeDeviceSessions(ctx context.Context, identityID int64, deviceID string) (int, error) {
	return t.p.RevokeDevice(ctx, strconv.FormatInt(identityID, 10), deviceID)
}

// RevokeToken revokes the family of any token (RFC 7009 semantics: unknown is fine).
func (t *Tokens) RevokeToken(ctx context.Context, token string) error {
	for _, kind := range []string{KindRefresh, KindAccess} {
		sig := refreshSignature(token)
		row, err := t.p.GetToken(ctx, kind, x.SHA256Hex(sig))
		if errors.Is(err, ErrTokenNotFound) {
			continue
		} else if err != nil {
			return err
		}
		return t.RevokeSession(ctx, row.RequestID)
	}
	return nil
}

// SessionIDOf returns the family of a refresh token ("" when unknown).
func (t *Tokens) SessionIDOf(ctx context.Context, refreshToken string) string {
	row, err := t.refreshRow(ctx, refreshToken)
	if err != nil {
		return ""
	}
	return row.RequestID
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
