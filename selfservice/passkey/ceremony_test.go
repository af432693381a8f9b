package passkey_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// The relying party of the test servers, and a virtual browser on its origin.
const (
	rpID     = "pvauth.test"
	rpOrigin = "https://pvauth.test"
)

var goodRP = virtualwebauthn.RelyingParty{ID: rpID, Name: "pvauth test", Origin: rpOrigin}

// rp is the config of a server with the test relying party; extra adds keys.
func rp(extra map[string]any) map[string]any {
	set := map[string]any{
		"webauthn.rp.id":           rpID,
		"webauthn.rp.display_name": "pvauth test",
		"webauthn.rp.origins":      []any{rpOrigin},
	}
	for k, v := range extra {
		set[k] = v
	}
	return set
}

// startServer runs pvauth on dsn with the test relying party; extra adds config keys.
func startServer(t testing.TB, dsn string, extra map[string]any) *testserver.Server {
	t.Helper()
	return testserver.Start(t, dsn, rp(extra))
}

// account is an identity with a full access token and the virtual authenticator that
// holds its passkeys.
type account struct {
	id    int64
	email string
	token string
	auth  virtualwebauthn.Authenticator
}

// newAccount creates an identity and issues it a full token set through the shared
// token mechanism (as a finished password+TOTP login would).
func newAccount(t testing.TB, srv *testserver.Server) *account {
	t.Helper()
	id := testkit.CreateIdentity(t, srv, map[string]any{"email": testkit.UniqueEmail("pk")})
	ts := testkit.IssueSession(t, srv, id)
	return &account{id: id.ID, email: id.Email, token: ts.AccessToken, auth: virtualwebauthn.NewAuthenticator()}
}

type beginResult struct {
	PublicKey json.RawMessage `json:"publicKey"`
	SessionID string          `json:"sessionId"`
}

// credView is a passkey as the API shows it (the admin view has every field).
type credView struct {
	ID              string     `json:"id"`
	CredentialID    string     `json:"credentialId"`
	UserID          int64      `json:"userId"`
	Name            string     `json:"name"`
	AttestationType string     `json:"attestationType"`
	AAGUID          string     `json:"aaguid"`
	SignCount       int64      `json:"signCount"`
	CloneWarning    bool       `json:"cloneWarning"`
	TransportFlags  []string   `json:"transportFlags"`
	IsActive        bool       `json:"isActive"`
	LastUsedAt      *time.Time `json:"lastUsedAt"`
	CreatedAt       time.Time  `json:"createdAt"`
}

type registerResult struct {
	Success      bool     `json:"success"`
	CredentialID string   `json:"credentialId"`
	Credential   credView `json:"credential"`
}

type tokenSet struct {
	AccessToken           string    `json:"accessToken"`
	AccessTokenExpiresAt  time.Time `json:"accessTokenExpiresAt"`
	RefreshToken          string    `json:"refreshToken"`
	RefreshTokenExpiresAt time.Time `json:"refreshTokenExpiresAt"`
	Signature             string    `json:"signature"`
}

type loginResult struct {
	Success bool     `json:"success"`
	Tokens  tokenSet `json:"tokens"`
}

