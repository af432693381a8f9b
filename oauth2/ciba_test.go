package oauth2_test

import (
	"crypto/ecdsa"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/push/fcmtest"
)

const grantCIBA = "urn:openid:params:grant-type:ciba"

// cibaEnv is a running pvauth with push to an FCM double, a CIBA client and a user with
// a registered phone.
type cibaEnv struct {
	*op
	fcm    *fcmtest.Server
	client client
	user   user
	phone  *phone
}

// phone is a registered device key that receives pushes.
type phone struct {
	id, fcmToken string
	key          *ecdsa.PrivateKey
}

func startCIBA(t *testing.T, dsn string) *cibaEnv {
	t.Helper()
	fcm := fcmtest.New(t)
	o := startOP(t, dsn, map[string]any{
		"push.fcm.enabled": true, "push.fcm.project_id": "pvpipe-test", "push.fcm.endpoint": fcm.URL,
		"ratelimit.enabled": true, "ratelimit.rules.confirmation_initiate.limit": 10, "ratelimit.rules.ip.limit": 100000,
	})
	e := &cibaEnv{op: o, fcm: fcm}
	e.client = e.cibaClient(t, "Bank backoffice")
	e.user = o.newUser(t, "ciba-"+strings.ReplaceAll(t.Name(), "/", "-")+"@example.com")
	e.phone = e.registerPhone(t, e.user)
	return e
}

func (e *cibaEnv) cibaClient(t *testing.T, name string) client {
	t.Helper()
	return e.createClient(t, map[string]any{
		"client_name": name, "grant_types": []string{grantCIBA, "refresh_token"},
		"scope": "openid offline_access email", "token_endpoint_auth_method": "client_secret_basic",
	})
}

// registerPhone registers an ES256 device key for u, as the mobile app does, and gives it
// an FCM token.
func (e *cibaEnv) registerPhone(t *testing.T, u user) *phone {
	t.Helper()
	d := testkit.RegisterDevice(t, e.srv, u.Token, nil, map[string]any{"deviceFingerprint": "FP-" + u.Email})
	p := &phone{id: d.ID, key: d.Key, fcmToken: "fcm-" + u.Email}
	testkit.SetFCMToken(t, e.srv, u.Token, p.id, p.fcmToken)
	return p
}

// sign signs a base64 challenge as the app does: ECDSA P-256 over SHA-256, DER, base64.
func (p *phone) sign(t *testing.T, challenge string) string {
	return testkeys.SignChallenge(t, p.key, challenge)
}

// push waits for the phone's push of a CIBA request started after n earlier pushes.
func (e *cibaEnv) push(t *testing.T, token string, n int) map[string]string {
	t.Helper()
	ms, ok := e.fcm.WaitFor(5*time.Second, func(ms []fcmtest.Message) bool {
		c := 0
		for _, m := range ms {
			if m.Token == token && m.Data["actionType"] == "oauth2_ciba" {
				c++
			}
		}
		return c > n
	})
	if !ok {
		t.Fatalf("no push of the CIBA request to %s", token)
	}
	var last map[string]string
	for _, m := range ms {
		if m.Token == token && m.Data["actionType"] == "oauth2_ciba" {
			last = m.Data
		}
	}
	return last
}

func (e *cibaEnv) pushes(token string) int {
	n := 0
	for _, m := range e.fcm.Messages() {
		if m.Token == token && m.Data["actionType"] == "oauth2_ciba" {
			n++
		}
	}
	return n
}

type bcResponse struct {
	AuthReqID string `json:"auth_req_id"`
	ExpiresIn int    `json:"expires_in"`
	Interval  int    `json:"interval"`
}

