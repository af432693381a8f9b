package oauth2_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	pvoauth2 "github.com/pvpipe/pvauth/oauth2"
	"github.com/pvpipe/pvauth/oauth2/provider"
)

// expireFlows makes every pending login and consent hand-off expire.
func (o *op) expireFlows(t *testing.T) {
	t.Helper()
	past := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	if err := o.srv.Registry.Persister().Connection(context.Background()).RawQuery("UPDATE oauth2_flows SET expires_at = ?", past).Exec(); err != nil {
		t.Fatal(err)
	}
}

// code runs an authorization for c (skip_consent clients) and returns the code.
func (o *op) code(t *testing.T, conf *oauth2.Config, u user, consent bool) (string, authRequest) {
	t.Helper()
	a := newAuthRequest(t, conf)
	tr := o.authorize(t, a.URL, handoff{user: u, consent: consent})
	return codeFrom(t, tr.Final, a.State), a
}

func TestAuthorizeErrors(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		o := startOP(t, dsn, nil)
		u := o.newUser(t, "neg@example.com")
		c := o.codeClient(t, "client_secret_basic", map[string]any{"skip_consent": true})
		pub := o.codeClient(t, "none", map[string]any{"skip_consent": true})

		t.Run("unregistered redirect URI", func(t *testing.T) {
			for _, bad := range []string{
				"https://evil.example.com/callback",
				callbackURL + "/",
				callbackURL + "?x=1",
				strings.Replace(callbackURL, "https:", "http:", 1),
				strings.ToUpper(callbackURL),
			} {
				conf := o.config(c, "openid")
				conf.RedirectURL = bad
				a := newAuthRequest(t, conf)
				r := o.get(t, a.URL)
				if loc := r.Header.Get("Location"); loc != "" {
					t.Fatalf("%s: redirected to %q", bad, loc)
				}
				oauthError(t, r, http.StatusBadRequest, "invalid_request")
			}
			// Unknown client: no redirect either.
			conf := o.config(client{ID: "no-such-client"}, "openid")
			r := o.get(t, newAuthRequest(t, conf).URL)
			if r.Header.Get("Location") != "" || r.Status >= 500 || r.Status < 400 {
				t.Fatalf("unknown client: %d %v %s", r.Status, r.Header, r.Body)
			}
			oauthError(t, r, r.Status, "invalid_client")
		})

		t.Run("missing PKCE for a public client", func(t *testing.T) {
			// Refused at /oauth2/auth, before any login (API.md §4): an error redirect to
			// the registered URI, no login challenge, no hand-off started.
			conf := o.config(pub, "openid")
			state := testkit.RandomString(t, 16)
			for name, extra := range map[string][]oauth2.AuthCodeOption{
				"no code_challenge": nil,
				"plain": {oauth2.SetAuthURLParam("code_challenge", oauth2.GenerateVerifier()),
					oauth2.SetAuthURLParam("code_challenge_method", "plain")},
				"no method (plain by default)": {oauth2.SetAuthURLParam("code_challenge", oauth2.GenerateVerifier())},
			} {
				opts := append([]oauth2.AuthCodeOption{oauth2.SetAuthURLParam("nonce", testkit.RandomString(t, 16))}, extra...)
				loc := redirect(t, o.get(t, conf.AuthCodeURL(state, opts...)), callbackURL)
				if e := errorFrom(t, loc, state); e != "invalid_request" {
					t.Fatalf("%s: error %q, want invalid_request: %s", name, e, loc)
				}
			}
			// A confidential client may still omit PKCE: it reaches the login UI.
			r := o.get(t, o.config(c, "openid").AuthCodeURL(state, oauth2.SetAuthURLParam("nonce", testkit.RandomString(t, 16))))
			if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, loginUIURL) {
				t.Fatalf("confidential client without PKCE: %d %q", r.Status, loc)
			}
		})

		t.Run("oversized authorization request", func(t *testing.T) {
			a := newAuthRequest(t, o.config(c, "openid"))
			r := o.get(t, a.URL+"&pad="+strings.Repeat("x", 8<<10))
			if r.Header.Get("Location") != "" {
				t.Fatalf("redirected: %s", r.Header.Get("Location"))
			}
			oauthError(t, r, http.StatusBadRequest, "invalid_request")
			// Just under the limit is fine.
			pad := 8<<10 - len(a.URL[strings.IndexByte(a.URL, '?')+1:]) - len("&pad=")
			if r := o.get(t, a.URL+"&pad="+strings.Repeat("x", pad)); !strings.HasPrefix(r.Header.Get("Location"), loginUIURL) {
				t.Fatalf("an 8 KiB query: %d %s", r.Status, r.Body)
			}
		})

		t.Run("prompt=none cannot be answered", func(t *testing.T) {
			a := newAuthRequest(t, o.config(c, "openid"), oauth2.SetAuthURLParam("prompt", "none"))
			loc := redirect(t, o.get(t, a.URL), callbackURL)
			if e := errorFrom(t, loc, a.State); e != "login_required" {
				t.Fatalf("error %q, want login_required", e)
			}
		})

		t.Run("wrong or missing PKCE verifier", func(t *testing.T) {
			for _, cl := range []client{pub, c} {
				conf := o.config(cl, "openid")
				code, _ := o.code(t, conf, u, false)
				_, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
				retrieveError(t, err, "invalid_grant")
				code, _ = o.code(t, conf, u, false)
				_, err = conf.Exchange(o.ctx(), code)
				retrieveError(t, err, "invalid_grant")
			}
		})

		t.Run("redirect_uri differs at the token endpoint", func(t *testing.T) {
			conf := o.config(c, "openid")
			code, a := o.code(t, conf, u, false)
			conf.RedirectURL = "https://evil.example.com/callback"
			_, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(a.Verifier))
			retrieveError(t, err, "invalid_grant")
		})

		t.Run("code of another client", func(t *testing.T) {
			other := o.codeClient(t, "client_secret_basic", map[string]any{"skip_consent": true})
			code, a := o.code(t, o.config(c, "openid"), u, false)
			_, err := o.config(other, "openid").Exchange(o.ctx(), code, oauth2.VerifierOption(a.Verifier))
			retrieveError(t, err, "invalid_grant")
		})

		t.Run("reused code revokes its tokens", func(t *testing.T) {
			rs := o.introspector(t)
			conf := o.config(c, "openid", "offline_access")
			code, a := o.code(t, conf, u, false)
			tok, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(a.Verifier))
			if err != nil {
				t.Fatal(err)
			}
			if in := o.introspect(t, rs, tok.AccessToken, ""); !in.Active {
				t.Fatal("fresh token inactive")
			}
			_, err = conf.Exchange(o.ctx(), code, oauth2.VerifierOption(a.Verifier))
			retrieveError(t, err, "invalid_grant")
			if in := o.introspect(t, rs, tok.AccessToken, ""); in.Active {
				t.Fatalf("the access token of a reused code introspects active")
			}
			if in := o.introspect(t, rs, tok.RefreshToken, "refresh_token"); in.Active {
				t.Fatalf("the refresh token of a reused code introspects active")
			}
			_, err = conf.TokenSource(o.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			retrieveError(t, err, "invalid_grant")
		})

		t.Run("wrong client secret", func(t *testing.T) {
			for _, method := range []string{"client_secret_basic", "client_secret_post"} {
				cl := o.codeClient(t, method, map[string]any{"skip_consent": true})
				conf := o.config(cl, "openid")
				code, a := o.code(t, conf, u, false)
				for _, secret := range []string{cl.Secret + "x", "", strings.ToUpper(cl.Secret)} {
					bad := *conf
					bad.ClientSecret = secret
					_, err := bad.Exchange(o.ctx(), code, oauth2.VerifierOption(a.Verifier))
					retrieveError(t, err, "invalid_client")
					var re *oauth2.RetrieveError
					if !errors.As(err, &re) || re.Response.StatusCode != http.StatusUnauthorized {
						t.Fatalf("wrong secret: HTTP %d, want 401", re.Response.StatusCode)
					}
				}
				// The code was not spent by the failed attempts.
				if _, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(a.Verifier)); err != nil {
					t.Fatalf("exchange after failed client authentication: %v", err)
				}
				// The other method than the registered one is refused.
				other := *conf
				if method == "client_secret_basic" {
					other.Endpoint.AuthStyle = oauth2.AuthStyleInParams
				} else {
					other.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
				}
				code, a = o.code(t, conf, u, false)
				_, err := other.Exchange(o.ctx(), code, oauth2.VerifierOption(a.Verifier))
				retrieveError(t, err, "invalid_client")
			}
			// A confidential client cannot leave its secret out.
			code, a := o.code(t, o.config(c, "openid"), u, false)
			r := o.form(t, "/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {c.ID},
				"redirect_uri": {callbackURL}, "code_verifier": {a.Verifier}}, "", "")
			oauthError(t, r, http.StatusUnauthorized, "invalid_client")
		})

		t.Run("scope not allowed", func(t *testing.T) {
			conf := o.config(c, "openid", "admin")
			a := newAuthRequest(t, conf)
			loc := redirect(t, o.get(t, a.URL), callbackURL)
			if e := errorFrom(t, loc, a.State); e != "invalid_scope" {
				t.Fatalf("error %q, want invalid_scope", e)
			}
		})

		t.Run("login challenge", func(t *testing.T) {
			conf := o.config(c, "openid")
			loginPath := "/api/v1/auth/oauth2/login"
			// Unknown, and missing.
			testkit.WantError(t, o.srv.Public(t, http.MethodGet, loginPath+"?login_challenge=unknown", "", nil), http.StatusNotFound, "")
			testkit.WantError(t, o.srv.Public(t, http.MethodGet, loginPath, "", nil), http.StatusBadRequest, "")
			testkit.WantError(t, o.srv.Public(t, http.MethodPost, loginPath+"/accept", u.Token, map[string]any{"loginChallenge": "unknown"}), http.StatusNotFound, "")
			testkit.WantError(t, o.srv.Public(t, http.MethodPost, loginPath+"/accept", u.Token, map[string]any{}), http.StatusBadRequest, "")
			testkit.WantError(t, o.srv.Public(t, http.MethodPost, loginPath+"/accept", u.Token, "{"), http.StatusBadRequest, "")

			// Accepting needs a user.
			ch := o.startLogin(t, newAuthRequest(t, conf).URL)
			testkit.WantError(t, o.srv.Public(t, http.MethodPost, loginPath+"/accept", "", map[string]any{"loginChallenge": ch}), http.StatusUnauthorized, "")
			testkit.WantError(t, o.srv.Public(t, http.MethodPost, loginPath+"/accept", "bogus.token.value", map[string]any{"loginChallenge": ch}), http.StatusUnauthorized, "")

			// Reused: the second accept is 404, and so is reading it.
			o.acceptLogin(t, ch, u)
			testkit.WantError(t, o.srv.Public(t, http.MethodPost, loginPath+"/accept", u.Token, map[string]any{"loginChallenge": ch}), http.StatusNotFound, "")
			testkit.WantError(t, o.srv.Public(t, http.MethodGet, loginPath+"?login_challenge="+url.QueryEscape(ch), "", nil), http.StatusNotFound, "")

			// Expired.
			ch = o.startLogin(t, newAuthRequest(t, conf).URL)
			o.expireFlows(t)
			testkit.WantError(t, o.srv.Public(t, http.MethodGet, loginPath+"?login_challenge="+url.QueryEscape(ch), "", nil), http.StatusNotFound, "")
			testkit.WantError(t, o.srv.Public(t, http.MethodPost, loginPath+"/accept", u.Token, map[string]any{"loginChallenge": ch}), http.StatusNotFound, "")

			// Accepted, then expired before the browser comes back: access_denied.
			a := newAuthRequest(t, conf)
			ch = o.startLogin(t, a.URL)
			back := o.acceptLogin(t, ch, u)
			o.expireFlows(t)
			loc := redirect(t, o.get(t, back), callbackURL)
			if e := errorFrom(t, loc, a.State); e != "access_denied" {
				t.Fatalf("expired login verifier: error %q", e)
			}
		})

		t.Run("reused login verifier", func(t *testing.T) {
			a := newAuthRequest(t, o.config(c, "openid"))
			tr := o.authorize(t, a.URL, handoff{user: u})
			codeFrom(t, tr.Final, a.State)
			loc := redirect(t, o.get(t, tr.LoginVerifierURL), callbackURL)
			if e := errorFrom(t, loc, a.State); e != "access_denied" {
				t.Fatalf("reused login verifier: error %q, want access_denied", e)
			}
			// Made up verifiers are refused the same way.
			bad, _ := url.Parse(tr.LoginVerifierURL)
			q := bad.Query()
			q.Set("login_verifier", "made-up")
			bad.RawQuery = q.Encode()
			loc = redirect(t, o.get(t, bad.String()), callbackURL)
			if e := errorFrom(t, loc, a.State); e != "access_denied" {
				t.Fatalf("made-up login verifier: error %q, want access_denied", e)
			}
		})

		t.Run("login verifier of another client", func(t *testing.T) {
			other := o.codeClient(t, "client_secret_basic", map[string]any{"skip_consent": true})
			a := newAuthRequest(t, o.config(c, "openid"))
			back := o.acceptLogin(t, o.startLogin(t, a.URL), u)
			v, _ := url.Parse(back)
			q := v.Query()
			b := newAuthRequest(t, o.config(other, "openid"))
			w, _ := url.Parse(b.URL)
			wq := w.Query()
			wq.Set("login_verifier", q.Get("login_verifier"))
			w.RawQuery = wq.Encode()
			loc := redirect(t, o.get(t, w.String()), callbackURL)
			if e := errorFrom(t, loc, b.State); e != "access_denied" {
				t.Fatalf("verifier of another client: error %q, want access_denied", e)
			}
			// The legitimate request still completes.
			codeFrom(t, redirect(t, o.get(t, back), callbackURL), a.State)
		})

		t.Run("consent challenge and verifier", func(t *testing.T) {
			cc := o.codeClient(t, "client_secret_basic", nil)
			conf := o.config(cc, "openid")
			a := newAuthRequest(t, conf)
			back := o.acceptLogin(t, o.startLogin(t, a.URL), u)
			loc := redirect(t, o.get(t, back), consentUIURL)
			ch := loc.Query().Get("consent_challenge")
			consentPath := "/api/v1/auth/oauth2/consent"
			// Another user cannot see or answer it; unknown is 404; no token is 401.
			eve := o.newUser(t, "eve-consent@example.com")
			testkit.WantError(t, o.srv.Public(t, http.MethodGet, consentPath+"?consent_challenge="+url.QueryEscape(ch), eve.Token, nil), http.StatusNotFound, "")
			testkit.WantError(t, o.srv.Public(t, http.MethodPost, consentPath+"/accept", eve.Token, map[string]any{"consentChallenge": ch, "grantScope": []string{"openid"}}), http.StatusNotFound, "")
			testkit.WantError(t, o.srv.Public(t, http.MethodGet, consentPath+"?consent_challenge=unknown", u.Token, nil), http.StatusNotFound, "")
			testkit.WantError(t, o.srv.Public(t, http.MethodGet, consentPath+"?consent_challenge="+url.QueryEscape(ch), "", nil), http.StatusUnauthorized, "")
			// Granting a scope that was not requested is 400.
			testkit.WantError(t, o.srv.Public(t, http.MethodPost, consentPath+"/accept", u.Token, map[string]any{"consentChallenge": ch, "grantScope": []string{"openid", "email"}}), http.StatusBadRequest, "")
			// Accept once; the second answer is 404.
			r := o.srv.Public(t, http.MethodPost, consentPath+"/accept", u.Token, map[string]any{"consentChallenge": ch, "grantScope": []string{"openid"}})
			if r.Status != http.StatusOK {
				t.Fatalf("consent accept: %d %s", r.Status, r.Body)
			}
			var rt struct {
				RedirectTo string `json:"redirectTo"`
			}
			r.Data(t, &rt)
			testkit.WantError(t, o.srv.Public(t, http.MethodPost, consentPath+"/reject", u.Token, map[string]any{"consentChallenge": ch}), http.StatusNotFound, "")
			// The consent verifier works once.
			codeFrom(t, redirect(t, o.get(t, rt.RedirectTo), callbackURL), a.State)
			loc = redirect(t, o.get(t, rt.RedirectTo), callbackURL)
			if e := errorFrom(t, loc, a.State); e != "access_denied" {
				t.Fatalf("reused consent verifier: error %q, want access_denied", e)
			}
			// The login verifier cannot skip the consent it led to.
			loc = redirect(t, o.get(t, back), callbackURL)
			if e := errorFrom(t, loc, a.State); e != "access_denied" {
				t.Fatalf("login verifier after consent: error %q, want access_denied", e)
			}
			// An expired consent challenge is 404.
			a = newAuthRequest(t, conf)
			back = o.acceptLogin(t, o.startLogin(t, a.URL), u)
			ch = redirect(t, o.get(t, back), consentUIURL).Query().Get("consent_challenge")
			o.expireFlows(t)
			testkit.WantError(t, o.srv.Public(t, http.MethodGet, consentPath+"?consent_challenge="+url.QueryEscape(ch), u.Token, nil), http.StatusNotFound, "")
			testkit.WantError(t, o.srv.Public(t, http.MethodPost, consentPath+"/accept", u.Token, map[string]any{"consentChallenge": ch, "grantScope": []string{"openid"}}), http.StatusNotFound, "")
		})
	})
}