// newCred is virtualwebauthn.NewCredential(KeyTypeEC2) without its flaw: it encodes the
// COSE key's x and y with big.Int.Bytes, so a coordinate with a leading zero byte (one
// key in 64) comes out shorter than 32 bytes and the server rightly refuses the key.
// Only keys with full-length coordinates are used here.
func newCred() virtualwebauthn.Credential {
	for {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		pub, err := k.PublicKey.Bytes() // 0x04 || x (32 bytes) || y (32 bytes)
		if err != nil || pub[1] == 0 || pub[33] == 0 {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		return virtualwebauthn.NewCredentialWithImportedKey(virtualwebauthn.KeyTypeEC2, der)
	}
}

// passkey is a registered credential: the virtual key and the server's id for it.
type passkey struct {
	cred virtualwebauthn.Credential
	id   string
}

// registerBegin starts a registration and parses the options as a browser would.
func registerBegin(t testing.TB, srv *testserver.Server, a *account, name string) (string, *virtualwebauthn.AttestationOptions) {
	t.Helper()
	resp := srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/begin", a.token, map[string]string{"name": name})
	if resp.Status != http.StatusOK {
		t.Fatalf("register/begin: %d %s", resp.Status, resp.Body)
	}
	var b beginResult
	resp.Data(t, &b)
	opts, err := virtualwebauthn.ParseAttestationOptions(string(b.PublicKey))
	if err != nil {
		t.Fatalf("creation options %s: %v", b.PublicKey, err)
	}
	if opts.RelyingPartyID != rpID {
		t.Fatalf("creation options rp.id = %q, want %q", opts.RelyingPartyID, rpID)
	}
	return b.SessionID, opts
}

// register runs a whole registration with a new EC2 key and returns it.
func register(t testing.TB, srv *testserver.Server, a *account, name string) passkey {
	t.Helper()
	sid, opts := registerBegin(t, srv, a, name)
	cred := newCred()
	// The authenticator keeps the user handle with the (discoverable) credential.
	a.auth.Options.UserHandle = []byte(opts.UserID)
	att := virtualwebauthn.CreateAttestationResponse(goodRP, a.auth, cred, *opts)
	resp := srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/finish", a.token,
		map[string]any{"sessionId": sid, "response": json.RawMessage(att)})
	if resp.Status != http.StatusOK {
		t.Fatalf("register/finish: %d %s", resp.Status, resp.Body)
	}
	var r registerResult
	resp.Data(t, &r)
	if !r.Success || r.CredentialID != base64.RawURLEncoding.EncodeToString(cred.ID) || r.Credential.Name != name {
		t.Fatalf("register/finish answered %s", resp.Body)
	}
	a.auth.AddCredential(cred)
	return passkey{cred: cred, id: r.Credential.ID}
}

// loginBegin starts a login: with the email, or discoverable when email is "".
func loginBegin(t testing.TB, srv *testserver.Server, email string) (string, *virtualwebauthn.AssertionOptions) {
	t.Helper()
	var body any
	if email != "" {
		body = map[string]string{"email": email}
	}
	resp := srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/login/begin", "", body)
	if resp.Status != http.StatusOK {
		t.Fatalf("login/begin (%q): %d %s", email, resp.Status, resp.Body)
	}
	var b beginResult
	resp.Data(t, &b)
	opts, err := virtualwebauthn.ParseAssertionOptions(string(b.PublicKey))
	if err != nil {
		t.Fatalf("request options %s: %v", b.PublicKey, err)
	}
	return b.SessionID, opts
}

// assert signs the options' challenge with cred, as the authenticator a holds it, for rp.
// The counter goes up by one, as a real authenticator's does.
func assert(a *account, pk *passkey, rp virtualwebauthn.RelyingParty, opts *virtualwebauthn.AssertionOptions) json.RawMessage {
	pk.cred.Counter++
	return json.RawMessage(virtualwebauthn.CreateAssertionResponse(rp, a.auth, pk.cred, *opts))
}

func loginFinish(t testing.TB, srv *testserver.Server, sid string, response json.RawMessage, rememberMe bool) *testserver.Response {
	t.Helper()
	body := map[string]any{"sessionId": sid, "response": response}
	if rememberMe {
		body["rememberMe"] = true
	}
	return srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/login/finish", "", body)
}

