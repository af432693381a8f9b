package loginui_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	loginui "github.com/pvpipe/pvauth/contrib/login-ui"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// TestUIServesIndexForAppPaths checks the single-page fallback of /ui/: the default
// urls.login_ui and urls.consent_ui (/ui/login, /ui/consent) get the page, the page's
// files are served as themselves, and a missing file is a 404, all with the CSP.
func TestUIServesIndexForAppPaths(t *testing.T) {
	srv := testserver.StartWith(t, "memory", nil, testserver.Options{Dev: true})
	index := srv.Public(t, http.MethodGet, "/ui/", "", nil)
	if index.Status != http.StatusOK || !strings.Contains(string(index.Body), `<script src="/ui/app.js">`) {
		t.Fatalf("/ui/: %d %.200s", index.Status, index.Body)
	}
	for _, tc := range []struct {
		path, contentType string
		status            int
		sameAsIndex       bool
	}{
		{"/ui/login?login_challenge=abc", "text/html", http.StatusOK, true},
		{"/ui/consent?consent_challenge=abc", "text/html", http.StatusOK, true},
		{"/ui/index.html", "text/html", http.StatusOK, true},
		{"/ui/some/deeper/route", "text/html", http.StatusOK, true},
		{"/ui/app.js", "text/javascript", http.StatusOK, false},
		{"/ui/app.css", "text/css", http.StatusOK, false},
		{"/ui/nope.js", "", http.StatusNotFound, false},
		{"/ui/embed.go", "", http.StatusNotFound, false},
	} {
		r := srv.Public(t, http.MethodGet, tc.path, "", nil)
		if r.Status != tc.status {
			t.Errorf("%s: status %d, want %d (%.100s)", tc.path, r.Status, tc.status, r.Body)
			continue
		}
		if csp := r.Header.Get("Content-Security-Policy"); csp != loginui.CSP {
			t.Errorf("%s: CSP %q, want %q", tc.path, csp, loginui.CSP)
		}
		if tc.contentType != "" && !strings.HasPrefix(r.Header.Get("Content-Type"), tc.contentType) {
			t.Errorf("%s: Content-Type %q, want %s", tc.path, r.Header.Get("Content-Type"), tc.contentType)
		}
		if tc.sameAsIndex != (string(r.Body) == string(index.Body)) {
			t.Errorf("%s: body is index.html = %v, want %v", tc.path, !tc.sameAsIndex, tc.sameAsIndex)
		}
	}
}

// callbackServer is the relying party's redirect URI: it records the query of each visit.
type callbackServer struct {
	URL string // http://127.0.0.1:PORT/cb
	got chan url.Values
}

func newCallbackServer(t *testing.T) *callbackServer {
	t.Helper()
	cb := &callbackServer{got: make(chan url.Values, 8)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cb" {
			http.NotFound(w, r)
			return
		}
		select {
		case cb.got <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>Acme callback</title><p id="rp">The application got the answer.</p>`)
	}))
	t.Cleanup(srv.Close)
	cb.URL = srv.URL + "/cb"
	return cb
}

// wait returns the query of the next visit of the callback.
func (cb *callbackServer) wait(p *browserPage, what string) url.Values {
	p.t.Helper()
	select {
	case q := <-cb.got:
		return q
	case <-time.After(30 * time.Second):
		p.fatalf("the browser did not reach the callback (%s)", what)
		return nil
	}
}

// waitNav is waitFor across page loads: an evaluation that fails because a navigation
// replaced the page is retried until the condition holds on the new page.
func (p *browserPage) waitNav(what, cond string) {
	p.t.Helper()
	p.waitNavCond(what, cond, true)
}

// waitNavCond is waitNav; with failOnError false, an error banner is not a failure.
func (p *browserPage) waitNavCond(what, cond string, failOnError bool) {
	p.t.Helper()
	expr := `(() => {
		const m = document.getElementById('message');
		if (` + strconv.FormatBool(failOnError) + ` && m && !m.hidden && m.textContent) return 'ERROR: ' + m.textContent;
		return (` + cond + `) ? 'OK' : '';
	})()`
	deadline := time.Now().Add(30 * time.Second)
	var (
		res string
		err error
	)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		res, err = chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		cancel()
		if err == nil && res == "OK" {
			return
		}
		if err == nil && strings.HasPrefix(res, "ERROR: ") {
			p.fatalf("waiting for %s: the page shows %q", what, res)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.fatalf("waiting for %s: last result %q, error %v", what, res, err)
}

// open starts loading url in the tab without waiting for the load: the hand-off pages
// navigate on by themselves, so the load to wait for is not the first one.
func (p *browserPage) open(url string) {
	p.t.Helper()
	res, err := chromedp.Call(p.ctx, page.Navigate, page.NavigateParams{URL: url})
	if err == nil && res.ErrorText != "" {
		err = fmt.Errorf("%s", res.ErrorText)
	}
	if err != nil {
		p.fatalf("opening %s: %v", url, err)
	}
}

// authRequest is one authorization request of the relying party: PKCE S256, state, nonce.
type authRequest struct {
	state, nonce, verifier string
	url                    string
}

func newAuthRequest(t *testing.T, origin, clientID, redirectURI, scope string) *authRequest {
	t.Helper()
	a := &authRequest{state: testkit.RandomString(t, 32), nonce: testkit.RandomString(t, 32), verifier: testkit.RandomString(t, 32)}
	sum := sha256.Sum256([]byte(a.verifier))
	a.url = origin + "/oauth2/auth?" + url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {scope},
		"state":                 {a.state},
		"nonce":                 {a.nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}.Encode()
	return a
}

// tokenResponse is the token endpoint's answer (RFC 6749 §5.1, OIDC Core §3.1.3.3).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope"`
	ExpiresIn    int    `json:"expires_in"`
}

// exchange redeems a code at /oauth2/token as the public client (PKCE, no secret).
func exchange(t *testing.T, tokenURL, clientID, redirectURI, code, verifier string) tokenResponse {
	t.Helper()
	resp, err := http.PostForm(tokenURL, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"client_id":     {clientID},
		"code_verifier": {verifier},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token exchange: %d %s", resp.StatusCode, raw)
	}
	var tr tokenResponse
	if err := json.Unmarshal(raw, &tr); err != nil {
		t.Fatalf("token response %s: %v", raw, err)
	}
	if tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "bearer") {
		t.Fatalf("token response without a bearer access token: %s", raw)
	}
	return tr
}

