package apispec_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkeys"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/pquerna/otp/totp"

	pvauth "github.com/pvpipe/pvauth"
	"github.com/pvpipe/pvauth/internal/apispec"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/x"
)

// TestDocument loads and validates .schema/openapi.yaml and checks the house rules that
// keep it useful: every path item names its port, every operation has an id, tags, an
// explicit security requirement and a success response (2xx, or a 3xx redirect with a
// Location header), wrapped bodies are declared wrapped and errors use the Error schema.
func TestDocument(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(pvauth.OpenAPI)
	if err != nil {
		t.Fatalf("loading: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validating: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi is %q, want 3.0.3", doc.OpenAPI)
	}
	if len(doc.Servers) != 2 {
		t.Fatalf("want two servers (public, admin), got %d", len(doc.Servers))
	}
	server := map[string]string{apispec.PortPublic: doc.Servers[0].URL, apispec.PortAdmin: doc.Servers[1].URL}
	for _, name := range []string{"Error", "TokenSet", "Profile", "Identity", "AuditEvent"} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("components.schemas.%s is missing", name)
		}
	}
	for _, name := range []string{"bearerAuth", "pendingToken", "adminApiKey"} {
		if doc.Components.SecuritySchemes[name] == nil {
			t.Errorf("components.securitySchemes.%s is missing", name)
		}
	}

	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		port := apispec.PortOf(item)
		switch port {
		case apispec.PortBoth:
			if len(item.Servers) != 0 {
				t.Errorf("%s: a path item on both ports must not override servers", path)
			}
		case apispec.PortPublic, apispec.PortAdmin:
			if len(item.Servers) != 1 || item.Servers[0].URL != server[port] {
				t.Errorf("%s: a path item on the %s port only must name that server (servers: [*%sServer])", path, port, port)
			}
		default:
			t.Errorf("%s: %s is %q, want public, admin or both", path, apispec.PortExtension, port)
		}
		wrapped := strings.HasPrefix(path, "/api/v1/") || (strings.HasPrefix(path, "/admin/") && !strings.HasPrefix(path, "/admin/oauth2/"))
		for method, op := range item.Operations() {
			where := method + " " + path
			if op.OperationID == "" {
				t.Errorf("%s: no operationId", where)
			}
			if len(op.Tags) == 0 {
				t.Errorf("%s: no tags", where)
			}
			if op.Security == nil {
				t.Errorf("%s: no explicit security (use [] for none)", where)
			}
			success := false
			for code, ref := range op.Responses.Map() {
				if ref.Value == nil {
					continue
				}
				if strings.HasPrefix(code, "2") || (strings.HasPrefix(code, "3") && ref.Value.Headers["Location"] != nil) {
					success = true
				}
				mt := ref.Value.Content.Get("application/json")
				if mt == nil || mt.Schema == nil {
					continue
				}
				switch {
				case wrapped && strings.HasPrefix(code, "2"):
					s := mt.Schema.Value
					if !slices.Contains(s.Required, "data") || s.Properties["data"] == nil {
						t.Errorf("%s %s: the body must be the {data: …} envelope with data required", where, code)
					}
				case wrapped && (strings.HasPrefix(code, "4") || strings.HasPrefix(code, "5")):
					if mt.Schema.Ref != "#/components/schemas/Error" {
						t.Errorf("%s %s: an error body must be #/components/schemas/Error, is %q", where, code, mt.Schema.Ref)
					}
				}
			}
			if !success {
				t.Errorf("%s: no 2xx response", where)
			}
		}
	}
}

var paramRe = regexp.MustCompile(`\{[^}/]+\}`)

// TestRoutesMatchDocument checks both directions: every documented operation is routed
// on its port (and only there), and every registered route is documented for its port.
func TestRoutesMatchDocument(t *testing.T) {
	doc := apispec.MustLoad(t)
	srv := testserver.Start(t, "memory", nil)
	routers := map[string]*x.Router{
		apispec.PortPublic: srv.Registry.PublicRouter().Router,
		apispec.PortAdmin:  srv.Registry.AdminRouter().Router,
	}

	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		concrete := paramRe.ReplaceAllString(path, "1")
		for method := range item.Operations() {
			for port, r := range routers {
				want := apispec.ServedOn(apispec.PortOf(item), port)
				if got := r.Lookup(method, concrete); got != want {
					if want {
						t.Errorf("documented %s %s is not routed on the %s port", method, path, port)
					} else {
						t.Errorf("%s %s is routed on the %s port but documented for %s", method, path, port, apispec.PortOf(item))
					}
				}
			}
		}
	}

	total := 0
	for port, r := range routers {
		for _, rt := range r.Routes() {
			total++
			tmpl := httprouterToOpenAPI(rt.Path)
			item := doc.Paths.Value(tmpl)
			switch {
			case item == nil:
				t.Errorf("route %s %s (%s port) is not documented (want path %s)", rt.Method, rt.Path, port, tmpl)
			case item.GetOperation(rt.Method) == nil:
				t.Errorf("route %s %s (%s port) is not documented: %s has no %s operation", rt.Method, rt.Path, port, tmpl, rt.Method)
			case !apispec.ServedOn(apispec.PortOf(item), port):
				t.Errorf("route %s %s is served on the %s port but documented for %s", rt.Method, rt.Path, port, apispec.PortOf(item))
			}
		}
	}
	if total == 0 {
		t.Fatal("the routers list no routes")
	}
}

