package oauth2

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	foauth2 "github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/selfservice/confirmation"
	"github.com/pvpipe/pvauth/x"
)

// CIBAGrantFactory composes the CIBA grant into the fosite provider (one of
// provider.Deps.Grants). d is only used at request time, so the registry may pass itself
// before it is complete.
func CIBAGrantFactory(d cibaDeps) compose.Factory {
	return func(c fosite.Configurator, storage, strategy any) any {
		return &cibaGrant{
			d:        d,
			store:    storage.(*provider.Store),
			core:     strategy.(foauth2.CoreStrategy),
			idTokens: strategy.(openid.OpenIDConnectTokenStrategy),
			config:   c,
		}
	}
}

// cibaGrant redeems approved backchannel requests at the token endpoint.
type cibaGrant struct {
	d        cibaDeps
	store    *provider.Store
	core     foauth2.CoreStrategy
	idTokens openid.OpenIDConnectTokenStrategy
	config   fosite.Configurator
}

var _ fosite.TokenEndpointHandler = (*cibaGrant)(nil)

func (g *cibaGrant) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

func (g *cibaGrant) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(GrantCIBA)
}

var errCIBAUnknown = fosite.ErrInvalidGrant.WithHint("The auth_req_id is unknown, was issued to another client, or was already redeemed.")

// load finds the request and its confirmation for this client.
func (g *cibaGrant) load(ctx context.Context, r fosite.AccessRequester) (*CIBARequest, *confirmation.Confirmation, error) {
	id := r.GetRequestForm().Get("auth_req_id")
	if id == "" {
		return nil, nil, fosite.ErrInvalidRequest.WithHint("The parameter 'auth_req_id' is required.")
	}
	if len(id) > 256 {
		return nil, nil, errCIBAUnknown
	}
	req, err := g.d.OAuth2Persister().GetCIBARequest(ctx, x.SHA256Hex(id))
	if errors.Is(err, ErrCIBARequestNotFound) {
		return nil, nil, errCIBAUnknown
	} else if err != nil {
		return nil, nil, fosite.ErrServerError.WithWrap(err)
	}
	if req.ClientID != r.GetClient().GetID() {
		return nil, nil, errCIBAUnknown
	}
	conf, err := g.d.ConfirmationPersister().GetConfirmation(ctx, req.ConfirmationID)
	if errors.Is(err, confirmation.ErrNotFound) {
		return nil, nil, errCIBAUnknown
	} else if err != nil {
		return nil, nil, fosite.ErrServerError.WithWrap(err)
	}
	return req, conf, nil
}