// login runs a whole login with pk (email "" = discoverable) and wants 200.
func login(t testing.TB, srv *testserver.Server, a *account, pk *passkey, email string, rememberMe bool) tokenSet {
	t.Helper()
	sid, opts := loginBegin(t, srv, email)
	resp := loginFinish(t, srv, sid, assert(a, pk, goodRP, opts), rememberMe)
	if resp.Status != http.StatusOK {
		t.Fatalf("login/finish (%q): %d %s", email, resp.Status, resp.Body)
	}
	var r loginResult
	resp.Data(t, &r)
	if !r.Success || r.Tokens.AccessToken == "" || r.Tokens.RefreshToken == "" || r.Tokens.Signature == "" {
		t.Fatalf("login/finish answered %s", resp.Body)
	}
	return r.Tokens
}

// adminPasskeys lists an identity's passkeys on the admin port (active or not).
func adminPasskeys(t testing.TB, srv *testserver.Server, id int64) []credView {
	t.Helper()
	resp := srv.Admin(t, http.MethodGet, fmt.Sprintf("/admin/identities/%d/passkeys", id), nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("admin passkeys: %d %s", resp.Status, resp.Body)
	}
	var out struct {
		Credentials []credView `json:"credentials"`
	}
	resp.Data(t, &out)
	return out.Credentials
}

func findCred(cs []credView, id string) *credView {
	for i := range cs {
		if cs[i].ID == id {
			return &cs[i]
		}
	}
	return nil
}

// passkeyEvents returns the identity's passkey audit events (newest first).
func passkeyEvents(t testing.TB, srv *testserver.Server, id int64) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, e := range testkit.AuditEvents(t, srv, id) {
		if e.Type == audit.TypePasskey {
			out = append(out, e)
		}
	}
	return out
}

