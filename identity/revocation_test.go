package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/descope/virtualwebauthn"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// Disable, password reset and sessions delete end every kind of token of the identity at
// once (API.md §5): self-service, device-key, passkey and OAuth2 sessions, unexchanged
// authorization codes, pending logins and unfinished OAuth2 hand-offs.

const (
	rvRPID     = "pvauth.test"
	rvOrigin   = "https://pvauth.test"
	rvLoginUI  = "http://login-ui.test/login"
	rvCallback = "https://rp.example.com/callback"
)

var rvSeq atomic.Int64

// rv is a running pvauth whose issuer is its own public listener, with a relying party
// and a skip-consent OAuth2 client.
type rv struct {
	t        *testing.T
	srv      *testserver.Server
	issuer   string
	noFollow *http.Client
	client   struct{ ID, Secret string }
}

func startRV(t *testing.T, dsn string) *rv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	srv := testserver.StartWith(t, dsn, map[string]any{
		"serve.public.base_url": issuer, "urls.issuer": issuer, "urls.login_ui": rvLoginUI,
		"webauthn.rp.id": rvRPID, "webauthn.rp.display_name": "pvauth test", "webauthn.rp.origins": []any{rvOrigin},
	}, testserver.Options{PublicListener: ln})
	// A browser: it keeps cookies (the OAuth2 hand-off is bound to it) and shows redirects.
	e := &rv{t: t, srv: srv, issuer: issuer, noFollow: testkit.Browser()}
	var c struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	testkit.CreateClient(t, srv, map[string]any{
		"client_name": "RP", "redirect_uris": []string{rvCallback}, "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "scope": "openid offline_access email", "token_endpoint_auth_method": "client_secret_post",
		"skip_consent": true,
	}, &c)
	e.client.ID, e.client.Secret = c.ID, c.Secret
	return e
}