// httprouterToOpenAPI turns /a/:id/*rest into /a/{id}/{rest}.
func httprouterToOpenAPI(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") || strings.HasPrefix(s, "*") {
			segs[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(segs, "/")
}

// TestFlowMatchesDocument drives today's routes through the validating client, so that
// every documented operation's success response, and a selection of error responses,
// is checked against the document.
func TestFlowMatchesDocument(t *testing.T) {
	doc := apispec.MustLoad(t)
	// The public URL is the issuer, known before the start so that the authorization
	// endpoint's redirects point back at this server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := testserver.StartWith(t, "memory", map[string]any{
		"serve.public.base_url": "http://" + ln.Addr().String(),
		"urls.login_ui":         loginUI,
		"urls.consent_ui":       consentUI,
	}, testserver.Options{PublicListener: ln})
	srv.Client = apispec.NewValidatingClient(t, doc, srv.PublicURL, srv.AdminURL)
	// Redirects (the OAuth2 authorization endpoint) are checked, not followed.
	srv.Client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	// The OAuth2 hand-off is bound to the browser that started it (a cookie).
	srv.Client.Jar, _ = cookiejar.New(nil)
	f := &flow{t: t, srv: srv}

	// Identities.
	alice := f.createIdentity(map[string]any{
		"email": "Alice@Example.com", "password": "correct horse battery",
		"traits":      map[string]any{"department": map[string]any{"id": "d1", "name": "Ops"}, "employee": map[string]any{"id": "e1", "name": "Alice", "avatarFileId": "f1"}},
		"permissions": []string{"files.read"},
	})
	bob := f.createIdentity(map[string]any{"email": "bob@example.com", "password": "another good password", "isSuperAdmin": true})
	f.expect(srv.Admin(t, "POST", "/admin/identities", map[string]any{"email": "alice@example.com"}), 409)
	f.expect(srv.Admin(t, "POST", "/admin/identities", `{"email": `), 400)
	f.expect(srv.Admin(t, "POST", "/admin/identities", map[string]any{"password": "no email here"}), 400)

	// Password + TOTP enrolment.
	f.expect(srv.Public(t, "POST", "/api/v1/auth/login", "", map[string]any{"email": "alice@example.com", "password": "wrong password"}), 401)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/login", "", `{"email": "alice@example.com"`), 400)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/login", "", map[string]any{"email": "alice@example.com"}), 400)
	pending := f.login("alice@example.com", "correct horse battery", true)
	f.expect(srv.Public(t, "GET", "/api/v1/auth/me", pending, nil), 403)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/otp/verify", pending, map[string]string{"otp": "123456"}), 400) // setup first
	var setup struct{ Secret, OTPAuthURL string }
	srv.Public(t, "GET", "/api/v1/auth/otp/setup", pending, nil).Data(t, &setup)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/otp/verify", pending, map[string]string{"otp": "not-a-code"}), 401)
	var enrolled struct {
		tokenSet
		RecoveryCodes []string `json:"recoveryCodes"`
	}
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/otp/verify", pending, map[string]string{"otp": f.code(setup.Secret)}), 200, &enrolled)
	if len(enrolled.RecoveryCodes) != 10 {
		t.Fatalf("enrolment gave %d recovery codes, want 10", len(enrolled.RecoveryCodes))
	}
	ts := enrolled.tokenSet
	f.expect(srv.Public(t, "POST", "/api/v1/auth/otp/verify", pending, map[string]string{"otp": f.code(setup.Secret)}), 401) // used up

	// A second login of an enrolled user, completed with a recovery code.
	pending2 := f.login("alice@example.com", "correct horse battery", false)
	f.expect(srv.Public(t, "GET", "/api/v1/auth/otp/setup", pending2, nil), 409)
	var ts2 tokenSet
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/otp/verify", pending2, map[string]string{"otp": enrolled.RecoveryCodes[0]}), 200, &ts2)

	// Profile and tokens.
	var prof struct {
		ID        int64  `json:"id"`
		Signature string `json:"signature"`
	}
	f.expectData(srv.Public(t, "GET", "/api/v1/auth/me", ts.AccessToken, nil), 200, &prof)
	if prof.ID != alice {
		t.Errorf("/me id %d, want %d", prof.ID, alice)
	}
	f.expect(srv.Public(t, "GET", "/api/v1/auth/me", "", nil), 401)
	f.expect(srv.Public(t, "GET", "/api/v1/auth/me", "garbage", nil), 401)
	var refreshed tokenSet
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refreshToken": ts.RefreshToken}), 200, &refreshed)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refreshToken": "not-a-refresh-token"}), 401)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/refresh", "", map[string]string{}), 400)

	// Introspection, signatures, keys.
	in := f.introspect(refreshed.AccessToken, "")
	if in["active"] != true || in["sub"] != strconv.FormatInt(alice, 10) {
		t.Errorf("introspection of a live access token: %v", in)
	}
	if in := f.introspect(refreshed.RefreshToken, "refresh_token"); in["active"] != true {
		t.Errorf("introspection of a live refresh token: %v", in)
	}
	if in := f.introspect("not-a-token", ""); in["active"] != false || len(in) != 1 {
		t.Errorf("introspection of garbage: %v", in)
	}
	f.expect(f.form("/admin/oauth2/introspect", url.Values{}), 400)

	var sig struct {
		Valid  bool   `json:"valid"`
		UserID *int64 `json:"userId"`
	}
	f.expectData(srv.Admin(t, "POST", "/admin/signatures/verify", map[string]string{"signature": prof.Signature}), 200, &sig)
	if !sig.Valid || sig.UserID == nil || *sig.UserID != alice {
		t.Errorf("signature of /me did not verify: %+v", sig)
	}
	f.expectData(srv.Admin(t, "POST", "/admin/signatures/verify", map[string]string{"signature": "1.2.forged"}), 200, &sig)
	if sig.Valid || sig.UserID != nil {
		t.Errorf("forged signature verified: %+v", sig)
	}
	f.expect(srv.Admin(t, "POST", "/admin/signatures/verify", map[string]string{}), 400)

	f.expect(srv.Admin(t, "GET", "/admin/keys", nil), 200)
	f.expect(srv.Admin(t, "POST", "/admin/keys/rotate", nil), 200)
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	f.expect(srv.Public(t, "GET", "/.well-known/jwks.json", "", nil), 200).JSON(t, &jwks)
	if len(jwks.Keys) < 2 {
		t.Errorf("after a rotation the JWKS has %d keys, want the old and the new", len(jwks.Keys))
	}
	f.expect(srv.Public(t, "GET", "/api/v1/auth/me", refreshed.AccessToken, nil), 200) // old key still verifies

	// Service OTP check.
	var svc struct {
		UserID int64 `json:"userId"`
		Valid  bool  `json:"valid"`
	}
	f.expectData(srv.Admin(t, "POST", "/admin/otp/verify", map[string]any{"userId": alice, "otp": enrolled.RecoveryCodes[1]}), 200, &svc)
	if !svc.Valid || svc.UserID != alice {
		t.Errorf("service OTP check of a recovery code: %+v", svc)
	}
	f.expectData(srv.Admin(t, "POST", "/admin/otp/verify", map[string]any{"userId": alice, "otp": "000000x"}), 200, &svc)
	if svc.Valid {
		t.Error("service OTP check accepted a wrong code")
	}
	f.expect(srv.Admin(t, "POST", "/admin/otp/verify", map[string]any{"userId": 999999, "otp": "123456"}), 404)
	f.expect(srv.Admin(t, "POST", "/admin/otp/verify", map[string]any{"otp": "123456"}), 400)

	f.devicesAndConfirmations(alice, refreshed.AccessToken)
	f.passkeys(alice, refreshed.AccessToken)
	f.oauth2()

	// Logout ends this session and, named by its refresh token, another of the caller's.
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/logout", refreshed.AccessToken, map[string]string{"refreshToken": ts2.RefreshToken}), 200, &map[string]bool{})
	f.expect(srv.Public(t, "GET", "/api/v1/auth/me", refreshed.AccessToken, nil), 401)
	if in := f.introspect(refreshed.AccessToken, ""); in["active"] != false {
		t.Errorf("a logged-out token introspects as %v", in)
	}
	f.expect(srv.Public(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refreshToken": ts2.RefreshToken}), 401)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/logout", ts2.AccessToken, nil), 401)

	// Audit events (written asynchronously).
	srv.Registry.AuditLogger().Flush()
	var events struct {
		Events        []map[string]any `json:"events"`
		NextPageToken string           `json:"nextPageToken"`
	}
	f.expectData(srv.Admin(t, "GET", "/admin/audit-events", nil), 200, &events)
	if len(events.Events) == 0 {
		t.Error("no audit events")
	}
	f.expectData(srv.Admin(t, "GET", fmt.Sprintf("/admin/audit-events?userId=%d&type=login&page_size=1", alice), nil), 200, &events)
	if len(events.Events) != 1 || events.NextPageToken == "" {
		t.Errorf("first page of alice's logins: %d events, next %q", len(events.Events), events.NextPageToken)
	}
	f.expect(srv.Admin(t, "GET", fmt.Sprintf("/admin/audit-events?userId=%d&type=login&page_size=1&page_token=%s", alice, events.NextPageToken), nil), 200)
	f.expect(srv.Admin(t, "GET", "/admin/audit-events?since=yesterday", nil), 400)

	// Identity management.
	var list struct {
		Identities    []map[string]any `json:"identities"`
		NextPageToken string           `json:"nextPageToken"`
	}
	f.expectData(srv.Admin(t, "GET", "/admin/identities?page_size=1", nil), 200, &list)
	if len(list.Identities) != 1 || list.NextPageToken == "" {
		t.Errorf("first page: %d identities, next %q", len(list.Identities), list.NextPageToken)
	}
	f.expectData(srv.Admin(t, "GET", "/admin/identities?page_size=1&page_token="+list.NextPageToken, nil), 200, &list)
	f.expectData(srv.Admin(t, "GET", "/admin/identities?email=BOB@example.com", nil), 200, &list)
	if len(list.Identities) != 1 || list.Identities[0]["id"] != float64(bob) || list.NextPageToken != "" {
		t.Errorf("email filter: %v, next %q", list.Identities, list.NextPageToken)
	}
	f.expect(srv.Admin(t, "GET", "/admin/identities?page_size=0", nil), 400)
	f.expect(srv.Admin(t, "GET", "/admin/identities?page_token=%21", nil), 400)

	aliceURL := fmt.Sprintf("/admin/identities/%d", alice)
	f.expect(srv.Admin(t, "GET", aliceURL, nil), 200)
	f.expect(srv.Admin(t, "GET", "/admin/identities/999999", nil), 404)
	f.expect(srv.Admin(t, "GET", "/admin/identities/abc", nil), 400)
	f.expect(srv.Admin(t, "PATCH", aliceURL, map[string]any{"permissions": []string{"files.read", "files.write"}, "traits": map[string]any{}}), 200)
	f.expect(srv.Admin(t, "PATCH", aliceURL, map[string]any{"email": "bob@example.com"}), 409)
	f.expect(srv.Admin(t, "PATCH", aliceURL, map[string]any{"state": "sleeping"}), 400)
	f.expect(srv.Admin(t, "PATCH", aliceURL, `{"state": `), 400)

	var revoked struct {
		Revoked int `json:"revoked"`
	}
	f.login("alice@example.com", "correct horse battery", false)
	f.expectData(srv.Admin(t, "DELETE", aliceURL+"/sessions", nil), 200, &revoked)
	f.expect(srv.Admin(t, "DELETE", "/admin/identities/999999/sessions", nil), 404)
	f.expect(srv.Admin(t, "PUT", aliceURL+"/password", map[string]string{"password": "short"}), 400)
	f.expect(srv.Admin(t, "PUT", aliceURL+"/password", map[string]string{"password": "a brand new password"}), 200)
	f.expect(srv.Admin(t, "PUT", "/admin/identities/999999/password", map[string]string{"password": "a brand new password"}), 404)
	f.expect(srv.Admin(t, "DELETE", aliceURL+"/otp", nil), 200)
	f.expect(srv.Admin(t, "DELETE", "/admin/identities/999999/otp", nil), 404)
	var got struct {
		MFAEnabled bool `json:"mfaEnabled"`
	}
	f.expectData(srv.Admin(t, "GET", aliceURL, nil), 200, &got)
	if got.MFAEnabled {
		t.Error("mfaEnabled after an OTP reset")
	}
	f.login("alice@example.com", "a brand new password", true) // new password, TOTP to enrol again
	f.expect(srv.Admin(t, "DELETE", aliceURL, nil), 200)
	f.expect(srv.Admin(t, "GET", aliceURL, nil), 404)
	f.expect(srv.Admin(t, "DELETE", aliceURL, nil), 404)

	// Health and metrics on both ports; router errors.
	for _, base := range []func(*testing.T, string, string) *testserver.Response{
		func(t *testing.T, m, p string) *testserver.Response { return srv.Public(t, m, p, "", nil) },
		func(t *testing.T, m, p string) *testserver.Response { return srv.Admin(t, m, p, nil) },
	} {
		f.expect(base(t, "GET", "/health/alive"), 200)
		f.expect(base(t, "GET", "/health/ready"), 200)
		f.expect(base(t, "GET", "/no/such/route"), 404)
	}
	if r := f.expect(srv.Admin(t, "GET", "/metrics", nil), 200); !bytes.Contains(r.Body, []byte("pvauth_http_requests_total")) {
		t.Error("/metrics has no pvauth_http_requests_total")
	}
	f.expect(srv.Public(t, "GET", "/metrics", "", nil), 404)          // admin only
	f.expect(srv.Public(t, "GET", "/admin/identities", "", nil), 404) // admin only
	f.expect(srv.Admin(t, "GET", "/api/v1/auth/me", nil), 404)        // public only
	f.expect(srv.Public(t, "GET", "/api/v1/auth/login", "", nil), 405)

	// Body limits and media types.
	big := `{"email": "` + strings.Repeat("a", x.MaxBodyBytes) + `"}`
	f.expect(srv.Public(t, "POST", "/api/v1/auth/login", "", big), 413)
	f.expect(f.raw("POST", srv.PublicURL+"/api/v1/auth/login", "text/plain", `{"email": "a@b.c", "password": "x"}`), 415)

	// The validating client is safe for concurrent use.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, path := range []string{"/admin/keys", "/admin/audit-events?page_size=5", "/health/ready"} {
				resp, err := srv.Client.Get(srv.AdminURL + path) // not srv.Admin: it may call t.Fatal
				if err != nil {
					t.Errorf("GET %s: %v", path, err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("GET %s: %d", path, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()

	// Every documented operation answered with success at least once, unless it is
	// listed in notExercisedHere (with the reason and the test that covers it).
	seen := apispec.ValidatorOf(srv.Client).Seen()
	for _, path := range doc.Paths.InMatchingOrder() {
		for method := range doc.Paths.Value(path).Operations() {
			key := method + " " + path
			if _, ok := notExercisedHere[key]; ok {
				continue
			}
			if !slices.ContainsFunc(seen[key], func(s int) bool { return s >= 200 && s < 400 }) { // 3xx: redirects
				t.Errorf("the flow never got a success from %s (saw %v); exercise it here or list it in notExercisedHere", key, seen[key])
			}
		}
	}
}

// notExercisedHere lists documented operations this package's flow does not drive to a
// success, each with the reason (name the flow test that validates it through
// apispec.NewValidatingClient instead).
var notExercisedHere = map[string]string{
	"POST /api/v1/auth/passkeys/login/finish":      needsAuthenticator,
	"POST /api/v1/auth/passkeys/register/finish":   needsAuthenticator,
	"PATCH /api/v1/auth/passkeys/{id}":             needsAuthenticator,
	"DELETE /api/v1/auth/passkeys/{id}":            needsAuthenticator,
	"DELETE /admin/identities/{id}/passkeys/{pid}": needsAuthenticator,
}

const needsAuthenticator = "needs a registered passkey (a WebAuthn authenticator); the selfservice/passkey flow tests should run through apispec.NewValidatingClient"

// passkeys drives the passkey routes that need no authenticator.
func (f *flow) passkeys(uid int64, at string) {
	t, srv := f.t, f.srv
	t.Helper()
	var check struct {
		HasPasskeys bool `json:"hasPasskeys"`
	}
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/passkeys/check", "", map[string]string{"email": "alice@example.com"}), 200, &check)
	if check.HasPasskeys {
		t.Error("hasPasskeys before any registration")
	}
	f.expect(srv.Public(t, "POST", "/api/v1/auth/passkeys/check", "", map[string]string{}), 400)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/passkeys/login/begin", "", nil), 200)                                             // discoverable
	f.expect(srv.Public(t, "POST", "/api/v1/auth/passkeys/login/begin", "", map[string]string{"email": "alice@example.com"}), 400) // no passkeys
	f.expect(srv.Public(t, "POST", "/api/v1/auth/passkeys/login/finish", "", map[string]any{"sessionId": "00000000-0000-4000-8000-000000000000", "response": map[string]any{}}), 400)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/passkeys/register/begin", at, map[string]string{"name": "YubiKey"}), 200)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/passkeys/register/begin", at, map[string]string{}), 400)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/passkeys/register/finish", at, map[string]any{"sessionId": "00000000-0000-4000-8000-000000000000", "response": map[string]any{}}), 400)
	f.expect(srv.Public(t, "GET", "/api/v1/auth/passkeys", at, nil), 200)
	f.expect(srv.Public(t, "PUT", "/api/v1/auth/passkeys/prompt", at, map[string]string{"status": "dismissed"}), 200)
	f.expect(srv.Public(t, "PUT", "/api/v1/auth/passkeys/prompt", at, map[string]string{"status": "maybe"}), 400)
	f.expect(srv.Public(t, "PATCH", "/api/v1/auth/passkeys/00000000-0000-4000-8000-000000000000", at, map[string]string{"name": "x"}), 404)
	f.expect(srv.Public(t, "DELETE", "/api/v1/auth/passkeys/00000000-0000-4000-8000-000000000000", at, nil), 404)
	f.expect(srv.Admin(t, "GET", fmt.Sprintf("/admin/identities/%d/passkeys", uid), nil), 200)
	f.expect(srv.Admin(t, "GET", "/admin/identities/999999/passkeys", nil), 404)
	f.expect(srv.Admin(t, "DELETE", fmt.Sprintf("/admin/identities/%d/passkeys/00000000-0000-4000-8000-000000000000", uid), nil), 404)
	f.expect(srv.Admin(t, "DELETE", fmt.Sprintf("/admin/identities/%d/passkeys", uid), nil), 200) // every passkey (none)
	f.expect(srv.Admin(t, "DELETE", "/admin/identities/999999/passkeys", nil), 404)
}

