package loginui_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// chromiumPath is where Debian's chromium package puts the browser; CHROMIUM_PATH
// overrides it.
const chromiumPath = "/usr/bin/chromium"

// needChromium returns the browser to run, or skips the test (fails it under CI) when
// there is none.
func needChromium(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CHROMIUM_PATH")
	if p == "" {
		p = chromiumPath
	}
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("no Chromium at %s (%v): install it with `apt-get install -y --no-install-recommends chromium` "+
			"(scripts/test.sh and .ci/run do this when run as root) or set CHROMIUM_PATH", p, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// browserPage drives one tab and keeps the screenshots of the steps.
type browserPage struct {
	t      *testing.T
	ctx    context.Context
	dir    string
	n      int
	shots  map[string]string
	origin string
}

func (p *browserPage) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.fatalf("%s: %v", what, err)
	}
}

// fatalf fails the test with the page's visible messages and a last screenshot.
func (p *browserPage) fatalf(format string, args ...any) {
	p.t.Helper()
	state, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`JSON.stringify({view: document.body.dataset.view,
		error: document.getElementById('message').textContent, notice: document.getElementById('notice').textContent})`))
	p.shot("failure")
	p.t.Fatalf(format+"\npage state: %s", append(args, state)...)
}

// waitFor polls the JavaScript condition cond until it holds. It fails at once when the
// page shows an error banner, with the banner's text.
func (p *browserPage) waitFor(what, cond string) {
	p.t.Helper()
	expr := `(() => {
		const m = document.getElementById('message');
		if (m && !m.hidden && m.textContent) return 'ERROR: ' + m.textContent;
		return (` + cond + `) ? 'OK' : false;
	})()`
	res, err := chromedp.Run(p.ctx, chromedp.Poll[string](expr, chromedp.WithPollingInterval(100*time.Millisecond),
		chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		p.fatalf("waiting for %s: %v", what, err)
	}
	if res != "OK" {
		p.fatalf("waiting for %s: the page shows %q", what, res)
	}
}

func (p *browserPage) eval(js string) string {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		p.fatalf("evaluating %s: %v", js, err)
	}
	return v
}

func (p *browserPage) text(id string) string {
	p.t.Helper()
	return p.eval(fmt.Sprintf(`document.getElementById(%q).textContent`, id))
}

// shot writes a full-page PNG screenshot named after the step.
func (p *browserPage) shot(name string) string {
	p.t.Helper()
	// Right after a navigation the new page may not be laid out yet ("Cannot take
	// screenshot with 0 width"): wait for a loaded document with a size, then retry once.
	var buf []byte
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			ready, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`document.readyState === 'complete' && document.documentElement.getBoundingClientRect().width > 0`))
			if err == nil && ready {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if buf, err = chromedp.Run(p.ctx, chromedp.FullScreenshot(100)); err == nil {
			break
		}
	}
	if err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	p.n++
	path := filepath.Join(p.dir, fmt.Sprintf("%02d-%s.png", p.n, name))
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	p.shots[name] = path
	p.t.Logf("screenshot: %s", path)
	return path
}

// accessToken is the access token the page keeps in sessionStorage.
func (p *browserPage) accessToken() string {
	p.t.Helper()
	return p.eval(`(JSON.parse(sessionStorage.getItem('pvauth.tokens')) || {}).accessToken || ''`)
}

func (p *browserPage) logout() {
	p.t.Helper()
	p.do("log out", chromedp.Click(chromedp.ID("logout-btn")))
	p.waitFor("the login form after logout", `document.body.dataset.view === 'login' && !document.getElementById('notice').hidden`)
	if tok := p.eval(`sessionStorage.getItem('pvauth.tokens') || ''`); tok != "" {
		p.fatalf("tokens left in sessionStorage after logout: %s", tok)
	}
	// The page forgets the account view: the next sign-in's profile shows only once its
	// own /me has answered, which is what waitForProfile relies on.
	if left := p.eval(`['profile-email', 'profile-amr', 'login-method', 'passkey-list', 'device-list']
		.filter(id => document.getElementById(id).textContent !== '').join(' ')`); left != "" {
		p.fatalf("the account view keeps the last session's %s after logout", left)
	}
}

