package oauth2

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"
	"github.com/ory/fosite"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/selfservice/confirmation"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// Routes.
const (
	RouteAuth          = "/oauth2/auth"
	RouteToken         = "/oauth2/token"
	RouteIntrospect    = "/oauth2/introspect"
	RouteRevoke        = "/oauth2/revoke"
	RouteDiscovery     = "/.well-known/openid-configuration"
	RouteUserinfo      = "/userinfo"
	RouteLogin         = "/api/v1/auth/oauth2/login"
	RouteLoginAccept   = "/api/v1/auth/oauth2/login/accept"
	RouteConsent       = "/api/v1/auth/oauth2/consent"
	RouteConsentAccept = "/api/v1/auth/oauth2/consent/accept"
	RouteConsentReject = "/api/v1/auth/oauth2/consent/reject"
	RouteAdminClients  = "/admin/clients"
	RouteAdminClient   = "/admin/clients/:id"
)

type handlerDeps interface {
	Config() *config.Config
	PersisterProvider
	identity.PersisterProvider
	session.TokensProvider
	audit.LoggerProvider
	confirmation.PersisterProvider
	confirmation.ServiceProvider
	ratelimit.LimiterProvider
}

// Handler serves the OAuth2 / OIDC provider.
type Handler struct {
	d       handlerDeps
	clients *ClientStore
}

// NewHandler builds the handler and plugs the client registry and secret hashing into
// the shared fosite provider.
func NewHandler(d handlerDeps) *Handler {
	t := d.Tokens()
	cs := NewClientStore(d.OAuth2Persister())
	t.Store().SetClientGetter(cs)
	t.FositeConfig().ClientSecretsHasher = NewSecretHasher(d.Config().Secrets.Default)
	return &Handler{d: d, clients: cs}
}

func (h *Handler) RegisterPublicRoutes(r *x.PublicRouter) {
	t := h.d.Tokens()
	r.GET(RouteAuth, h.authorize)
	r.POST(RouteAuth, x.RequireForm(h.authorize))
	r.POST(RouteToken, x.RequireForm(h.token))
	r.POST(RouteIntrospect, x.RequireForm(h.introspect))
	r.POST(RouteRevoke, x.RequireForm(h.revoke))
	r.POST(RouteBackchannelAuth, x.RequireForm(h.backchannelAuthorize))
	r.GET(RouteLogout, h.logout)
	r.POST(RouteLogout, x.RequireForm(h.logout))
	r.GET(RouteDiscovery, h.discovery)
	r.GET(RouteUserinfo, t.RequireToken(h.userinfo))
	r.POST(RouteUserinfo, t.RequireToken(h.userinfo))
	r.GET(RouteLogin, h.getLogin)
	r.POST(RouteLoginAccept, t.RequireUser(h.acceptLogin))
	r.GET(RouteConsent, t.RequireUser(h.getConsent))
	r.POST(RouteConsentAccept, t.RequireUser(h.acceptConsent))
	r.POST(RouteConsentReject, t.RequireUser(h.rejectConsent))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.POST(RouteAdminClients, h.createClient)
	r.GET(RouteAdminClients, h.listClients)
	r.GET(RouteAdminClient, h.getClient)
	r.PUT(RouteAdminClient, h.updateClient)
	r.DELETE(RouteAdminClient, h.deleteClient)
}

func (h *Handler) provider() fosite.OAuth2Provider { return h.d.Tokens().Provider() }

func (h *Handler) issuer() string { return h.d.Config().Issuer() }

