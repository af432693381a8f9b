package provider

import (
	"context"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
)

// GrantSelfService is the grant type of tokens minted after a self-service login. It is
// never accepted at /oauth2/token: only pvauth's own handlers build such requests, after
// they have verified the user's credentials.
const GrantSelfService = "urn:pvauth:params:oauth:grant-type:self-service"

// First-party clients of the self-service API. The "remember" client's refresh tokens
// live ttl.refresh_token_remember_me instead of ttl.refresh_token.
const (
	ClientSelfService         = "pvauth-self-service"
	ClientSelfServiceRemember = "pvauth-self-service-remember"
)

// IsFirstPartyClient reports whether id is one of pvauth's own self-service clients.
func IsFirstPartyClient(id string) bool {
	return id == ClientSelfService || id == ClientSelfServiceRemember
}

// Scopes granted to self-service sessions.
var selfServiceScopes = []string{"offline_access"}

func selfServiceClients(audience []string, refresh, refreshRemember time.Duration) []fosite.Client {
	mk := func(id string, rt time.Duration) fosite.Client {
		return &fosite.DefaultClientWithCustomTokenLifespans{
			DefaultClient: &fosite.DefaultClient{
				ID:         id,
				Public:     true,
				GrantTypes: []string{GrantSelfService, "refresh_token"},
				Scopes:     selfServiceScopes,
				Audience:   audience,
			},
			TokenLifespans: &fosite.ClientLifespanConfig{RefreshTokenGrantRefreshTokenLifespan: &rt},
		}
	}
	return []fosite.Client{mk(ClientSelfService, refresh), mk(ClientSelfServiceRemember, refreshRemember)}
}

// NewSelfServiceRequest is the access request of a self-service login for sess: the
// first-party client (with remember me, the one whose refresh tokens live longer), the
// self-service scopes and the configured audience. Its response (NewAccessResponse)
// mints the tokens.
func (p *Provider) NewSelfServiceRequest(ctx context.Context, sess *Session) (*fosite.AccessRequest, error) {
	clientID := ClientSelfService
	if sess.RememberMe {
		clientID = ClientSelfServiceRemember
	}
	client, err := p.store.GetClient(ctx, clientID)
	if err != nil {
		return nil, err
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
	for _, a := range p.cfg.Tokens.Audience {
		ar.RequestedAudience = append(ar.RequestedAudience, a)
		ar.GrantAudience(a)
	}
	return ar, nil
}

// inTxKey carries the function of WithIssueTx to the grant.
type inTxKey struct{}

// WithIssueTx makes the self-service grant run fn in the transaction that stores the
// tokens it mints, before them: fn's error is returned as is and stores nothing.
func WithIssueTx(ctx context.Context, fn func(ctx context.Context) error) context.Context {
	return context.WithValue(ctx, inTxKey{}, fn)
}

// selfServiceGrant mints an access and a refresh token for an already-authenticated
// session, exactly as fosite's own grant handlers do.
type selfServiceGrant struct {
	strategy oauth2.CoreStrategy
	store    *Store
	config   interface {
		fosite.AccessTokenLifespanProvider
		fosite.RefreshTokenLifespanProvider
	}
}

var _ fosite.TokenEndpointHandler = (*selfServiceGrant)(nil)

func (g *selfServiceGrant) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !g.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	// Reaching this from HTTP means someone posted the internal grant type.
	return fosite.ErrUnsupportedGrantType.WithHint("This grant type is internal to pvauth.")
}

func (g *selfServiceGrant) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) (err error) {
	if !g.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	now := time.Now().UTC().Round(time.Second)
	atl := fosite.GetEffectiveLifespan(r.GetClient(), fosite.GrantTypeRefreshToken, fosite.AccessToken, g.config.GetAccessTokenLifespan(ctx))
	rtl := fosite.GetEffectiveLifespan(r.GetClient(), fosite.GrantTypeRefreshToken, fosite.RefreshToken, g.config.GetRefreshTokenLifespan(ctx))
	r.GetSession().SetExpiresAt(fosite.AccessToken, now.Add(atl))
	r.GetSession().SetExpiresAt(fosite.RefreshToken, now.Add(rtl))

	at, atSig, err := g.strategy.GenerateAccessToken(ctx, r)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	rt, rtSig, err := g.strategy.GenerateRefreshToken(ctx, r)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	inTx, _ := ctx.Value(inTxKey{}).(func(context.Context) error)
	if err := g.store.StoreIssued(ctx, atSig, rtSig, r, inTx); err != nil {
		return err
	}
	resp.SetAccessToken(at)
	resp.SetTokenType("bearer")
	resp.SetExpiresIn(atl)
	resp.SetScopes(r.GetGrantedScopes())
	resp.SetExtra("refresh_token", rt)
	return nil
}

// CanSkipClientAuth is false: the grant is never reached over HTTP, and if someone posts
// it, fosite authenticates the client before refusing the grant type.
func (g *selfServiceGrant) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

func (g *selfServiceGrant) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(GrantSelfService)
}
