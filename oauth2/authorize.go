package oauth2

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
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
	"github.com/pvpipe/pvauth/x"
)

// The authorization endpoint: a first visit starts the login hand-off (or resumes the
// browser's login session), the return legs bring the login and consent verifiers.

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
		Secure: h.secureCookies(), MaxAge: int(h.flowTTL().Seconds()),
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
		if err := h.advanceLoggedIn(ctx, f); err != nil {
			h.provider().WriteAuthorizeError(ctx, w, ar, err)
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
	if err := h.advanceLoggedIn(ctx, f); err != nil {
		h.provider().WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	http.Redirect(w, r, withQuery(consentUI, "consent_challenge", challenge), http.StatusFound)
}

// advanceLoggedIn moves a logged-in flow on to f.State: once, whoever comes first.
func (h *Handler) advanceLoggedIn(ctx context.Context, f *Flow) error {
	if ok, err := h.d.OAuth2Persister().AdvanceFlow(ctx, f, FlowLoginAccepted, time.Now()); err != nil || !ok {
		return authorizeError(fosite.ErrAccessDenied.WithHint("The login verifier was already used.").WithWrap(err))
	}
	return nil
}