func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, _ := e.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// TestOAuth2LoginAndConsentInBrowser runs the authorization code flow of a public client
// (PKCE S256, state, nonce) through the sample page in headless Chromium: /oauth2/auth
// sends the browser to urls.login_ui (/ui/login?login_challenge=…), the user signs in with
// password and TOTP enrolment, saves the recovery codes, consents on urls.consent_ui
// (/ui/consent?consent_challenge=…), and the browser lands on the client's callback with a
// code and the state; the code is exchanged for an id_token and an access_token. Then, in
// the same tab (already signed in), a second request is denied (access_denied), a third
// grants part of the scopes and remembers it, and a fourth is not asked again.
func TestOAuth2LoginAndConsentInBrowser(t *testing.T) {
	exe := needChromium(t)

	srv, origin := startOnLocalhost(t, func(origin string) map[string]any {
		set := oauth2Pages(origin)
		set["webauthn.rp.display_name"] = "pvauth sample"
		return set
	})
	cb := newCallbackServer(t)

	const clientName = "Acme Dashboard"
	resp := srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{
		"client_name":                clientName,
		"redirect_uris":              []string{cb.URL},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      "openid email profile offline_access",
		"token_endpoint_auth_method": "none",
	})
	if resp.Status != http.StatusCreated {
		t.Fatalf("create client: %d %s", resp.Status, resp.Body)
	}
	var client struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	resp.Data(t, &client)
	if client.ID == "" || client.Secret != "" {
		t.Fatalf("public client: %s", resp.Body)
	}

	email := fmt.Sprintf("grace.%d@example.com", time.Now().UnixNano()%1e6)
	ident := testkit.CreateIdentity(t, srv, map[string]any{
		"email":  email,
		"traits": map[string]any{"employee": map[string]any{"id": "emp-7", "name": "Grace Hopper"}},
	})
	password := ident.Password

	dir := screenshotDir(t)
	ctx, console := startBrowser(t, exe, 3*time.Minute)
	p := &browserPage{t: t, ctx: ctx, dir: dir, shots: map[string]string{}, origin: origin}
	t.Logf("issuer: %s  callback: %s  screenshots: %s", origin, cb.URL, dir)
	tokenURL := srv.PublicURL + "/oauth2/token"

	// 1. The client sends the browser to the authorization endpoint; pvauth sends it on to
	// the login page with a login challenge, and the page names the client and its scopes.
	req1 := newAuthRequest(t, origin, client.ID, cb.URL, "openid email offline_access")
	p.open(req1.url)
	p.waitNav("the login page for the client", fmt.Sprintf(`document.body.dataset.ready === 'true'
		&& document.body.dataset.view === 'login' && !document.getElementById('oauth2-login-info').hidden
		&& document.getElementById('oauth2-login-client').textContent === %q`, clientName))
	loc, err := url.Parse(p.eval(`window.location.href`))
	if err != nil || loc.Path != "/ui/login" || loc.Query().Get("login_challenge") == "" {
		p.fatalf("login page URL = %v, want %s/ui/login?login_challenge=…", loc, origin)
	}
	if got := p.text("login-title"); got != "Sign in to "+clientName {
		p.fatalf("login title = %q", got)
	}
	if got := p.eval(`[...document.querySelectorAll('#oauth2-login-scopes li')].map(li => li.dataset.scope).join(' ')`); got != "openid email offline_access" {
		p.fatalf("scopes on the login page = %q", got)
	}
	if got := p.eval(`(JSON.parse(sessionStorage.getItem('pvauth.oauth2')) || {}).challenge || ''`); got != loc.Query().Get("login_challenge") {
		p.fatalf("login challenge kept in sessionStorage = %q, want the one of the URL", got)
	}
	p.shot("oauth2-login")

	// 2. Password, then TOTP enrolment; the client stays named on the code step.
	p.do("password login",
		chromedp.SetValue(chromedp.ID("email"), email),
		chromedp.SetValue(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-btn")))
	p.waitFor("the TOTP enrolment", `document.body.dataset.view === 'otp' && !document.getElementById('otp-enrol').hidden
		&& document.getElementById('otp-secret').textContent.length >= 16
		&& !document.getElementById('oauth2-login-info').hidden`)
	p.shot("oauth2-totp-enrolment")
	p.enterTOTP()

	// 3. The recovery codes are shown once, before the page leaves for the client.
	p.waitFor("the recovery codes before the hand-off", `document.body.dataset.view === 'handoff'
		&& document.querySelectorAll('#handoff-recovery-codes li').length === 10
		&& !document.getElementById('handoff-continue-btn').hidden`)
	if got := p.text("handoff-continue-btn"); !strings.Contains(got, clientName) {
		p.fatalf("continue button = %q", got)
	}
	p.shot("oauth2-recovery-codes")
	p.do("continue to the client", chromedp.Click(chromedp.ID("handoff-continue-btn")))

	// 4. Login accepted: /oauth2/auth sends the browser to the consent page.
	p.waitNav("the consent page", fmt.Sprintf(`window.location.pathname === '/ui/consent'
		&& document.body.dataset.view === 'consent'
		&& document.getElementById('consent-client').textContent === %q`, clientName))
	if got := p.eval(`[...document.querySelectorAll('#consent-scopes input[type=checkbox]')].map(b => b.value + ':' + b.checked).join(' ')`); got != "openid:true email:true offline_access:true" {
		p.fatalf("consent checkboxes = %q, want every requested scope, checked", got)
	}
	if p.eval(`String(document.getElementById('consent-remember').checked)`) != "false" {
		p.fatalf("remember is checked by default")
	}
	if got := p.text("consent-user"); got != email {
		p.fatalf("consent page user = %q, want %q", got, email)
	}
	p.shot("oauth2-consent")

	// 5. Allow: the browser lands on the callback with a code and the same state.
	p.do("allow", chromedp.Click(chromedp.ID("consent-allow-btn")))
	q := cb.wait(p, "allow")
	if q.Get("error") != "" || q.Get("code") == "" || q.Get("state") != req1.state {
		p.fatalf("callback after Allow: %v, want a code and state %q", q, req1.state)
	}
	p.waitNav("the browser on the callback", fmt.Sprintf(`window.location.href.startsWith(%q)`, cb.URL+"?"))
	p.shot("oauth2-callback")

	// 6. The code, with the PKCE verifier, buys an id_token and an access token.
	tr := exchange(t, tokenURL, client.ID, cb.URL, q.Get("code"), req1.verifier)
	if tr.IDToken == "" {
		t.Fatalf("no id_token for scope openid: %+v", tr)
	}
	if tr.RefreshToken == "" {
		t.Errorf("no refresh_token for scope offline_access: %+v", tr)
	}
	if got := strings.Fields(tr.Scope); !slices.Equal(sorted(got), []string{"email", "offline_access", "openid"}) {
		t.Errorf("granted scope = %q", tr.Scope)
	}
	idc := testkit.JWTClaims(t, tr.IDToken)
	if idc["iss"] != origin || !slices.Contains(stringList(idc["aud"]), client.ID) || idc["nonce"] != req1.nonce ||
		idc["sub"] != strconv.FormatInt(ident.ID, 10) || idc["email"] != email {
		t.Errorf("id_token claims %v: want iss %s, aud %s, the nonce, sub %d and the email", idc, origin, client.ID, ident.ID)
	}
	if amr := stringList(idc["amr"]); !slices.Contains(amr, "pwd") || !slices.Contains(amr, "otp") {
		t.Errorf("id_token amr = %v, want pwd and otp (the login on the page)", amr)
	}
	ui := srv.Public(t, http.MethodGet, "/userinfo", tr.AccessToken, nil)
	var info map[string]any
	ui.JSON(t, &info)
	if ui.Status != http.StatusOK || info["sub"] != strconv.FormatInt(ident.ID, 10) || info["email"] != email {
		t.Errorf("userinfo with the access token: %d %s", ui.Status, ui.Body)
	}

	// 7. A second request in the same tab: the page still holds the session, accepts the
	// login by itself and goes on to the consent page; Deny gives the client access_denied.
	req2 := newAuthRequest(t, origin, client.ID, cb.URL, "openid email")
	p.open(req2.url)
	p.waitNav("the consent page, without a login", fmt.Sprintf(`window.location.pathname === '/ui/consent'
		&& document.body.dataset.view === 'consent' && document.getElementById('consent-client').textContent === %q
		&& document.querySelectorAll('#consent-scopes input').length === 2`, clientName))
	p.do("deny", chromedp.Click(chromedp.ID("consent-deny-btn")))
	q = cb.wait(p, "deny")
	if q.Get("error") != "access_denied" || q.Get("code") != "" || q.Get("state") != req2.state {
		p.fatalf("callback after Deny: %v, want error=access_denied and state %q", q, req2.state)
	}
	p.waitNav("the browser on the callback after Deny", fmt.Sprintf(`window.location.href.startsWith(%q)`, cb.URL+"?"))
	p.shot("oauth2-denied")

	// 8. A third request: untick offline_access and remember the decision. The code buys
	// only what was granted: no refresh token.
	req3 := newAuthRequest(t, origin, client.ID, cb.URL, "openid email offline_access")
	p.open(req3.url)
	p.waitNav("the consent page again", `window.location.pathname === '/ui/consent' && document.body.dataset.view === 'consent'
		&& !!document.getElementById('consent-scope-offline_access')`)
	p.do("grant part and remember",
		chromedp.Click(chromedp.ID("consent-scope-offline_access")),
		chromedp.Click(chromedp.ID("consent-remember")),
		chromedp.Click(chromedp.ID("consent-allow-btn")))
	q = cb.wait(p, "allow part")
	if q.Get("code") == "" || q.Get("state") != req3.state {
		p.fatalf("callback after a partial Allow: %v", q)
	}
	tr = exchange(t, tokenURL, client.ID, cb.URL, q.Get("code"), req3.verifier)
	if got := strings.Fields(tr.Scope); !slices.Equal(sorted(got), []string{"email", "openid"}) || tr.RefreshToken != "" || tr.IDToken == "" {
		t.Errorf("after granting openid and email only: scope %q, refresh token %v, id_token %v", tr.Scope, tr.RefreshToken != "", tr.IDToken != "")
	}
	if c := testkit.JWTClaims(t, tr.IDToken); c["nonce"] != req3.nonce {
		t.Errorf("id_token nonce %v, want the third request's", c["nonce"])
	}

	// 9. The remembered consent covers a request for openid and email: straight back to
	// the client with a code, no consent page.
	req4 := newAuthRequest(t, origin, client.ID, cb.URL, "openid email")
	p.open(req4.url)
	q = cb.wait(p, "remembered consent")
	if q.Get("code") == "" || q.Get("state") != req4.state {
		p.fatalf("callback with a remembered consent: %v", q)
	}
	if tr = exchange(t, tokenURL, client.ID, cb.URL, q.Get("code"), req4.verifier); tr.IDToken == "" {
		t.Errorf("no id_token after a remembered consent: %+v", tr)
	}

	// 10. Back on the page without a request: the account, and no request left over.
	p.open(origin + "/ui/")
	p.waitNav("the account page", fmt.Sprintf(`window.location.pathname === '/ui/' && document.body.dataset.ready === 'true'
		&& document.body.dataset.view === 'account' && document.getElementById('profile-email').textContent === %q`, email))
	if got := p.eval(`sessionStorage.getItem('pvauth.oauth2') || ''`); got != "" {
		t.Errorf("the page left a finished request in sessionStorage: %s", got)
	}

	// 11. The first login page again: its challenge was used. The page says so, forgets
	// it and shows the account.
	p.open(loc.String())
	p.waitNavCond("the used login challenge", `window.location.pathname === '/ui/login' && document.body.dataset.ready === 'true'
		&& document.body.dataset.view === 'account' && !document.getElementById('message').hidden`, false)
	if msg := p.text("message"); !strings.Contains(msg, "no longer valid") || !strings.Contains(msg, "already used") {
		p.fatalf("message for a used login challenge = %q", msg)
	}
	if got := p.eval(`sessionStorage.getItem('pvauth.oauth2') || ''`); got != "" {
		t.Errorf("the page kept a used request in sessionStorage: %s", got)
	}
	p.shot("oauth2-used-challenge")

	checkConsole(t, console())
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