// TestPasskeyRegisterAndLogin: registration, login with the email and discoverable
// login; the tokens come from the shared mechanism with amr ["webauthn"] and honour
// rememberMe; the credential records its AAGUID, counter and last use.
func TestPasskeyRegisterAndLogin(t *testing.T) {
	testkit.ForEachDB(t, rp(nil), func(t *testing.T, srv *testserver.Server) {
		a := newAccount(t, srv)

		// The creation options ask for a discoverable credential with user verification.
		sid, _ := registerBegin(t, srv, a, "ignored")
		if _, err := uuid.Parse(sid); err != nil {
			t.Fatalf("sessionId %q is not a UUID", sid)
		}
		resp := srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/begin", a.token, map[string]string{"name": "x"})
		var b struct {
			PublicKey struct {
				Challenge string `json:"challenge"`
				RP        struct {
					ID   string `json:"id"`
					Name string `json:"name"`
				} `json:"rp"`
				User struct {
					ID   string `json:"id"`
					Name string `json:"name"`
				} `json:"user"`
				AuthenticatorSelection struct {
					ResidentKey      string `json:"residentKey"`
					UserVerification string `json:"userVerification"`
				} `json:"authenticatorSelection"`
			} `json:"publicKey"`
		}
		resp.Data(t, &b)
		pkOpts := b.PublicKey
		if pkOpts.RP.ID != rpID || pkOpts.RP.Name != "pvauth test" || pkOpts.User.Name != a.email ||
			pkOpts.AuthenticatorSelection.ResidentKey != "required" || pkOpts.AuthenticatorSelection.UserVerification != "required" {
			t.Fatalf("creation options: %s", resp.Body)
		}
		if raw, err := base64.RawURLEncoding.DecodeString(pkOpts.Challenge); err != nil || len(raw) < 16 {
			t.Fatalf("challenge %q is not base64url of ≥16 bytes (%v)", pkOpts.Challenge, err)
		}

		pk := register(t, srv, a, "Laptop")
		cs := adminPasskeys(t, srv, a.id)
		c := findCred(cs, pk.id)
		if len(cs) != 1 || c == nil {
			t.Fatalf("admin list after registration: %+v", cs)
		}
		if c.UserID != a.id || c.AAGUID != uuid.UUID(a.auth.Aaguid).String() || c.SignCount != 0 || !c.IsActive ||
			c.CloneWarning || c.LastUsedAt != nil || c.AttestationType == "" || c.TransportFlags == nil {
			t.Fatalf("stored credential: %+v (aaguid want %s)", *c, uuid.UUID(a.auth.Aaguid))
		}

		// The request options with an email list the account's credentials; without one,
		// none (the authenticator finds a discoverable credential itself).
		_, withEmail := loginBegin(t, srv, a.email)
		if len(withEmail.AllowCredentials) != 1 || withEmail.AllowCredentials[0] != base64.RawURLEncoding.EncodeToString(pk.cred.ID) {
			t.Fatalf("allowCredentials with email = %v", withEmail.AllowCredentials)
		}
		if withEmail.RelyingPartyID != rpID {
			t.Fatalf("request options rpId = %q", withEmail.RelyingPartyID)
		}
		_, discoverable := loginBegin(t, srv, "")
		if len(discoverable.AllowCredentials) != 0 {
			t.Fatalf("allowCredentials without email = %v", discoverable.AllowCredentials)
		}

		for _, tc := range []struct {
			name       string
			email      string
			rememberMe bool
			refresh    time.Duration
		}{
			{"with email", a.email, false, 72 * time.Hour},
			{"with email in another case", strings.ToUpper(a.email), false, 72 * time.Hour},
			{"discoverable", "", false, 72 * time.Hour},
			{"discoverable rememberMe", "", true, 720 * time.Hour},
			{"with email rememberMe", a.email, true, 720 * time.Hour},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := time.Now()
				ts := login(t, srv, a, &pk, tc.email, tc.rememberMe)
				cl := testkit.JWTClaims(t, ts.AccessToken)
				amr, _ := cl["amr"].([]any)
				if len(amr) != 1 || amr[0] != "webauthn" {
					t.Fatalf("amr = %v, want [webauthn]", cl["amr"])
				}
				if cl["sub"] != fmt.Sprint(a.id) || cl["email"] != a.email || cl["sid"] == nil {
					t.Fatalf("claims: %v", cl)
				}
				if d := ts.RefreshTokenExpiresAt.Sub(before); d < tc.refresh-time.Minute || d > tc.refresh+time.Minute {
					t.Fatalf("refresh token lives %v, want about %v", d, tc.refresh)
				}
				if d := ts.AccessTokenExpiresAt.Sub(before); d < 59*time.Minute || d > 61*time.Minute {
					t.Fatalf("access token lives %v, want about 1h", d)
				}
				me := srv.Public(t, http.MethodGet, "/api/v1/auth/me", ts.AccessToken, nil)
				if me.Status != http.StatusOK {
					t.Fatalf("/me with the passkey token: %d %s", me.Status, me.Body)
				}
				var prof struct {
					ID    int64  `json:"id"`
					Email string `json:"email"`
				}
				me.Data(t, &prof)
				if prof.ID != a.id || prof.Email != a.email {
					t.Fatalf("/me: %s", me.Body)
				}
				// The refresh token works like any other.
				ref := srv.Public(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]string{"refreshToken": ts.RefreshToken})
				if ref.Status != http.StatusOK {
					t.Fatalf("refresh: %d %s", ref.Status, ref.Body)
				}
			})
		}

		c = findCred(adminPasskeys(t, srv, a.id), pk.id)
		if c.SignCount != int64(pk.cred.Counter) || c.LastUsedAt == nil || c.CloneWarning {
			t.Fatalf("after logins: signCount %d (want %d), lastUsedAt %v, cloneWarning %v", c.SignCount, pk.cred.Counter, c.LastUsedAt, c.CloneWarning)
		}

		evs := passkeyEvents(t, srv, a.id)
		kinds := map[string]int{}
		for _, e := range evs {
			kinds[fmt.Sprint(e.Metadata["event"])+"/"+e.Result]++
		}
		if kinds["register/success"] != 1 || kinds["login/success"] != 5 {
			t.Fatalf("passkey audit events: %v", kinds)
		}
	})
}

