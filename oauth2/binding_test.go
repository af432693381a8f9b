package oauth2_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/internal/testkit"

	"golang.org/x/oauth2"

	"github.com/pvpipe/pvauth/internal/testdb"
	pvoauth2 "github.com/pvpipe/pvauth/oauth2"
)

// TestHandoffBoundToBrowser: API.md §4. A leaked login verifier URL is worth nothing in
// another browser, and the code is issued for the request stored at the start, whatever
// the return URL says.
func TestHandoffBoundToBrowser(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		o := startOP(t, dsn, map[string]any{"ttl.oauth2_flow": "7m"})
		u := o.newUser(t, "bound@example.com")
		c := o.codeClient(t, "client_secret_basic", map[string]any{"skip_consent": true})
		conf := o.config(c, "openid")

		// The binding cookie: HttpOnly, SameSite=Lax, scoped to /oauth2/, living
		// ttl.oauth2_flow, not Secure on a plain-http issuer.
		a := newAuthRequest(t, conf)
		r := o.get(t, a.URL)
		var cookie *http.Cookie
		for _, ck := range (&http.Response{Header: r.Header}).Cookies() {
			if ck.Name == pvoauth2.BindingCookie {
				cookie = ck
			}
		}
		if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/oauth2/" ||
			cookie.MaxAge != 7*60 || cookie.Secure || len(cookie.Value) < 40 {
			t.Fatalf("binding cookie: %+v", cookie)
		}
		ch := redirect(t, r, loginUIURL).Query().Get("login_challenge")
		back := o.acceptLogin(t, ch, u)

		// Another browser (another cookie jar) replays the verifier URL: no code, an
		// error for the original request.
		attacker := testkit.Browser()
		req, _ := http.NewRequest(http.MethodGet, back, nil)
		loc := redirect(t, o.send(t, attacker, req), callbackURL)
		if e := errorFrom(t, loc, a.State); e != "invalid_request" {
			t.Fatalf("verifier in another browser: error %q", e)
		}
		// A forged cookie does not help either.
		forged, _ := http.NewRequest(http.MethodGet, back, nil)
		forged.AddCookie(&http.Cookie{Name: pvoauth2.BindingCookie, Value: strings.Repeat("A", 43)})
		if e := errorFrom(t, redirect(t, o.send(t, testkit.Browser(), forged), callbackURL), a.State); e != "invalid_request" {
			t.Fatalf("verifier with a forged cookie: error %q", e)
		}

		// The victim's browser, with a tampered return URL (the attacker's state,
		// redirect URI and PKCE challenge): the code is for the original request.
		evil := oauth2.GenerateVerifier()
		tamper := func(back string) string {
			u, _ := url.Parse(back)
			q := u.Query()
			q.Set("state", "attacker-state-0123456789")
			q.Set("redirect_uri", "https://evil.example.com/callback")
			q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(evil))
			q.Set("nonce", "attacker-nonce-0123456789")
			u.RawQuery = q.Encode()
			return u.String()
		}
		code := codeFrom(t, redirect(t, o.get(t, tamper(back)), callbackURL), a.State)
		if _, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(evil)); err == nil {
			t.Fatal("the attacker's PKCE verifier redeemed the code")
		}
		a = newAuthRequest(t, conf)
		code = codeFrom(t, redirect(t, o.get(t, tamper(o.acceptLogin(t, o.startLogin(t, a.URL), u))), callbackURL), a.State)
		tok, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(a.Verifier))
		if err != nil || tok.AccessToken == "" {
			t.Fatalf("the code with the original request's PKCE verifier: %v", err)
		}
		// The ID token carries the original nonce.
		if raw, _ := tok.Extra("id_token").(string); !strings.Contains(string(testkit.JWTPart(t, raw, 1)), a.Nonce) {
			t.Fatalf("the ID token lacks the original nonce")
		}
	})
}

// The binding cookie is Secure when the issuer is https (API.md §4).
func TestHandoffCookieSecureOnHTTPSIssuer(t *testing.T) {
	o := startOP(t, "memory", map[string]any{"urls.issuer": "https://id.example.com"})
	c := o.codeClient(t, "client_secret_basic", map[string]any{"skip_consent": true})
	r := o.get(t, newAuthRequest(t, o.config(c, "openid")).URL)
	for _, ck := range (&http.Response{Header: r.Header}).Cookies() {
		if ck.Name == pvoauth2.BindingCookie {
			if !ck.Secure || !ck.HttpOnly {
				t.Fatalf("binding cookie on an https issuer: %+v", ck)
			}
			return
		}
	}
	t.Fatalf("no binding cookie: %d %v", r.Status, r.Header)
}

// When the stored request can no longer be trusted (its redirect URI was removed from
// the client since), the return leg redirects nowhere: 403 (API.md §4).
func TestHandoffReturnWithoutTrustedRedirect(t *testing.T) {
	o := startOP(t, "memory", nil)
	u := o.newUser(t, "untrusted@example.com")
	c := o.codeClient(t, "client_secret_basic", map[string]any{"skip_consent": true})
	a := newAuthRequest(t, o.config(c, "openid"))
	back := o.acceptLogin(t, o.startLogin(t, a.URL), u)
	if r := o.srv.Admin(t, http.MethodPut, "/admin/clients/"+c.ID, map[string]any{
		"client_name": c.Name, "redirect_uris": []string{"https://other.example.com/cb"}, "grant_types": c.GrantTypes,
		"scope": c.Scope, "token_endpoint_auth_method": c.Method, "skip_consent": true,
	}); r.Status != http.StatusOK {
		t.Fatalf("update client: %d %s", r.Status, r.Body)
	}
	r := o.get(t, back)
	if r.Header.Get("Location") != "" || r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "invalid_request") {
		t.Fatalf("return leg without a trusted redirect URI: %d %v %s", r.Status, r.Header.Get("Location"), r.Body)
	}
}