// start posts a backchannel request as c and expects 200.
func (e *cibaEnv) start(t *testing.T, c client, v url.Values) bcResponse {
	t.Helper()
	r := e.asClient(t, "/oauth2/bc-authorize", v, c)
	if r.Status != http.StatusOK {
		t.Fatalf("bc-authorize: %d %s", r.Status, r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("bc-authorize Cache-Control %q", cc)
	}
	var b bcResponse
	if err := json.Unmarshal(r.Body, &b); err != nil || b.AuthReqID == "" {
		t.Fatalf("bc-authorize body %s (%v)", r.Body, err)
	}
	return b
}

func (e *cibaEnv) poll(t *testing.T, c client, authReqID string) *testserver.Response {
	t.Helper()
	return e.asClient(t, "/oauth2/token", url.Values{"grant_type": {grantCIBA}, "auth_req_id": {authReqID}}, c)
}

// approve signs the pushed challenge and verifies it, as the app does.
func (e *cibaEnv) approve(t *testing.T, u user, p *phone, push map[string]string) {
	t.Helper()
	r := e.srv.Public(t, http.MethodPost, "/api/v1/auth/confirmation/"+push["confirmationId"]+"/verify", u.Token,
		map[string]any{"deviceId": p.id, "signedChallenge": p.sign(t, push["challenge"])})
	if r.Status != http.StatusOK {
		t.Fatalf("verify: %d %s", r.Status, r.Body)
	}
}

func hint(email string, extra ...string) url.Values {
	v := url.Values{"scope": {"openid offline_access email"}, "login_hint": {email}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

type cibaTokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	Scope        string `json:"scope"`
}

func TestCIBA(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		e := startCIBA(t, dsn)
		t.Run("discovery", e.cibaDiscovery)
		t.Run("approved", e.cibaApproved)
		t.Run("rejected", e.cibaRejected)
		t.Run("expired", e.cibaExpired)
		t.Run("requests", e.cibaBadRequests)
		t.Run("clients", e.cibaClients)
		t.Run("disabled", e.cibaDisabled)
		t.Run("race", e.cibaRace)
		t.Run("ratelimit", e.cibaRateLimit)
	})
}

func (e *cibaEnv) cibaDiscovery(t *testing.T) {
	r := e.get(t, e.issuer+"/.well-known/openid-configuration")
	var d struct {
		Endpoint string   `json:"backchannel_authentication_endpoint"`
		Modes    []string `json:"backchannel_token_delivery_modes_supported"`
		Grants   []string `json:"grant_types_supported"`
	}
	if err := json.Unmarshal(r.Body, &d); err != nil {
		t.Fatal(err)
	}
	if d.Endpoint != e.issuer+"/oauth2/bc-authorize" || len(d.Modes) != 1 || d.Modes[0] != "poll" || !slices.Contains(d.Grants, grantCIBA) {
		t.Errorf("discovery: %s", r.Body)
	}
}

