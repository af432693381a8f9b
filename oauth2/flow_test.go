package oauth2_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// The login and consent UIs are never visited: the test plays the browser and the
// login UI, reading the challenges from Location headers.
const (
	loginUIURL   = "http://login-ui.test/login"
	consentUIURL = "http://login-ui.test/consent"
	callbackURL  = "https://rp.example.com/callback"
)

// op is a running pvauth whose issuer is the URL of its own public listener.
type op struct {
	srv      *testserver.Server
	issuer   string
	noFollow *http.Client
}

// startOP starts pvauth on dsn with the issuer, base URL and UI URLs set; set adds or
// overrides config keys.
func startOP(t *testing.T, dsn string, set map[string]any) *op {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	o := map[string]any{
		"serve.public.base_url": issuer,
		"urls.issuer":           issuer,
		"urls.login_ui":         loginUIURL,
		"urls.consent_ui":       consentUIURL,
	}
	for k, v := range set {
		o[k] = v
	}
	srv := testserver.StartWith(t, dsn, o, testserver.Options{PublicListener: ln})
	return &op{srv: srv, issuer: issuer, noFollow: testkit.Browser()}
}

// ctx is a context whose OAuth2/OIDC HTTP client is the test server's.
func (o *op) ctx() context.Context {
	return oidc.ClientContext(context.Background(), o.srv.Client)
}

type user struct {
	ID    int64
	Email string
	Token string // a self-service access token (amr pwd+otp)
}

// newUser creates an identity on the admin API and signs it in (self-service token).
func (o *op) newUser(t *testing.T, email string) user {
	t.Helper()
	id := testkit.CreateIdentity(t, o.srv, map[string]any{"email": email})
	return user{ID: id.ID, Email: email, Token: testkit.IssueSession(t, o.srv, id).AccessToken}
}

// client is an OAuth2 client as the admin API shows it.
type client struct {
	ID            string   `json:"client_id"`
	Name          string   `json:"client_name"`
	Secret        string   `json:"client_secret"`
	RedirectURIs  []string `json:"redirect_uris"`
	GrantTypes    []string `json:"grant_types"`
	ResponseTypes []string `json:"response_types"`
	Scope         string   `json:"scope"`
	Audience      []string `json:"audience"`
	Method        string   `json:"token_endpoint_auth_method"`
	SkipConsent   bool     `json:"skip_consent"`
}

// createClient registers a client; body is RFC 7591 metadata.
func (o *op) createClient(t *testing.T, body map[string]any) client {
	t.Helper()
	var c client
	testkit.CreateClient(t, o.srv, body, &c)
	return c
}

// codeClient registers an authorization-code client with the given auth method.
func (o *op) codeClient(t *testing.T, method string, extra map[string]any) client {
	t.Helper()
	body := map[string]any{
		"client_name":                "RP " + method,
		"redirect_uris":              []string{callbackURL},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      "openid offline_access email profile",
		"token_endpoint_auth_method": method,
	}
	for k, v := range extra {
		body[k] = v
	}
	c := o.createClient(t, body)
	if (method == "none") != (c.Secret == "") {
		t.Fatalf("client %s (%s) came with secret %q", c.ID, method, c.Secret)
	}
	return c
}

// config is the x/oauth2 configuration of c against this server.
func (o *op) config(c client, scopes ...string) *oauth2.Config {
	style := oauth2.AuthStyleInParams
	if c.Method == "client_secret_basic" {
		style = oauth2.AuthStyleInHeader
	}
	return &oauth2.Config{
		ClientID:     c.ID,
		ClientSecret: c.Secret,
		RedirectURL:  callbackURL,
		Scopes:       scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   o.issuer + "/oauth2/auth",
			TokenURL:  o.issuer + "/oauth2/token",
			AuthStyle: style,
		},
	}
}

// get requests rawURL without following redirects.
func (o *op) get(t *testing.T, rawURL string) *testserver.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.send(t, o.noFollow, req)
}

func (o *op) send(t *testing.T, c *http.Client, req *http.Request) *testserver.Response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &testserver.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// form posts an OAuth2 form to the public port, with HTTP Basic client authentication
// when user is not empty.
func (o *op) form(t *testing.T, path string, v url.Values, user, pass string) *testserver.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, o.issuer+path, strings.NewReader(v.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	return o.send(t, o.noFollow, req)
}

