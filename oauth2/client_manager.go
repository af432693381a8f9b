package oauth2

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/ory/fosite"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/x"
)

// ClientManager registers, changes and removes OAuth2 clients (the admin API): it makes
// and hashes their secrets, writes each change with its audit event, and keeps the
// client cache of the provider current.
type ClientManager struct {
	p      Persister
	cache  *ClientStore
	hasher *SecretHasher
	audit  *audit.Logger
}

// NewClientManager builds the manager; cache is the ClientStore the provider reads.
func NewClientManager(p Persister, cache *ClientStore, hasher *SecretHasher, al *audit.Logger) *ClientManager {
	return &ClientManager{p: p, cache: cache, hasher: hasher, audit: al}
}

var errClientNotFound = x.ErrNotFound.Derive("OAuth2 client not found.")

// Create registers a client from validated params (ClientParams.Validate). A
// confidential client gets a secret, returned here and never again.
func (m *ClientManager) Create(ctx context.Context, in *ClientParams) (*Client, string, error) {
	c := &Client{ID: in.ClientID}
	if c.ID == "" {
		c.ID = uuid.NewString()
	}
	in.apply(c)
	secret := ""
	if !c.Public() {
		secret = m.setSecret(ctx, c)
	}
	err := m.inTx(ctx, "admin.client.create", c.ID, func(ctx context.Context) error { return m.p.CreateClient(ctx, c) })
	if errors.Is(err, ErrClientExists) {
		return nil, "", x.ErrConflict.WithMessage("An OAuth2 client with this client_id already exists.")
	} else if err != nil {
		return nil, "", err
	}
	return c, secret, nil
}

// Get returns a client.
func (m *ClientManager) Get(ctx context.Context, id string) (*Client, error) {
	c, err := m.p.GetOAuth2Client(ctx, id)
	if errors.Is(err, ErrClientNotFound) {
		return nil, errClientNotFound
	}
	return c, err
}

// List returns up to size clients after the id after, and the token of the next page
// ("" on the last).
func (m *ClientManager) List(ctx context.Context, size int, after string) ([]Client, string, error) {
	cs, err := m.p.ListClients(ctx, size+1, after)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(cs) > size {
		cs = cs[:size]
		next = cs[size-1].ID
	}
	return cs, next, nil
}

// Update replaces a client's metadata with validated params. A public client turned
// confidential gets its first secret, returned here and never again.
func (m *ClientManager) Update(ctx context.Context, id string, in *ClientParams) (*Client, string, error) {
	c, err := m.Get(ctx, id)
	if err != nil {
		return nil, "", err
	}
	wasPublic := c.Public()
	in.apply(c)
	secret := ""
	if wasPublic && !c.Public() {
		secret = m.setSecret(ctx, c)
	} else if c.Public() {
		c.SecretHash = ""
	}
	if err := m.inTx(ctx, "admin.client.update", c.ID, func(ctx context.Context) error { return m.p.UpdateClient(ctx, c) }); err != nil {
		return nil, "", err
	}
	m.cache.Forget(c.ID)
	return c, secret, nil
}

// Delete removes a client; pvauth's own clients are not registered ones.
func (m *ClientManager) Delete(ctx context.Context, id string) error {
	if strings.HasPrefix(id, "pvauth-") || provider.IsFirstPartyClient(id) {
		return errClientNotFound
	}
	m.cache.Forget(id)
	err := m.inTx(ctx, "admin.client.delete", id, func(ctx context.Context) error { return m.p.DeleteClient(ctx, id) })
	if errors.Is(err, ErrClientNotFound) {
		return errClientNotFound
	} else if err != nil {
		return err
	}
	m.cache.Forget(id)
	return nil
}

// setSecret gives c a new secret (its hash) and returns it.
func (m *ClientManager) setSecret(ctx context.Context, c *Client) string {
	secret := newSecret()
	hash, _ := m.hasher.Hash(ctx, []byte(secret))
	c.SecretHash = string(hash)
	return secret
}

// inTx runs the change fn and writes its audit event (typ, naming the client) in one
// transaction.
func (m *ClientManager) inTx(ctx context.Context, typ, clientID string, fn func(ctx context.Context) error) error {
	return m.audit.Tx(ctx, func(ctx context.Context) error {
		if err := fn(ctx); err != nil {
			return err
		}
		return m.audit.LogTx(ctx, audit.Event{Type: typ, Metadata: map[string]any{"clientId": clientID}})
	})
}

// ClientParams is the RFC 7591 client metadata of a create or an update.
type ClientParams struct {
	ClientID                string   `json:"client_id"`
	ClientName              string   `json:"client_name"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	Scope                   string   `json:"scope"`
	Audience                []string `json:"audience"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	SkipConsent             bool     `json:"skip_consent"`
	// PostLogoutRedirectURIs are where RP-initiated logout may send the browser.
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
	// BackchannelTokenDeliveryMode is CIBA's delivery mode; pvauth serves "poll".
	BackchannelTokenDeliveryMode string `json:"backchannel_token_delivery_mode"`
}