// The whole flow: request, push, pending, slow_down, approval on the phone, tokens once.
func (e *cibaEnv) cibaApproved(t *testing.T) {
	n := e.pushes(e.phone.fcmToken)
	before := time.Now().Truncate(time.Second)
	bc := e.start(t, e.client, hint(e.user.Email, "binding_message", "Wire #4711"))
	if bc.Interval != 5 || bc.ExpiresIn < 290 || bc.ExpiresIn > 300 {
		t.Errorf("bc-authorize answered %+v, want interval 5 and expires_in ttl.confirmation (300)", bc)
	}
	push := e.push(t, e.phone.fcmToken, n)
	// The phone reads what it approves: the client, the scope and the binding message.
	r := e.srv.Public(t, http.MethodGet, "/api/v1/auth/confirmation/"+push["confirmationId"]+"/status", e.user.Token, nil)
	var st struct {
		Status        string `json:"status"`
		ActionType    string `json:"actionType"`
		ActionPayload struct {
			ClientID, ClientName, Scope, BindingMessage string
		} `json:"actionPayload"`
	}
	r.Data(t, &st)
	if st.Status != "pending" || st.ActionType != "oauth2_ciba" || st.ActionPayload.ClientID != e.client.ID ||
		st.ActionPayload.ClientName != "Bank backoffice" || st.ActionPayload.BindingMessage != "Wire #4711" ||
		st.ActionPayload.Scope != "openid offline_access email" {
		t.Errorf("confirmation of the request: %s", r.Body)
	}

	oauthError(t, e.poll(t, e.client, bc.AuthReqID), http.StatusBadRequest, "authorization_pending")
	oauthError(t, e.poll(t, e.client, bc.AuthReqID), http.StatusBadRequest, "slow_down")
	e.approve(t, e.user, e.phone, push)

	// An outcome is answered at once, however soon after the last poll.
	r = e.poll(t, e.client, bc.AuthReqID)
	if r.Status != http.StatusOK {
		t.Fatalf("token after approval: %d %s", r.Status, r.Body)
	}
	var tok cibaTokens
	if err := json.Unmarshal(r.Body, &tok); err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.IDToken == "" || !strings.EqualFold(tok.TokenType, "bearer") {
		t.Fatalf("tokens: %s", r.Body)
	}
	oauthError(t, e.poll(t, e.client, bc.AuthReqID), http.StatusBadRequest, "invalid_grant")
	e.noRequestFormStored(t, bc.AuthReqID)

	// The id_token is for this client, about this user, approved with a hardware key now.
	provider, err := oidc.NewProvider(e.ctx(), e.issuer)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: e.client.ID}).Verify(e.ctx(), tok.IDToken)
	if err != nil {
		t.Fatalf("id_token: %v", err)
	}
	var claims struct {
		Sub      string   `json:"sub"`
		AMR      []string `json:"amr"`
		AuthTime int64    `json:"auth_time"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(claims.AuthTime, 0)
	if claims.Sub != itoa(e.user.ID) || len(claims.AMR) != 1 || claims.AMR[0] != "hwk" || at.Before(before) || at.After(time.Now()) {
		t.Errorf("id_token claims %+v", claims)
	}
	// The access token is the user's; the refresh token rotates.
	r = e.srv.Public(t, http.MethodGet, "/userinfo", tok.AccessToken, nil)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"sub":"`+itoa(e.user.ID)+`"`) {
		t.Errorf("userinfo: %d %s", r.Status, r.Body)
	}
	cfg := &oauth2.Config{ClientID: e.client.ID, ClientSecret: e.client.Secret,
		Endpoint: oauth2.Endpoint{TokenURL: e.issuer + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	fresh, err := cfg.TokenSource(e.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil || fresh.AccessToken == "" || fresh.RefreshToken == tok.RefreshToken {
		t.Errorf("refresh of a CIBA session: %v %+v", err, fresh)
	}

	// An id_token_hint names the same user.
	n = e.pushes(e.phone.fcmToken)
	e.start(t, e.client, url.Values{"scope": {"openid"}, "id_token_hint": {tok.IDToken}})
	if p := e.push(t, e.phone.fcmToken, n); p["confirmationId"] == push["confirmationId"] {
		t.Error("id_token_hint request reused the old confirmation")
	}
	// …but only one issued to this client.
	other := e.cibaClient(t, "Other")
	oauthError(t, e.asClient(t, "/oauth2/bc-authorize", url.Values{"scope": {"openid"}, "id_token_hint": {tok.IDToken}}, other),
		http.StatusBadRequest, "invalid_request")
	// Another client cannot redeem or poll this client's request.
	bc2 := e.start(t, e.client, hint(e.user.Email))
	oauthError(t, e.poll(t, other, bc2.AuthReqID), http.StatusBadRequest, "invalid_grant")

	e.srv.Registry.AuditLogger().Flush()
	r = e.srv.Admin(t, http.MethodGet, "/admin/audit-events?userId="+itoa(e.user.ID)+"&type=oauth2.ciba.token", nil)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), e.client.ID) {
		t.Errorf("audit of the redemption: %d %s", r.Status, r.Body)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (e *cibaEnv) cibaRejected(t *testing.T) {
	n := e.pushes(e.phone.fcmToken)
	bc := e.start(t, e.client, hint(e.user.Email))
	push := e.push(t, e.phone.fcmToken, n)
	r := e.srv.Public(t, http.MethodPost, "/api/v1/auth/confirmation/"+push["confirmationId"]+"/reject", e.user.Token, map[string]any{"reason": "not me"})
	if r.Status != http.StatusOK {
		t.Fatalf("reject: %d %s", r.Status, r.Body)
	}
	oauthError(t, e.poll(t, e.client, bc.AuthReqID), http.StatusBadRequest, "access_denied")
	oauthError(t, e.poll(t, e.client, bc.AuthReqID), http.StatusBadRequest, "access_denied")
}

func (e *cibaEnv) cibaExpired(t *testing.T) {
	n := e.pushes(e.phone.fcmToken)
	bc := e.start(t, e.client, hint(e.user.Email, "requested_expiry", "1"))
	if bc.ExpiresIn != 1 {
		t.Errorf("requested_expiry 1 gave expires_in %d", bc.ExpiresIn)
	}
	push := e.push(t, e.phone.fcmToken, n)
	// Expiry is stored in whole seconds, rounded up: at most 2 s from now.
	time.Sleep(2100 * time.Millisecond)
	oauthError(t, e.poll(t, e.client, bc.AuthReqID), http.StatusBadRequest, "expired_token")
	// Too late on the phone too.
	r := e.srv.Public(t, http.MethodPost, "/api/v1/auth/confirmation/"+push["confirmationId"]+"/verify", e.user.Token,
		map[string]any{"deviceId": e.phone.id, "signedChallenge": e.phone.sign(t, push["challenge"])})
	if r.Status == http.StatusOK {
		t.Fatalf("an expired request was approved: %s", r.Body)
	}
	oauthError(t, e.poll(t, e.client, bc.AuthReqID), http.StatusBadRequest, "expired_token")
}

func (e *cibaEnv) cibaBadRequests(t *testing.T) {
	n := e.pushes(e.phone.fcmToken)
	for _, c := range []struct {
		name string
		v    url.Values
		code string
	}{
		{"no openid", url.Values{"scope": {"email"}, "login_hint": {e.user.Email}}, "invalid_request"},
		{"scope not allowed", url.Values{"scope": {"openid profile"}, "login_hint": {e.user.Email}}, "invalid_scope"},
		{"no hint", url.Values{"scope": {"openid"}}, "invalid_request"},
		{"two hints", url.Values{"scope": {"openid"}, "login_hint": {e.user.Email}, "id_token_hint": {"x.y.z"}}, "invalid_request"},
		{"login_hint_token", url.Values{"scope": {"openid"}, "login_hint_token": {"x"}}, "invalid_request"},
		{"forged id_token_hint", url.Values{"scope": {"openid"}, "id_token_hint": {"eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."}}, "invalid_request"},
		{"long binding message", hint(e.user.Email, "binding_message", strings.Repeat("x", 65)), "invalid_binding_message"},
		{"control in binding message", hint(e.user.Email, "binding_message", "a\nb"), "invalid_binding_message"},
		{"bad expiry", hint(e.user.Email, "requested_expiry", "soon"), "invalid_request"},
		{"zero expiry", hint(e.user.Email, "requested_expiry", "0"), "invalid_request"},
		{"unknown user", hint("nobody@example.com"), "unknown_user_id"},
		{"huge hint", hint(strings.Repeat("a", 5000) + "@example.com"), "unknown_user_id"},
	} {
		oauthError(t, e.asClient(t, "/oauth2/bc-authorize", c.v, e.client), http.StatusBadRequest, c.code)
	}
	if got := e.pushes(e.phone.fcmToken); got != n {
		t.Errorf("refused requests pushed %d times", got-n)
	}
	// The token endpoint.
	oauthError(t, e.asClient(t, "/oauth2/token", url.Values{"grant_type": {grantCIBA}}, e.client), http.StatusBadRequest, "invalid_request")
	oauthError(t, e.poll(t, e.client, "not-an-auth-req-id"), http.StatusBadRequest, "invalid_grant")
	// A form is required.
	r := e.srv.Do(t, http.MethodPost, e.issuer+"/oauth2/bc-authorize", "", map[string]any{"scope": "openid"})
	if r.Status != http.StatusUnsupportedMediaType {
		t.Errorf("JSON body: %d %s", r.Status, r.Body)
	}
}

func (e *cibaEnv) cibaClients(t *testing.T) {
	v := hint(e.user.Email)
	// Client authentication as at the token endpoint.
	bad := e.client
	bad.Secret = "wrong"
	oauthError(t, e.asClient(t, "/oauth2/bc-authorize", v, bad), http.StatusUnauthorized, "invalid_client")
	oauthError(t, e.form(t, "/oauth2/bc-authorize", v, "", ""), http.StatusUnauthorized, "invalid_client")
	// A client without the grant.
	code := e.codeClient(t, "client_secret_basic", nil)
	oauthError(t, e.asClient(t, "/oauth2/bc-authorize", v, code), http.StatusBadRequest, "unauthorized_client")
	bc := e.start(t, e.client, v)
	oauthError(t, e.poll(t, code, bc.AuthReqID), http.StatusBadRequest, "unauthorized_client")
	// Registration: public clients cannot have the grant; only poll is served.
	for _, body := range []map[string]any{
		{"grant_types": []string{grantCIBA}, "token_endpoint_auth_method": "none", "scope": "openid"},
		{"grant_types": []string{grantCIBA}, "backchannel_token_delivery_mode": "ping", "scope": "openid"},
		{"grant_types": []string{"client_credentials"}, "backchannel_token_delivery_mode": "poll"},
	} {
		if r := e.srv.Admin(t, http.MethodPost, "/admin/clients", body); r.Status != http.StatusBadRequest {
			t.Errorf("client %v: %d %s", body, r.Status, r.Body)
		}
	}
	r := e.srv.Admin(t, http.MethodGet, "/admin/clients/"+e.client.ID, nil)
	if !strings.Contains(string(r.Body), `"backchannel_token_delivery_mode":"poll"`) {
		t.Errorf("client shows no delivery mode: %s", r.Body)
	}
}

// A disabled user's requests fail, pending or approved; new ones are unknown_user_id.
func (e *cibaEnv) cibaDisabled(t *testing.T) {
	u := e.newUser(t, "ciba-disabled-"+strings.ReplaceAll(t.Name(), "/", "-")+"@example.com")
	p := e.registerPhone(t, u)
	n := e.pushes(p.fcmToken)
	approved := e.start(t, e.client, hint(u.Email))
	push := e.push(t, p.fcmToken, n)
	e.approve(t, u, p, push)
	pending := e.start(t, e.client, hint(u.Email))
	if r := e.srv.Admin(t, http.MethodPatch, "/admin/identities/"+itoa(u.ID), map[string]any{"state": "disabled"}); r.Status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.Status, r.Body)
	}
	oauthError(t, e.poll(t, e.client, approved.AuthReqID), http.StatusBadRequest, "invalid_grant")
	oauthError(t, e.poll(t, e.client, pending.AuthReqID), http.StatusBadRequest, "invalid_grant")
	oauthError(t, e.asClient(t, "/oauth2/bc-authorize", hint(u.Email), e.client), http.StatusBadRequest, "unknown_user_id")
}

