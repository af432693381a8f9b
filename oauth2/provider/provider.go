// Package provider owns pvauth's one ory/fosite OAuth2 provider: its configuration and
// composition, the storage adapter over plain token rows, the signing keys, the fosite
// session stored with every token and the first-party self-service grant. Self-service
// logins (password+TOTP, device keys, passkeys) mint tokens through that grant, so
// refresh rotation, reuse detection, introspection and revocation are the same code for
// every kind of token, OAuth2 ones included.
//
// The provider is built once, complete (New): the OAuth2 client registry, the client
// secret hasher and the extra grants (CIBA) are passed in, and nothing changes it after.
package provider

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"

	"github.com/pvpipe/pvauth/driver/config"
)

// Deps are what the provider is built from.
type Deps struct {
	// Persister stores the tokens.
	Persister TokenPersister
	// Keys sign and verify every JWT the provider issues.
	Keys *KeyManager
	// Clients finds the registered OAuth2 clients; nil serves the first-party ones only.
	Clients ClientGetter
	// SecretHasher hashes and compares client secrets; nil is fosite's default.
	SecretHasher fosite.Hasher
	// Grants are extra grant handlers, composed after the built-in ones. A factory gets
	// fosite's configuration, the *Store and the strategy (a *compose.CommonStrategy).
	Grants []compose.Factory
}

// Provider is the composed fosite provider (its OAuth2Provider methods are promoted) with
// the parts pvauth's token service and OAuth2 endpoints use.
type Provider struct {
	fosite.OAuth2Provider
	fosite *fosite.Fosite
	config *fosite.Config
	store  *Store
	keys   *KeyManager
	signer *Signer
	cfg    *config.Config
}

// New composes the provider.
func New(cfg *config.Config, d Deps) *Provider {
	fcfg := fositeConfig(cfg)
	if d.SecretHasher != nil {
		fcfg.ClientSecretsHasher = d.SecretHasher
	}
	store := NewStore(d.Persister, selfServiceClients(cfg.Tokens.Audience, cfg.TTL.RefreshToken, cfg.TTL.RefreshTokenRememberMe), d.Clients)
	signer := d.Keys.Signer()
	core := &oauth2.DefaultJWTStrategy{Signer: signer, HMACSHAStrategy: compose.NewOAuth2HMACStrategy(fcfg), Config: fcfg}
	strategy := &compose.CommonStrategy{
		CoreStrategy:               core,
		OpenIDConnectTokenStrategy: &openid.DefaultStrategy{Signer: signer, Config: fcfg},
		Signer:                     signer,
	}
	grant := func(fosite.Configurator, any, any) any {
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
	}, d.Grants...)
	f := compose.Compose(fcfg, store, strategy, factories...).(*fosite.Fosite)
	return &Provider{OAuth2Provider: f, fosite: f, config: fcfg, store: store, keys: d.Keys, signer: signer, cfg: cfg}
}

func fositeConfig(cfg *config.Config) *fosite.Config {
	secrets := make([][]byte, 0, len(cfg.Secrets.Default))
	for _, s := range cfg.Secrets.Default {
		secrets = append(secrets, []byte(s))
	}
	issuer := cfg.Issuer()
	return &fosite.Config{
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
}

// AuthenticateClient authenticates the client of a request as the token endpoint does
// (introspection, CIBA's backchannel endpoint).
func (p *Provider) AuthenticateClient(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	return p.fosite.AuthenticateClient(ctx, r, form)
}

// ScopeStrategy is the strategy that decides whether a client may ask for a scope.
func (p *Provider) ScopeStrategy(ctx context.Context) fosite.ScopeStrategy {
	return p.config.GetScopeStrategy(ctx)
}

// Store is the fosite storage.
func (p *Provider) Store() *Store { return p.store }

// Keys are the signing keys.
func (p *Provider) Keys() *KeyManager { return p.keys }

// Signer is the JWT signer of the provider's tokens (it keeps the verified cache).
func (p *Provider) Signer() *Signer { return p.signer }

// Issuer is the issuer of every token.
func (p *Provider) Issuer() string { return p.cfg.Issuer() }