// devicesAndConfirmations registers device keys, logs in with one, and approves and
// rejects action confirmations with it.
func (f *flow) devicesAndConfirmations(uid int64, at string) {
	t, srv := f.t, f.srv
	t.Helper()
	key, spki := newDeviceKey(t)
	reg := map[string]any{"deviceName": "Pixel 9", "deviceType": "mobile", "deviceFingerprint": "fp-1", "publicKey": spki, "keyAlgorithm": "ES256"}
	var ch struct {
		Challenge string `json:"challenge"`
		DeviceID  string `json:"deviceId"`
		SessionID string `json:"sessionId"`
	}
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/devices/register/challenge", at, reg), 200, &ch)
	bad := map[string]any{"deviceName": "x", "deviceType": "mobile", "deviceFingerprint": "fp-x", "publicKey": "not a key", "keyAlgorithm": "ES256"}
	if r := f.expect(srv.Public(t, "POST", "/api/v1/auth/devices/register/challenge", at, bad), 400); !bytes.Contains(r.Body, []byte("Invalid public key format")) {
		t.Errorf("bad key: %s", r.Body)
	}
	f.expect(srv.Public(t, "POST", "/api/v1/auth/devices/register/verify", at, map[string]string{"sessionId": ch.SessionID, "signedChallenge": testkeys.SignChallenge(t, key, "b3RoZXI=")}), 401)
	var registered struct {
		DeviceID string `json:"deviceId"`
	}
	good := map[string]string{"sessionId": ch.SessionID, "signedChallenge": testkeys.SignChallenge(t, key, ch.Challenge)}
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/devices/register/verify", at, good), 200, &registered)
	if registered.DeviceID != ch.DeviceID {
		t.Errorf("registered device %s, announced %s", registered.DeviceID, ch.DeviceID)
	}
	f.expect(srv.Public(t, "POST", "/api/v1/auth/devices/register/verify", at, good), 400) // used
	f.expect(srv.Public(t, "POST", "/api/v1/auth/devices/register/challenge", at, reg), 409)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/devices/register/challenge", "", reg), 401)

	var devices struct {
		Devices []map[string]any `json:"devices"`
	}
	f.expectData(srv.Public(t, "GET", "/api/v1/auth/devices", at, nil), 200, &devices)
	if len(devices.Devices) != 1 {
		t.Errorf("%d devices, want 1", len(devices.Devices))
	}
	f.expect(srv.Public(t, "PUT", "/api/v1/auth/devices/fcm-token", at, map[string]string{"deviceId": ch.DeviceID, "fcmToken": "fcm-token-1"}), 200)
	f.expect(srv.Public(t, "PUT", "/api/v1/auth/devices/fcm-token", at, map[string]string{"deviceId": "00000000-0000-4000-8000-000000000000", "fcmToken": "x"}), 404)

	// Mobile login with the device key.
	var mc struct {
		Challenge string `json:"challenge"`
		SessionID string `json:"sessionId"`
	}
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/mobile/challenge", "", map[string]string{"deviceFingerprint": "fp-1"}), 200, &mc)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/mobile/challenge", "", map[string]string{"deviceFingerprint": "fp-unknown"}), 404)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/mobile/biometric", "", map[string]string{"sessionId": mc.SessionID, "signedChallenge": testkeys.SignChallenge(t, key, "b3RoZXI=")}), 401)
	var bio struct {
		Tokens tokenSet `json:"tokens"`
	}
	login := map[string]any{"sessionId": mc.SessionID, "signedChallenge": testkeys.SignChallenge(t, key, mc.Challenge), "rememberMe": true}
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/mobile/biometric", "", login), 200, &bio)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/mobile/biometric", "", login), 400) // used
	f.expect(srv.Public(t, "POST", "/api/v1/auth/mobile/refresh", "", map[string]string{"refreshToken": bio.Tokens.RefreshToken}), 200)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/mobile/refresh", "", map[string]string{"refreshToken": "nope"}), 401)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/mobile/keygen", at, map[string]string{"keyAlgorithm": "ES256", "keyName": "k1"}), 200)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/mobile/keygen", at, map[string]string{"keyAlgorithm": "RS256"}), 400)

	// Confirmations: approve one with the device, reject another.
	var c1 struct {
		ConfirmationID string `json:"confirmationId"`
		Challenge      string `json:"challenge"`
	}
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/confirmation/initiate", at, map[string]any{"actionType": "payment", "actionPayload": map[string]any{"amount": 10}}), 200, &c1)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/confirmation/initiate", at, map[string]any{"actionType": "payment", "actionPayload": []int{1}}), 400)
	f.expect(srv.Public(t, "GET", "/api/v1/auth/confirmation/"+c1.ConfirmationID+"/status", at, nil), 200)
	f.expect(srv.Public(t, "GET", "/api/v1/auth/confirmation/00000000-0000-4000-8000-000000000000/status", at, nil), 404)
	f.expect(srv.Admin(t, "GET", "/admin/confirmations/"+c1.ConfirmationID, nil), 200)
	verifyURL := "/api/v1/auth/confirmation/" + c1.ConfirmationID + "/verify"
	f.expect(srv.Public(t, "POST", verifyURL, at, map[string]string{"deviceId": "00000000-0000-4000-8000-000000000000", "signedChallenge": testkeys.SignChallenge(t, key, c1.Challenge)}), 404)
	f.expect(srv.Public(t, "POST", verifyURL, at, map[string]string{"deviceId": ch.DeviceID, "signedChallenge": testkeys.SignChallenge(t, key, "b3RoZXI=")}), 401)
	var dec struct {
		Status string `json:"status"`
	}
	f.expectData(srv.Public(t, "POST", verifyURL, at, map[string]string{"deviceId": ch.DeviceID, "signedChallenge": testkeys.SignChallenge(t, key, c1.Challenge)}), 200, &dec)
	if dec.Status != "approved" {
		t.Errorf("verify gave status %q", dec.Status)
	}
	f.expect(srv.Public(t, "POST", verifyURL, at, map[string]string{"deviceId": ch.DeviceID, "signedChallenge": testkeys.SignChallenge(t, key, c1.Challenge)}), 409)
	var adminView struct {
		UserID   int64  `json:"userId"`
		DeviceID string `json:"deviceId"`
		Status   string `json:"status"`
	}
	f.expectData(srv.Admin(t, "GET", "/admin/confirmations/"+c1.ConfirmationID, nil), 200, &adminView)
	if adminView.UserID != uid || adminView.DeviceID != ch.DeviceID || adminView.Status != "approved" {
		t.Errorf("admin view of an approved confirmation: %+v", adminView)
	}
	f.expect(srv.Admin(t, "GET", "/admin/confirmations/00000000-0000-4000-8000-000000000000", nil), 404)
	// The asking service consumes the approval once.
	f.expect(srv.Admin(t, "POST", "/admin/confirmations/"+c1.ConfirmationID+"/consume", nil), 200)
	f.expect(srv.Admin(t, "POST", "/admin/confirmations/"+c1.ConfirmationID+"/consume", nil), 409)
	f.expect(srv.Admin(t, "POST", "/admin/confirmations/00000000-0000-4000-8000-000000000000/consume", nil), 404)

	var c2 struct {
		ConfirmationID string `json:"confirmationId"`
	}
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/confirmation/initiate", at, map[string]any{"actionType": "delete-files"}), 200, &c2)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/confirmation/"+c2.ConfirmationID+"/reject", at, map[string]string{"reason": "not me"}), 200)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/confirmation/"+c2.ConfirmationID+"/reject", at, nil), 409)
	// The event stream of a decided confirmation: its final status, then the end.
	f.expect(srv.Public(t, "GET", "/api/v1/auth/confirmation/"+c2.ConfirmationID+"/events", at, nil), 200)
	f.expect(srv.Public(t, "GET", "/api/v1/auth/confirmation/00000000-0000-4000-8000-000000000000/events", at, nil), 404)
	f.expect(srv.Admin(t, "POST", "/admin/confirmations/"+c2.ConfirmationID+"/consume", nil), 409)

	// Device removal: by the user, and by an admin.
	key2, spki2 := newDeviceKey(t)
	reg2 := map[string]any{"deviceName": "iPad", "deviceType": "tablet", "deviceFingerprint": "fp-2", "publicKey": spki2, "keyAlgorithm": "ES256"}
	f.expectData(srv.Public(t, "POST", "/api/v1/auth/devices/register/challenge", at, reg2), 200, &ch)
	f.expect(srv.Public(t, "POST", "/api/v1/auth/devices/register/verify", at, map[string]string{"sessionId": ch.SessionID, "signedChallenge": testkeys.SignChallenge(t, key2, ch.Challenge)}), 200)
	f.expect(srv.Public(t, "DELETE", "/api/v1/auth/devices/"+ch.DeviceID, at, nil), 200)
	f.expect(srv.Public(t, "DELETE", "/api/v1/auth/devices/"+ch.DeviceID, at, nil), 404)
	devURL := fmt.Sprintf("/admin/identities/%d/devices", uid)
	f.expectData(srv.Admin(t, "GET", devURL, nil), 200, &devices)
	if len(devices.Devices) != 2 {
		t.Errorf("admin sees %d devices, want 2 (one inactive)", len(devices.Devices))
	}
	f.expect(srv.Admin(t, "GET", "/admin/identities/999999/devices", nil), 404)
	f.expect(srv.Admin(t, "DELETE", devURL+"/"+registered.DeviceID, nil), 200)
	f.expect(srv.Admin(t, "DELETE", devURL+"/"+registered.DeviceID, nil), 404)
	f.expect(srv.Public(t, "GET", "/api/v1/auth/me", bio.Tokens.AccessToken, nil), 401) // device sessions revoked
	f.expect(srv.Admin(t, "DELETE", devURL, nil), 200)                                  // every device (none left active)
	f.expect(srv.Admin(t, "DELETE", "/admin/identities/999999/devices", nil), 404)
}