// authorize is the authorization endpoint. A first visit starts the login hand-off; the
// login UI sends the browser back with login_verifier, then consent_verifier.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	p := h.provider()
	// Every first visit stores its query until the hand-off ends: bound it.
	if len(r.URL.RawQuery) > MaxAuthorizeQuery {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The authorization request is larger than 8 KiB.")
		return
	}
	if r.Method == http.MethodPost {
		_ = r.ParseForm()
	}
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		q = r.Form
	}
	// A return leg continues the request stored at the start: what its URL says is not
	// trusted (it may have been edited), so it is not even parsed unless needed.
	switch {
	case q.Get("consent_verifier") != "":
		h.returnLeg(w, r, q, "consent_verifier", q.Get("consent_verifier"))
		return
	case q.Get("login_verifier") != "":
		h.returnLeg(w, r, q, "login_verifier", q.Get("login_verifier"))
		return
	}
	ar, err := p.NewAuthorizeRequest(ctx, r)
	if err != nil {
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(err))
		return
	}
	if err := precheck(ar); err != nil {
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(err))
		return
	}
	pr, err := h.parsePrompt(ctx, ar)
	if err != nil {
		p.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	// The browser's login session answers without the login UI when it meets the
	// request (no prompt=login, young enough for max_age, the hinted user).
	s, err := h.browserSession(ctx, r)
	if err != nil {
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrServerError.WithWrap(err)))
		return
	}
	if s != nil && pr.satisfiedBy(strconv.FormatInt(s.IdentityID, 10), s.AuthTime, time.Now()) {
		h.resumeSession(w, r, ar, q, s, pr)
		return
	}
	if pr.none {
		p.WriteAuthorizeError(ctx, w, ar, fosite.ErrLoginRequired.WithHint("The user is not signed in to pvauth in this browser."))
		return
	}
	h.startLogin(w, r, ar, q)
}

// BindingCookie binds an OAuth2 hand-off to the browser that started it, so a leaked
// login or consent verifier URL is worth nothing in another browser.
const BindingCookie = "pvauth_oauth2_binding"

// bindBrowser (re)sets the browser's binding cookie and returns the hash a new flow
// stores. One value serves every hand-off of the browser (several tabs at once).
func (h *Handler) bindBrowser(w http.ResponseWriter, r *http.Request) string {
	v := ""
	if c, err := r.Cookie(BindingCookie); err == nil && len(c.Value) == 43 {
		if _, err := base64.RawURLEncoding.DecodeString(c.Value); err == nil {
			v = c.Value
		}
	}
	if v == "" {
		v = newSecret()
	}
	http.SetCookie(w, &http.Cookie{
		Name: BindingCookie, Value: v, Path: "/oauth2/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: !strings.HasPrefix(h.issuer(), "http://"), MaxAge: int(h.flowTTL().Seconds()),
	})
	return x.SHA256Hex(v)
}

// sameBrowser reports whether r comes from the browser that started f.
func sameBrowser(r *http.Request, f *Flow) bool {
	c, err := r.Cookie(BindingCookie)
	if err != nil || f.BrowserHash == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(x.SHA256Hex(c.Value)), []byte(f.BrowserHash)) == 1
}

func (h *Handler) flowTTL() time.Duration { return h.d.Config().TTL.OAuth2Flow }

// returnLeg continues a hand-off when the browser comes back with a verifier. The code is
// issued for the request stored at the start (redirect_uri, state, nonce, scope,
// code_challenge), never for what the return URL says, and only to the browser that
// started it. The return URL is parsed only to answer a verifier that names no flow of
// its client (fosite checks its redirect_uri against that client's registration).
func (h *Handler) returnLeg(w http.ResponseWriter, r *http.Request, q url.Values, column, verifier string) {
	ctx := r.Context()
	p := h.provider()
	f, err := h.d.OAuth2Persister().GetFlowBy(ctx, column, x.SHA256Hex(verifier))
	if err != nil || f.ClientID != q.Get("client_id") {
		ar, perr := p.NewAuthorizeRequest(ctx, r)
		switch {
		case perr != nil:
			p.WriteAuthorizeError(ctx, w, ar, authorizeError(perr))
		case err != nil && !errors.Is(err, ErrFlowNotFound):
			p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrServerError.WithWrap(err)))
		default:
			p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The login or consent verifier is invalid, used or expired.")))
		}
		return
	}
	stored := r.Clone(ctx)
	stored.Method, stored.Body, stored.Form, stored.PostForm = http.MethodGet, http.NoBody, nil, nil
	stored.Header = r.Header.Clone()
	stored.Header.Del("Content-Type")
	stored.URL = &url.URL{Path: r.URL.Path, RawQuery: f.RequestQuery}
	orig, err := p.NewAuthorizeRequest(ctx, stored)
	if err != nil {
		// The client changed since (a redirect URI removed): nothing can be trusted.
		writeOAuthError(w, http.StatusForbidden, "invalid_request", "The authorization request of this login can no longer be completed.")
		return
	}
	if !sameBrowser(r, f) {
		ev := audit.Event{Type: "oauth2.authorize", Result: audit.ResultFailure, Reason: "hand-off returned in another browser",
			Metadata: map[string]any{"clientId": f.ClientID, "step": column}}
		if f.IdentityID != nil {
			ev.UserID = audit.Int64(*f.IdentityID)
		}
		h.d.AuditLogger().Log(ctx, ev)
		p.WriteAuthorizeError(ctx, w, orig, authorizeError(fosite.ErrInvalidRequest.WithHint("The login must be completed in the browser that started it.")))
		return
	}
	if column == "login_verifier" {
		h.afterLogin(w, r, orig, verifier)
	} else {
		h.finishAuthorize(w, r, orig, verifier)
	}
}

