package oauth2

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"
	"github.com/ory/fosite"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// clientBody is the RFC 7591 client metadata accepted on create and update.
type clientBody struct {
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

func (b *clientBody) Validate() error {
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
	has := func(g string) bool {
		for _, v := range b.GrantTypes {
			if v == g {
				return true
			}
		}
		return false
	}
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

func (b *clientBody) apply(c *Client) {
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

// clientView is a client as the admin API shows it; the secret appears once, on create.
type clientView struct {
	*Client
	ClientSecret string `json:"client_secret,omitempty"`
}

var errClientNotFound = x.ErrNotFound.Derive("OAuth2 client not found.")

func (h *Handler) createClient(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	var b clientBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	c := &Client{ID: b.ClientID}
	if c.ID == "" {
		c.ID = uuid.NewString()
	}
	b.apply(c)
	secret := ""
	if !c.Public() {
		secret = newSecret()
		hash, _ := NewSecretHasher(h.d.Config().Secrets.Default).Hash(ctx, []byte(secret))
		c.SecretHash = string(hash)
	}
	// The client and its event commit together (the secret was hashed above).
	al := h.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := h.d.OAuth2Persister().CreateClient(ctx, c); err != nil {
			return err
		}
		return al.LogTx(ctx, audit.Event{Type: "admin.client.create", Metadata: map[string]any{"clientId": c.ID}})
	}); errors.Is(err, ErrClientExists) {
		x.WriteError(w, r, x.ErrConflict.WithMessage("An OAuth2 client with this client_id already exists."))
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusCreated, clientView{Client: c, ClientSecret: secret})
}

func (h *Handler) listClients(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	size, err := x.PageSize(r, 100, 500)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	after := r.URL.Query().Get("page_token")
	cs, err := h.d.OAuth2Persister().ListClients(r.Context(), size+1, after)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	next := ""
	if len(cs) > size {
		cs = cs[:size]
		next = cs[size-1].ID
	}
	x.WriteData(w, http.StatusOK, map[string]any{"clients": cs, "nextPageToken": next})
}

func (h *Handler) getClient(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	c, err := h.d.OAuth2Persister().GetOAuth2Client(r.Context(), ps.ByName("id"))
	if errors.Is(err, ErrClientNotFound) {
		x.WriteError(w, r, errClientNotFound)
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, c)
}

func (h *Handler) updateClient(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	ctx := r.Context()
	var b clientBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	c, err := h.d.OAuth2Persister().GetOAuth2Client(ctx, ps.ByName("id"))
	if errors.Is(err, ErrClientNotFound) {
		x.WriteError(w, r, errClientNotFound)
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	wasPublic := c.Public()
	b.apply(c)
	secret := ""
	if wasPublic && !c.Public() {
		// A public client turned confidential needs its first secret.
		secret = newSecret()
		hash, _ := NewSecretHasher(h.d.Config().Secrets.Default).Hash(ctx, []byte(secret))
		c.SecretHash = string(hash)
	} else if c.Public() {
		c.SecretHash = ""
	}
	al := h.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := h.d.OAuth2Persister().UpdateClient(ctx, c); err != nil {
			return err
		}
		return al.LogTx(ctx, audit.Event{Type: "admin.client.update", Metadata: map[string]any{"clientId": c.ID}})
	}); err != nil {
		x.WriteError(w, r, err)
		return
	}
	h.clients.Forget(c.ID)
	x.WriteData(w, http.StatusOK, clientView{Client: c, ClientSecret: secret})
}

func (h *Handler) deleteClient(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	id := ps.ByName("id")
	if strings.HasPrefix(id, "pvauth-") || id == session.ClientSelfService {
		x.WriteError(w, r, errClientNotFound)
		return
	}
	h.clients.Forget(id)
	al := h.d.AuditLogger()
	if err := al.Tx(r.Context(), func(ctx context.Context) error {
		if err := h.d.OAuth2Persister().DeleteClient(ctx, id); err != nil {
			return err
		}
		return al.LogTx(ctx, audit.Event{Type: "admin.client.delete", Metadata: map[string]any{"clientId": id}})
	}); errors.Is(err, ErrClientNotFound) {
		x.WriteError(w, r, errClientNotFound)
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	h.clients.Forget(id)
	x.WriteData(w, http.StatusOK, map[string]bool{"success": true})
}
