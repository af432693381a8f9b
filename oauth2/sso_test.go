package oauth2_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/session"
)

const logoutURL = "https://rp.example.com/signed-out"

// inBrowser is o as seen from another browser (its own cookies).
func (o *op) inBrowser() *op {
	c := *o
	c.noFollow = testkit.Browser()
	return &c
}

// loginRemembered runs a hand-off in which the login UI accepts with remember, for a
// client that skips consent, and returns the code's tokens.
func (o *op) loginRemembered(t *testing.T, c client, u user, remember bool, opts ...oauth2.AuthCodeOption) (*oauth2.Token, *oidc.IDToken) {
	t.Helper()
	conf := o.config(c, "openid", "offline_access", "email")
	a := newAuthRequest(t, conf, opts...)
	challenge := o.startLogin(t, a.URL)
	r := o.srv.Public(t, http.MethodPost, "/api/v1/auth/oauth2/login/accept", u.Token, map[string]any{"loginChallenge": challenge, "remember": remember})
	if r.Status != http.StatusOK {
		t.Fatalf("login accept: %d %s", r.Status, r.Body)
	}
	var rt struct{ RedirectTo string }
	r.Data(t, &rt)
	return o.exchange(t, c, a, redirect(t, o.get(t, rt.RedirectTo), callbackURL))
}

// exchange redeems the code of an authorization response and verifies its id_token.
func (o *op) exchange(t *testing.T, c client, a authRequest, final *url.URL) (*oauth2.Token, *oidc.IDToken) {
	t.Helper()
	conf := o.config(c, "openid", "offline_access", "email")
	tok, err := conf.Exchange(o.ctx(), codeFrom(t, final, a.State), oauth2.VerifierOption(a.Verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	provider, err := oidc.NewProvider(o.ctx(), o.issuer)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: c.ID}).Verify(o.ctx(), raw)
	if err != nil {
		t.Fatalf("id_token: %v", err)
	}
	if idt.Nonce != a.Nonce {
		t.Fatalf("nonce %q, want %q", idt.Nonce, a.Nonce)
	}
	return tok, idt
}

type ssoClaims struct {
	AuthTime int64  `json:"auth_time"`
	Sid      string `json:"sid"`
}

func claimsOf(t *testing.T, idt *oidc.IDToken) ssoClaims {
	t.Helper()
	var c ssoClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.AuthTime == 0 {
		t.Fatal("id_token without auth_time")
	}
	return c
}

// silent runs an authorization request that must not show any UI and returns where the
// browser is sent (the client's callback).
func (o *op) silent(t *testing.T, c client, opts ...oauth2.AuthCodeOption) (authRequest, *url.URL) {
	t.Helper()
	a := newAuthRequest(t, o.config(c, "openid", "offline_access", "email"), opts...)
	return a, redirect(t, o.get(t, a.URL), callbackURL)
}

func ssoClient(o *op, t *testing.T, name string, skipConsent bool) client {
	return o.codeClient(t, "client_secret_basic", map[string]any{
		"client_name": name, "skip_consent": skipConsent, "post_logout_redirect_uris": []string{logoutURL},
	})
}