// MaxAuthorizeQuery bounds an authorization request's query (API.md §4).
const MaxAuthorizeQuery = 8 << 10

// precheck refuses what cannot succeed before the user is sent to log in: a public
// client without PKCE S256.
func precheck(ar fosite.AuthorizeRequester) error {
	// A public client must use PKCE with S256: refuse it before the user logs in for
	// nothing (fosite itself would only refuse when it issues the code).
	if ar.GetClient().IsPublic() {
		form := ar.GetRequestForm()
		if form.Get("code_challenge") == "" {
			return fosite.ErrInvalidRequest.WithHint("Clients must include a code_challenge when performing the authorize code flow, but it is missing.")
		}
		if form.Get("code_challenge_method") != "S256" {
			return fosite.ErrInvalidRequest.WithHint("Public clients must use the code_challenge_method S256.")
		}
	}
	return nil
}

// originalQuery is the request's query without our verifiers.
func originalQuery(q url.Values) string {
	c := url.Values{}
	for k, v := range q {
		if k != "login_verifier" && k != "consent_verifier" {
			c[k] = v
		}
	}
	return c.Encode()
}

func (h *Handler) startLogin(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, q url.Values) {
	ctx := r.Context()
	loginUI := h.d.Config().URLs.LoginUI
	if loginUI == "" {
		h.provider().WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrServerError.WithHint("urls.login_ui is not configured.")))
		return
	}
	challenge := newSecret()
	f := &Flow{
		ID: uuid.NewString(), ClientID: ar.GetClient().GetID(), RequestQuery: originalQuery(q),
		RequestedScope: strings.Join(ar.GetRequestedScopes(), " "), LoginChallenge: x.SHA256Hex(challenge),
		AMR: "[]", State: FlowLogin, ExpiresAt: time.Now().Add(h.flowTTL()), BrowserHash: h.bindBrowser(w, r),
	}
	if err := h.d.OAuth2Persister().CreateFlow(ctx, f); err != nil {
		h.provider().WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrServerError.WithWrap(err)))
		return
	}
	http.Redirect(w, r, withQuery(loginUI, "login_challenge", challenge), http.StatusFound)
}

func withQuery(base, key, value string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// flowFor checks that a verifier belongs to a flow of this very request.
func (h *Handler) flowFor(ctx context.Context, column, value string, ar fosite.AuthorizeRequester, state string) (*Flow, error) {
	f, err := h.d.OAuth2Persister().GetFlowBy(ctx, column, x.SHA256Hex(value))
	if err != nil {
		return nil, fosite.ErrAccessDenied.WithHint("The login or consent verifier is invalid, used or expired.")
	}
	if f.State != state || !time.Now().Before(f.ExpiresAt) || f.ClientID != ar.GetClient().GetID() {
		return nil, fosite.ErrAccessDenied.WithHint("The login or consent verifier is invalid, used or expired.")
	}
	return f, nil
}

func (h *Handler) afterLogin(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, verifier string) {
	ctx := r.Context()
	f, err := h.flowFor(ctx, "login_verifier", verifier, ar, FlowLoginAccepted)
	if err != nil {
		h.provider().WriteAuthorizeError(ctx, w, ar, authorizeError(err))
		return
	}
	pr, err := h.parsePrompt(ctx, ar)
	if err != nil {
		h.provider().WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	// The login UI accepted a login: it must be the one the request asked for.
	if f.AuthTime == nil || !pr.freshEnough(strconv.FormatInt(*f.IdentityID, 10), *f.AuthTime, f.CreatedAt) {
		h.provider().WriteAuthorizeError(ctx, w, ar, fosite.ErrLoginRequired.WithHint("The login does not meet prompt, max_age or id_token_hint of the request."))
		return
	}
	if f.Remember && f.LoginSessionID == nil {
		s, err := h.startBrowserSession(ctx, w, f)
		if err != nil {
			h.provider().WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrServerError.WithWrap(err)))
			return
		}
		f.LoginSessionID = &s.ID
	}
	h.continueFlow(w, r, ar, f, pr)
}

