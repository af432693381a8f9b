package oauth2

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"
	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/x"
)

// Browser login sessions (OpenID Connect single sign-on). A login accepted with remember
// keeps the browser signed in for ttl.login_session: later authorization requests of any
// client skip the login UI (prompt=none can succeed), unless prompt=login or max_age
// asks for a fresh login. The session lives in the database (revocable: a disable, a
// sessions delete or a logout ends it); the browser holds a random cookie whose SHA-256
// names it.

// SessionCookie holds the browser's login session.
const SessionCookie = "pvauth_session"

// LoginSession is a remembered browser login.
type LoginSession struct {
	ID         string    `db:"id"`
	TokenHash  string    `db:"token_hash"`
	IdentityID int64     `db:"identity_id"`
	AMR        string    `db:"amr"`
	AuthTime   time.Time `db:"auth_time"`
	ExpiresAt  time.Time `db:"expires_at"`
	CreatedAt  time.Time `db:"created_at"`
}

// ErrLoginSessionNotFound is returned for unknown or ended sessions.
var ErrLoginSessionNotFound = errors.New("login session not found")

// LoginSessionPersister stores browser login sessions.
type LoginSessionPersister interface {
	CreateLoginSession(ctx context.Context, s *LoginSession) error
	// GetLoginSession finds a session by "id" or "token_hash".
	GetLoginSession(ctx context.Context, column, value string) (*LoginSession, error)
	// AddLoginSessionFamily lists a token family (fosite request id) under a live
	// session; false when the session has ended.
	AddLoginSessionFamily(ctx context.Context, sessionID, requestID string) (bool, error)
	// EndLoginSession revokes every family listed under the session (and their
	// unexchanged codes) and deletes it, under the identity's lock; false when there was
	// no such session.
	EndLoginSession(ctx context.Context, id string) (bool, error)
}

// secureCookies is false only on a plain-http issuer (development).
func (h *Handler) secureCookies() bool { return !strings.HasPrefix(h.issuer(), "http://") }

// browserSession returns the live login session of the browser's cookie, or nil. A
// session of an identity that can no longer sign in counts as none.
func (h *Handler) browserSession(ctx context.Context, r *http.Request) (*LoginSession, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || len(c.Value) != 43 {
		return nil, nil
	}
	s, err := h.d.OAuth2Persister().GetLoginSession(ctx, "token_hash", x.SHA256Hex(c.Value))
	if errors.Is(err, ErrLoginSessionNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if !time.Now().Before(s.ExpiresAt) {
		return nil, nil
	}
	id, err := h.d.IdentityPersister().GetIdentity(ctx, s.IdentityID)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if id.State != identity.StateActive {
		return nil, nil
	}
	return s, nil
}

// startBrowserSession keeps the login of flow f for this browser and sets the cookie.
func (h *Handler) startBrowserSession(ctx context.Context, w http.ResponseWriter, f *Flow) (*LoginSession, error) {
	v := newSecret()
	ttl := h.d.Config().TTL.LoginSession
	s := &LoginSession{ID: uuid.NewString(), TokenHash: x.SHA256Hex(v), IdentityID: *f.IdentityID, AMR: f.AMR,
		AuthTime: time.Now().UTC(), ExpiresAt: time.Now().Add(ttl)}
	if f.AuthTime != nil {
		s.AuthTime = *f.AuthTime
	}
	if err := h.d.OAuth2Persister().CreateLoginSession(ctx, s); err != nil {
		return nil, err
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: v, Path: "/oauth2/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: h.secureCookies(), MaxAge: int(ttl.Seconds()),
	})
	return s, nil
}

func (h *Handler) clearBrowserSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/oauth2/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: h.secureCookies(), MaxAge: -1})
}

// authPrompt is what an authorization request says about authenticating the user
// (OpenID Connect Core §3.1.2.1).
type authPrompt struct {
	none, login, consent bool
	// maxAge is the oldest acceptable login, in seconds; -1 when not set.
	maxAge int64
	// hintSubject is the subject of id_token_hint, "" when not set.
	hintSubject string
}

func (h *Handler) parsePrompt(ctx context.Context, ar fosite.AuthorizeRequester) (*authPrompt, error) {
	return h.hints.prompt(ctx, ar.GetRequestForm(), ar.GetClient().GetID())
}

// idTokenHints verifies the ID tokens that requests name as hints: id_token_hint of an
// authorization, backchannel or logout request.
type idTokenHints struct {
	signer *provider.Signer
	issuer string
}

