package loginui_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pvpipe/pvauth/internal/testkit"
)

// TestSSOAndLogoutInBrowser signs in to one application with "remember me" on the login
// page, then a second application signs the same browser in with no login page at all
// (prompt=none and a plain request), and RP-initiated logout ends it: the relying party
// gets its state back, prompt=none answers login_required, the tokens are dead, and the
// login page shows the signed-out page.
func TestSSOAndLogoutInBrowser(t *testing.T) {
	exe := needChromium(t)
	srv, origin := startOnLocalhost(t, oauth2Pages)
	cb := newCallbackServer(t)
	newClient := func(name string) string {
		r := srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{
			"client_name": name, "redirect_uris": []string{cb.URL}, "post_logout_redirect_uris": []string{cb.URL},
			"grant_types": []string{"authorization_code", "refresh_token"}, "scope": "openid email offline_access",
			"token_endpoint_auth_method": "none", "skip_consent": true,
		})
		if r.Status != http.StatusCreated {
			t.Fatalf("create client: %d %s", r.Status, r.Body)
		}
		var c struct {
			ID string `json:"client_id"`
		}
		r.Data(t, &c)
		return c.ID
	}
	wiki, mail := newClient("Team Wiki"), newClient("Team Mail")
	email := fmt.Sprintf("ada.%d@example.com", time.Now().UnixNano()%1e6)
	password := testkit.CreateIdentity(t, srv, map[string]any{"email": email}).Password

	ctx, console := startBrowser(t, exe, 3*time.Minute)
	p := &browserPage{t: t, ctx: ctx, dir: screenshotDir(t), shots: map[string]string{}, origin: origin}
	tokenURL := srv.PublicURL + "/oauth2/token"

	// 1. The wiki's sign-in: password and TOTP on the login page, with "remember me".
	req := newAuthRequest(t, origin, wiki, cb.URL, "openid email offline_access")
	p.open(req.url)
	p.waitNav("the login page for the wiki", `document.body.dataset.ready === 'true' && document.body.dataset.view === 'login'
		&& !document.getElementById('oauth2-remember-line').hidden`)
	p.do("password login with remember me",
		chromedp.Click(chromedp.ID("oauth2-remember")),
		chromedp.SetValue(chromedp.ID("email"), email),
		chromedp.SetValue(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-btn")))
	p.waitFor("the TOTP enrolment", `document.body.dataset.view === 'otp' && document.getElementById('otp-secret').textContent.length >= 16`)
	p.shot("sso-remember-me")
	p.enterTOTP()
	p.waitFor("the recovery codes", `document.body.dataset.view === 'handoff' && !document.getElementById('handoff-continue-btn').hidden`)
	p.do("continue to the wiki", chromedp.Click(chromedp.ID("handoff-continue-btn")))
	q := cb.wait(p, "the wiki's callback")
	if q.Get("code") == "" || q.Get("state") != req.state {
		p.fatalf("wiki callback: %v", q)
	}
	wikiTokens := exchange(t, tokenURL, wiki, cb.URL, q.Get("code"), req.verifier)
	if wikiTokens.RefreshToken == "" {
		t.Fatal("the wiki asked offline_access and got no refresh token")
	}
	authTime := testkit.JWTClaims(t, wikiTokens.IDToken)["auth_time"]

	// The page's own storage is not what signs the browser in: forget it.
	p.waitNav("the callback page", fmt.Sprintf(`window.location.href.startsWith(%q)`, cb.URL))
	p.open(origin + "/ui/")
	p.waitNav("the page", `document.body.dataset.ready === 'true'`)
	p.eval(`(sessionStorage.clear(), localStorage.clear(), 'ok')`)

	// 2. The mail application: prompt=none, and a plain request; neither shows a page.
	for _, prompt := range []string{"none", ""} {
		req := newAuthRequest(t, origin, mail, cb.URL, "openid email")
		u := req.url
		if prompt != "" {
			u += "&prompt=" + prompt
		}
		p.open(u)
		q := cb.wait(p, "the mail callback (prompt="+prompt+")")
		if q.Get("code") == "" || q.Get("state") != req.state {
			p.fatalf("single sign-on to mail (prompt=%q): %v", prompt, q)
		}
		tr := exchange(t, tokenURL, mail, cb.URL, q.Get("code"), req.verifier)
		if c := testkit.JWTClaims(t, tr.IDToken); c["auth_time"] != authTime || c["email"] != email {
			t.Errorf("mail id_token %v: want the wiki login's auth_time %v", c, authTime)
		}
	}
	p.shot("sso-second-application")

	// 3. The wiki signs the user out: back to the wiki with its state.
	p.open(origin + "/oauth2/sessions/logout?" + url.Values{"id_token_hint": {wikiTokens.IDToken},
		"post_logout_redirect_uri": {cb.URL}, "state": {"bye"}}.Encode())
	if q := cb.wait(p, "the post-logout redirect"); q.Get("state") != "bye" {
		p.fatalf("post-logout redirect: %v", q)
	}
	req = newAuthRequest(t, origin, mail, cb.URL, "openid")
	p.open(req.url + "&prompt=none")
	if q := cb.wait(p, "prompt=none after logout"); q.Get("error") != "login_required" || q.Get("state") != req.state {
		p.fatalf("prompt=none after logout: %v", q)
	}
	in := srv.Public(t, http.MethodGet, "/userinfo", wikiTokens.AccessToken, nil)
	if in.Status != http.StatusUnauthorized {
		t.Errorf("the wiki's access token after logout: /userinfo %d", in.Status)
	}
	if testkit.IsActive(t, srv, wikiTokens.AccessToken) {
		t.Error("the wiki's access token is still active after logout")
	}
	if testkit.IsActive(t, srv, wikiTokens.RefreshToken) {
		t.Error("the wiki's refresh token is still active after logout")
	}

	// 4. Logout without a redirect URI: the login page's signed-out page.
	p.open(origin + "/oauth2/sessions/logout")
	p.waitNav("the signed-out page", `window.location.pathname === '/ui/login' && document.body.dataset.ready === 'true'
		&& document.body.dataset.view === 'signed-out'`)
	p.shot("signed-out")
	p.do("sign in again", chromedp.Click(chromedp.ID("signed-out-login-btn")))
	p.waitFor("the login form", `document.body.dataset.view === 'login'`)

	checkConsole(t, console())
}