// asClient posts v to path authenticated as c the way its token_endpoint_auth_method
// says: HTTP Basic, or client_id (and client_secret) in the body.
func (o *op) asClient(t *testing.T, path string, v url.Values, c client) *testserver.Response {
	t.Helper()
	if c.Method == "client_secret_basic" {
		return o.form(t, path, v, c.ID, c.Secret)
	}
	w := url.Values{}
	for k, vs := range v {
		w[k] = vs
	}
	w.Set("client_id", c.ID)
	if c.Secret != "" {
		w.Set("client_secret", c.Secret)
	}
	return o.form(t, path, w, "", "")
}

// redirect checks that r redirects to a URL starting with prefix and returns it.
func redirect(t *testing.T, r *testserver.Response, prefix string) *url.URL {
	t.Helper()
	if r.Status != http.StatusFound && r.Status != http.StatusSeeOther {
		t.Fatalf("want a redirect to %s, got %d %s", prefix, r.Status, r.Body)
	}
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, prefix+"?") && loc != prefix {
		t.Fatalf("redirect to %q, want %s", loc, prefix)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// oauthError checks an RFC 6749 error response.
func oauthError(t *testing.T, r *testserver.Response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d (%s): %s", r.Status, status, code, r.Body)
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("not an RFC 6749 error body: %v: %s", err, r.Body)
	}
	if e.Error != code {
		t.Fatalf("error %q, want %q: %s", e.Error, code, r.Body)
	}
	if strings.Contains(string(r.Body), "access_token") {
		t.Fatalf("an error response carries a token: %s", r.Body)
	}
}

// retrieveError checks that err is the token endpoint's RFC 6749 error code.
func retrieveError(t *testing.T, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("want a token endpoint error %q, got %v", code, err)
	}
	if re.ErrorCode != code || re.Response.StatusCode >= 500 {
		t.Fatalf("token endpoint error %q (HTTP %d), want %q: %s", re.ErrorCode, re.Response.StatusCode, code, re.Body)
	}
}

// handoff says how the test plays the login UI.
type handoff struct {
	user     user
	consent  bool     // a consent screen is expected
	grant    []string // scopes granted on consent (nil: all requested)
	remember bool
	reject   bool
}

// loginInfo and consentInfo are what the login UI reads of a request.
type loginInfo struct {
	ClientID       string   `json:"clientId"`
	ClientName     string   `json:"clientName"`
	RequestedScope []string `json:"requestedScope"`
	Skip           bool     `json:"skip"`
}

type consentInfo struct {
	ClientID       string   `json:"clientId"`
	ClientName     string   `json:"clientName"`
	RequestedScope []string `json:"requestedScope"`
}

type trace struct {
	Login   loginInfo
	Consent *consentInfo
	// Final is where the authorization endpoint finally sends the browser (the client).
	Final *url.URL
	// LoginVerifierURL is the redirectTo of the login acceptance.
	LoginVerifierURL string
}

// startLogin visits authURL and returns the login challenge of the hand-off.
func (o *op) startLogin(t *testing.T, authURL string) string {
	t.Helper()
	loc := redirect(t, o.get(t, authURL), loginUIURL)
	ch := loc.Query().Get("login_challenge")
	if ch == "" {
		t.Fatalf("no login_challenge in %s", loc)
	}
	return ch
}

// acceptLogin is the login UI accepting a challenge for u; it returns redirectTo.
func (o *op) acceptLogin(t *testing.T, challenge string, u user) string {
	t.Helper()
	r := o.srv.Public(t, http.MethodPost, "/api/v1/auth/oauth2/login/accept", u.Token, map[string]any{"loginChallenge": challenge})
	if r.Status != http.StatusOK {
		t.Fatalf("login accept: %d %s", r.Status, r.Body)
	}
	var rt struct {
		RedirectTo string `json:"redirectTo"`
	}
	r.Data(t, &rt)
	if !strings.HasPrefix(rt.RedirectTo, o.issuer+"/oauth2/auth?") {
		t.Fatalf("login accept redirects to %q", rt.RedirectTo)
	}
	return rt.RedirectTo
}