// TestPasskeyCeremonyRefusals: every forged, stale or misdirected ceremony is a 4xx with
// the contract's error body, never a 5xx, and never issues tokens.
func TestPasskeyCeremonyRefusals(t *testing.T) {
	testkit.ForEachDB(t, rp(nil), func(t *testing.T, srv *testserver.Server) {
		a := newAccount(t, srv)
		pk := register(t, srv, a, "Phone")

		t.Run("replayed assertion", func(t *testing.T) {
			sid, opts := loginBegin(t, srv, a.email)
			resp := assert(a, &pk, goodRP, opts)
			if r := loginFinish(t, srv, sid, resp, false); r.Status != http.StatusOK {
				t.Fatalf("first use: %d %s", r.Status, r.Body)
			}
			testkit.WantError(t, loginFinish(t, srv, sid, resp, false), http.StatusBadRequest, "expired")
		})

		t.Run("assertion for another session's challenge", func(t *testing.T) {
			_, optsA := loginBegin(t, srv, "")
			sidB, _ := loginBegin(t, srv, "")
			testkit.WantError(t, loginFinish(t, srv, sidB, assert(a, &pk, goodRP, optsA), false), http.StatusUnauthorized, "")
			// The session was spent by the failed attempt.
			testkit.WantError(t, loginFinish(t, srv, sidB, assert(a, &pk, goodRP, optsA), false), http.StatusBadRequest, "expired")
		})

		t.Run("assertion for another session's challenge with email", func(t *testing.T) {
			_, optsA := loginBegin(t, srv, a.email)
			sidB, _ := loginBegin(t, srv, a.email)
			testkit.WantError(t, loginFinish(t, srv, sidB, assert(a, &pk, goodRP, optsA), false), http.StatusUnauthorized, "")
		})

		t.Run("wrong origin", func(t *testing.T) {
			sid, opts := loginBegin(t, srv, a.email)
			evil := virtualwebauthn.RelyingParty{ID: rpID, Name: "evil", Origin: "https://evil.test"}
			testkit.WantError(t, loginFinish(t, srv, sid, assert(a, &pk, evil, opts), false), http.StatusUnauthorized, "")
		})

		t.Run("wrong origin scheme", func(t *testing.T) {
			sid, opts := loginBegin(t, srv, "")
			evil := virtualwebauthn.RelyingParty{ID: rpID, Name: "evil", Origin: "http://pvauth.test"}
			testkit.WantError(t, loginFinish(t, srv, sid, assert(a, &pk, evil, opts), false), http.StatusUnauthorized, "")
		})

		t.Run("wrong RP id", func(t *testing.T) {
			sid, opts := loginBegin(t, srv, a.email)
			evil := virtualwebauthn.RelyingParty{ID: "evil.test", Name: "evil", Origin: rpOrigin}
			testkit.WantError(t, loginFinish(t, srv, sid, assert(a, &pk, evil, opts), false), http.StatusUnauthorized, "")
		})

		t.Run("unknown credential", func(t *testing.T) {
			stranger := passkey{cred: newCred()}
			sid, opts := loginBegin(t, srv, "")
			testkit.WantError(t, loginFinish(t, srv, sid, assert(a, &stranger, goodRP, opts), false), http.StatusUnauthorized, "")
			sid, opts = loginBegin(t, srv, a.email)
			testkit.WantError(t, loginFinish(t, srv, sid, assert(a, &stranger, goodRP, opts), false), http.StatusUnauthorized, "")
		})

		t.Run("credential id of a passkey with another key", func(t *testing.T) {
			// The registered credential id, signed with a key that is not the registered one.
			forged := passkey{cred: newCred()}
			forged.cred.ID = pk.cred.ID
			forged.cred.Counter = pk.cred.Counter + 10
			sid, opts := loginBegin(t, srv, a.email)
			testkit.WantError(t, loginFinish(t, srv, sid, assert(a, &forged, goodRP, opts), false), http.StatusUnauthorized, "")
		})

		t.Run("user not verified", func(t *testing.T) {
			sid, opts := loginBegin(t, srv, a.email)
			noUV := a.auth
			noUV.Options.UserNotVerified = true
			pk.cred.Counter++
			resp := json.RawMessage(virtualwebauthn.CreateAssertionResponse(goodRP, noUV, pk.cred, *opts))
			testkit.WantError(t, loginFinish(t, srv, sid, resp, false), http.StatusUnauthorized, "")
		})

		t.Run("deleted credential", func(t *testing.T) {
			spare := register(t, srv, a, "Spare key")
			if r := srv.Public(t, http.MethodDelete, "/api/v1/auth/passkeys/"+spare.id, a.token, nil); r.Status != http.StatusOK {
				t.Fatalf("delete: %d %s", r.Status, r.Body)
			}
			sid, opts := loginBegin(t, srv, "")
			testkit.WantError(t, loginFinish(t, srv, sid, assert(a, &spare, goodRP, opts), false), http.StatusUnauthorized, "")
			sid, opts = loginBegin(t, srv, a.email)
			testkit.WantError(t, loginFinish(t, srv, sid, assert(a, &spare, goodRP, opts), false), http.StatusUnauthorized, "")
		})

		t.Run("another user's passkey on a login for this email", func(t *testing.T) {
			b := newAccount(t, srv)
			bpk := register(t, srv, b, "B's key")
			sid, opts := loginBegin(t, srv, a.email)
			testkit.WantError(t, loginFinish(t, srv, sid, assert(b, &bpk, goodRP, opts), false), http.StatusUnauthorized, "")
			// B's passkey itself still works for B.
			login(t, srv, b, &bpk, b.email, false)
		})

		t.Run("unknown and malformed sessions", func(t *testing.T) {
			_, opts := loginBegin(t, srv, "")
			resp := assert(a, &pk, goodRP, opts)
			testkit.WantError(t, loginFinish(t, srv, uuid.NewString(), resp, false), http.StatusBadRequest, "expired")
			testkit.WantError(t, loginFinish(t, srv, "not-a-uuid", resp, false), http.StatusBadRequest, "expired")
			testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/login/finish", "", map[string]any{"response": resp}),
				http.StatusBadRequest, "sessionId")
			// A registration ceremony is no login ceremony.
			regSID, _ := registerBegin(t, srv, a, "x")
			testkit.WantError(t, loginFinish(t, srv, regSID, resp, false), http.StatusBadRequest, "expired")
		})

		t.Run("malformed response", func(t *testing.T) {
			for _, body := range []string{
				`{"sessionId":"%s"}`,
				`{"sessionId":"%s","response":null}`,
				`{"sessionId":"%s","response":"abc"}`,
				`{"sessionId":"%s","response":[1,2]}`,
				`{"sessionId":"%s","response":{}}`,
				`{"sessionId":"%s","response":{"id":"AAAA","rawId":"AAAA","type":"public-key"}}`,
				`{"sessionId":"%s","response":{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"!!","authenticatorData":"x","signature":"y"}}}`,
				`{"sessionId":"%s","response":{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AAAA","signature":"AAAA"}}}`,
				`{"sessionId":"%s","response":{"id":"AAAA","rawId":"AAAA","type":"password","response":{"clientDataJSON":"e30","authenticatorData":"AAAA","signature":"AAAA"}}}`,
			} {
				sid, _ := loginBegin(t, srv, "")
				r := srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/login/finish", "", fmt.Sprintf(body, sid))
				testkit.WantError(t, r, http.StatusBadRequest, "")
			}
			// Not JSON at all.
			testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/login/finish", "", "{"), http.StatusBadRequest, "")
			testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/login/begin", "", "{"), http.StatusBadRequest, "")
			// Registration too.
			sid, _ := registerBegin(t, srv, a, "x")
			testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/finish", a.token,
				fmt.Sprintf(`{"sessionId":"%s","response":{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"AAAA"}}}`, sid)),
				http.StatusBadRequest, "")
		})

		t.Run("login begin for an email without passkeys", func(t *testing.T) {
			c := newAccount(t, srv)
			r1 := srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/login/begin", "", map[string]string{"email": c.email})
			r2 := srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/login/begin", "", map[string]string{"email": "nobody-" + c.email})
			e1 := testkit.WantError(t, r1, http.StatusBadRequest, "")
			e2 := testkit.WantError(t, r2, http.StatusBadRequest, "")
			if e1 != e2 {
				t.Fatalf("login/begin tells an unknown email (%+v) from one without passkeys (%+v)", e2, e1)
			}
		})

		t.Run("registration refusals", func(t *testing.T) {
			b := newAccount(t, srv)
			// Another user's registration ceremony.
			sid, opts := registerBegin(t, srv, a, "A's ceremony")
			cred := newCred()
			att := json.RawMessage(virtualwebauthn.CreateAttestationResponse(goodRP, b.auth, cred, *opts))
			testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/finish", b.token,
				map[string]any{"sessionId": sid, "response": att}), http.StatusBadRequest, "expired")
			// Wrong origin and wrong RP id at registration.
			for _, rp := range []virtualwebauthn.RelyingParty{
				{ID: rpID, Name: "evil", Origin: "https://evil.test"},
				{ID: "evil.test", Name: "evil", Origin: rpOrigin},
			} {
				sid, opts := registerBegin(t, srv, a, "evil")
				att := json.RawMessage(virtualwebauthn.CreateAttestationResponse(rp, a.auth, cred, *opts))
				testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/finish", a.token,
					map[string]any{"sessionId": sid, "response": att}), http.StatusUnauthorized, "")
			}
			// Replayed registration.
			sid, opts = registerBegin(t, srv, a, "Once")
			cred2 := newCred()
			att = json.RawMessage(virtualwebauthn.CreateAttestationResponse(goodRP, a.auth, cred2, *opts))
			body := map[string]any{"sessionId": sid, "response": att}
			if r := srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/finish", a.token, body); r.Status != http.StatusOK {
				t.Fatalf("registration: %d %s", r.Status, r.Body)
			}
			testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/finish", a.token, body), http.StatusBadRequest, "expired")
			// The same credential registered twice (a new ceremony) is a conflict.
			sid, opts = registerBegin(t, srv, a, "Twice")
			att = json.RawMessage(virtualwebauthn.CreateAttestationResponse(goodRP, a.auth, cred2, *opts))
			testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/finish", a.token,
				map[string]any{"sessionId": sid, "response": att}), http.StatusConflict, "already registered")
			// No token, a bad name.
			testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/begin", "", map[string]string{"name": "x"}),
				http.StatusUnauthorized, "")
			testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/begin", a.token, map[string]string{"name": " "}),
				http.StatusBadRequest, "name")
			testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/begin", a.token,
				map[string]string{"name": strings.Repeat("n", 256)}), http.StatusBadRequest, "name")
		})

		// After all of this, the good passkey still works and no refusal issued tokens.
		login(t, srv, a, &pk, "", false)
		evs := passkeyEvents(t, srv, a.id)
		failures := 0
		for _, e := range evs {
			if e.Result == "failure" {
				failures++
			}
		}
		if failures < 8 {
			t.Fatalf("only %d failed passkey ceremonies audited for the user: %+v", failures, evs)
		}
	})
}