func (b *ClientParams) Validate() error {
	if b.TokenEndpointAuthMethod == "" {
		b.TokenEndpointAuthMethod = "client_secret_basic"
	}
	if len(b.GrantTypes) == 0 {
		b.GrantTypes = []string{"authorization_code", "refresh_token"}
	}
	if len(b.ResponseTypes) == 0 {
		b.ResponseTypes = []string{"code"}
	}
	if err := x.FirstError(
		x.MaxLen("client_id", b.ClientID, 255), x.MaxLen("client_name", b.ClientName, 255), x.MaxLen("scope", b.Scope, 2000),
		x.OneOf("token_endpoint_auth_method", b.TokenEndpointAuthMethod, "client_secret_basic", "client_secret_post", "none"),
	); err != nil {
		return err
	}
	if strings.HasPrefix(b.ClientID, "pvauth-") {
		return x.ErrBadRequest.WithMessage("Field 'client_id' may not start with 'pvauth-' (reserved).")
	}
	// A client acting for itself is the "sub" of its tokens: an all-digit id would read
	// as a user id.
	if b.ClientID != "" && strings.Trim(b.ClientID, "0123456789") == "" {
		return x.ErrBadRequest.WithMessage("Field 'client_id' must not be all digits (it could be read as a user id).")
	}
	for _, g := range b.GrantTypes {
		if err := x.OneOf("grant_types", g, "authorization_code", "refresh_token", "client_credentials", GrantCIBA); err != nil {
			return err
		}
	}
	for _, rt := range b.ResponseTypes {
		if err := x.OneOf("response_types", rt, "code"); err != nil {
			return err
		}
	}
	has := func(g string) bool { return slices.Contains(b.GrantTypes, g) }
	if b.TokenEndpointAuthMethod == "none" && has("client_credentials") {
		return x.ErrBadRequest.WithMessage("Field 'grant_types': a public client (token_endpoint_auth_method none) cannot use client_credentials.")
	}
	if has(GrantCIBA) {
		if b.TokenEndpointAuthMethod == "none" {
			return x.ErrBadRequest.WithMessage("Field 'grant_types': a public client (token_endpoint_auth_method none) cannot use " + GrantCIBA + ".")
		}
		if b.BackchannelTokenDeliveryMode == "" {
			b.BackchannelTokenDeliveryMode = "poll"
		}
		if err := x.OneOf("backchannel_token_delivery_mode", b.BackchannelTokenDeliveryMode, "poll"); err != nil {
			return err
		}
	} else if b.BackchannelTokenDeliveryMode != "" {
		return x.ErrBadRequest.WithMessage("Field 'backchannel_token_delivery_mode' needs the grant type " + GrantCIBA + ".")
	}
	if has("authorization_code") && len(b.RedirectURIs) == 0 {
		return x.ErrBadRequest.WithMessage("Field 'redirect_uris' is required for the authorization_code grant.")
	}
	if err := checkRedirectURIs("redirect_uris", b.RedirectURIs); err != nil {
		return err
	}
	return checkRedirectURIs("post_logout_redirect_uris", b.PostLogoutRedirectURIs)
}

// checkRedirectURIs accepts absolute URIs without a fragment, https or loopback http.
func checkRedirectURIs(field string, uris []string) error {
	if len(uris) > 50 {
		return x.ErrBadRequest.WithMessagef("Field '%s' has more than 50 URIs.", field)
	}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil || p.Scheme == "" || p.Host == "" || p.Fragment != "" || len(u) > 2000 {
			return x.ErrBadRequest.WithMessagef("Field '%s' has an invalid URI: %q.", field, u)
		}
		// fosite refuses to redirect to plain http except on loopback, so such a client
		// could never complete a login.
		if !fosite.IsRedirectURISecure(context.Background(), p) {
			return x.ErrBadRequest.WithMessagef("Field '%s' has an insecure URI: %q (http is only allowed for localhost and loopback addresses).", field, u)
		}
	}
	return nil
}

func (b *ClientParams) apply(c *Client) {
	c.Name, c.RedirectURIs, c.GrantTypes, c.ResponseTypes = b.ClientName, b.RedirectURIs, b.GrantTypes, b.ResponseTypes
	c.Scope, c.Audience, c.TokenEndpointAuthMethod, c.SkipConsent = strings.Join(strings.Fields(b.Scope), " "), b.Audience, b.TokenEndpointAuthMethod, b.SkipConsent
	c.BackchannelTokenDeliveryMode = b.BackchannelTokenDeliveryMode
	c.PostLogoutRedirectURIs = b.PostLogoutRedirectURIs
	if c.PostLogoutRedirectURIs == nil {
		c.PostLogoutRedirectURIs = []string{}
	}
	if c.RedirectURIs == nil {
		c.RedirectURIs = []string{}
	}
	if c.Audience == nil {
		c.Audience = []string{}
	}
}