// authorize runs the whole hand-off for authURL as h says.
func (o *op) authorize(t *testing.T, authURL string, h handoff) trace {
	t.Helper()
	var tr trace
	challenge := o.startLogin(t, authURL)
	r := o.srv.Public(t, http.MethodGet, "/api/v1/auth/oauth2/login?login_challenge="+url.QueryEscape(challenge), "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("get login request: %d %s", r.Status, r.Body)
	}
	r.Data(t, &tr.Login)
	tr.LoginVerifierURL = o.acceptLogin(t, challenge, h.user)
	r = o.get(t, tr.LoginVerifierURL)
	if !h.consent {
		tr.Final = redirect(t, r, callbackURL)
		return tr
	}
	loc := redirect(t, r, consentUIURL)
	cc := loc.Query().Get("consent_challenge")
	r = o.srv.Public(t, http.MethodGet, "/api/v1/auth/oauth2/consent?consent_challenge="+url.QueryEscape(cc), h.user.Token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("get consent request: %d %s", r.Status, r.Body)
	}
	tr.Consent = &consentInfo{}
	r.Data(t, tr.Consent)
	var body map[string]any
	path := "/api/v1/auth/oauth2/consent/accept"
	if h.reject {
		path = "/api/v1/auth/oauth2/consent/reject"
		body = map[string]any{"consentChallenge": cc}
	} else {
		grant := h.grant
		if grant == nil {
			grant = tr.Consent.RequestedScope
		}
		body = map[string]any{"consentChallenge": cc, "grantScope": grant, "remember": h.remember}
	}
	r = o.srv.Public(t, http.MethodPost, path, h.user.Token, body)
	if r.Status != http.StatusOK {
		t.Fatalf("%s: %d %s", path, r.Status, r.Body)
	}
	var rt struct {
		RedirectTo string `json:"redirectTo"`
	}
	r.Data(t, &rt)
	tr.Final = redirect(t, o.get(t, rt.RedirectTo), callbackURL)
	return tr
}

// codeFrom returns the code of a successful authorization response.
func codeFrom(t *testing.T, u *url.URL, state string) string {
	t.Helper()
	q := u.Query()
	if e := q.Get("error"); e != "" {
		t.Fatalf("authorization failed: %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != state {
		t.Fatalf("state %q, want %q", q.Get("state"), state)
	}
	code := q.Get("code")
	if code == "" {
		t.Fatalf("no code in %s", u)
	}
	return code
}

// errorFrom returns the error of a failed authorization response.
func errorFrom(t *testing.T, u *url.URL, state string) string {
	t.Helper()
	q := u.Query()
	if q.Get("code") != "" {
		t.Fatalf("a failed authorization carries a code: %s", u)
	}
	if state != "" && q.Get("state") != state {
		t.Fatalf("error redirect has state %q, want %q", q.Get("state"), state)
	}
	return q.Get("error")
}

// authRequest is one authorization request with PKCE, state and nonce.
type authRequest struct {
	URL, State, Nonce, Verifier string
}

func newAuthRequest(t *testing.T, conf *oauth2.Config, opts ...oauth2.AuthCodeOption) authRequest {
	t.Helper()
	a := authRequest{State: testkit.RandomString(t, 16), Nonce: testkit.RandomString(t, 16), Verifier: oauth2.GenerateVerifier()}
	opts = append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(a.Verifier), oidc.Nonce(a.Nonce)}, opts...)
	a.URL = conf.AuthCodeURL(a.State, opts...)
	return a
}

// introspection is the RFC 7662 answer.
type introspection struct {
	Active    bool     `json:"active"`
	Aud       []string `json:"aud"`
	ClientID  string   `json:"client_id"`
	Exp       int64    `json:"exp"`
	Iat       int64    `json:"iat"`
	Iss       string   `json:"iss"`
	Jti       string   `json:"jti"`
	Nbf       int64    `json:"nbf"`
	Scope     string   `json:"scope"`
	Sub       string   `json:"sub"`
	TokenType string   `json:"token_type"`
	Username  string   `json:"username"`
}

// introspect asks /oauth2/introspect as client c (HTTP Basic).
func (o *op) introspect(t *testing.T, c client, token, hint string) introspection {
	t.Helper()
	v := url.Values{"token": {token}}
	if hint != "" {
		v.Set("token_type_hint", hint)
	}
	r := o.asClient(t, "/oauth2/introspect", v, c)
	if r.Status != http.StatusOK {
		t.Fatalf("introspect: %d %s", r.Status, r.Body)
	}
	var in introspection
	r.JSON(t, &in)
	return in
}

