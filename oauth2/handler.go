package oauth2

import (
	"net/http"

	"github.com/julienschmidt/httprouter"
	"github.com/ory/fosite"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/selfservice/confirmation"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// Routes, each named after its path.
const (
	RouteOAuth2Auth            = "/oauth2/auth"
	RouteOAuth2Token           = "/oauth2/token"
	RouteOAuth2Introspect      = "/oauth2/introspect"
	RouteOAuth2Revoke          = "/oauth2/revoke"
	RouteOAuth2BCAuthorize     = "/oauth2/bc-authorize"
	RouteOAuth2SessionsLogout  = "/oauth2/sessions/logout"
	RouteOpenIDConfiguration   = "/.well-known/openid-configuration"
	RouteJWKS                  = "/.well-known/jwks.json"
	RouteUserinfo              = "/userinfo"
	RouteOAuth2Login           = "/api/v1/auth/oauth2/login"
	RouteOAuth2LoginAccept     = "/api/v1/auth/oauth2/login/accept"
	RouteOAuth2Consent         = "/api/v1/auth/oauth2/consent"
	RouteOAuth2ConsentAccept   = "/api/v1/auth/oauth2/consent/accept"
	RouteOAuth2ConsentReject   = "/api/v1/auth/oauth2/consent/reject"
	RouteAdminClients          = "/admin/clients"
	RouteAdminClient           = "/admin/clients/:id"
	RouteAdminOAuth2Introspect = "/admin/oauth2/introspect"
	RouteAdminKeys             = "/admin/keys"
	RouteAdminKeysRotate       = "/admin/keys/rotate"
)

type handlerDeps interface {
	Config() *config.Config
	// OAuth2Provider is the fosite provider, built complete by the registry.
	OAuth2Provider() *provider.Provider
	// OAuth2ClientStore is the client registry the provider reads clients from.
	OAuth2ClientStore() *ClientStore
	PersisterProvider
	identity.PersisterProvider
	session.TokensProvider
	audit.LoggerProvider
	confirmation.PersisterProvider
	confirmation.ServiceProvider
	ratelimit.LimiterProvider
}

// Handler serves the OAuth2 / OIDC provider: its HTTP endpoints, the login and consent
// hand-off API of the login UI, the signing keys and the client registry's admin API.
type Handler struct {
	d       handlerDeps
	clients *ClientManager
	handoff *Handoff
	hints   idTokenHints
}

// NewHandler builds the handler.
func NewHandler(d handlerDeps) *Handler {
	signer, issuer := d.OAuth2Provider().Signer(), d.Config().Issuer()
	return &Handler{
		d:       d,
		clients: NewClientManager(d.OAuth2Persister(), d.OAuth2ClientStore(), NewSecretHasher(d.Config().Secrets.Default), d.AuditLogger()),
		handoff: NewHandoff(d.OAuth2Persister(), issuer, signer),
		hints:   idTokenHints{signer: signer, issuer: issuer},
	}
}

func (h *Handler) RegisterPublicRoutes(r *x.PublicRouter) {
	t := h.d.Tokens()
	// The OAuth2 and OpenID Connect endpoints take form bodies; those a browser is sent
	// to take the query too.
	form := func(path string, fn httprouter.Handle) { r.POST(path, x.RequireForm(fn)) }
	queryOrForm := func(path string, fn httprouter.Handle) { r.GET(path, fn); form(path, fn) }
	queryOrForm(RouteOAuth2Auth, h.authorize)
	queryOrForm(RouteOAuth2SessionsLogout, h.logout)
	form(RouteOAuth2Token, h.token)
	form(RouteOAuth2Introspect, h.introspect)
	form(RouteOAuth2Revoke, h.revoke)
	form(RouteOAuth2BCAuthorize, h.backchannelAuthorize)
	r.GET(RouteOpenIDConfiguration, h.discovery)
	r.GET(RouteJWKS, h.jwks)
	userinfo := t.RequireToken(h.userinfo)
	r.GET(RouteUserinfo, userinfo)
	r.POST(RouteUserinfo, userinfo)
	// The hand-off API of the login UI.
	r.GET(RouteOAuth2Login, x.Handle(h.getLogin))
	r.POST(RouteOAuth2LoginAccept, t.RequireUser(x.Handle(h.acceptLogin)))
	r.GET(RouteOAuth2Consent, t.RequireUser(x.Handle(h.getConsent)))
	r.POST(RouteOAuth2ConsentAccept, t.RequireUser(x.Handle(h.acceptConsent)))
	r.POST(RouteOAuth2ConsentReject, t.RequireUser(x.Handle(h.rejectConsent)))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	handle := func(method, path string, fn x.HandleFunc) { r.Handle(method, path, x.Handle(fn)) }
	handle(http.MethodPost, RouteAdminClients, h.createClient)
	handle(http.MethodGet, RouteAdminClients, h.listClients)
	handle(http.MethodGet, RouteAdminClient, h.getClient)
	handle(http.MethodPut, RouteAdminClient, h.updateClient)
	handle(http.MethodDelete, RouteAdminClient, h.deleteClient)
	handle(http.MethodGet, RouteAdminKeys, h.listKeys)
	handle(http.MethodPost, RouteAdminKeysRotate, h.rotateKeys)
	r.POST(RouteAdminOAuth2Introspect, x.RequireForm(h.adminIntrospect))
}

func (h *Handler) provider() *provider.Provider { return h.d.OAuth2Provider() }

func (h *Handler) issuer() string { return h.d.Config().Issuer() }

// authorizeError makes a database failure RFC 6749's temporarily_unavailable, which
// fosite answers like any authorization error (a redirect to the client, or a 503).
func authorizeError(err error) error {
	if x.IsUnavailable(err) {
		return fosite.ErrTemporarilyUnavailable.WithWrap(err)
	}
	return err
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	x.WriteJSON(w, status, map[string]string{"error": code, "error_description": desc})
}