// prompt reads what an authorization request's form says about authenticating the user.
func (hs idTokenHints) prompt(ctx context.Context, form url.Values, clientID string) (*authPrompt, error) {
	p := &authPrompt{maxAge: -1}
	for _, v := range strings.Fields(form.Get("prompt")) {
		switch v {
		case "none":
			p.none = true
		case "login":
			p.login = true
		case "consent":
			p.consent = true
		case "select_account":
			// One account per browser: nothing to select.
		default:
			return nil, fosite.ErrInvalidRequest.WithHintf("Unknown prompt value %q.", v)
		}
	}
	if p.none && (p.login || p.consent) {
		return nil, fosite.ErrInvalidRequest.WithHint("prompt=none cannot be combined with other values.")
	}
	if v := form.Get("max_age"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, fosite.ErrInvalidRequest.WithHint("The parameter 'max_age' must be a non-negative integer.")
		}
		p.maxAge = n
	}
	if hint := form.Get("id_token_hint"); hint != "" {
		sub, err := hs.subject(ctx, hint, clientID)
		if err != nil {
			return nil, err
		}
		p.hintSubject = sub
	}
	return p, nil
}

// satisfiedBy reports whether a login at authTime by subject meets the request without
// a new login.
func (p *authPrompt) satisfiedBy(subject string, authTime, now time.Time) bool {
	if p.login {
		return false
	}
	if p.maxAge >= 0 && now.Unix()-authTime.Unix() > p.maxAge {
		return false
	}
	return p.hintSubject == "" || p.hintSubject == subject
}

// subject checks an ID token pvauth issued to clientID (expired ones too, as
// OpenID Connect allows for hints) and returns its subject.
func (hs idTokenHints) subject(ctx context.Context, hint, clientID string) (string, error) {
	claims, err := hs.claims(ctx, hint)
	if err != nil {
		return "", err
	}
	if clientID != "" && !audienceHas(claims["aud"], clientID) {
		return "", errBadHint
	}
	return claims["sub"].(string), nil
}

var errBadHint = fosite.ErrInvalidRequest.WithHint("The id_token_hint is not an ID token this server issued to the client.")

// claims verifies an ID token of this issuer (expiry not required) and returns
// its claims, which have a subject.
func (hs idTokenHints) claims(ctx context.Context, token string) (jwt.MapClaims, error) {
	if len(token) > 8192 {
		return nil, errBadHint
	}
	tok, err := hs.signer.Decode(ctx, token)
	var ve *jwt.ValidationError
	if err != nil && !(errors.As(err, &ve) && ve.Errors == jwt.ValidationErrorExpired) {
		return nil, errBadHint
	}
	if tok == nil {
		return nil, errBadHint
	}
	if iss, _ := tok.Claims["iss"].(string); iss != hs.issuer {
		return nil, errBadHint
	}
	if sub, _ := tok.Claims["sub"].(string); sub == "" {
		return nil, errBadHint
	}
	return tok.Claims, nil
}

// resumeSession answers a first visit with the browser's login session: the flow starts
// as logged in, with the session's identity, methods and auth_time.
func (h *Handler) resumeSession(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, q map[string][]string, s *LoginSession, p *authPrompt) {
	ctx := r.Context()
	id, amr, at := s.IdentityID, s.AMR, s.AuthTime
	f := &Flow{
		ID: uuid.NewString(), ClientID: ar.GetClient().GetID(), RequestQuery: originalQuery(q),
		RequestedScope: strings.Join(ar.GetRequestedScopes(), " "), LoginChallenge: x.SHA256Hex(newSecret()),
		IdentityID: &id, AMR: amr, AuthTime: &at, LoginSessionID: &s.ID, State: FlowLoginAccepted,
		ExpiresAt: time.Now().Add(h.flowTTL()), BrowserHash: h.bindBrowser(w, r),
	}
	if err := h.d.OAuth2Persister().CreateFlow(ctx, f); err != nil {
		h.provider().WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrServerError.WithWrap(err)))
		return
	}
	h.continueFlow(w, r, ar, f, p)
}

// freshEnough reports whether a login accepted through the login UI for a request made
// at requestedAt meets it: after the request for prompt=login, within max_age, and by
// the hinted user.
func (p *authPrompt) freshEnough(subject string, authTime, requestedAt time.Time) bool {
	// A login made for this request meets max_age whatever its value (max_age=0 is
	// prompt=login); an older one must be young enough, in whole seconds.
	old := authTime.Before(requestedAt)
	if p.login && old {
		return false
	}
	if p.maxAge >= 0 && old && time.Now().Unix()-authTime.Unix() > p.maxAge {
		return false
	}
	return p.hintSubject == "" || p.hintSubject == subject
}

// TypeLogout is the audit event of an RP-initiated logout.
const TypeLogout = "oauth2.logout"