// continueFlow goes on from a logged-in flow: straight to the code when consent is
// remembered (or the client skips it) and prompt=consent does not ask for it, else to
// the consent UI (prompt=none: consent_required).
func (h *Handler) continueFlow(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, f *Flow, pr *authPrompt) {
	ctx := r.Context()
	c, err := h.d.OAuth2Persister().GetOAuth2Client(ctx, f.ClientID)
	if err != nil {
		h.provider().WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrInvalidClient.WithWrap(err)))
		return
	}
	remembered, err := h.d.OAuth2Persister().GetConsent(ctx, *f.IdentityID, f.ClientID)
	if err != nil {
		h.provider().WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrServerError.WithWrap(err)))
		return
	}
	if !pr.consent && (c.SkipConsent || (remembered != "" && covers(remembered, f.RequestedScope))) {
		// No consent screen: grant what was asked and go straight on.
		v := newSecret()
		hv := x.SHA256Hex(v)
		f.ConsentVerifier, f.GrantedScope, f.State = &hv, f.RequestedScope, FlowConsentAccepted
		if ok, err := h.d.OAuth2Persister().AdvanceFlow(ctx, f, FlowLoginAccepted, time.Now()); err != nil || !ok {
			h.provider().WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The login verifier was already used.").WithWrap(err)))
			return
		}
		h.finishAuthorize(w, r, ar, v)
		return
	}
	if pr.none {
		h.provider().WriteAuthorizeError(ctx, w, ar, fosite.ErrConsentRequired.WithHint("The user has not consented to this client's request yet."))
		return
	}
	consentUI := h.d.Config().URLs.ConsentUI
	if consentUI == "" {
		h.provider().WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrServerError.WithHint("urls.consent_ui is not configured.")))
		return
	}
	challenge := newSecret()
	hc := x.SHA256Hex(challenge)
	f.ConsentChallenge, f.State = &hc, FlowConsent
	if ok, err := h.d.OAuth2Persister().AdvanceFlow(ctx, f, FlowLoginAccepted, time.Now()); err != nil || !ok {
		h.provider().WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The login verifier was already used.").WithWrap(err)))
		return
	}
	http.Redirect(w, r, withQuery(consentUI, "consent_challenge", challenge), http.StatusFound)
}

// covers reports whether granted includes every scope of requested.
func covers(granted, requested string) bool {
	have := map[string]bool{}
	for _, s := range strings.Fields(granted) {
		have[s] = true
	}
	for _, s := range strings.Fields(requested) {
		if !have[s] {
			return false
		}
	}
	return true
}