func TestTokenEndpointErrors(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		o := startOP(t, dsn, nil)
		cc := o.ccClient(t, "client_secret_basic")
		pub := o.codeClient(t, "none", nil)

		t.Run("public client on client_credentials", func(t *testing.T) {
			r := o.srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{
				"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "none",
			})
			testkit.WantError(t, r, http.StatusBadRequest, "")
			if !strings.Contains(string(r.Body), "grant_types") {
				t.Fatalf("message does not name the field: %s", r.Body)
			}
			// A public authorization-code client asking for client_credentials.
			r = o.form(t, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {pub.ID}}, "", "")
			oauthError(t, r, r.Status, errorCodeOf(t, r))
			if r.Status != http.StatusBadRequest && r.Status != http.StatusUnauthorized {
				t.Fatalf("status %d", r.Status)
			}
			// Forced into the store past the admin API's validation: still refused.
			err := o.srv.Registry.OAuth2Persister().CreateClient(context.Background(), &pvoauth2.Client{
				ID: "forced-public", Name: "forced", TokenEndpointAuthMethod: "none", Scope: "reports.read",
				GrantTypes: []string{"client_credentials"}, ResponseTypes: []string{"code"}, RedirectURIs: []string{}, Audience: []string{},
			})
			if err != nil {
				t.Fatal(err)
			}
			r = o.form(t, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"forced-public"}, "scope": {"reports.read"}}, "", "")
			oauthError(t, r, http.StatusBadRequest, "invalid_grant")
		})

		t.Run("scope not allowed", func(t *testing.T) {
			_, err := o.ccConfig(cc, "reports.read", "admin").Token(o.ctx())
			retrieveError(t, err, "invalid_scope")
			conf := o.ccConfig(cc, "reports.read")
			conf.EndpointParams = url.Values{"audience": {"https://other.example.com"}}
			_, err = conf.Token(o.ctx())
			retrieveError(t, err, "invalid_request")
		})

		t.Run("wrong client secret", func(t *testing.T) {
			bad := o.ccConfig(cc, "reports.read")
			bad.ClientSecret += "x"
			_, err := bad.Token(o.ctx())
			retrieveError(t, err, "invalid_client")
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.Response.StatusCode != http.StatusUnauthorized {
				t.Fatalf("HTTP %d, want 401", re.Response.StatusCode)
			}
			bad.ClientID = "no-such-client"
			_, err = bad.Token(o.ctx())
			retrieveError(t, err, "invalid_client")
		})

		t.Run("grant not allowed for the client", func(t *testing.T) {
			code := o.codeClient(t, "client_secret_basic", nil)
			conf := o.ccConfig(code, "openid")
			conf.EndpointParams = nil
			_, err := conf.Token(o.ctx())
			retrieveError(t, err, "unauthorized_client")
		})

		t.Run("self-service grant type is never minted", func(t *testing.T) {
			v := url.Values{"grant_type": {provider.GrantSelfService}, "scope": {"offline_access"}}
			for name, r := range map[string]*testserver.Response{
				"confidential client": o.form(t, "/oauth2/token", v, cc.ID, cc.Secret),
				"public client":       o.asClient(t, "/oauth2/token", v, pub),
				"self-service client": o.asClient(t, "/oauth2/token", v, client{ID: provider.ClientSelfService, Method: "none"}),
				"remember client":     o.asClient(t, "/oauth2/token", v, client{ID: provider.ClientSelfServiceRemember, Method: "none"}),
				"no client":           o.form(t, "/oauth2/token", v, "", ""),
			} {
				if r.Status < 400 || r.Status >= 500 || strings.Contains(string(r.Body), "access_token") {
					t.Errorf("%s: %d %s", name, r.Status, r.Body)
					continue
				}
				oauthError(t, r, r.Status, errorCodeOf(t, r))
			}
		})

		t.Run("unsupported grant types", func(t *testing.T) {
			for _, g := range []string{"password", "implicit", "urn:ietf:params:oauth:grant-type:jwt-bearer", provider.GrantSelfService, "client_credentials refresh_token"} {
				v := url.Values{"grant_type": {g}, "username": {"a"}, "password": {"b"}}
				oauthError(t, o.form(t, "/oauth2/token", v, cc.ID, cc.Secret), http.StatusBadRequest, "unsupported_grant_type")
				oauthError(t, o.asClient(t, "/oauth2/token", v, pub), http.StatusBadRequest, "unsupported_grant_type")
			}
		})

		t.Run("malformed requests are RFC 6749 errors, never 5xx", func(t *testing.T) {
			for name, r := range map[string]*testserver.Response{
				"empty body":          o.form(t, "/oauth2/token", url.Values{}, cc.ID, cc.Secret),
				"no grant_type":       o.form(t, "/oauth2/token", url.Values{"scope": {"x"}}, cc.ID, cc.Secret),
				"unknown grant_type":  o.form(t, "/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"a"}, "password": {"b"}}, cc.ID, cc.Secret),
				"implicit":            o.form(t, "/oauth2/token", url.Values{"grant_type": {"implicit"}}, cc.ID, cc.Secret),
				"code missing":        o.form(t, "/oauth2/token", url.Values{"grant_type": {"authorization_code"}}, cc.ID, cc.Secret),
				"garbage code":        o.asClient(t, "/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {"garbage"}, "redirect_uri": {callbackURL}, "code_verifier": {oauth2.GenerateVerifier()}}, pub),
				"garbage refresh":     o.asClient(t, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"a.b"}}, pub),
				"two grant types":     o.form(t, "/oauth2/token", url.Values{"grant_type": {"client_credentials refresh_token"}}, cc.ID, cc.Secret),
				"revoke without auth": o.form(t, "/oauth2/revoke", url.Values{"token": {"x"}}, "", ""),
				"revoke no token":     o.form(t, "/oauth2/revoke", url.Values{}, cc.ID, cc.Secret),
				"introspect empty":    o.form(t, "/oauth2/introspect", url.Values{}, "", ""),
			} {
				if r.Status < 400 || r.Status >= 500 {
					t.Errorf("%s: %d %s", name, r.Status, r.Body)
					continue
				}
				oauthError(t, r, r.Status, errorCodeOf(t, r))
			}
			// Wrong method and content type.
			r := o.get(t, o.issuer+"/oauth2/token")
			if r.Status < 400 || r.Status >= 500 {
				t.Errorf("GET /oauth2/token: %d %s", r.Status, r.Body)
			}
			req, _ := http.NewRequest(http.MethodPost, o.issuer+"/oauth2/token", strings.NewReader(`{"grant_type":"client_credentials"}`))
			req.Header.Set("Content-Type", "application/json")
			req.SetBasicAuth(cc.ID, cc.Secret)
			if r := o.send(t, o.noFollow, req); r.Status < 400 || r.Status >= 500 {
				t.Errorf("JSON body: %d %s", r.Status, r.Body)
			}
			// Garbage at the authorization endpoint.
			for _, q := range []string{"", "response_type=code", "client_id=" + pub.ID, "client_id=" + pub.ID + "&response_type=token&redirect_uri=" + url.QueryEscape(callbackURL),
				"client_id=" + pub.ID + "&response_type=code&redirect_uri=" + url.QueryEscape(callbackURL) + "&state=short"} {
				r := o.get(t, o.issuer+"/oauth2/auth?"+q)
				if r.Status >= 500 {
					t.Errorf("/oauth2/auth?%s: %d %s", q, r.Status, r.Body)
				}
				if loc := r.Header.Get("Location"); loc != "" && !strings.HasPrefix(loc, callbackURL) {
					t.Errorf("/oauth2/auth?%s redirects to %s", q, loc)
				}
			}
		})
	})
}