// TestPasskeyExpiredSession: a ceremony finished after ttl.webauthn_session is 400
// "expired", for logins and registrations.
func TestPasskeyExpiredSession(t *testing.T) {
	testkit.ForEachDB(t, rp(map[string]any{"ttl.webauthn_session": "1s"}), func(t *testing.T, srv *testserver.Server) {
		a := newAccount(t, srv)
		pk := register(t, srv, a, "Key")

		sidLogin, loginOpts := loginBegin(t, srv, a.email)
		sidDisc, discOpts := loginBegin(t, srv, "")
		sidReg, regOpts := registerBegin(t, srv, a, "Late")
		time.Sleep(1200 * time.Millisecond)

		testkit.WantError(t, loginFinish(t, srv, sidLogin, assert(a, &pk, goodRP, loginOpts), false), http.StatusBadRequest, "expired")
		testkit.WantError(t, loginFinish(t, srv, sidDisc, assert(a, &pk, goodRP, discOpts), false), http.StatusBadRequest, "expired")
		att := json.RawMessage(virtualwebauthn.CreateAttestationResponse(goodRP, a.auth, newCred(), *regOpts))
		testkit.WantError(t, srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/finish", a.token,
			map[string]any{"sessionId": sidReg, "response": att}), http.StatusBadRequest, "expired")

		// A fresh ceremony within the lifetime works.
		login(t, srv, a, &pk, "", false)
	})
}