func (h *Handler) finishAuthorize(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, verifier string) {
	ctx := r.Context()
	p := h.provider()
	f, err := h.d.OAuth2Persister().GetFlowBy(ctx, "consent_verifier", x.SHA256Hex(verifier))
	if err != nil || f.ClientID != ar.GetClient().GetID() || !time.Now().Before(f.ExpiresAt) {
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The consent verifier is invalid, used or expired.").WithWrap(err)))
		return
	}
	from := f.State
	if from != FlowConsentAccepted && from != FlowConsentRejected {
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The consent verifier is invalid, used or expired.")))
		return
	}
	f.State = FlowDone
	if from == FlowConsentRejected {
		if ok, err := h.d.OAuth2Persister().AdvanceFlow(ctx, f, from, time.Now()); err != nil || !ok {
			p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The consent verifier was already used.").WithWrap(err)))
			return
		}
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The resource owner denied the request.")))
		return
	}
	id, err := h.d.IdentityPersister().GetIdentity(ctx, *f.IdentityID)
	if err != nil || id.State != identity.StateActive {
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The user can no longer log in.").WithWrap(err)))
		return
	}
	for _, s := range strings.Fields(f.GrantedScope) {
		ar.GrantScope(s)
	}
	for _, a := range ar.GetRequestedAudience() {
		ar.GrantAudience(a)
	}
	sess := session.NewSession(id.ID)
	sess.Email = id.Email
	_ = json.Unmarshal([]byte(f.AMR), &sess.AMR)
	if f.AuthTime != nil {
		sess.AuthTime = *f.AuthTime
	}
	sess.SessionID = ar.GetID()
	claims := sess.IDTokenClaims()
	claims.Subject = sess.Subject
	claims.AuthTime = sess.AuthTime
	// When the request was made: prompt=login and max_age are checked against it.
	claims.RequestedAt = f.CreatedAt
	// sid names what a logout with this token as id_token_hint ends: the browser's login
	// session, or else this token family.
	if f.LoginSessionID != nil {
		claims.Add("sid", *f.LoginSessionID)
	} else {
		claims.Add("sid", ar.GetID())
	}
	claims.AuthenticationMethodsReferences = sess.AMR
	if ar.GetGrantedScopes().Has("email") {
		claims.Add("email", id.Email)
	}
	// The flow ends and its code is stored in one transaction under the identity's lock
	// (see session.TokenPersister): a disable or revocation that came first refuses the
	// code, one that comes after ends it.
	var (
		resp    fosite.AuthorizeResponder
		respErr error
	)
	err = h.d.Tokens().InIdentityTx(ctx, id.ID, func(ctx context.Context) error {
		ok, err := h.d.OAuth2Persister().AdvanceFlow(ctx, f, from, time.Now())
		if err != nil {
			return err
		}
		if !ok {
			return errVerifierUsed
		}
		if f.LoginSessionID != nil {
			// The tokens of this code end with the login session (logout).
			if ok, err := h.d.OAuth2Persister().AddLoginSessionFamily(ctx, *f.LoginSessionID, ar.GetID()); err != nil {
				return err
			} else if !ok {
				return errSessionEnded
			}
		}
		// A refusal of the request (say, no PKCE) still spends the verifier: single use.
		// A code issued commits with its event.
		if resp, respErr = p.NewAuthorizeResponse(ctx, ar, sess); respErr != nil {
			return nil
		}
		return h.d.AuditLogger().LogTx(ctx, audit.Event{Type: "oauth2.authorize", UserID: audit.Int64(id.ID),
			Metadata: map[string]any{"clientId": f.ClientID, "scope": f.GrantedScope}})
	})
	if err == nil {
		err = respErr
	}
	switch {
	case errors.Is(err, errSessionEnded):
		p.WriteAuthorizeError(ctx, w, ar, fosite.ErrLoginRequired.WithHint("The browser's login session ended."))
		return
	case errors.Is(err, errVerifierUsed):
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The consent verifier was already used.")))
		return
	case errors.Is(err, session.ErrIdentityInactive):
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The user can no longer log in.")))
		return
	case err != nil:
		var rfc *fosite.RFC6749Error
		if !errors.As(err, &rfc) {
			err = fosite.ErrServerError.WithWrap(err)
		}
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(err))
		return
	}
	p.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// errVerifierUsed: a concurrent request ended the flow first.
var errVerifierUsed = errors.New("consent verifier already used")

// errSessionEnded: a logout ended the login session of the flow first.
var errSessionEnded = errors.New("login session ended")

// tokenGrants are the grant types /oauth2/token accepts.
var tokenGrants = map[string]bool{"authorization_code": true, "refresh_token": true, "client_credentials": true, GrantCIBA: true}