func TestBrowserLoginSession(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		o := startOP(t, dsn, map[string]any{"ttl.login_session": "2h"})
		a, b := ssoClient(o, t, "App A", true), ssoClient(o, t, "App B", true)
		askConsent := ssoClient(o, t, "App C", false)
		u := o.newUser(t, "sso-"+t.Name()[len("TestBrowserLoginSession/"):]+"@example.com")
		other := o.newUser(t, "sso-other-"+t.Name()[len("TestBrowserLoginSession/"):]+"@example.com")

		// Without remember, nothing is kept: prompt=none fails for the next client.
		forgetful := o.inBrowser()
		forgetful.loginRemembered(t, a, u, false)
		noSession := newAuthRequest(t, forgetful.config(b, "openid"), oauth2.SetAuthURLParam("prompt", "none"))
		if e := errorFrom(t, redirect(t, forgetful.get(t, noSession.URL), callbackURL), noSession.State); e != "login_required" {
			t.Errorf("prompt=none after a login without remember: %s", e)
		}

		// With remember: the login of App A signs the browser in for App B.
		tokA, idA := o.loginRemembered(t, a, u, true)
		first := claimsOf(t, idA)
		if first.Sid == "" {
			t.Fatal("id_token without sid")
		}
		// The session lasts ttl.login_session (2h here), in the database and the cookie.
		var exp time.Time
		if err := o.srv.Registry.Persister().Connection(context.Background()).
			RawQuery("SELECT expires_at FROM login_sessions WHERE id = ?", first.Sid).First(&exp); err != nil {
			t.Fatalf("the login session %s: %v", first.Sid, err)
		}
		if d := time.Until(exp); d < 2*time.Hour-time.Minute || d > 2*time.Hour+time.Minute {
			t.Errorf("login session expires in %s, want ttl.login_session 2h", d)
		}
		req, final := o.silent(t, b, oauth2.SetAuthURLParam("prompt", "none"))
		tokB, idB := o.exchange(t, b, req, final)
		if idB.Subject != idA.Subject || claimsOf(t, idB).AuthTime != first.AuthTime || claimsOf(t, idB).Sid != first.Sid {
			t.Errorf("SSO id_token %+v (sub %s), want the first login's %+v (sub %s)", claimsOf(t, idB), idB.Subject, first, idA.Subject)
		}
		// Without prompt the login UI is skipped too.
		o.silent(t, b)

		t.Run("fresh browser", func(t *testing.T) {
			fresh := o.inBrowser()
			a2 := newAuthRequest(t, fresh.config(b, "openid"), oauth2.SetAuthURLParam("prompt", "none"))
			if e := errorFrom(t, redirect(t, fresh.get(t, a2.URL), callbackURL), a2.State); e != "login_required" {
				t.Errorf("prompt=none in a fresh browser: %s", e)
			}
		})
		t.Run("consent required", func(t *testing.T) {
			a2 := newAuthRequest(t, o.config(askConsent, "openid"), oauth2.SetAuthURLParam("prompt", "none"))
			if e := errorFrom(t, redirect(t, o.get(t, a2.URL), callbackURL), a2.State); e != "consent_required" {
				t.Errorf("prompt=none without consent: %s", e)
			}
			// Without prompt=none the consent UI is shown, not the login UI.
			a3 := newAuthRequest(t, o.config(askConsent, "openid"))
			redirect(t, o.get(t, a3.URL), consentUIURL)
			// prompt=consent shows the consent UI even to a client that skips it.
			a4 := newAuthRequest(t, o.config(b, "openid"), oauth2.SetAuthURLParam("prompt", "consent"))
			redirect(t, o.get(t, a4.URL), consentUIURL)
			// prompt=none with anything else is refused.
			a5 := newAuthRequest(t, o.config(b, "openid"), oauth2.SetAuthURLParam("prompt", "none login"))
			if e := errorFrom(t, redirect(t, o.get(t, a5.URL), callbackURL), a5.State); e != "invalid_request" {
				t.Errorf("prompt=none login: %s", e)
			}
		})
		t.Run("hint of another user", func(t *testing.T) {
			raw := rawIDToken(t, o, b, other)
			a2 := newAuthRequest(t, o.config(b, "openid"), oauth2.SetAuthURLParam("prompt", "none"), oauth2.SetAuthURLParam("id_token_hint", raw))
			if e := errorFrom(t, redirect(t, o.get(t, a2.URL), callbackURL), a2.State); e != "login_required" {
				t.Errorf("prompt=none with another user's hint: %s", e)
			}
			// The user's own hint is fine.
			raw, _ = tokA.Extra("id_token").(string)
			o.silent(t, b, oauth2.SetAuthURLParam("prompt", "none"), oauth2.SetAuthURLParam("id_token_hint", raw))
			// A forged hint is refused.
			a4 := newAuthRequest(t, o.config(b, "openid"), oauth2.SetAuthURLParam("id_token_hint", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."))
			if e := errorFrom(t, redirect(t, o.get(t, a4.URL), callbackURL), a4.State); e != "invalid_request" {
				t.Errorf("forged id_token_hint: %s", e)
			}
		})
		t.Run("prompt=login and max_age", func(t *testing.T) {
			time.Sleep(1100 * time.Millisecond) // the session's login is now at least a second old
			for _, opt := range []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0")} {
				req := newAuthRequest(t, o.config(b, "openid", "offline_access", "email"), opt)
				challenge := o.startLogin(t, req.URL) // the login UI, despite the session
				// The old login does not do.
				r := o.srv.Public(t, http.MethodPost, "/api/v1/auth/oauth2/login/accept", u.Token, map[string]any{"loginChallenge": challenge})
				if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "login_required") {
					t.Fatalf("accepting an old login: %d %s", r.Status, r.Body)
				}
				freshLogin := time.Now().Truncate(time.Second)
				ts := testkit.IssueSession(t, o.srv, &testkit.Identity{ID: u.ID, Email: u.Email})
				r = o.srv.Public(t, http.MethodPost, "/api/v1/auth/oauth2/login/accept", ts.AccessToken, map[string]any{"loginChallenge": challenge})
				if r.Status != http.StatusOK {
					t.Fatalf("accepting a fresh login: %d %s", r.Status, r.Body)
				}
				var rt struct{ RedirectTo string }
				r.Data(t, &rt)
				_, idt := o.exchange(t, b, req, redirect(t, o.get(t, rt.RedirectTo), callbackURL))
				if at := claimsOf(t, idt).AuthTime; at < freshLogin.Unix() {
					t.Errorf("auth_time %d after a fresh login at %d", at, freshLogin.Unix())
				}
			}
		})
		t.Run("logout", func(t *testing.T) {
			rawA, _ := tokA.Extra("id_token").(string)
			// Never to an unregistered URI, and nothing ends then.
			for _, q := range []url.Values{
				{"id_token_hint": {rawA}, "post_logout_redirect_uri": {"https://evil.example.com/"}},
				{"post_logout_redirect_uri": {logoutURL}},
				{"id_token_hint": {"not.a.token"}},
				{"id_token_hint": {rawA}, "client_id": {askConsent.ID}},
			} {
				r := o.get(t, o.issuer+"/oauth2/sessions/logout?"+q.Encode())
				if r.Status != http.StatusBadRequest || r.Header.Get("Location") != "" {
					t.Errorf("logout %v: %d %s (Location %q)", q, r.Status, r.Body, r.Header.Get("Location"))
				}
			}
			o.silent(t, b, oauth2.SetAuthURLParam("prompt", "none"))

			q := url.Values{"id_token_hint": {rawA}, "post_logout_redirect_uri": {logoutURL}, "state": {"bye-123"}}
			r := o.get(t, o.issuer+"/oauth2/sessions/logout?"+q.Encode())
			loc := redirect(t, r, logoutURL)
			if loc.Query().Get("state") != "bye-123" {
				t.Errorf("logout redirect %s lacks state", loc)
			}
			a2 := newAuthRequest(t, o.config(b, "openid"), oauth2.SetAuthURLParam("prompt", "none"))
			if e := errorFrom(t, redirect(t, o.get(t, a2.URL), callbackURL), a2.State); e != "login_required" {
				t.Errorf("prompt=none after logout: %s", e)
			}
			for name, tok := range map[string]string{"A access": tokA.AccessToken, "A refresh": tokA.RefreshToken, "B access": tokB.AccessToken, "B refresh": tokB.RefreshToken} {
				if testkit.IsActive(t, o.srv, tok) {
					t.Errorf("%s token still active after logout", name)
				}
			}
			// Without a redirect URI: the login UI's signed-out page.
			r = o.get(t, o.issuer+"/oauth2/sessions/logout")
			if loc := redirect(t, r, loginUIURL); loc.Query().Get("signed_out") != "true" {
				t.Errorf("logout without redirect: %s", loc)
			}
		})
		t.Run("disable and sessions delete end it", func(t *testing.T) {
			for _, end := range []func(id int64){
				func(id int64) {
					r := o.srv.Admin(t, http.MethodDelete, "/admin/identities/"+itoa(id)+"/sessions", nil)
					if r.Status != http.StatusOK {
						t.Fatalf("admin sessions delete: %d %s", r.Status, r.Body)
					}
				},
				func(id int64) {
					r := o.srv.Admin(t, http.MethodPatch, "/admin/identities/"+itoa(id), map[string]any{"state": "disabled"})
					if r.Status != http.StatusOK {
						t.Fatalf("admin disable: %d %s", r.Status, r.Body)
					}
				},
			} {
				br := o.inBrowser()
				ts := testkit.IssueSession(t, o.srv, &testkit.Identity{ID: other.ID, Email: other.Email}, session.AMRPassword)
				other.Token = ts.AccessToken
				br.loginRemembered(t, a, other, true)
				br.silent(t, b, oauth2.SetAuthURLParam("prompt", "none"))
				end(other.ID)
				a2 := newAuthRequest(t, br.config(b, "openid"), oauth2.SetAuthURLParam("prompt", "none"))
				if e := errorFrom(t, redirect(t, br.get(t, a2.URL), callbackURL), a2.State); e != "login_required" {
					t.Errorf("prompt=none after the session was ended by the admin: %s", e)
				}
			}
		})
		t.Run("discovery", func(t *testing.T) {
			r := o.get(t, o.issuer+"/.well-known/openid-configuration")
			if !strings.Contains(string(r.Body), `"end_session_endpoint":"`+o.issuer+`/oauth2/sessions/logout"`) {
				t.Errorf("discovery: %s", r.Body)
			}
		})
	})
}

// rawIDToken signs other in (without remember) in a fresh browser and returns the raw
// id_token issued to c.
func rawIDToken(t *testing.T, o *op, c client, u user) string {
	t.Helper()
	tok, _ := o.inBrowser().loginRemembered(t, c, u, false)
	raw, _ := tok.Extra("id_token").(string)
	return raw
}