// enterTOTP types the current code of the secret the page shows and submits it; it
// returns the secret.
func (p *browserPage) enterTOTP() string {
	p.t.Helper()
	secret := strings.TrimSpace(p.text("otp-secret"))
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		p.t.Fatalf("TOTP from the secret on the page %q: %v", secret, err)
	}
	p.do("enter the TOTP code",
		chromedp.SendKeys(chromedp.ID("otp-code"), code),
		chromedp.Click(chromedp.ID("otp-verify-btn")))
	return secret
}

// waitForProfile waits for the account view showing the profile of email. The profile
// fields are empty until /me answers (logout clears them), so the profile read after
// this is the new session's.
func (p *browserPage) waitForProfile(what, email string) {
	p.t.Helper()
	p.waitFor(what, fmt.Sprintf(`document.body.dataset.view === 'account'
		&& document.getElementById('profile-email').textContent === %q`, email))
}

// startOnLocalhost starts a development server (in-memory database) browsed at
// http://localhost:PORT, a secure context whose RP id is "localhost": the port is chosen
// before the server starts. extra(origin) is the rest of the configuration.
func startOnLocalhost(t *testing.T, extra func(origin string) map[string]any) (*testserver.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	origin := fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	set := map[string]any{"webauthn.rp.id": "localhost", "webauthn.rp.origins": []any{origin}}
	maps.Copy(set, extra(origin))
	return testserver.StartWith(t, "memory", set, testserver.Options{Dev: true, PublicListener: ln}), origin
}

// oauth2Pages is the configuration of a server at origin whose login and consent pages
// are the sample's.
func oauth2Pages(origin string) map[string]any {
	return map[string]any{
		"serve.public.base_url": origin,
		"urls.issuer":           origin,
		"urls.login_ui":         origin + "/ui/login",
		"urls.consent_ui":       origin + "/ui/consent",
	}
}