// TestPasskeySignCountRegression: an assertion whose counter does not exceed the stored
// one flags cloneWarning on the credential and writes an audit event.
func TestPasskeySignCountRegression(t *testing.T) {
	testkit.ForEachDB(t, rp(nil), func(t *testing.T, srv *testserver.Server) {
		a := newAccount(t, srv)
		pk := register(t, srv, a, "Cloned?")

		pk.cred.Counter = 9 // assert() adds one: the server stores 10
		login(t, srv, a, &pk, a.email, false)
		if c := findCred(adminPasskeys(t, srv, a.id), pk.id); c.SignCount != 10 || c.CloneWarning {
			t.Fatalf("after counter 10: %+v", *c)
		}

		clone := pk
		clone.cred.Counter = 4 // a copy of the key that lags behind: 5 ≤ 10
		sid, opts := loginBegin(t, srv, "")
		resp := loginFinish(t, srv, sid, assert(a, &clone, goodRP, opts), false)
		if resp.Status >= 500 {
			t.Fatalf("server error: %d %s", resp.Status, resp.Body)
		}
		c := findCred(adminPasskeys(t, srv, a.id), pk.id)
		if !c.CloneWarning || c.SignCount != 10 {
			t.Fatalf("after a regressed counter: cloneWarning %v signCount %d, want true and 10 (status %d)", c.CloneWarning, c.SignCount, resp.Status)
		}
		// The user's own list shows the warning too.
		var own struct {
			Credentials []struct {
				ID           string `json:"id"`
				CloneWarning bool   `json:"cloneWarning"`
			} `json:"credentials"`
		}
		srv.Public(t, http.MethodGet, "/api/v1/auth/passkeys", a.token, nil).Data(t, &own)
		if len(own.Credentials) != 1 || !own.Credentials[0].CloneWarning {
			t.Fatalf("GET /passkeys after the regression: %+v", own.Credentials)
		}
		found := 0
		for _, e := range passkeyEvents(t, srv, a.id) {
			if e.Metadata["event"] == "clone_warning" && e.Metadata["passkeyId"] == pk.id && e.Result == "failure" &&
				strings.Contains(e.Reason, "sign counter") {
				found++
			}
		}
		if found != 1 {
			t.Fatalf("clone_warning audit events: %d, want 1", found)
		}
		// The same counter again (equal is a regression as well) is not audited twice.
		clone.cred.Counter = 9
		sid, opts = loginBegin(t, srv, a.email)
		if r := loginFinish(t, srv, sid, assert(a, &clone, goodRP, opts), false); r.Status >= 500 {
			t.Fatalf("server error: %d %s", r.Status, r.Body)
		}
		found = 0
		for _, e := range passkeyEvents(t, srv, a.id) {
			if e.Metadata["event"] == "clone_warning" {
				found++
			}
		}
		if found != 1 {
			t.Fatalf("clone_warning audit events after a second regression: %d, want 1", found)
		}
	})
}