func (h *Handler) token(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	p := h.provider()
	sess := &session.Session{}
	// RFC 6749 §5.2: a grant type pvauth does not serve here (the internal self-service
	// grant included) is unsupported_grant_type, decided before any grant handler runs.
	if g := r.PostFormValue("grant_type"); g != "" && !tokenGrants[g] {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "The grant type is not supported by the token endpoint.")
		return
	}
	ar, err := p.NewAccessRequest(ctx, r, sess)
	if err != nil {
		if !x.WriteOAuth2Unavailable(w, r, err) {
			p.WriteAccessError(ctx, w, ar, err)
		}
		return
	}
	// pvauth's own first-party clients refresh through /api/v1/auth/refresh, which also
	// checks the identity and returns the file signature; they have no business here.
	// Decided on the client fosite authenticated (however its id was encoded), before
	// any token is rotated or minted.
	if session.IsFirstPartyClient(ar.GetClient().GetID()) {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "This client cannot use the token endpoint.")
		return
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		// The client acts for itself: it is the subject, and gets the scopes and audience
		// it asked for within what it may have.
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s)
		}
		for _, a := range ar.GetRequestedAudience() {
			ar.GrantAudience(a)
		}
		s := ar.GetSession().(*session.Session)
		s.Subject = ar.GetClient().GetID()
		s.SessionID = ar.GetID()
	}
	wctx, lost := h.d.Tokens().Store().WatchRotation(ctx)
	resp, err := p.NewAccessResponse(wctx, ar)
	if err != nil {
		if reused, rerr := lost(ctx); rerr != nil {
			err = rerr
		} else if reused {
			// Lost a refresh rotation race: reuse, the family is revoked (session.Store).
			err = fosite.ErrInvalidGrant.WithHint("The refresh token was already used; its session has been revoked.").WithWrap(err)
		} else if errors.Is(err, fosite.ErrSerializationFailure) || errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
			// A concurrent request spent the same authorization code first (the store's
			// conditional update lets exactly one through): for this one the code is used,
			// not a server error.
			err = fosite.ErrInvalidGrant.WithHint("The authorization code has already been used.").WithWrap(err)
		}
		if !x.WriteOAuth2Unavailable(w, r, err) {
			p.WriteAccessError(ctx, w, ar, err)
		}
		return
	}
	p.WriteAccessResponse(ctx, w, ar, resp)
}

// introspect is RFC 7662 for authenticated clients; it answers for every token pvauth
// issues, self-service ones included, with the same fields as the admin endpoint.
func (h *Handler) introspect(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The request body must be application/x-www-form-urlencoded.")
		return
	}
	f, ok := h.provider().(*fosite.Fosite)
	if !ok {
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "")
		return
	}
	// Only confidential clients introspect: a public client proves nothing by its id.
	if c, err := f.AuthenticateClient(ctx, r, r.PostForm); err != nil || c.IsPublic() {
		if x.WriteOAuth2Unavailable(w, r, err) {
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="pvauth"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The parameter 'token' is required.")
		return
	}
	res, err := h.d.Tokens().Introspect(ctx, token, r.PostForm.Get("token_type_hint"))
	if err != nil {
		if x.WriteOAuth2Unavailable(w, r, err) {
			return
		}
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "Introspection failed.")
		return
	}
	x.WriteJSON(w, http.StatusOK, res)
}

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

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	p := h.provider()
	err := p.NewRevocationRequest(ctx, r)
	if x.WriteOAuth2Unavailable(w, r, err) {
		return
	}
	p.WriteRevocationResponse(ctx, w, err)
}

func (h *Handler) discovery(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	iss := h.issuer()
	alg := h.d.Config().Tokens.Algorithm
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Del("Pragma")
	x.WriteJSON(w, http.StatusOK, map[string]any{
		"issuer":                                        iss,
		"authorization_endpoint":                        iss + RouteAuth,
		"token_endpoint":                                iss + RouteToken,
		"userinfo_endpoint":                             iss + RouteUserinfo,
		"jwks_uri":                                      iss + session.RouteJWKS,
		"introspection_endpoint":                        iss + RouteIntrospect,
		"revocation_endpoint":                           iss + RouteRevoke,
		"response_types_supported":                      []string{"code"},
		"response_modes_supported":                      []string{"query"},
		"grant_types_supported":                         []string{"authorization_code", "refresh_token", "client_credentials", GrantCIBA},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         []string{alg},
		"userinfo_signing_alg_values_supported":         []string{"none"},
		"scopes_supported":                              []string{"openid", "offline_access", "offline", "email", "profile"},
		"token_endpoint_auth_methods_supported":         []string{"client_secret_basic", "client_secret_post", "none"},
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":    []string{"client_secret_basic", "client_secret_post", "none"},
		"code_challenge_methods_supported":              []string{"S256"},
		"claims_supported":                              []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "email", "name"},
		"request_parameter_supported":                   false,
		// CIBA Core §4: poll mode only, unsigned requests.
		"end_session_endpoint":                       iss + RouteLogout,
		"backchannel_authentication_endpoint":        iss + RouteBackchannelAuth,
		"backchannel_token_delivery_modes_supported": []string{"poll"},
		"backchannel_user_code_parameter_supported":  false,
	})
}