// TestLoginUIInBrowser drives the sample page in headless Chromium with a virtual
// WebAuthn authenticator: password login with TOTP enrolment, passkey registration, log
// out, passkey login with the email, log out, passkey login without it (discoverable),
// the passkey and device lists and an action confirmation approved by a device while
// the page follows its events stream. It writes a screenshot after each step.
func TestLoginUIInBrowser(t *testing.T) {
	exe := needChromium(t)

	srv, origin := startOnLocalhost(t, func(string) map[string]any {
		return map[string]any{
			"webauthn.rp.display_name": "pvauth sample",
			// The page shows the number to match, and the device must send it.
			"confirmation.number_matching": true,
		}
	})

	email := fmt.Sprintf("ada.%d@example.com", time.Now().UnixNano()%1e6)
	ident := testkit.CreateIdentity(t, srv, map[string]any{
		"email": email,
		"traits": map[string]any{
			"department": map[string]any{"id": "dep-7", "name": "Engineering"},
			"employee":   map[string]any{"id": "emp-42", "name": "Ada Lovelace"},
		},
	})
	password := ident.Password

	dir := screenshotDir(t)
	ctx, console := startBrowser(t, exe, 3*time.Minute)

	// The virtual authenticator: a platform authenticator with resident keys and user
	// verification that always succeeds, as a phone or laptop with a screen lock.
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	va, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol:                    webauthn.AuthenticatorProtocolCtap2,
			Ctap2version:                webauthn.Ctap2versionCtap21,
			Transport:                   webauthn.AuthenticatorTransportInternal,
			HasResidentKey:              true,
			HasUserVerification:         true,
			IsUserVerified:              true,
			AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
	}

	p := &browserPage{t: t, ctx: ctx, dir: dir, shots: map[string]string{}, origin: origin}
	t.Logf("page: %s/ui/  screenshots: %s", origin, dir)

	// 1. The login page.
	p.do("open the page", chromedp.Navigate(origin+"/ui/"))
	p.waitFor("the login form", `document.body.dataset.ready === 'true' && document.body.dataset.view === 'login'`)
	p.shot("login")

	// A wrong password shows the API's message.
	p.do("wrong password",
		chromedp.SetValue(chromedp.ID("email"), email),
		chromedp.SetValue(chromedp.ID("password"), "wrong password"),
		chromedp.Click(chromedp.ID("login-btn")))
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`!document.getElementById('message').hidden`,
		chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		p.fatalf("no error banner after a wrong password: %v", err)
	}
	if msg := p.text("message"); msg != "Invalid email or password." {
		p.fatalf("error banner after a wrong password = %q, want the API's message", msg)
	}

	// 2. Password login: a new identity must enrol TOTP; the page shows the QR code and
	// the secret.
	p.do("password login",
		chromedp.SetValue(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-btn")))
	p.waitFor("the TOTP enrolment", `document.body.dataset.view === 'otp' && !document.getElementById('otp-enrol').hidden
		&& document.getElementById('otp-secret').textContent.length >= 16 && document.getElementById('otp-qr').complete`)
	if src := p.eval(`document.getElementById('otp-qr').src`); !strings.HasPrefix(src, "data:image/png;base64,") {
		p.fatalf("QR image src = %.40q, want a PNG data URI", src)
	}
	if w := p.eval(`String(document.getElementById('otp-qr').naturalWidth)`); w == "0" {
		p.fatalf("the QR code image did not load (blocked by the CSP?)")
	}
	p.shot("totp-enrolment")

	// 3. The first code completes the enrolment: the profile and the recovery codes.
	p.enterTOTP()
	p.waitForProfile("the profile after TOTP", email)
	if n := p.eval(`String(document.querySelectorAll('#recovery-codes li').length)`); n != "10" {
		p.fatalf("recovery codes shown: %s, want 10", n)
	}
	if amr := p.text("profile-amr"); amr != "pwd, otp" {
		p.fatalf("amr after password+TOTP = %q, want \"pwd, otp\"", amr)
	}
	if got := p.text("profile-name"); got != "Ada Lovelace" {
		p.fatalf("profile name = %q", got)
	}
	p.waitFor("the passkey prompt and the empty lists", `!document.getElementById('passkey-prompt').hidden
		&& document.getElementById('passkey-empty') && document.getElementById('device-empty')`)
	p.shot("signed-in-password-totp")
	p.do("dismiss the recovery codes", chromedp.Click(chromedp.ID("recovery-done-btn")))

	// A device registered by "the mobile app" (device key API) shows in the device list;
	// it approves the action confirmation later.
	dev := registerDevice(t, srv, p.accessToken())
	p.do("refresh devices", chromedp.Click(chromedp.ID("devices-refresh-btn")))
	p.waitFor("the device in the list", fmt.Sprintf(`!!document.getElementById(%q)`, "device-"+dev.id))

	// 4. Register a passkey through navigator.credentials.create.
	p.do("register a passkey",
		chromedp.SendKeys(chromedp.ID("passkey-name"), "Work laptop"),
		chromedp.Click(chromedp.ID("passkey-register-btn")))
	p.waitFor("the new passkey in the list", `[...document.querySelectorAll('#passkey-list li.item')].some(li => li.dataset.name === 'Work laptop')
		&& document.getElementById('passkey-prompt').hidden && document.getElementById('profile-prompt').textContent === 'accepted'`)
	if n := p.text("notice"); !strings.Contains(n, `"Work laptop" added`) {
		p.fatalf("notice after registration = %q", n)
	}
	creds, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: va.AuthenticatorID})
	if err != nil {
		t.Fatalf("WebAuthn.getCredentials: %v", err)
	}
	if len(creds.Credentials) != 1 || !creds.Credentials[0].IsResidentCredential || creds.Credentials[0].RpID != "localhost" {
		t.Fatalf("the authenticator should hold one resident credential for localhost, has %+v", creds.Credentials)
	}
	var adminList struct {
		Credentials []struct {
			ID             string     `json:"id"`
			CredentialID   string     `json:"credentialId"`
			Name           string     `json:"name"`
			TransportFlags []string   `json:"transportFlags"`
			SignCount      int64      `json:"signCount"`
			LastUsedAt     *time.Time `json:"lastUsedAt"`
		} `json:"credentials"`
	}
	srv.Admin(t, http.MethodGet, fmt.Sprintf("/admin/identities/%d/passkeys", ident.ID), nil).Data(t, &adminList)
	if len(adminList.Credentials) != 1 || adminList.Credentials[0].Name != "Work laptop" ||
		adminList.Credentials[0].CredentialID != base64.RawURLEncoding.EncodeToString(creds.Credentials[0].CredentialID) {
		t.Fatalf("admin passkey list %+v does not match the authenticator's credential", adminList.Credentials)
	}
	p.shot("passkey-registered")

	// 5. Log out.
	p.logout()
	p.shot("logged-out")

	// 6. Passkey login with the email: login/begin lists the account's credentials.
	p.do("passkey login with email",
		chromedp.SetValue(chromedp.ID("email"), email),
		chromedp.Click(chromedp.ID("passkey-login-btn")))
	p.waitForProfile("the profile after the passkey login with email", email)
	if amr := p.text("profile-amr"); amr != "webauthn" {
		p.fatalf("amr after a passkey login = %q, want webauthn", amr)
	}
	if m := p.text("login-method"); !strings.Contains(m, "for "+email) {
		p.fatalf("login method = %q", m)
	}
	p.shot("passkey-login-with-email")
	p.logout()

	// 7. Passkey login without the email: a discoverable credential, found by the
	// authenticator alone; the user handle leads the server to the account.
	p.do("discoverable passkey login",
		chromedp.Evaluate[chromedp.Void](`document.getElementById('email').value = ''`),
		chromedp.Click(chromedp.ID("passkey-login-btn")))
	p.waitForProfile("the profile after the discoverable login", email)
	if amr := p.text("profile-amr"); amr != "webauthn" {
		p.fatalf("amr after a discoverable passkey login = %q, want webauthn", amr)
	}
	if m := p.text("login-method"); !strings.Contains(m, "discoverable") {
		p.fatalf("login method = %q", m)
	}

	// 8. The passkey list shows the credential and its last use.
	p.do("refresh passkeys", chromedp.Click(chromedp.ID("passkeys-refresh-btn")))
	p.waitFor("the passkey with a last use", `(() => { const li = document.querySelector('#passkey-list li.item');
		return li && li.dataset.name === 'Work laptop' && !li.textContent.includes('last used never'); })()`)
	if n := p.eval(`String(document.querySelectorAll('#passkey-list li.item').length)`); n != "1" {
		p.fatalf("passkeys listed: %s, want 1", n)
	}
	p.waitFor("the device list", fmt.Sprintf(`!!document.getElementById(%q)`, "device-"+dev.id))
	p.shot("passkey-login-discoverable")

	// 9. An action confirmation: the page initiates it and follows its events stream; it
	// shows the action, the payload, its hash and the number to match; the device
	// approves it with that number and the page shows the approval without polling.
	p.do("initiate a confirmation",
		chromedp.SetValue(chromedp.ID("action-type"), "approve_payment"),
		chromedp.Click(chromedp.ID("confirm-initiate-btn")))
	p.waitFor("the pending confirmation", `document.getElementById('confirm-status').textContent === 'pending'
		&& !document.getElementById('confirm-spinner').hidden
		&& document.getElementById('confirm-panel').dataset.events === '1'`)
	p.shot("confirmation-pending")
	cid := p.text("confirm-id")
	challenge := p.eval(`document.getElementById('confirm-panel').dataset.challenge`)
	match := p.text("confirm-match")
	if len(match) != 2 || p.eval(`String(document.getElementById('confirm-match-row').hidden)`) != "false" {
		p.fatalf("match code shown: %q", match)
	}
	st := srv.Public(t, http.MethodGet, "/api/v1/auth/confirmation/"+cid+"/status", p.accessToken(), nil)
	var view struct {
		ActionType    string         `json:"actionType"`
		ActionHash    string         `json:"actionHash"`
		ActionPayload map[string]any `json:"actionPayload"`
	}
	st.Data(t, &view)
	if got := p.text("confirm-hash"); got == "" || got != view.ActionHash {
		p.fatalf("hash shown %q, the confirmation's %q", got, view.ActionHash)
	}
	if got := p.text("confirm-action"); got != "approve_payment" || view.ActionType != got {
		p.fatalf("action shown %q", got)
	}
	if got := p.text("confirm-payload"); !strings.Contains(got, `"document": "Invoice 2026-117"`) || view.ActionPayload["document"] != "Invoice 2026-117" {
		p.fatalf("payload shown %q, stored %v", got, view.ActionPayload)
	}
	wrong := fmt.Sprintf("%02d", (int(match[0]-'0')*10+int(match[1]-'0')+1)%100)
	refused := srv.Public(t, http.MethodPost, "/api/v1/auth/confirmation/"+cid+"/verify", p.accessToken(),
		map[string]string{"deviceId": dev.id, "signedChallenge": dev.sign(t, challenge), "matchCode": wrong})
	if refused.Status != http.StatusBadRequest || !strings.Contains(string(refused.Body), "match_code_mismatch") {
		t.Fatalf("a wrong match code: %d %s", refused.Status, refused.Body)
	}
	approve := srv.Public(t, http.MethodPost, "/api/v1/auth/confirmation/"+cid+"/verify", p.accessToken(),
		map[string]string{"deviceId": dev.id, "signedChallenge": dev.sign(t, challenge), "matchCode": match})
	if approve.Status != http.StatusOK {
		t.Fatalf("approving the confirmation: %d %s", approve.Status, approve.Body)
	}
	p.waitFor("the events stream to show the approval", `document.getElementById('confirm-status').textContent === 'approved'
		&& document.getElementById('confirm-spinner').hidden
		&& Number(document.getElementById('confirm-panel').dataset.events) >= 2`)
	if n := p.eval(`String(performance.getEntriesByType('resource').filter(e => e.name.includes('/confirmation/') && e.name.endsWith('/status')).length)`); n != "0" {
		p.fatalf("the page polled /status %s times; it must follow the events stream", n)
	}
	final := p.shot("confirmation-approved")

	if os.Getenv("UPDATE_SCREENSHOT") == "1" && final != "" {
		raw, err := os.ReadFile(final)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("screenshot.png", raw, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("updated contrib/login-ui/screenshot.png from %s", final)
	}

	checkConsole(t, console())
}