// newDeviceKey returns a P-256 key and its public half as base64 SPKI DER (what React
// Native's exportKey('spki') gives).
func newDeviceKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k := testkeys.NewES256(t)
	return k, base64.StdEncoding.EncodeToString(testkeys.MustDER(t, &k.PublicKey))
}

// TestRateLimitedResponse checks the 429 shape, Retry-After included.
func TestRateLimitedResponse(t *testing.T) {
	doc := apispec.MustLoad(t)
	srv := testserver.Start(t, "memory", map[string]any{
		"ratelimit.enabled":           true,
		"ratelimit.rules.login.limit": 1,
	})
	srv.Client = apispec.NewValidatingClient(t, doc, srv.PublicURL, srv.AdminURL)
	body := map[string]string{"email": "nobody@example.com", "password": "whatever it is"}
	srv.Public(t, "POST", "/api/v1/auth/login", "", body)
	r := srv.Public(t, "POST", "/api/v1/auth/login", "", body)
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("second login: %d %s, want 429", r.Status, r.Body)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}

// TestValidatorReportsMismatches proves the validator is not a rubber stamp.
func TestValidatorReportsMismatches(t *testing.T) {
	doc := apispec.MustLoad(t)
	secure := func(w http.ResponseWriter) {
		h := w.Header()
		h.Set("X-Request-Id", "r1")
		h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-XSS-Protection", "1; mode=block")
		h.Set("Content-Security-Policy", "default-src 'self'")
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	good := `{"data":{"valid":false,"userId":null,"expiresAt":null}}`
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("insecure") == "" {
			secure(w)
		} else {
			w.Header().Set("Content-Type", "application/json")
		}
		status, _ := strconv.Atoi(r.URL.Query().Get("status"))
		if status == 0 {
			status = 200
		}
		w.WriteHeader(status)
		fmt.Fprint(w, r.URL.Query().Get("body"))
	})
	pub, adm := httptest.NewServer(handler), httptest.NewServer(handler)
	defer pub.Close()
	defer adm.Close()
	v, err := apispec.NewValidator(doc, pub.URL, adm.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: v.Transport(nil)}

	cases := []struct {
		name, base, method, path, status, body, insecure string
		want                                             string // substring of the failure; "" = no failure
	}{
		{"valid", adm.URL, "POST", "/admin/signatures/verify", "", good, "", ""},
		{"valid error", adm.URL, "POST", "/admin/signatures/verify", "400", `{"message":"m","statusCode":400,"error":"bad_request"}`, "", ""},
		{"wrong type", adm.URL, "POST", "/admin/signatures/verify", "", `{"data":{"valid":"yes","userId":null,"expiresAt":null}}`, "", "doesn't match"},
		{"missing required", adm.URL, "POST", "/admin/signatures/verify", "", `{"data":{"valid":false}}`, "", "doesn't match"},
		{"not nullable", adm.URL, "GET", "/admin/keys", "", `{"data":{"keys":[{"kid":"k","alg":"ES256","state":"active","publicKey":"p","createdAt":null,"retiredAt":null}]}}`, "", "doesn't match"},
		{"bad date-time", adm.URL, "POST", "/admin/signatures/verify", "", `{"data":{"valid":true,"userId":1,"expiresAt":"tomorrow"}}`, "", "doesn't match"},
		{"not wrapped", adm.URL, "POST", "/admin/signatures/verify", "", `{"valid":false,"userId":null,"expiresAt":null}`, "", "doesn't match"},
		{"extra field", adm.URL, "POST", "/admin/signatures/verify", "", `{"data":{"valid":false,"userId":null,"expiresAt":null,"secret":"x"}}`, "", "field data.secret is not documented"},
		{"extra nested field", adm.URL, "GET", "/admin/audit-events", "", `{"data":{"events":[{"id":"0190f5b2-7a6e-7c3e-9d7a-8a9b0c1d2e3f","type":"login","userId":null,"ip":"","userAgent":"","result":"success","createdAt":"2025-08-20T14:30:00Z","metadata":{"free":"form"},"leak":1}],"nextPageToken":""}}`, "", "field data.events[0].leak is not documented"},
		{"bad uuid", adm.URL, "GET", "/admin/audit-events", "", `{"data":{"events":[{"id":"nope","type":"login","userId":null,"ip":"","userAgent":"","result":"success","createdAt":"2025-08-20T14:30:00Z","metadata":{}}],"nextPageToken":""}}`, "", "doesn't match"},
		{"undocumented status", adm.URL, "POST", "/admin/signatures/verify", "418", `{"message":"m","statusCode":418,"error":"teapot"}`, "", "status is not supported"},
		{"bad error body", adm.URL, "POST", "/admin/signatures/verify", "400", `{"message":"m"}`, "", "doesn't match"},
		{"wrong port", pub.URL, "POST", "/admin/signatures/verify", "", good, "", "documented for the admin port only"},
		{"wrong port 404", pub.URL, "POST", "/admin/signatures/verify", "404", `{"message":"m","statusCode":404,"error":"not_found"}`, "", ""},
		{"undocumented path", pub.URL, "GET", "/api/v1/auth/secret", "", `{"data":{}}`, "", "not documented"},
		{"unknown path 404", pub.URL, "GET", "/api/v1/auth/secret", "404", `{"message":"m","statusCode":404,"error":"not_found"}`, "", ""},
		{"missing headers", adm.URL, "POST", "/admin/signatures/verify", "", good, "1", "X-Request-Id"},
		{"metrics text", adm.URL, "GET", "/metrics", "", "x 1", "", "Content-Type"}, // served as JSON here
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(v.Failures())
			q := url.Values{"status": {tc.status}, "body": {tc.body}, "insecure": {tc.insecure}}
			req, _ := http.NewRequest(tc.method, tc.base+tc.path+"?"+q.Encode(), nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := v.Failures()[before:]
			if tc.want == "" {
				if len(got) > 0 {
					t.Errorf("unexpected failures: %q", got)
				}
				return
			}
			if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, tc.want) }) {
				t.Errorf("want a failure containing %q, got %q", tc.want, got)
			}
		})
	}
	// Hosts other than the two servers pass through unchecked.
	other := httptest.NewServer(handler)
	defer other.Close()
	before := len(v.Failures())
	if resp, err := c.Get(other.URL + "/anything?status=418"); err == nil {
		resp.Body.Close()
	}
	if n := len(v.Failures()) - before; n != 0 {
		t.Errorf("a foreign host produced %d failures", n)
	}
}