// logout is OpenID Connect RP-Initiated Logout 1.0's end_session_endpoint: it ends the
// browser's login session and the OIDC session the id_token_hint names,
// revoking their tokens, then sends the browser to a registered post_logout_redirect_uri
// (with state), or to the login UI's signed-out page. It never redirects anywhere else.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		if !parseForm(w, r) {
			return
		}
		q = r.PostForm
	}
	target, claims, err := h.logoutTarget(ctx, q)
	if err != nil {
		writeRFC6749(w, r, err)
		return
	}
	s, err := h.browserSession(ctx, r)
	if err != nil {
		writeRFC6749(w, r, fosite.ErrServerError.WithWrap(err))
		return
	}
	// What ends, and its audit event, commit together.
	al := h.d.AuditLogger()
	err = al.Tx(ctx, func(ctx context.Context) error {
		var userID *int64
		meta := map[string]any{}
		// The browser's session ends unless the hint names another user (then that
		// user's session named by the hint ends, and this browser's stays).
		if s != nil && (claims == nil || claims["sub"] == strconv.FormatInt(s.IdentityID, 10)) {
			if _, err := h.d.OAuth2Persister().EndLoginSession(ctx, s.ID); err != nil {
				return err
			}
			userID, meta["loginSessionId"] = audit.Int64(s.IdentityID), s.ID
		}
		if claims != nil {
			if sid, _ := claims["sid"].(string); sid != "" && sid != meta["loginSessionId"] {
				if err := h.endOIDCSession(ctx, sid); err != nil {
					return err
				}
				meta["sid"] = sid
			}
			if n, err := strconv.ParseInt(claims["sub"].(string), 10, 64); err == nil {
				userID = audit.Int64(n)
			}
		}
		if cid := q.Get("client_id"); cid != "" {
			meta["clientId"] = cid
		}
		return al.LogTx(ctx, audit.Event{Type: TypeLogout, UserID: userID, Metadata: meta})
	})
	if err != nil {
		writeRFC6749(w, r, fosite.ErrServerError.WithWrap(err))
		return
	}
	h.clearBrowserSession(w)
	w.Header().Set("Cache-Control", "no-store")
	if target == "" {
		target = withQuery(h.d.Config().URLs.LoginUI, "signed_out", "true")
		if h.d.Config().URLs.LoginUI == "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("You are signed out.\n"))
			return
		}
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// endOIDCSession ends what an ID token's sid names: a login session, or else a token
// family (a login without remember).
func (h *Handler) endOIDCSession(ctx context.Context, sid string) error {
	ended, err := h.d.OAuth2Persister().EndLoginSession(ctx, sid)
	if err != nil || ended {
		return err
	}
	return h.d.Tokens().RevokeSession(ctx, sid)
}

// logoutTarget checks the logout request: the hint, if any, must be an ID token of this
// issuer; a post_logout_redirect_uri must be registered by the client (named by the
// hint's audience or client_id). It returns where to send the browser ("" for the
// signed-out page) and the hint's claims (nil without a hint).
func (h *Handler) logoutTarget(ctx context.Context, q url.Values) (string, jwt.MapClaims, error) {
	var claims jwt.MapClaims
	clientID := q.Get("client_id")
	if hint := q.Get("id_token_hint"); hint != "" {
		var err error
		if claims, err = h.hints.claims(ctx, hint); err != nil {
			return "", nil, fosite.ErrInvalidRequest.WithHint("The id_token_hint is not an ID token this server issued.")
		}
		if clientID == "" {
			clientID = firstAudience(claims["aud"])
		} else if !audienceHas(claims["aud"], clientID) {
			return "", nil, fosite.ErrInvalidRequest.WithHint("The id_token_hint was not issued to client_id.")
		}
	}
	uri := q.Get("post_logout_redirect_uri")
	if uri == "" {
		return "", claims, nil
	}
	if clientID == "" {
		return "", nil, fosite.ErrInvalidRequest.WithHint("A post_logout_redirect_uri needs an id_token_hint or a client_id.")
	}
	c, err := h.d.OAuth2Persister().GetOAuth2Client(ctx, clientID)
	if errors.Is(err, ErrClientNotFound) {
		return "", nil, fosite.ErrInvalidRequest.WithHint("The post_logout_redirect_uri is not registered for the client.")
	} else if err != nil {
		return "", nil, fosite.ErrServerError.WithWrap(err)
	}
	if !slices.Contains(c.PostLogoutRedirectURIs, uri) {
		return "", nil, fosite.ErrInvalidRequest.WithHint("The post_logout_redirect_uri is not registered for the client.")
	}
	if state := q.Get("state"); state != "" {
		uri = withQuery(uri, "state", state)
	}
	return uri, claims, nil
}

func firstAudience(aud any) string {
	switch a := aud.(type) {
	case string:
		return a
	case []any:
		if len(a) > 0 {
			s, _ := a[0].(string)
			return s
		}
	case []string:
		if len(a) > 0 {
			return a[0]
		}
	}
	return ""
}