// screenshotDir is where a test writes its screenshots: SCREENSHOT_DIR (to keep them),
// else the test's temporary directory.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startBrowser starts headless Chromium with one tab, stopped when the test ends. The
// returned context carries the deadline for the test's steps; console returns the
// console messages and uncaught exceptions of the tab so far.
func startBrowser(t *testing.T, exe string, timeout time.Duration) (ctx context.Context, console func() []chromedp.ConsoleMessage) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	// The first call starts the browser and binds it to browserCtx (no deadline); the
	// steps run under a deadline derived from it.
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	ctx, cancel := context.WithTimeout(browserCtx, timeout)
	t.Cleanup(cancel)

	var (
		mu   sync.Mutex
		msgs []chromedp.ConsoleMessage
	)
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			mu.Lock()
			msgs = append(msgs, m)
			mu.Unlock()
		}
	}()
	return ctx, func() []chromedp.ConsoleMessage {
		mu.Lock()
		defer mu.Unlock()
		return append([]chromedp.ConsoleMessage(nil), msgs...)
	}
}

// checkConsole fails the test on a script error or a CSP violation in the page.
func checkConsole(t *testing.T, console []chromedp.ConsoleMessage) {
	t.Helper()
	for _, m := range console {
		s := m.String()
		if m.IsException() || strings.Contains(s, "Content Security Policy") || strings.Contains(s, "Uncaught") {
			t.Errorf("page console: %s:%d %s", m.URL, m.Line+1, s)
		}
	}
}

// device is a biometric device key registered through the device API.
type device struct {
	id  string
	key *ecdsa.PrivateKey
}

func (d *device) sign(t *testing.T, challengeB64 string) string {
	t.Helper()
	return testkeys.SignChallenge(t, d.key, challengeB64)
}

func registerDevice(t *testing.T, srv *testserver.Server, access string) *device {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	td := testkit.RegisterDevice(t, srv, access, key, map[string]any{
		"deviceName": "Pixel 9", "deviceFingerprint": fmt.Sprintf("fp-%d", time.Now().UnixNano()),
		"publicKey": base64.StdEncoding.EncodeToString(testkeys.MustDER(t, &key.PublicKey)),
	})
	return &device{id: td.ID, key: key}
}