func (h *Handler) userinfo(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	p := session.PrincipalFrom(r.Context())
	if p == nil || p.IdentityID == 0 {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "The token does not belong to a user.")
		return
	}
	id, err := h.d.IdentityPersister().GetIdentity(r.Context(), p.IdentityID)
	if errors.Is(err, identity.ErrNotFound) || (err == nil && id.State != identity.StateActive) {
		// Disabling revokes the tokens too; this answers the same however they look.
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "The user no longer exists or is disabled.")
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	out := map[string]any{"sub": strconv.FormatInt(id.ID, 10)}
	scopes := fosite.Arguments(p.Scopes)
	self := p.ClientID == session.ClientSelfService || p.ClientID == session.ClientSelfServiceRemember
	if self || scopes.Has("email") {
		out["email"] = id.Email
		out["email_verified"] = false
	}
	if self || scopes.Has("profile") {
		if e := id.TypedTraits().Employee; e != nil && e.Name != "" {
			out["name"] = e.Name
		}
	}
	x.WriteJSON(w, http.StatusOK, out)
}

// The login and consent hand-off used by the web login UI.

func (h *Handler) flowByChallenge(ctx context.Context, column, challenge, state string) (*Flow, *Client, error) {
	if challenge == "" || len(challenge) > 256 {
		field := map[string]string{"login_challenge": "loginChallenge", "consent_challenge": "consentChallenge"}[column]
		return nil, nil, x.ErrBadRequest.WithMessagef("Field '%s' (or query parameter '%s') is required.", field, column)
	}
	f, err := h.d.OAuth2Persister().GetFlowBy(ctx, column, x.SHA256Hex(challenge))
	if errors.Is(err, ErrFlowNotFound) {
		return nil, nil, x.ErrNotFound.WithMessage("The challenge is unknown, expired or already used.")
	} else if err != nil {
		return nil, nil, err
	}
	if f.State != state || !time.Now().Before(f.ExpiresAt) {
		return nil, nil, x.ErrNotFound.WithMessage("The challenge is unknown, expired or already used.")
	}
	c, err := h.d.OAuth2Persister().GetOAuth2Client(ctx, f.ClientID)
	if errors.Is(err, ErrClientNotFound) {
		return nil, nil, x.ErrNotFound.WithMessage("The client of this request no longer exists.")
	} else if err != nil {
		return nil, nil, err
	}
	return f, c, nil
}

type loginRequest struct {
	ClientID       string   `json:"clientId"`
	ClientName     string   `json:"clientName"`
	RequestedScope []string `json:"requestedScope"`
	Skip           bool     `json:"skip"`
}

func (h *Handler) getLogin(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	f, c, err := h.flowByChallenge(r.Context(), "login_challenge", r.URL.Query().Get("login_challenge"), FlowLogin)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	// pvauth keeps no browser session, so the user always logs in: skip is false.
	x.WriteData(w, http.StatusOK, loginRequest{ClientID: c.ID, ClientName: c.Name, RequestedScope: fields(f.RequestedScope)})
}

func fields(s string) []string {
	f := strings.Fields(s)
	if f == nil {
		f = []string{}
	}
	return f
}

type challengeBody struct {
	LoginChallenge   string   `json:"loginChallenge"`
	ConsentChallenge string   `json:"consentChallenge"`
	GrantScope       []string `json:"grantScope"`
	Remember         bool     `json:"remember"`
}

type redirectResult struct {
	RedirectTo string `json:"redirectTo"`
}

func (h *Handler) authorizeURL(f *Flow, key, value string) string {
	q, _ := url.ParseQuery(f.RequestQuery)
	q.Set(key, value)
	return h.issuer() + RouteAuth + "?" + q.Encode()
}