type rvTokens struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`
}

// rvUser is an identity enrolled in TOTP, with its recovery codes.
type rvUser struct {
	ID       int64
	Email    string
	Recovery []string
	Tokens   rvTokens // of the enrolment login (password + TOTP)
}

func (e *rv) data(r *testserver.Response, want int, v any) {
	e.t.Helper()
	testkit.WantData(e.t, "request", r, want, v)
}

func (e *rv) newUser() *rvUser {
	t := e.t
	t.Helper()
	id := testkit.CreateIdentity(t, e.srv, map[string]any{"email": testkit.UniqueEmail("rv")})
	en := testkit.EnrolTOTP(t, e.srv, id)
	return &rvUser{ID: id.ID, Email: id.Email, Recovery: en.RecoveryCodes, Tokens: rvTokens{AccessToken: en.AccessToken, RefreshToken: en.RefreshToken}}
}

// pendingLogin is POST /login: the pending token.
func (e *rv) pendingLogin(u *rvUser) string {
	e.t.Helper()
	var lr struct {
		Token string `json:"token"`
	}
	e.data(e.srv.Public(e.t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"email": u.Email, "password": testkit.Password}), http.StatusOK, &lr)
	return lr.Token
}

// recoveryLogin is a whole fresh password login with one of u's recovery codes.
func (e *rv) recoveryLogin(u *rvUser) *testserver.Response {
	e.t.Helper()
	code := u.Recovery[0]
	u.Recovery = u.Recovery[1:]
	return e.srv.Public(e.t, http.MethodPost, "/api/v1/auth/otp/verify", e.pendingLogin(u), map[string]string{"otp": code})
}

// device registers a new device key for u and logs in with it.
type rvDevice struct {
	key         *ecdsa.PrivateKey
	fingerprint string
	id          string
}

func (e *rv) registerDevice(u *rvUser) *rvDevice {
	e.t.Helper()
	td := testkit.RegisterDevice(e.t, e.srv, u.Tokens.AccessToken, nil, map[string]any{"deviceFingerprint": fmt.Sprintf("fp-%d", rvSeq.Add(1))})
	return &rvDevice{key: td.Key, fingerprint: td.Fingerprint, id: td.ID}
}

// deviceLogin is /mobile/challenge + /mobile/biometric.
func (e *rv) deviceLogin(d *rvDevice) *testserver.Response {
	t := e.t
	t.Helper()
	var ch struct {
		SessionID string `json:"sessionId"`
		Challenge string `json:"challenge"`
	}
	e.data(e.srv.Public(t, http.MethodPost, "/api/v1/auth/mobile/challenge", "", map[string]any{"deviceFingerprint": d.fingerprint}), http.StatusOK, &ch)
	return e.srv.Public(t, http.MethodPost, "/api/v1/auth/mobile/biometric", "", map[string]any{
		"sessionId": ch.SessionID, "signedChallenge": testkeys.SignChallenge(t, d.key, ch.Challenge)})
}

func (e *rv) deviceTokens(d *rvDevice) rvTokens {
	e.t.Helper()
	var out struct {
		Tokens rvTokens `json:"tokens"`
	}
	e.data(e.deviceLogin(d), http.StatusOK, &out)
	return out.Tokens
}

// rvPasskey is a passkey registered by a virtual authenticator.
type rvPasskey struct {
	auth virtualwebauthn.Authenticator
	cred virtualwebauthn.Credential
	id   string
}

var rvRP = virtualwebauthn.RelyingParty{ID: rvRPID, Name: "pvauth test", Origin: rvOrigin}

func (e *rv) registerPasskey(u *rvUser) *rvPasskey {
	t := e.t
	t.Helper()
	var b struct {
		PublicKey json.RawMessage `json:"publicKey"`
		SessionID string          `json:"sessionId"`
	}
	e.data(e.srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/begin", u.Tokens.AccessToken, map[string]string{"name": "key"}), http.StatusOK, &b)
	opts, err := virtualwebauthn.ParseAttestationOptions(string(b.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	pk := &rvPasskey{auth: virtualwebauthn.NewAuthenticator()}
	for {
		// Full-length P-256 coordinates only (virtualwebauthn trims a leading zero byte).
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		raw, _ := k.PublicKey.Bytes()
		if raw[1] == 0 || raw[33] == 0 {
			continue
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		pk.cred = virtualwebauthn.NewCredentialWithImportedKey(virtualwebauthn.KeyTypeEC2, der)
		break
	}
	pk.auth.Options.UserHandle = []byte(opts.UserID)
	att := virtualwebauthn.CreateAttestationResponse(rvRP, pk.auth, pk.cred, *opts)
	var r struct {
		Credential struct {
			ID string `json:"id"`
		} `json:"credential"`
	}
	e.data(e.srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/finish", u.Tokens.AccessToken,
		map[string]any{"sessionId": b.SessionID, "response": json.RawMessage(att)}), http.StatusOK, &r)
	pk.auth.AddCredential(pk.cred)
	pk.id = r.Credential.ID
	return pk
}

func (e *rv) passkeyLogin(u *rvUser, pk *rvPasskey) *testserver.Response {
	t := e.t
	t.Helper()
	var b struct {
		PublicKey json.RawMessage `json:"publicKey"`
		SessionID string          `json:"sessionId"`
	}
	e.data(e.srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/login/begin", "", nil), http.StatusOK, &b)
	opts, err := virtualwebauthn.ParseAssertionOptions(string(b.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	pk.cred.Counter++
	resp := virtualwebauthn.CreateAssertionResponse(rvRP, pk.auth, pk.cred, *opts)
	return e.srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/login/finish", "",
		map[string]any{"sessionId": b.SessionID, "response": json.RawMessage(resp)})
}

func (e *rv) passkeyTokens(u *rvUser, pk *rvPasskey) rvTokens {
	e.t.Helper()
	var out struct {
		Tokens rvTokens `json:"tokens"`
	}
	e.data(e.passkeyLogin(u, pk), http.StatusOK, &out)
	return out.Tokens
}

// OAuth2: the hand-off played by the test (browser and login UI at once).

type rvAuth struct{ verifier, redirectTo, code string }

func (e *rv) get(rawURL string) *http.Response {
	e.t.Helper()
	resp, err := e.noFollow.Get(rawURL)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// startAuth runs /oauth2/auth up to the login challenge.
func (e *rv) startAuth() (challenge, verifier string) {
	t := e.t
	t.Helper()
	verifier, pkceChallenge := testkit.PKCE()
	q := url.Values{"response_type": {"code"}, "client_id": {e.client.ID}, "redirect_uri": {rvCallback},
		"scope": {"openid offline_access"}, "state": {"state-0123456789"}, "nonce": {"nonce-0123456789"},
		"code_challenge": {pkceChallenge}, "code_challenge_method": {"S256"}}
	loc, err := url.Parse(e.get(e.issuer + "/oauth2/auth?" + q.Encode()).Header.Get("Location"))
	if err != nil || loc.Query().Get("login_challenge") == "" {
		t.Fatalf("no login challenge: %v %v", loc, err)
	}
	return loc.Query().Get("login_challenge"), verifier
}

// acceptedAuth is a hand-off whose login was accepted by u (redirectTo not followed).
func (e *rv) acceptedAuth(u *rvUser) rvAuth {
	e.t.Helper()
	ch, v := e.startAuth()
	var rt struct {
		RedirectTo string `json:"redirectTo"`
	}
	e.data(e.srv.Public(e.t, http.MethodPost, "/api/v1/auth/oauth2/login/accept", u.Tokens.AccessToken,
		map[string]any{"loginChallenge": ch}), http.StatusOK, &rt)
	return rvAuth{verifier: v, redirectTo: rt.RedirectTo}
}

// finish follows redirectTo: the code, or "" and the error of the redirect.
func (e *rv) finish(a *rvAuth) string {
	e.t.Helper()
	loc, err := url.Parse(e.get(a.redirectTo).Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), rvCallback) {
		e.t.Fatalf("hand-off ended at %v (%v)", loc, err)
	}
	a.code = loc.Query().Get("code")
	return loc.Query().Get("error")
}

func (e *rv) token(form url.Values) (int, map[string]any) {
	e.t.Helper()
	form.Set("client_id", e.client.ID)
	form.Set("client_secret", e.client.Secret)
	resp, err := e.noFollow.PostForm(e.issuer+"/oauth2/token", form)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func (e *rv) exchange(a rvAuth) (int, map[string]any) {
	return e.token(url.Values{"grant_type": {"authorization_code"}, "code": {a.code}, "redirect_uri": {rvCallback}, "code_verifier": {a.verifier}})
}

func (e *rv) oauthTokens(u *rvUser) rvTokens {
	e.t.Helper()
	a := e.acceptedAuth(u)
	if msg := e.finish(&a); msg != "" {
		e.t.Fatalf("hand-off: %s", msg)
	}
	st, m := e.exchange(a)
	if st != http.StatusOK {
		e.t.Fatalf("code exchange: %d %v", st, m)
	}
	at, _ := m["access_token"].(string)
	rt, _ := m["refresh_token"].(string)
	return rvTokens{AccessToken: at, RefreshToken: rt}
}

// selfServiceDead checks a self-service token set is dead everywhere.
func (e *rv) selfServiceDead(what string, ts rvTokens) {
	t := e.t
	t.Helper()
	if testkit.IsActive(e.t, e.srv, ts.AccessToken) || testkit.IsActive(e.t, e.srv, ts.RefreshToken) {
		t.Errorf("%s: a token still introspects active", what)
	}
	if r := e.srv.Public(t, http.MethodGet, "/api/v1/auth/me", ts.AccessToken, nil); r.Status != http.StatusUnauthorized {
		t.Errorf("%s: /me answers %d", what, r.Status)
	}
	for _, path := range []string{"/api/v1/auth/refresh", "/api/v1/auth/mobile/refresh"} {
		if r := e.srv.Public(t, http.MethodPost, path, "", map[string]string{"refreshToken": ts.RefreshToken}); r.Status != http.StatusUnauthorized {
			t.Errorf("%s: %s answers %d", what, path, r.Status)
		}
	}
}

func (e *rv) oauthDead(what string, ts rvTokens) {
	t := e.t
	t.Helper()
	if testkit.IsActive(e.t, e.srv, ts.AccessToken) || testkit.IsActive(e.t, e.srv, ts.RefreshToken) {
		t.Errorf("%s: a token still introspects active", what)
	}
	req, _ := http.NewRequest(http.MethodGet, e.issuer+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+ts.AccessToken)
	if resp, err := e.srv.Client.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("%s: /userinfo answers %v %v", what, resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	if st, m := e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ts.RefreshToken}}); st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("%s: refresh at /oauth2/token answers %d %v", what, st, m)
	}
}

// everything is one of each kind of token and flow of u, alive.
type everything struct {
	password, device, passkey, oauth rvTokens
	pending                          string
	code, handoff                    rvAuth
	challenge                        string
}

func (e *rv) everything(u *rvUser, d *rvDevice, pk *rvPasskey) everything {
	e.t.Helper()
	var all everything
	var ts rvTokens
	e.data(e.recoveryLogin(u), http.StatusOK, &ts)
	all.password = ts
	all.device = e.deviceTokens(d)
	all.passkey = e.passkeyTokens(u, pk)
	all.oauth = e.oauthTokens(u)
	all.pending = e.pendingLogin(u)
	all.code = e.acceptedAuth(u)
	if msg := e.finish(&all.code); msg != "" {
		e.t.Fatalf("hand-off: %s", msg)
	}
	all.handoff = e.acceptedAuth(u)
	all.challenge, _ = e.startAuth()
	return all
}

func (e *rv) allDead(what string, u *rvUser, all everything) {
	t := e.t
	t.Helper()
	e.selfServiceDead(what+": password session", all.password)
	e.selfServiceDead(what+": device session", all.device)
	e.selfServiceDead(what+": passkey session", all.passkey)
	e.selfServiceDead(what+": enrolment session", u.Tokens)
	e.oauthDead(what+": OAuth2 session", all.oauth)
	if r := e.srv.Public(t, http.MethodPost, "/api/v1/auth/otp/verify", all.pending, map[string]string{"otp": u.Recovery[0]}); r.Status != http.StatusUnauthorized {
		t.Errorf("%s: the pending login completes: %d %s", what, r.Status, r.Body)
	}
	if st, m := e.exchange(all.code); st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Errorf("%s: the unexchanged code is exchanged: %d %v", what, st, m)
	}
	h := all.handoff
	if msg := e.finish(&h); msg == "" || h.code != "" {
		t.Errorf("%s: the hand-off in flight finished with code %q", what, h.code)
	}
	if r := e.srv.Public(t, http.MethodPost, "/api/v1/auth/oauth2/login/accept", u.Tokens.AccessToken,
		map[string]any{"loginChallenge": all.challenge}); r.Status != http.StatusUnauthorized {
		t.Errorf("%s: the login challenge is accepted with a revoked token: %d", what, r.Status)
	}
}

func TestRevocationEndsEverything(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		e := startRV(t, dsn)
		for _, c := range []struct {
			name   string
			revoke func(u *rvUser) *testserver.Response
		}{
			{"disable", func(u *rvUser) *testserver.Response {
				return e.srv.Admin(t, http.MethodPatch, fmt.Sprintf("/admin/identities/%d", u.ID), map[string]string{"state": "disabled"})
			}},
			{"password reset", func(u *rvUser) *testserver.Response {
				return e.srv.Admin(t, http.MethodPut, fmt.Sprintf("/admin/identities/%d/password", u.ID), map[string]string{"password": testkit.Password})
			}},
			{"sessions delete", func(u *rvUser) *testserver.Response {
				return e.srv.Admin(t, http.MethodDelete, fmt.Sprintf("/admin/identities/%d/sessions", u.ID), nil)
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				e.t = t
				u := e.newUser()
				other := e.newUser()
				d, pk := e.registerDevice(u), e.registerPasskey(u)
				all := e.everything(u, d, pk)
				if r := c.revoke(u); r.Status != http.StatusOK {
					t.Fatalf("%s: %d %s", c.name, r.Status, r.Body)
				}
				e.allDead(c.name, u, all)
				// Another identity's sessions are untouched.
				if r := e.srv.Public(t, http.MethodGet, "/api/v1/auth/me", other.Tokens.AccessToken, nil); r.Status != http.StatusOK {
					t.Errorf("another identity's session: /me %d", r.Status)
				}
				if c.name == "disable" {
					// Every login path answers as for bad credentials.
					e.disabledLogins(u, d, pk)
					e.data(e.srv.Admin(t, http.MethodPatch, fmt.Sprintf("/admin/identities/%d", u.ID), map[string]string{"state": "active"}), http.StatusOK, nil)
					e.allDead("re-enabled", u, all)
				}
				// The identity (active again) logs in afresh, every way.
				var ts rvTokens
				e.data(e.recoveryLogin(u), http.StatusOK, &ts)
				e.data(e.srv.Public(t, http.MethodGet, "/api/v1/auth/me", ts.AccessToken, nil), http.StatusOK, nil)
				e.deviceTokens(d)
				e.passkeyTokens(u, pk)
			})
		}
	})
}

// disabledLogins: a disabled identity gets exactly the answers of bad credentials.
func (e *rv) disabledLogins(u *rvUser, d *rvDevice, pk *rvPasskey) {
	t := e.t
	t.Helper()
	msg := func(r *testserver.Response) string {
		var b struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(r.Body, &b)
		return fmt.Sprintf("%d %s", r.Status, b.Message)
	}
	wrong := e.srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"email": u.Email, "password": "wrong password!"})
	if got := e.srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"email": u.Email, "password": testkit.Password}); msg(got) != msg(wrong) || got.Status != http.StatusUnauthorized {
		t.Errorf("password login of a disabled identity: %s, bad password: %s", msg(got), msg(wrong))
	}
	if got := e.deviceLogin(d); got.Status != http.StatusUnauthorized || !strings.Contains(msg(got), "Invalid signature: signature verification failed") {
		t.Errorf("device login of a disabled identity: %s", msg(got))
	}
	if got := e.passkeyLogin(u, pk); got.Status != http.StatusUnauthorized || !strings.Contains(msg(got), "Passkey verification failed") {
		t.Errorf("passkey login of a disabled identity: %s", msg(got))
	}
}

// Bulk deletes of devices and passkeys count what they removed and end exactly the
// sessions those signed in; deleting one passkey ends that passkey's sessions only, the
// ones rotated since the login included.
func TestRevocationAuthenticators(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		e := startRV(t, dsn)
		u, other := e.newUser(), e.newUser()
		d1, d2, od := e.registerDevice(u), e.registerDevice(u), e.registerDevice(other)
		pk1, pk2 := e.registerPasskey(u), e.registerPasskey(u)
		s1, s2, os := e.deviceTokens(d1), e.deviceTokens(d2), e.deviceTokens(od)
		p1, p2 := e.passkeyTokens(u, pk1), e.passkeyTokens(u, pk2)
		// A rotation keeps the session's passkey.
		var p1r rvTokens
		e.data(e.srv.Public(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]string{"refreshToken": p1.RefreshToken}), http.StatusOK, &p1r)
		live := func(what string, ts rvTokens) {
			t.Helper()
			if r := e.srv.Public(t, http.MethodGet, "/api/v1/auth/me", ts.AccessToken, nil); r.Status != http.StatusOK {
				t.Errorf("%s: /me %d, want 200", what, r.Status)
			}
		}

		// One passkey, by its owner: its sessions end, the other passkey's do not.
		e.data(e.srv.Public(t, http.MethodDelete, "/api/v1/auth/passkeys/"+pk1.id, u.Tokens.AccessToken, nil), http.StatusOK, nil)
		e.selfServiceDead("deleted passkey's rotated session", p1r)
		if testkit.IsActive(e.t, e.srv, p1.AccessToken) {
			t.Errorf("deleted passkey's first access token is active")
		}
		live("other passkey's session", p2)
		live("password session", u.Tokens)
		if r := e.passkeyLogin(u, pk1); r.Status != http.StatusUnauthorized {
			t.Errorf("login with a deleted passkey: %d", r.Status)
		}

		// Every passkey (one left), by the admin.
		var del struct {
			Deleted int `json:"deleted"`
		}
		e.data(e.srv.Admin(t, http.MethodDelete, fmt.Sprintf("/admin/identities/%d/passkeys", u.ID), nil), http.StatusOK, &del)
		if del.Deleted != 1 {
			t.Errorf("passkeys deleted: %d, want 1", del.Deleted)
		}
		e.selfServiceDead("bulk-deleted passkey's session", p2)
		live("device session", s1)

		// Every device: both of u's, none of the other identity's.
		e.data(e.srv.Admin(t, http.MethodDelete, fmt.Sprintf("/admin/identities/%d/devices", u.ID), nil), http.StatusOK, &del)
		if del.Deleted != 2 {
			t.Errorf("devices deleted: %d, want 2", del.Deleted)
		}
		e.selfServiceDead("device 1 session", s1)
		e.selfServiceDead("device 2 session", s2)
		live("password session", u.Tokens)
		live("another identity's device session", os)
		e.deviceTokens(od)
		e.data(e.srv.Admin(t, http.MethodDelete, fmt.Sprintf("/admin/identities/%d/devices", u.ID), nil), http.StatusOK, &del)
		if del.Deleted != 0 {
			t.Errorf("devices deleted again: %d, want 0", del.Deleted)
		}
		for _, path := range []string{"/admin/identities/999999/devices", "/admin/identities/999999/passkeys"} {
			if r := e.srv.Admin(t, http.MethodDelete, path, nil); r.Status != http.StatusNotFound {
				t.Errorf("DELETE %s: %d, want 404", path, r.Status)
			}
		}
		// Audited (the audit log writes in the background: flush it first).
		e.srv.Registry.AuditLogger().Flush()
		r := e.srv.Admin(t, http.MethodGet, fmt.Sprintf("/admin/audit-events?userId=%d", u.ID), nil)
		for _, want := range []string{`"delete_all"`, `"all":true`} {
			if !strings.Contains(string(r.Body), want) {
				t.Errorf("audit events lack %s", want)
			}
		}
	})
}