// revoke posts a token to /oauth2/revoke as client c and expects 200 with an empty body.
func (o *op) revoke(t *testing.T, c client, token, hint string) {
	t.Helper()
	v := url.Values{"token": {token}}
	if hint != "" {
		v.Set("token_type_hint", hint)
	}
	r := o.asClient(t, "/oauth2/revoke", v, c)
	if r.Status != http.StatusOK || len(strings.TrimSpace(string(r.Body))) != 0 {
		t.Fatalf("revoke: %d %q", r.Status, r.Body)
	}
}

// introspector registers a confidential client used only to ask /oauth2/introspect.
func (o *op) introspector(t *testing.T) client {
	t.Helper()
	return o.createClient(t, map[string]any{
		"client_name": "resource server", "grant_types": []string{"client_credentials"},
	})
}

// idClaims are the id_token claims the tests look at.
type idClaims struct {
	Email    string   `json:"email"`
	AMR      []string `json:"amr"`
	AuthTime int64    `json:"auth_time"`
	Nonce    string   `json:"nonce"`
}

// verifyIDToken checks the id_token of tok with go-oidc (discovery + JWKS).
func verifyIDToken(t *testing.T, ctx context.Context, p *oidc.Provider, c client, tok *oauth2.Token, u user, nonce string) idClaims {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatalf("no id_token in the token response")
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: c.ID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("id_token does not verify: %v", err)
	}
	if nonce != "" && idt.Nonce != nonce {
		t.Fatalf("id_token nonce %q, want %q", idt.Nonce, nonce)
	}
	if idt.Subject != strconv.FormatInt(u.ID, 10) {
		t.Fatalf("id_token sub %q, want %d", idt.Subject, u.ID)
	}
	var cl idClaims
	if err := idt.Claims(&cl); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cl.AMR, []string{"pwd", "otp"}) {
		t.Fatalf("id_token amr %v, want [pwd otp]", cl.AMR)
	}
	if cl.AuthTime == 0 || time.Since(time.Unix(cl.AuthTime, 0)) > time.Minute {
		t.Fatalf("id_token auth_time %d", cl.AuthTime)
	}
	return cl
}

// fullFlow runs the code flow with PKCE for c end to end with the real clients, then
// userinfo, introspection, refresh and revocation.
func fullFlow(t *testing.T, o *op, p *oidc.Provider, c client, u user, rs client) {
	ctx := o.ctx()
	conf := o.config(c, "openid", "offline_access", "email")
	a := newAuthRequest(t, conf)
	tr := o.authorize(t, a.URL, handoff{user: u, consent: true})
	if tr.Login.ClientID != c.ID || tr.Login.ClientName != c.Name || tr.Login.Skip ||
		!slices.Equal(tr.Login.RequestedScope, []string{"openid", "offline_access", "email"}) {
		t.Fatalf("login request %+v", tr.Login)
	}
	if tr.Consent.ClientID != c.ID || tr.Consent.ClientName != c.Name ||
		!slices.Equal(tr.Consent.RequestedScope, []string{"openid", "offline_access", "email"}) {
		t.Fatalf("consent request %+v", *tr.Consent)
	}
	code := codeFrom(t, tr.Final, a.State)

	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || !strings.EqualFold(tok.TokenType, "bearer") {
		t.Fatalf("token %+v", tok)
	}
	if s, _ := tok.Extra("scope").(string); !slices.Equal(strings.Fields(s), []string{"openid", "offline_access", "email"}) {
		t.Errorf("token scope %q", s)
	}
	cl := verifyIDToken(t, ctx, p, c, tok, u, a.Nonce)
	if cl.Email != u.Email {
		t.Errorf("id_token email %q, want %q (email scope granted)", cl.Email, u.Email)
	}

	// userinfo with the access token.
	ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if ui.Subject != strconv.FormatInt(u.ID, 10) || ui.Email != u.Email {
		t.Fatalf("userinfo %+v", ui)
	}

	in := o.introspect(t, rs, tok.AccessToken, "")
	if !in.Active || in.ClientID != c.ID || in.Sub != strconv.FormatInt(u.ID, 10) || in.Iss != o.issuer ||
		in.TokenType != "Bearer" || in.Exp <= time.Now().Unix() || in.Username != u.Email ||
		!slices.Equal(strings.Fields(in.Scope), []string{"openid", "offline_access", "email"}) {
		t.Fatalf("access token introspects as %+v", in)
	}
	if in := o.introspect(t, rs, tok.RefreshToken, "refresh_token"); !in.Active || in.ClientID != c.ID {
		t.Fatalf("refresh token introspects as %+v", in)
	}

	// Refresh through the TokenSource: an expired token makes it use the refresh token.
	old := *tok
	old.Expiry = time.Now().Add(-time.Minute)
	tok2, err := conf.TokenSource(ctx, &old).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh did not rotate: %+v", tok2)
	}
	if _, ok := tok2.Extra("id_token").(string); ok {
		verifyIDToken(t, ctx, p, c, tok2, u, "")
	}
	if ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok2)); err != nil || ui.Subject != strconv.FormatInt(u.ID, 10) {
		t.Fatalf("userinfo with the refreshed token: %v %+v", err, ui)
	}
	if in := o.introspect(t, rs, tok.RefreshToken, "refresh_token"); in.Active {
		t.Fatalf("the rotated refresh token is still active: %+v", in)
	}

	// Revoke the refresh token: refreshing fails, and the access tokens of the grant end.
	o.revoke(t, c, tok2.RefreshToken, "refresh_token")
	if in := o.introspect(t, rs, tok2.RefreshToken, "refresh_token"); in.Active {
		t.Fatalf("revoked refresh token introspects active")
	}
	_, err = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok2.RefreshToken}).Token()
	retrieveError(t, err, "invalid_grant")
	if in := o.introspect(t, rs, tok2.AccessToken, ""); in.Active {
		t.Fatalf("access token of a revoked grant introspects active: %+v", in)
	}
	if _, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok2)); err == nil {
		t.Fatalf("userinfo accepts the access token of a revoked grant")
	}
}

