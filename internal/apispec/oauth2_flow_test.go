package apispec_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/session"
)

// OAuth2 settings of the flow server: the UIs are never visited (the validating client
// does not follow redirects), only their URLs are read from Location headers.
const (
	loginUI     = "https://login.example.com/login"
	consentUI   = "https://login.example.com/consent"
	rpCallback  = "https://rp.example.com/cb"
	spaScope    = "openid offline_access email profile"
	reportScope = "reports.read"
	reportAud   = "https://reports.example.com"
)

// oauthToken is the token endpoint's answer.
type oauthToken struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
}

// oauthClient is an OAuth2 client as the admin API shows it.
type oauthClient struct {
	ClientID                string   `json:"client_id"`
	ClientName              string   `json:"client_name"`
	ClientSecret            string   `json:"client_secret"`
	GrantTypes              []string `json:"grant_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
}

// oauthPost posts a form to the public port, with HTTP Basic client authentication
// when user is not empty.
func (f *flow) oauthPost(path string, v url.Values, user, pass string) *testserver.Response {
	f.t.Helper()
	req, err := http.NewRequest("POST", f.srv.PublicURL+path, strings.NewReader(v.Encode()))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	return f.send(req)
}

func (f *flow) send(req *http.Request) *testserver.Response {
	f.t.Helper()
	resp, err := f.srv.Client.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return &testserver.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// redirect checks a redirect's status and returns its Location, parsed.
func (f *flow) redirect(r *testserver.Response, status int) *url.URL {
	f.t.Helper()
	f.expect(r, status)
	u, err := url.Parse(r.Header.Get("Location"))
	if err != nil || r.Header.Get("Location") == "" {
		f.t.Fatalf("redirect %d without a usable Location: %q", status, r.Header.Get("Location"))
	}
	return u
}

// prefixed checks that u starts with base and returns its query.
func (f *flow) prefixed(u *url.URL, base string) url.Values {
	f.t.Helper()
	if got := u.Scheme + "://" + u.Host + u.Path; got != base {
		f.t.Fatalf("redirected to %s, want %s", u, base)
	}
	return u.Query()
}

// authRequest is one authorization request of the public client.
type authRequest struct {
	state, verifier string
	query           url.Values
}

func newAuthRequest(clientID string, n int) *authRequest {
	a := &authRequest{state: "state-" + strconv.Itoa(n) + "-abcdefgh", verifier: strings.Repeat("v", 40) + strconv.Itoa(1000+n)}
	sum := sha256.Sum256([]byte(a.verifier))
	a.query = url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {rpCallback},
		"scope":                 {spaScope},
		"state":                 {a.state},
		"nonce":                 {"nonce-" + strconv.Itoa(n) + "-abcdefgh"},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	return a
}

// start sends the authorization request and returns the login challenge.
func (f *flow) start(a *authRequest) string {
	f.t.Helper()
	q := f.prefixed(f.redirect(f.srv.Public(f.t, "GET", "/oauth2/auth?"+a.query.Encode(), "", nil), http.StatusFound), loginUI)
	if q.Get("login_challenge") == "" {
		f.t.Fatal("no login_challenge")
	}
	return q.Get("login_challenge")
}

// acceptLogin accepts the login as the owner of at and follows redirectTo; it returns the
// authorization endpoint's answer.
func (f *flow) acceptLogin(challenge, at string) *testserver.Response {
	f.t.Helper()
	var next struct {
		RedirectTo string `json:"redirectTo"`
	}
	f.expectData(f.srv.Public(f.t, "POST", "/api/v1/auth/oauth2/login/accept", at, map[string]string{"loginChallenge": challenge}), 200, &next)
	if !strings.HasPrefix(next.RedirectTo, f.srv.PublicURL+"/oauth2/auth?") {
		f.t.Fatalf("login accept redirects to %s", next.RedirectTo)
	}
	return f.srv.Do(f.t, "GET", next.RedirectTo, "", nil)
}

// consentChallenge reads the consent challenge of the authorization endpoint's redirect.
func (f *flow) consentChallenge(r *testserver.Response) string {
	f.t.Helper()
	q := f.prefixed(f.redirect(r, http.StatusFound), consentUI)
	if q.Get("consent_challenge") == "" {
		f.t.Fatal("no consent_challenge")
	}
	return q.Get("consent_challenge")
}

// decide posts a consent decision and follows redirectTo; it returns the client's
// callback query.
func (f *flow) decide(path, at string, body map[string]any, a *authRequest) url.Values {
	f.t.Helper()
	var next struct {
		RedirectTo string `json:"redirectTo"`
	}
	f.expectData(f.srv.Public(f.t, "POST", path, at, body), 200, &next)
	q := f.callback(f.srv.Do(f.t, "GET", next.RedirectTo, "", nil), a)
	// The verifier is single use: a replay is an error redirect.
	if replay := f.callback(f.srv.Do(f.t, "GET", next.RedirectTo, "", nil), a); replay.Get("error") != "access_denied" {
		f.t.Errorf("a replayed consent verifier gave %v", replay)
	}
	return q
}

// callback checks the final redirect to the client and its state.
func (f *flow) callback(r *testserver.Response, a *authRequest) url.Values {
	f.t.Helper()
	q := f.prefixed(f.redirect(r, http.StatusSeeOther), rpCallback)
	if q.Get("state") != a.state {
		f.t.Errorf("callback state %q, want %q", q.Get("state"), a.state)
	}
	return q
}

func (f *flow) exchange(clientID, code string, a *authRequest) oauthToken {
	f.t.Helper()
	var tok oauthToken
	f.expect(f.oauthPost("/oauth2/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {rpCallback},
		"client_id": {clientID}, "code_verifier": {a.verifier},
	}, "", ""), 200).JSON(f.t, &tok)
	return tok
}

// introspectAs introspects at the public endpoint as a confidential client.
func (f *flow) introspectAs(user, pass, token string) map[string]any {
	f.t.Helper()
	var out map[string]any
	f.expect(f.oauthPost("/oauth2/introspect", url.Values{"token": {token}}, user, pass), 200).JSON(f.t, &out)
	return out
}

// oauth2 drives the OAuth2 / OIDC provider: client registry, client credentials,
// introspection and revocation, discovery, the login and consent hand-off with code
// exchange, userinfo and refresh, a rejected consent and a remembered one.
func (f *flow) oauth2() {
	t, srv := f.t, f.srv
	t.Helper()

	// Discovery.
	var disco map[string]any
	r := f.expect(srv.Public(t, "GET", "/.well-known/openid-configuration", "", nil), 200)
	r.JSON(t, &disco)
	if disco["issuer"] != srv.PublicURL || disco["token_endpoint"] != srv.PublicURL+"/oauth2/token" {
		t.Errorf("discovery: issuer %v, token endpoint %v; want the public URL %s", disco["issuer"], disco["token_endpoint"], srv.PublicURL)
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age") {
		t.Errorf("discovery Cache-Control %q, want cacheable", cc)
	}

	// A user with a completed self-service login (password + OTP).
	carol := f.createIdentity(map[string]any{"email": "carol@example.com", "password": "carol's long password",
		"traits": map[string]any{"employee": map[string]any{"id": "e3", "name": "Carol"}}})
	dave := f.createIdentity(map[string]any{"email": "dave@example.com"})
	issue := func(id int64, email string) *session.TokenSet {
		ts, err := srv.Registry.Tokens().Issue(context.Background(), session.IssueRequest{IdentityID: id, Email: email, AMR: []string{"pwd", "otp"}})
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	carolTS, daveTS := issue(carol, "carol@example.com"), issue(dave, "dave@example.com")

	// Client registry.
	var svc oauthClient
	f.expectData(srv.Admin(t, "POST", "/admin/clients", map[string]any{
		"client_id": "svc-reports", "client_name": "Reports service", "grant_types": []string{"client_credentials"},
		"scope": reportScope, "audience": []string{reportAud},
	}), 201, &svc)
	if svc.ClientSecret == "" || svc.TokenEndpointAuthMethod != "client_secret_basic" {
		t.Fatalf("confidential client: %+v", svc)
	}
	f.expect(srv.Admin(t, "POST", "/admin/clients", map[string]any{"client_id": "svc-reports", "grant_types": []string{"client_credentials"}}), 409)
	f.expect(srv.Admin(t, "POST", "/admin/clients", map[string]any{"token_endpoint_auth_method": "none", "grant_types": []string{"client_credentials"}}), 400)
	f.expect(srv.Admin(t, "POST", "/admin/clients", map[string]any{"grant_types": []string{"authorization_code"}}), 400) // no redirect_uris
	f.expect(srv.Admin(t, "POST", "/admin/clients", map[string]any{"client_id": "pvauth-mine", "grant_types": []string{"client_credentials"}}), 400)
	f.expect(srv.Admin(t, "POST", "/admin/clients", map[string]any{"redirect_uris": []string{"not a uri"}}), 400)
	f.expect(srv.Admin(t, "POST", "/admin/clients", `{"client_id": `), 400)
	var spa oauthClient
	f.expectData(srv.Admin(t, "POST", "/admin/clients", map[string]any{
		"client_name": "Acme SPA", "redirect_uris": []string{rpCallback}, "grant_types": []string{"authorization_code", "refresh_token"},
		"scope": spaScope, "token_endpoint_auth_method": "none",
	}), 201, &spa)
	if spa.ClientID == "" || spa.ClientSecret != "" {
		t.Fatalf("public client: %+v", spa)
	}

	// Client credentials.
	ccForm := url.Values{"grant_type": {"client_credentials"}, "scope": {reportScope}, "audience": {reportAud}}
	var cc oauthToken
	r = f.expect(f.oauthPost("/oauth2/token", ccForm, svc.ClientID, svc.ClientSecret), 200)
	r.JSON(t, &cc)
	if cc.AccessToken == "" || cc.RefreshToken != "" || cc.Scope != reportScope || r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("client credentials: %+v, Cache-Control %q", cc, r.Header.Get("Cache-Control"))
	}
	f.expect(f.oauthPost("/oauth2/token", ccForm, svc.ClientID, "wrong secret"), 401)
	withPost := url.Values{"client_id": {svc.ClientID}, "client_secret": {svc.ClientSecret}}
	for k, v := range ccForm {
		withPost[k] = v
	}
	f.expect(f.oauthPost("/oauth2/token", withPost, "", ""), 401) // registered for client_secret_basic
	f.expect(f.oauthPost("/oauth2/token", url.Values{"grant_type": {"password"}}, svc.ClientID, svc.ClientSecret), 400)
	f.expect(f.oauthPost("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, svc.ClientID, svc.ClientSecret), 400)

	// Introspection by a client: the same body as the admin endpoint, for every token.
	in := f.introspectAs(svc.ClientID, svc.ClientSecret, cc.AccessToken)
	if in["active"] != true || in["client_id"] != svc.ClientID || in["sub"] != svc.ClientID || in["scope"] != reportScope {
		t.Errorf("introspection of a client credentials token: %v", in)
	}
	if in := f.introspectAs(svc.ClientID, svc.ClientSecret, carolTS.AccessToken); in["active"] != true || in["sub"] != strconv.FormatInt(carol, 10) {
		t.Errorf("introspection of a self-service token: %v", in)
	}
	if in := f.introspectAs(svc.ClientID, svc.ClientSecret, "not-a-token"); in["active"] != false || len(in) != 1 {
		t.Errorf("introspection of garbage: %v", in)
	}
	f.expect(f.oauthPost("/oauth2/introspect", url.Values{}, svc.ClientID, svc.ClientSecret), 400)
	if r := f.expect(f.oauthPost("/oauth2/introspect", url.Values{"token": {cc.AccessToken}}, svc.ClientID, "wrong secret"), 401); r.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 invalid_client without WWW-Authenticate")
	}
	f.expect(f.oauthPost("/oauth2/introspect", url.Values{"token": {cc.AccessToken}}, "", ""), 401)

	// A client credentials token is no user's.
	f.expect(srv.Public(t, "GET", "/userinfo", cc.AccessToken, nil), 401)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/oauth2/login/accept", cc.AccessToken, map[string]string{"loginChallenge": "x"}), 403)

	// Revocation: the client's own token, an unknown one; errors.
	f.expect(f.oauthPost("/oauth2/revoke", url.Values{"token": {cc.AccessToken}}, svc.ClientID, svc.ClientSecret), 200)
	if in := f.introspectAs(svc.ClientID, svc.ClientSecret, cc.AccessToken); in["active"] != false {
		t.Errorf("a revoked client credentials token introspects as %v", in)
	}
	if r := f.expect(f.oauthPost("/oauth2/revoke", url.Values{"token": {"not-a-token"}}, svc.ClientID, svc.ClientSecret), 200); len(r.Body) != 0 {
		t.Errorf("revocation answered a body: %q", r.Body)
	}
	f.expect(f.oauthPost("/oauth2/revoke", url.Values{}, svc.ClientID, svc.ClientSecret), 400)
	f.expect(f.oauthPost("/oauth2/revoke", url.Values{"token": {"not-a-token"}}, svc.ClientID, "wrong secret"), 401)

	// Authorization endpoint errors: unknown client and unregistered redirect URI are JSON;
	// once the redirect URI is known, errors go back to the client.
	bad := newAuthRequest("no-such-client", 0)
	f.expect(srv.Public(t, "GET", "/oauth2/auth?"+bad.query.Encode(), "", nil), 401)
	bad = newAuthRequest(spa.ClientID, 0)
	bad.query.Set("redirect_uri", "https://evil.example.com/cb")
	f.expect(srv.Public(t, "GET", "/oauth2/auth?"+bad.query.Encode(), "", nil), 400)
	bad = newAuthRequest(spa.ClientID, 0)
	bad.state = "short"
	bad.query.Set("state", bad.state)
	if q := f.callback(srv.Public(t, "GET", "/oauth2/auth?"+bad.query.Encode(), "", nil), bad); q.Get("error") != "invalid_state" {
		t.Errorf("an authorization request with a short state: %v", q)
	}
	// Without PKCE a public client's request is refused at once, before any login: an
	// error redirect to the client (API.md §4).
	bad = newAuthRequest(spa.ClientID, 0)
	bad.query.Del("code_challenge")
	bad.query.Del("code_challenge_method")
	if q := f.callback(srv.Public(t, "GET", "/oauth2/auth?"+bad.query.Encode(), "", nil), bad); q.Get("error") != "invalid_request" || q.Get("code") != "" {
		t.Errorf("an authorization request without PKCE: %v", q)
	}
	// A query over 8 KiB is invalid_request, and no hand-off is stored.
	bad = newAuthRequest(spa.ClientID, 0)
	bad.query.Set("pad", strings.Repeat("p", 8<<10))
	f.expect(srv.Public(t, "GET", "/oauth2/auth?"+bad.query.Encode(), "", nil), 400)

	// The hand-off: login, consent, code, tokens.
	a := newAuthRequest(spa.ClientID, 1)
	lc := f.start(a)
	var login struct {
		ClientID       string   `json:"clientId"`
		ClientName     string   `json:"clientName"`
		RequestedScope []string `json:"requestedScope"`
		Skip           bool     `json:"skip"`
	}
	f.expectData(srv.Public(t, "GET", "/api/v1/auth/oauth2/login?login_challenge="+url.QueryEscape(lc), "", nil), 200, &login)
	if login.ClientID != spa.ClientID || login.ClientName != "Acme SPA" || strings.Join(login.RequestedScope, " ") != spaScope || login.Skip {
		t.Errorf("login request: %+v", login)
	}
	f.expect(srv.Public(t, "GET", "/api/v1/auth/oauth2/login", "", nil), 400)
	f.expect(srv.Public(t, "GET", "/api/v1/auth/oauth2/login?login_challenge=unknown", "", nil), 404)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/oauth2/login/accept", "", map[string]string{"loginChallenge": lc}), 401)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/oauth2/login/accept", carolTS.AccessToken, map[string]string{}), 400)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/oauth2/login/accept", carolTS.AccessToken, map[string]string{"loginChallenge": "unknown"}), 404)
	cch := f.consentChallenge(f.acceptLogin(lc, carolTS.AccessToken))
	f.expect(srv.Public(t, "POST", "/api/v1/auth/oauth2/login/accept", carolTS.AccessToken, map[string]string{"loginChallenge": lc}), 404) // used

	var consent struct {
		ClientID       string   `json:"clientId"`
		RequestedScope []string `json:"requestedScope"`
	}
	f.expectData(srv.Public(t, "GET", "/api/v1/auth/oauth2/consent?consent_challenge="+url.QueryEscape(cch), carolTS.AccessToken, nil), 200, &consent)
	if consent.ClientID != spa.ClientID || strings.Join(consent.RequestedScope, " ") != spaScope {
		t.Errorf("consent request: %+v", consent)
	}
	f.expect(srv.Public(t, "GET", "/api/v1/auth/oauth2/consent?consent_challenge="+url.QueryEscape(cch), daveTS.AccessToken, nil), 404) // not dave's
	f.expect(srv.Public(t, "GET", "/api/v1/auth/oauth2/consent?consent_challenge="+url.QueryEscape(cch), "", nil), 401)
	f.expect(srv.Public(t, "GET", "/api/v1/auth/oauth2/consent", carolTS.AccessToken, nil), 400)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/oauth2/consent/accept", carolTS.AccessToken, map[string]any{"consentChallenge": cch, "grantScope": []string{"openid", "admin"}}), 400)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/oauth2/consent/accept", daveTS.AccessToken, map[string]any{"consentChallenge": cch, "grantScope": []string{"openid"}}), 404)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/oauth2/consent/accept", carolTS.AccessToken, `{"consentChallenge": `), 400)
	cb := f.decide("/api/v1/auth/oauth2/consent/accept", carolTS.AccessToken, map[string]any{"consentChallenge": cch, "grantScope": strings.Fields(spaScope)}, a)
	if cb.Get("code") == "" || cb.Get("error") != "" {
		t.Fatalf("callback after consent: %v", cb)
	}
	f.expect(srv.Public(t, "POST", "/api/v1/auth/oauth2/consent/reject", carolTS.AccessToken, map[string]any{"consentChallenge": cch}), 404) // decided

	f.expect(f.oauthPost("/oauth2/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {"not-a-code"}, "redirect_uri": {rpCallback},
		"client_id": {spa.ClientID}, "code_verifier": {a.verifier},
	}, "", ""), 400)
	tok := f.exchange(spa.ClientID, cb.Get("code"), a)
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.IDToken == "" || !strings.EqualFold(tok.TokenType, "bearer") {
		t.Fatalf("code exchange: %+v", tok)
	}

	// UserInfo with the OAuth2 token (email and profile granted).
	var ui map[string]any
	f.expect(srv.Public(t, "GET", "/userinfo", tok.AccessToken, nil), 200).JSON(t, &ui)
	if ui["sub"] != strconv.FormatInt(carol, 10) || ui["email"] != "carol@example.com" || ui["name"] != "Carol" {
		t.Errorf("userinfo: %v", ui)
	}
	f.expect(srv.Public(t, "POST", "/userinfo", tok.AccessToken, nil), 200)
	f.expect(srv.Public(t, "GET", "/userinfo", "", nil), 401)
	f.expect(srv.Public(t, "GET", "/userinfo", f.login("carol@example.com", "carol's long password", true), nil), 403) // pending token
	if in := f.introspectAs(svc.ClientID, svc.ClientSecret, tok.AccessToken); in["active"] != true || in["client_id"] != spa.ClientID || in["sub"] != strconv.FormatInt(carol, 10) {
		t.Errorf("introspection of an authorization-code token: %v", in)
	}

	// Refresh rotates; the old refresh token again revokes the family.
	var tok2 oauthToken
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {spa.ClientID}}
	f.expect(f.oauthPost("/oauth2/token", refresh, "", ""), 200).JSON(t, &tok2)
	if tok2.AccessToken == "" || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken || tok2.IDToken == "" {
		t.Errorf("refresh: %+v", tok2)
	}
	f.expect(srv.Public(t, "GET", "/userinfo", tok2.AccessToken, nil), 200)
	f.expect(f.oauthPost("/oauth2/token", refresh, "", ""), 400)
	f.expect(srv.Public(t, "GET", "/userinfo", tok2.AccessToken, nil), 401)

	// A rejected consent (the request sent as a form this time).
	a = newAuthRequest(spa.ClientID, 2)
	req, err := http.NewRequest("POST", srv.PublicURL+"/oauth2/auth", strings.NewReader(a.query.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	lc = f.prefixed(f.redirect(f.send(req), http.StatusFound), loginUI).Get("login_challenge")
	cch = f.consentChallenge(f.acceptLogin(lc, carolTS.AccessToken))
	f.expect(srv.Public(t, "POST", "/api/v1/auth/oauth2/consent/reject", carolTS.AccessToken, map[string]any{}), 400)
	cb = f.decide("/api/v1/auth/oauth2/consent/reject", carolTS.AccessToken, map[string]any{"consentChallenge": cch}, a)
	if cb.Get("error") != "access_denied" || cb.Get("code") != "" {
		t.Errorf("callback after a rejection: %v", cb)
	}

	// A remembered consent skips the consent step the next time.
	a = newAuthRequest(spa.ClientID, 3)
	cch = f.consentChallenge(f.acceptLogin(f.start(a), carolTS.AccessToken))
	cb = f.decide("/api/v1/auth/oauth2/consent/accept", carolTS.AccessToken, map[string]any{"consentChallenge": cch, "grantScope": []string{"openid", "email"}, "remember": true}, a)
	if tok := f.exchange(spa.ClientID, cb.Get("code"), a); tok.Scope != "openid email" || tok.RefreshToken != "" {
		t.Errorf("partial grant: %+v", tok)
	}
	a = newAuthRequest(spa.ClientID, 4)
	a.query.Set("scope", "openid email")
	cb = f.callback(f.acceptLogin(f.start(a), carolTS.AccessToken), a)
	tok = f.exchange(spa.ClientID, cb.Get("code"), a)
	ui = nil
	f.expect(srv.Public(t, "GET", "/userinfo", tok.AccessToken, nil), 200).JSON(t, &ui)
	if _, ok := ui["name"]; ok || ui["email"] != "carol@example.com" {
		t.Errorf("userinfo without the profile scope: %v", ui)
	}
	// A code redeemed twice is refused, and the tokens it gave are revoked.
	f.expect(f.oauthPost("/oauth2/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {cb.Get("code")}, "redirect_uri": {rpCallback},
		"client_id": {spa.ClientID}, "code_verifier": {a.verifier},
	}, "", ""), 400)
	f.expect(srv.Public(t, "GET", "/userinfo", tok.AccessToken, nil), 401)

	// Self-service tokens are revocable at /oauth2/revoke by their first-party client.
	f.expect(f.oauthPost("/oauth2/revoke", url.Values{"token": {daveTS.RefreshToken}, "client_id": {provider.ClientSelfService}}, "", ""), 200)
	if in := f.introspectAs(svc.ClientID, svc.ClientSecret, daveTS.AccessToken); in["active"] != false {
		t.Errorf("a revoked self-service session's access token introspects as %v", in)
	}

	// Client management.
	var list struct {
		Clients       []map[string]any `json:"clients"`
		NextPageToken string           `json:"nextPageToken"`
	}
	f.expectData(srv.Admin(t, "GET", "/admin/clients?page_size=1", nil), 200, &list)
	if len(list.Clients) != 1 || list.NextPageToken == "" {
		t.Errorf("first page: %d clients, next %q", len(list.Clients), list.NextPageToken)
	}
	f.expectData(srv.Admin(t, "GET", "/admin/clients?page_size=1&page_token="+url.QueryEscape(list.NextPageToken), nil), 200, &list)
	if len(list.Clients) != 1 || list.NextPageToken != "" {
		t.Errorf("second page: %d clients, next %q", len(list.Clients), list.NextPageToken)
	}
	f.expectData(srv.Admin(t, "GET", "/admin/clients", nil), 200, &list)
	ids := []string{}
	for _, c := range list.Clients {
		if _, ok := c["client_secret"]; ok {
			t.Errorf("a listed client shows its secret: %v", c)
		}
		ids = append(ids, c["client_id"].(string))
	}
	if !slices.Contains(ids, spa.ClientID) || !slices.Contains(ids, svc.ClientID) || len(ids) != 2 {
		t.Errorf("listed clients %v", ids)
	}
	f.expect(srv.Admin(t, "GET", "/admin/clients?page_size=0", nil), 400)

	spaURL := "/admin/clients/" + url.PathEscape(spa.ClientID)
	var got oauthClient
	f.expectData(srv.Admin(t, "GET", spaURL, nil), 200, &got)
	if got.ClientID != spa.ClientID || got.ClientSecret != "" {
		t.Errorf("get client: %+v", got)
	}
	f.expect(srv.Admin(t, "GET", "/admin/clients/no-such-client", nil), 404)
	spaBody := map[string]any{
		"client_name": "Acme SPA", "redirect_uris": []string{rpCallback}, "grant_types": []string{"authorization_code", "refresh_token"},
		"scope": spaScope, "token_endpoint_auth_method": "client_secret_post",
	}
	f.expectData(srv.Admin(t, "PUT", spaURL, spaBody), 200, &got)
	if got.ClientSecret == "" || got.TokenEndpointAuthMethod != "client_secret_post" {
		t.Errorf("a public client made confidential: %+v", got)
	}
	spaBody["client_name"] = "Acme web app"
	got = oauthClient{}
	f.expectData(srv.Admin(t, "PUT", spaURL, spaBody), 200, &got)
	if got.ClientSecret != "" || got.ClientName != "Acme web app" {
		t.Errorf("a confidential client updated: %+v", got)
	}
	spaBody["token_endpoint_auth_method"] = "none"
	got = oauthClient{}
	f.expectData(srv.Admin(t, "PUT", spaURL, spaBody), 200, &got)
	if got.ClientSecret != "" || got.TokenEndpointAuthMethod != "none" {
		t.Errorf("a confidential client made public: %+v", got)
	}
	f.expect(srv.Admin(t, "PUT", spaURL, map[string]any{"grant_types": []string{"implicit"}}), 400)
	f.expect(srv.Admin(t, "PUT", "/admin/clients/no-such-client", spaBody), 404)

	// Deleting a client stops its tokens at once.
	f.expect(f.oauthPost("/oauth2/token", ccForm, svc.ClientID, svc.ClientSecret), 200).JSON(t, &cc)
	svcURL := "/admin/clients/" + svc.ClientID
	f.expectData(srv.Admin(t, "DELETE", svcURL, nil), 200, &map[string]bool{})
	if in := f.introspect(cc.AccessToken, ""); in["active"] != false {
		t.Errorf("a deleted client's token introspects as %v", in)
	}
	f.expect(srv.Admin(t, "GET", svcURL, nil), 404)
	f.expect(srv.Admin(t, "DELETE", svcURL, nil), 404)
	f.expect(srv.Admin(t, "DELETE", "/admin/clients/"+provider.ClientSelfService, nil), 404)
	f.expect(f.oauthPost("/oauth2/token", ccForm, svc.ClientID, svc.ClientSecret), 401)

	f.backchannelAndLogout()
}

// backchannelAndLogout drives CIBA's endpoint (the approval on a device is
// oauth2.TestCIBA's) and RP-initiated logout through the documented shapes.
func (f *flow) backchannelAndLogout() {
	t, srv := f.t, f.srv
	t.Helper()
	const ciba = "urn:openid:params:grant-type:ciba"
	var bank oauthClient
	f.expectData(srv.Admin(t, "POST", "/admin/clients", map[string]any{
		"client_name": "Bank", "grant_types": []string{ciba}, "scope": "openid email",
		"post_logout_redirect_uris": []string{"https://bank.example.com/bye"},
	}), 201, &bank)
	var bc struct {
		AuthReqID string `json:"auth_req_id"`
		Interval  int    `json:"interval"`
	}
	r := f.expect(f.oauthPost("/oauth2/bc-authorize", url.Values{"scope": {"openid"}, "login_hint": {"carol@example.com"}, "binding_message": {"Sign in to Bank"}}, bank.ClientID, bank.ClientSecret), 200)
	r.JSON(t, &bc)
	if bc.AuthReqID == "" || bc.Interval != 5 {
		t.Errorf("bc-authorize: %s", r.Body)
	}
	f.expect(f.oauthPost("/oauth2/bc-authorize", url.Values{"scope": {"openid"}, "login_hint": {"nobody@example.com"}}, bank.ClientID, bank.ClientSecret), 400)
	f.expect(f.oauthPost("/oauth2/bc-authorize", url.Values{"scope": {"openid"}, "login_hint": {"carol@example.com"}}, bank.ClientID, "wrong"), 401)
	f.expect(f.oauthPost("/oauth2/token", url.Values{"grant_type": {ciba}, "auth_req_id": {bc.AuthReqID}}, bank.ClientID, bank.ClientSecret), 400)

	// Logout: to the registered URI with state; never elsewhere.
	u := f.redirect(f.send(mustRequest(t, "GET", srv.PublicURL+"/oauth2/sessions/logout?"+url.Values{
		"client_id": {bank.ClientID}, "post_logout_redirect_uri": {"https://bank.example.com/bye"}, "state": {"s1"}}.Encode())), 302)
	if q := f.prefixed(u, "https://bank.example.com/bye"); q.Get("state") != "s1" {
		t.Errorf("logout redirect %s", u)
	}
	f.expect(f.send(mustRequest(t, "GET", srv.PublicURL+"/oauth2/sessions/logout?"+url.Values{
		"client_id": {bank.ClientID}, "post_logout_redirect_uri": {"https://evil.example.com/"}}.Encode())), 400)
	// The form variant, without a redirect URI: the login UI's signed-out page.
	req, _ := http.NewRequest("POST", srv.PublicURL+"/oauth2/sessions/logout", strings.NewReader(url.Values{"client_id": {bank.ClientID}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if q := f.prefixed(f.redirect(f.send(req), 302), loginUI); q.Get("signed_out") != "true" || len(q) != 1 {
		t.Errorf("form logout redirect: %v, want the login UI with only signed_out=true", q)
	}
}

func mustRequest(t testing.TB, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