func (h *Handler) acceptLogin(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	p := session.PrincipalFrom(ctx)
	if p == nil || p.IdentityID == 0 {
		x.WriteError(w, r, session.ErrNotAUser)
		return
	}
	var b challengeBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	f, _, err := h.flowByChallenge(ctx, "login_challenge", b.LoginChallenge, FlowLogin)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	v := newSecret()
	hv := x.SHA256Hex(v)
	amr, _ := json.Marshal(p.AMR)
	now := time.Now().UTC()
	// auth_time is when the user signed in, not when an old session accepted the request.
	authTime := p.AuthTime
	if authTime.IsZero() {
		authTime = now
	}
	// prompt=login, max_age and id_token_hint ask for a particular login: an older one
	// (or another user's) is sent back to sign in again.
	q, _ := url.ParseQuery(f.RequestQuery)
	pr, err := h.parsePromptForm(ctx, q, f.ClientID)
	if err != nil || !pr.freshEnough(strconv.FormatInt(p.IdentityID, 10), authTime, f.CreatedAt) {
		x.WriteError(w, r, ErrFreshLoginRequired)
		return
	}
	f.LoginVerifier, f.IdentityID, f.AMR, f.AuthTime, f.State = &hv, &p.IdentityID, string(amr), &authTime, FlowLoginAccepted
	f.Remember = b.Remember
	ok, err := h.d.OAuth2Persister().AdvanceFlow(ctx, f, FlowLogin, now)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if !ok {
		x.WriteError(w, r, x.ErrNotFound.WithMessage("The challenge is unknown, expired or already used."))
		return
	}
	x.WriteData(w, http.StatusOK, redirectResult{RedirectTo: h.authorizeURL(f, "login_verifier", v)})
}

// ErrFreshLoginRequired refuses to accept a login older than the request allows.
var ErrFreshLoginRequired = x.NewError(http.StatusForbidden, "login_required",
	"This sign-in request needs a fresh login (prompt=login, max_age or id_token_hint): sign in again.")

type consentRequest struct {
	ClientID       string   `json:"clientId"`
	ClientName     string   `json:"clientName"`
	RequestedScope []string `json:"requestedScope"`
}

// consentFlow loads a consent flow and checks it belongs to the caller.
func (h *Handler) consentFlow(ctx context.Context, challenge string) (*Flow, *Client, error) {
	f, c, err := h.flowByChallenge(ctx, "consent_challenge", challenge, FlowConsent)
	if err != nil {
		return nil, nil, err
	}
	p := session.PrincipalFrom(ctx)
	if p == nil || f.IdentityID == nil || *f.IdentityID != p.IdentityID {
		return nil, nil, x.ErrNotFound.WithMessage("The challenge is unknown, expired or already used.")
	}
	return f, c, nil
}

func (h *Handler) getConsent(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	f, c, err := h.consentFlow(r.Context(), r.URL.Query().Get("consent_challenge"))
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, consentRequest{ClientID: c.ID, ClientName: c.Name, RequestedScope: fields(f.RequestedScope)})
}

func (h *Handler) acceptConsent(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	var b challengeBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	f, _, err := h.consentFlow(ctx, b.ConsentChallenge)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if !covers(f.RequestedScope, strings.Join(b.GrantScope, " ")) {
		x.WriteError(w, r, x.ErrBadRequest.WithMessage("Field 'grantScope' may only contain requested scopes."))
		return
	}
	v := newSecret()
	hv := x.SHA256Hex(v)
	f.ConsentVerifier, f.GrantedScope, f.State = &hv, strings.Join(b.GrantScope, " "), FlowConsentAccepted
	if ok, err := h.d.OAuth2Persister().AdvanceFlow(ctx, f, FlowConsent, time.Now()); err != nil {
		x.WriteError(w, r, err)
		return
	} else if !ok {
		x.WriteError(w, r, x.ErrNotFound.WithMessage("The challenge is unknown, expired or already used."))
		return
	}
	if b.Remember {
		if err := h.d.OAuth2Persister().RememberConsent(ctx, *f.IdentityID, f.ClientID, f.GrantedScope); err != nil {
			x.WriteError(w, r, err)
			return
		}
	}
	x.WriteData(w, http.StatusOK, redirectResult{RedirectTo: h.authorizeURL(f, "consent_verifier", v)})
}

func (h *Handler) rejectConsent(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	var b challengeBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	f, _, err := h.consentFlow(ctx, b.ConsentChallenge)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	v := newSecret()
	hv := x.SHA256Hex(v)
	f.ConsentVerifier, f.State = &hv, FlowConsentRejected
	if ok, err := h.d.OAuth2Persister().AdvanceFlow(ctx, f, FlowConsent, time.Now()); err != nil {
		x.WriteError(w, r, err)
		return
	} else if !ok {
		x.WriteError(w, r, x.ErrNotFound.WithMessage("The challenge is unknown, expired or already used."))
		return
	}
	x.WriteData(w, http.StatusOK, redirectResult{RedirectTo: h.authorizeURL(f, "consent_verifier", v)})
}