// errorCodeOf returns the error field of an RFC 6749 error body (failing if absent).
func errorCodeOf(t *testing.T, r *testserver.Response) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Error == "" {
		t.Fatalf("not an RFC 6749 error: %d %s", r.Status, r.Body)
	}
	switch e.Error {
	case "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
		"invalid_scope", "unsupported_token_type", "access_denied", "unsupported_response_type", "login_required":
	default:
		t.Fatalf("error %q is not an RFC 6749/7009 code: %s", e.Error, r.Body)
	}
	return e.Error
}

// TestConcurrentCodeExchange: of 20 simultaneous exchanges of one code exactly one gets
// tokens; the others get invalid_grant, never a 5xx.
func TestConcurrentCodeExchange(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		o := startOP(t, dsn, nil)
		u := o.newUser(t, "race@example.com")
		for _, method := range []string{"client_secret_basic", "none"} {
			t.Run(method, func(t *testing.T) {
				c := o.codeClient(t, method, map[string]any{"skip_consent": true})
				conf := o.config(c, "openid", "offline_access")
				for round := 0; round < 3; round++ {
					code, a := o.code(t, conf, u, false)
					const n = 20
					var (
						wg      sync.WaitGroup
						start   = make(chan struct{})
						results = make([]*testserver.Response, n)
					)
					v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {callbackURL}, "code_verifier": {a.Verifier}}
					for i := 0; i < n; i++ {
						wg.Add(1)
						go func(i int) {
							defer wg.Done()
							req, err := newClientRequest(o.issuer+"/oauth2/token", v, c)
							if err != nil {
								t.Error(err)
								return
							}
							<-start
							resp, err := o.srv.Client.Do(req)
							if err != nil {
								t.Error(err)
								return
							}
							defer resp.Body.Close()
							var b strings.Builder
							_, _ = ioCopy(&b, resp)
							results[i] = &testserver.Response{Status: resp.StatusCode, Header: resp.Header, Body: []byte(b.String())}
						}(i)
					}
					close(start)
					wg.Wait()
					ok := 0
					for i, r := range results {
						if r == nil {
							t.Fatalf("request %d failed", i)
						}
						switch {
						case r.Status == http.StatusOK:
							ok++
							if !strings.Contains(string(r.Body), `"access_token"`) {
								t.Errorf("200 without a token: %s", r.Body)
							}
						case r.Status >= 500:
							t.Errorf("request %d: %d %s", i, r.Status, r.Body)
						default:
							if code := errorCodeOf(t, r); code != "invalid_grant" {
								t.Errorf("request %d: %d %s, want invalid_grant", i, r.Status, r.Body)
							}
						}
					}
					if ok != 1 {
						t.Fatalf("round %d: %d exchanges succeeded, want exactly 1", round, ok)
					}
				}
			})
		}
	})
}

// newClientRequest builds a token request authenticated as c.
func newClientRequest(u string, v url.Values, c client) (*http.Request, error) {
	w := url.Values{}
	for k, vs := range v {
		w[k] = vs
	}
	if c.Method != "client_secret_basic" {
		w.Set("client_id", c.ID)
		if c.Secret != "" {
			w.Set("client_secret", c.Secret)
		}
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(w.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.Method == "client_secret_basic" {
		req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	}
	return req, nil
}