// Concurrent redemptions of one approved request: exactly one gets tokens.
func (e *cibaEnv) cibaRace(t *testing.T) {
	n := e.pushes(e.phone.fcmToken)
	bc := e.start(t, e.client, hint(e.user.Email))
	e.approve(t, e.user, e.phone, e.push(t, e.phone.fcmToken, n))
	const racers = 12
	var wg sync.WaitGroup
	statuses := make([]int, racers)
	bodies := make([]string, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.poll(t, e.client, bc.AuthReqID)
			statuses[i], bodies[i] = r.Status, string(r.Body)
		}()
	}
	wg.Wait()
	ok := 0
	for i, s := range statuses {
		switch {
		case s == http.StatusOK:
			ok++
		case s == http.StatusBadRequest && strings.Contains(bodies[i], "invalid_grant"):
		default:
			t.Errorf("racer %d: %d %s", i, s, bodies[i])
		}
	}
	if ok != 1 {
		t.Errorf("%d redemptions of one request, want exactly 1", ok)
	}
}

// Each request pushes to the user's phone: the user's confirmation_initiate budget
// (10 here) bounds them, whichever client asks.
func (e *cibaEnv) cibaRateLimit(t *testing.T) {
	u := e.newUser(t, "ciba-limit-"+strings.ReplaceAll(t.Name(), "/", "-")+"@example.com")
	other := e.cibaClient(t, "Limited")
	for i := range 10 {
		c := e.client
		if i%2 == 1 {
			c = other
		}
		e.start(t, c, hint(u.Email))
	}
	r := e.asClient(t, "/oauth2/bc-authorize", hint(u.Email), other)
	oauthError(t, r, http.StatusTooManyRequests, "slow_down")
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Another user is not affected.
	e.start(t, e.client, hint(e.user.Email))
}

// noRequestFormStored checks that the token rows keep nothing of the token request's
// form: it carries the auth_req_id (and, with client_secret_post, the client's secret).
func (e *cibaEnv) noRequestFormStored(t *testing.T, authReqID string) {
	t.Helper()
	for _, table := range []string{"oauth2_access", "oauth2_refresh"} {
		var forms []string
		q := "SELECT form_data FROM " + table + " WHERE client_id = ?"
		if err := e.srv.Registry.Persister().Connection(e.ctx()).RawQuery(q, e.client.ID).All(&forms); err != nil {
			t.Fatal(err)
		}
		if len(forms) == 0 {
			t.Fatalf("%s: no row for the CIBA client", table)
		}
		for _, f := range forms {
			if strings.Contains(f, authReqID) || strings.Contains(f, "auth_req_id") || strings.Contains(f, "client_secret") {
				t.Errorf("%s stores the token request's form: %q", table, f)
			}
		}
	}
}