// HandleTokenEndpointRequest answers a poll: pending (or too fast), denied, expired, or,
// once approved, prepares the session the tokens are minted for.
func (g *cibaGrant) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !g.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	if !r.GetClient().GetGrantTypes().Has(GrantCIBA) {
		return fosite.ErrUnauthorizedClient.WithHint("The client is not registered for the grant type " + GrantCIBA + ".")
	}
	req, conf, err := g.load(ctx, r)
	if err != nil {
		return err
	}
	// A disabled or deleted user's requests end with the user (API.md §5).
	id, err := g.d.IdentityPersister().GetIdentity(ctx, req.IdentityID)
	if errors.Is(err, identity.ErrNotFound) {
		return errCIBAUnknown
	} else if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if id.State != identity.StateActive {
		return fosite.ErrInvalidGrant.WithHint("The user can no longer sign in.")
	}
	now := time.Now().UTC()
	switch conf.EffectiveStatus(now) {
	case confirmation.StatusPending:
		// Only a pending request is rate limited: an outcome is answered at once.
		ok, err := g.d.OAuth2Persister().MarkCIBAPolled(ctx, req.ID, now)
		if err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		if !ok {
			return errSlowDown
		}
		return errAuthorizationPending
	case confirmation.StatusRejected:
		return errCIBADenied
	case confirmation.StatusExpired:
		return errCIBAExpired
	}
	if conf.ConsumedAt != nil || conf.ApprovedAt == nil {
		return errCIBAUnknown
	}

	sess, ok := r.GetSession().(*provider.Session)
	if !ok {
		return fosite.ErrServerError.WithHint("Unexpected session type.")
	}
	*sess = *provider.NewSession(id.ID)
	sess.Email = id.Email
	sess.AMR = []string{provider.AMRHardware}
	sess.DeviceID = deref(conf.DeviceID)
	sess.AuthTime = conf.ApprovedAt.UTC().Truncate(time.Second)
	sess.SessionID = r.GetID()
	claims := sess.IDTokenClaims()
	claims.Subject, claims.AuthTime = sess.Subject, sess.AuthTime
	claims.AuthenticationMethodsReferences = sess.AMR
	claims.RequestedAt = now
	for _, s := range strings.Fields(req.Scope) {
		r.GrantScope(s)
	}
	for _, a := range r.GetClient().GetAudience() {
		r.GrantAudience(a)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// PopulateTokenEndpointResponse mints the tokens and stores them in the transaction that
// consumes the confirmation: one redemption, even across replicas.
func (g *cibaGrant) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !g.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	// Read again (fosite hands the request, not what Handle found, to Populate); only a
	// redemption gets here, and the consumption below is what decides anyway.
	req, conf, err := g.load(ctx, r)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	atl := fosite.GetEffectiveLifespan(r.GetClient(), fosite.GrantTypeAuthorizationCode, fosite.AccessToken, g.config.GetAccessTokenLifespan(ctx))
	rtl := fosite.GetEffectiveLifespan(r.GetClient(), fosite.GrantTypeAuthorizationCode, fosite.RefreshToken, g.config.GetRefreshTokenLifespan(ctx))
	r.GetSession().SetExpiresAt(fosite.AccessToken, now.Add(atl))
	at, atSig, err := g.core.GenerateAccessToken(ctx, r)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	var rt, rtSig string
	if r.GetGrantedScopes().HasOneOf("offline_access", "offline") && r.GetClient().GetGrantTypes().Has("refresh_token") {
		r.GetSession().SetExpiresAt(fosite.RefreshToken, now.Add(rtl))
		if rt, rtSig, err = g.core.GenerateRefreshToken(ctx, r); err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
	}
	idToken := ""
	if r.GetGrantedScopes().Has("openid") {
		if idToken, err = g.idTokens.GenerateIDToken(ctx, g.config.GetIDTokenLifespan(ctx), r); err != nil {
			return err
		}
	}
	sess := r.GetSession().(*provider.Session)
	err = g.store.StoreIssued(ctx, atSig, rtSig, r, func(ctx context.Context) error {
		active, err := g.store.SubjectActive(ctx, sess.IdentityID)
		if err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		if !active {
			return fosite.ErrInvalidGrant.WithHint("The user can no longer sign in.")
		}
		ok, err := g.d.ConfirmationPersister().ConsumeConfirmation(ctx, conf.ID, now)
		if err != nil {
			return fosite.ErrServerError.WithWrap(err)
		}
		if !ok {
			return errCIBAUnknown
		}
		return g.d.AuditLogger().LogTx(ctx, audit.Event{Type: TypeCIBAToken, UserID: audit.Int64(sess.IdentityID), DeviceID: conf.DeviceID,
			Metadata: map[string]any{"clientId": req.ClientID, "confirmationId": conf.ID, "sessionId": sess.SessionID}})
	})
	if err != nil {
		return err
	}
	resp.SetAccessToken(at)
	resp.SetTokenType("bearer")
	resp.SetExpiresIn(atl)
	resp.SetScopes(r.GetGrantedScopes())
	if rt != "" {
		resp.SetExtra("refresh_token", rt)
	}
	if idToken != "" {
		resp.SetExtra("id_token", idToken)
	}
	return nil
}