type tokenSet struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`
	Signature    string `json:"signature"`
}

type flow struct {
	t   *testing.T
	srv *testserver.Server
}

func (f *flow) expect(r *testserver.Response, status int) *testserver.Response {
	f.t.Helper()
	if r.Status != status {
		f.t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	return r
}

func (f *flow) expectData(r *testserver.Response, status int, v any) {
	f.t.Helper()
	f.expect(r, status).Data(f.t, v)
}

func (f *flow) createIdentity(body map[string]any) int64 {
	f.t.Helper()
	var id struct {
		ID int64 `json:"id"`
	}
	f.expectData(f.srv.Admin(f.t, "POST", "/admin/identities", body), 201, &id)
	return id.ID
}

// login returns the pending token and checks registerOtp.
func (f *flow) login(email, password string, registerOTP bool) string {
	f.t.Helper()
	var res struct {
		RegisterOTP bool   `json:"registerOtp"`
		Token       string `json:"token"`
	}
	f.expectData(f.srv.Public(f.t, "POST", "/api/v1/auth/login", "", map[string]string{"email": email, "password": password}), 200, &res)
	if res.RegisterOTP != registerOTP {
		f.t.Fatalf("registerOtp %v, want %v", res.RegisterOTP, registerOTP)
	}
	return res.Token
}

func (f *flow) code(secret string) string {
	f.t.Helper()
	c, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *flow) raw(method, url, contentType, body string) *testserver.Response {
	f.t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := f.srv.Client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return &testserver.Response{Status: resp.StatusCode, Header: resp.Header, Body: buf.Bytes()}
}

func (f *flow) form(path string, v url.Values) *testserver.Response {
	f.t.Helper()
	return f.raw("POST", f.srv.AdminURL+path, "application/x-www-form-urlencoded", v.Encode())
}

func (f *flow) introspect(token, hint string) map[string]any {
	f.t.Helper()
	v := url.Values{"token": {token}}
	if hint != "" {
		v.Set("token_type_hint", hint)
	}
	var out map[string]any
	f.expect(f.form("/admin/oauth2/introspect", v), 200).JSON(f.t, &out)
	return out
}