func TestCodeFlowPKCE(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		o := startOP(t, dsn, nil)
		ctx := o.ctx()
		p, err := oidc.NewProvider(ctx, o.issuer)
		if err != nil {
			t.Fatalf("discovery: %v", err)
		}
		u := o.newUser(t, "ada@example.com")
		rs := o.introspector(t)

		for _, method := range []string{"client_secret_basic", "client_secret_post", "none"} {
			t.Run(method, func(t *testing.T) {
				fullFlow(t, o, p, o.codeClient(t, method, nil), u, rs)
			})
		}

		t.Run("refresh token reuse revokes the family", func(t *testing.T) {
			c := o.codeClient(t, "none", map[string]any{"skip_consent": true})
			conf := o.config(c, "openid", "offline_access")
			a := newAuthRequest(t, conf)
			tr := o.authorize(t, a.URL, handoff{user: u})
			tok, err := conf.Exchange(ctx, codeFrom(t, tr.Final, a.State), oauth2.VerifierOption(a.Verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			tok2, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			_, err = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			retrieveError(t, err, "invalid_grant")
			if in := o.introspect(t, rs, tok2.AccessToken, ""); in.Active {
				t.Fatalf("after refresh token reuse the family's access token is active")
			}
			_, err = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok2.RefreshToken}).Token()
			retrieveError(t, err, "invalid_grant")
		})

		t.Run("skip_consent", func(t *testing.T) {
			c := o.codeClient(t, "client_secret_basic", map[string]any{"skip_consent": true})
			conf := o.config(c, "openid", "email")
			a := newAuthRequest(t, conf)
			tr := o.authorize(t, a.URL, handoff{user: u, consent: false})
			tok, err := conf.Exchange(ctx, codeFrom(t, tr.Final, a.State), oauth2.VerifierOption(a.Verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			verifyIDToken(t, ctx, p, c, tok, u, a.Nonce)
			if tok.RefreshToken != "" {
				t.Errorf("a refresh token without offline_access")
			}
			if in := o.introspect(t, rs, tok.AccessToken, ""); !in.Active || in.Scope != "openid email" {
				t.Fatalf("introspection %+v", in)
			}
		})

		t.Run("remembered consent", func(t *testing.T) {
			c := o.codeClient(t, "client_secret_post", nil)
			conf := o.config(c, "openid", "email")
			a := newAuthRequest(t, conf)
			tr := o.authorize(t, a.URL, handoff{user: u, consent: true, remember: true})
			if _, err := conf.Exchange(ctx, codeFrom(t, tr.Final, a.State), oauth2.VerifierOption(a.Verifier)); err != nil {
				t.Fatalf("exchange: %v", err)
			}
			// Asked again for the same (or fewer) scopes: no consent screen.
			for _, scopes := range [][]string{{"openid", "email"}, {"openid"}} {
				conf := o.config(c, scopes...)
				a := newAuthRequest(t, conf)
				tr := o.authorize(t, a.URL, handoff{user: u, consent: false})
				tok, err := conf.Exchange(ctx, codeFrom(t, tr.Final, a.State), oauth2.VerifierOption(a.Verifier))
				if err != nil {
					t.Fatalf("exchange %v: %v", scopes, err)
				}
				verifyIDToken(t, ctx, p, c, tok, u, a.Nonce)
				if s, _ := tok.Extra("scope").(string); !slices.Equal(strings.Fields(s), scopes) {
					t.Fatalf("granted %q, want %v", s, scopes)
				}
			}
			// More than was remembered: asked again.
			conf = o.config(c, "openid", "email", "profile")
			a = newAuthRequest(t, conf)
			o.authorize(t, a.URL, handoff{user: u, consent: true})
			// Another user has not consented.
			bob := o.newUser(t, "bob-remember@example.com")
			conf = o.config(c, "openid")
			a = newAuthRequest(t, conf)
			o.authorize(t, a.URL, handoff{user: bob, consent: true})
		})

		t.Run("consent without remember is asked again", func(t *testing.T) {
			c := o.codeClient(t, "client_secret_basic", nil)
			conf := o.config(c, "openid")
			for i := 0; i < 2; i++ {
				a := newAuthRequest(t, conf)
				tr := o.authorize(t, a.URL, handoff{user: u, consent: true})
				codeFrom(t, tr.Final, a.State)
			}
		})

		t.Run("partial consent", func(t *testing.T) {
			c := o.codeClient(t, "client_secret_basic", nil)
			conf := o.config(c, "openid", "email", "offline_access")
			a := newAuthRequest(t, conf)
			tr := o.authorize(t, a.URL, handoff{user: u, consent: true, grant: []string{"openid"}})
			tok, err := conf.Exchange(ctx, codeFrom(t, tr.Final, a.State), oauth2.VerifierOption(a.Verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if s, _ := tok.Extra("scope").(string); s != "openid" || tok.RefreshToken != "" {
				t.Fatalf("granted %q (refresh token %t), want only openid", s, tok.RefreshToken != "")
			}
			if cl := verifyIDToken(t, ctx, p, c, tok, u, a.Nonce); cl.Email != "" {
				t.Errorf("id_token has email without the email scope")
			}
			ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil || ui.Email != "" {
				t.Fatalf("userinfo without the email scope: %v %+v", err, ui)
			}
		})

		t.Run("consent reject", func(t *testing.T) {
			c := o.codeClient(t, "client_secret_basic", nil)
			conf := o.config(c, "openid", "email")
			a := newAuthRequest(t, conf)
			tr := o.authorize(t, a.URL, handoff{user: u, consent: true, reject: true})
			if e := errorFrom(t, tr.Final, a.State); e != "access_denied" {
				t.Fatalf("error %q, want access_denied (%s)", e, tr.Final)
			}
		})
	})
}

func TestDiscovery(t *testing.T) {
	o := startOP(t, "memory", nil)
	r := o.srv.Public(t, http.MethodGet, "/.well-known/openid-configuration", "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("discovery: %d %s", r.Status, r.Body)
	}
	var d map[string]any
	r.JSON(t, &d)
	for k, want := range map[string]string{
		"issuer":                 o.issuer,
		"authorization_endpoint": o.issuer + "/oauth2/auth",
		"token_endpoint":         o.issuer + "/oauth2/token",
		"jwks_uri":               o.issuer + "/.well-known/jwks.json",
		"userinfo_endpoint":      o.issuer + "/userinfo",
		"introspection_endpoint": o.issuer + "/oauth2/introspect",
		"revocation_endpoint":    o.issuer + "/oauth2/revoke",
	} {
		if d[k] != want {
			t.Errorf("%s = %v, want %s", k, d[k], want)
		}
	}
	has := func(k, v string) {
		t.Helper()
		l, _ := d[k].([]any)
		if !slices.Contains(l, any(v)) {
			t.Errorf("%s = %v, want it to contain %s", k, d[k], v)
		}
	}
	has("code_challenge_methods_supported", "S256")
	has("grant_types_supported", "client_credentials")
	has("token_endpoint_auth_methods_supported", "none")
	has("id_token_signing_alg_values_supported", "ES256")
	if l, _ := d["code_challenge_methods_supported"].([]any); slices.Contains(l, any("plain")) {
		t.Errorf("plain PKCE advertised")
	}
}
