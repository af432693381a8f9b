package replicas_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/go-jose/go-jose/v3"

	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/push/fcmtest"
	"github.com/pvpipe/pvauth/x"
)

// TestReplicas proves every guarantee of API.md §9 on three replicas (A, B, C) sharing one
// PostgreSQL database and one Redis, with the requests of each scenario spread over them.
func TestReplicas(t *testing.T) {
	// Pushes go to an FCM double: the CIBA scenario's phone learns its challenge there.
	fcm := fcmtest.New(t)
	c := startCluster(t, map[string]any{"push.fcm.enabled": true, "push.fcm.project_id": "pvpipe-test", "push.fcm.endpoint": fcm.URL})
	A, B, C := c.rep(0), c.rep(1), c.rep(2)

	// A logout or a revocation answered by A is refused by B and C at once, although both
	// have just verified (and cached the signature of) the access token.
	t.Run("revocation seen at once", func(t *testing.T) {
		u := c.newUser(t)
		for _, how := range []string{"logout", "oauth2 revoke", "admin revoke sessions"} {
			ts := issue(t, A, u)
			for _, srv := range []*testserver.Server{B, C} {
				want(t, how+": /me before", do(srv, false, http.MethodGet, api+"/me", ts.AccessToken, nil), http.StatusOK)
			}
			switch how {
			case "logout":
				want(t, "logout on A", do(A, false, http.MethodPost, api+"/logout", ts.AccessToken, map[string]any{}), http.StatusOK)
			case "oauth2 revoke": // RFC 7009 by the owning first-party client
				r := form(A, false, "/oauth2/revoke", url.Values{"token": {ts.RefreshToken}, "client_id": {clientIDOf(t, A, ts.AccessToken)}})
				want(t, "revoke on A", r, http.StatusOK)
			case "admin revoke sessions":
				want(t, "revoke sessions on A", do(A, true, http.MethodDelete, "/admin/identities/"+itoa(u.ID)+"/sessions", "", nil), http.StatusOK)
			}
			for i, srv := range []*testserver.Server{B, C} {
				name := how + " on A, replica " + repName(i+1)
				want(t, name+": bearer", do(srv, false, http.MethodGet, api+"/me", ts.AccessToken, nil), http.StatusUnauthorized)
				if testkit.IsActive(t, srv, ts.AccessToken) {
					t.Fatalf("%s: the access token introspects active", name)
				}
			}
			// The refresh token too (once: a second try would be reuse anyway).
			want(t, how+": refresh on B", do(B, false, http.MethodPost, api+"/refresh", "", map[string]string{"refreshToken": ts.RefreshToken}), http.StatusUnauthorized)
			want(t, how+": refresh on C", do(C, false, http.MethodPost, api+"/refresh", "", map[string]string{"refreshToken": ts.RefreshToken}), http.StatusUnauthorized)
		}
	})

	// An identity disabled through A can no longer log in, refresh or use a token on B.
	t.Run("disable seen at once", func(t *testing.T) {
		u := c.newUser(t)
		c.enroll(t, u)
		ts := issue(t, C, u)
		want(t, "bearer on B before", do(B, false, http.MethodGet, api+"/me", ts.AccessToken, nil), http.StatusOK)
		p := pending(t, B, u) // a pending login started before the disable
		want(t, "disable on A", do(A, true, http.MethodPatch, "/admin/identities/"+itoa(u.ID), "", map[string]any{"state": "disabled"}), http.StatusOK)
		want(t, "login on B", do(B, false, http.MethodPost, api+"/login", "", map[string]any{"email": u.Email, "password": password}), http.StatusUnauthorized)
		want(t, "bearer on B", do(B, false, http.MethodGet, api+"/me", ts.AccessToken, nil), http.StatusUnauthorized)
		want(t, "refresh on B", do(B, false, http.MethodPost, api+"/refresh", "", map[string]string{"refreshToken": ts.RefreshToken}), http.StatusUnauthorized)
		want(t, "pending login finished on C", do(C, false, http.MethodPost, api+"/otp/verify", p, map[string]string{"otp": code(t, u.Secret, u.nextStep())}), http.StatusUnauthorized)
	})

	// Approved on A, consumed on B, consumed again on C: refused. An event stream on B
	// sees the approval made through C within a second.
	t.Run("confirmation across replicas", func(t *testing.T) {
		u := c.newUser(t)
		ts := issue(t, A, u)
		d := c.register(t, ts.AccessToken)

		ci := data(t, do(A, false, http.MethodPost, api+"/confirmation/initiate", ts.AccessToken, map[string]any{"actionType": "transfer"}))
		id := testkit.Str(ci["confirmationId"])
		want(t, "approve on A", do(A, false, http.MethodPost, api+"/confirmation/"+id+"/verify", ts.AccessToken,
			map[string]any{"deviceId": d.ID, "signedChallenge": d.sign(t, testkit.Str(ci["challenge"]))}), http.StatusOK)
		want(t, "consume on B", do(B, true, http.MethodPost, "/admin/confirmations/"+id+"/consume", "", nil), http.StatusOK)
		want(t, "second consume on C", do(C, true, http.MethodPost, "/admin/confirmations/"+id+"/consume", "", nil), http.StatusConflict)

		ci = data(t, do(C, false, http.MethodPost, api+"/confirmation/initiate", ts.AccessToken, map[string]any{"actionType": "transfer"}))
		id = testkit.Str(ci["confirmationId"])
		s := openEvents(t, B, ts.AccessToken, id)
		if ev := s.next(t, 2*time.Second); ev.Status != "pending" {
			t.Fatalf("first event: %+v", ev)
		}
		approved := time.Now()
		want(t, "approve on C", do(C, false, http.MethodPost, api+"/confirmation/"+id+"/verify", ts.AccessToken,
			map[string]any{"deviceId": d.ID, "signedChallenge": d.sign(t, testkit.Str(ci["challenge"]))}), http.StatusOK)
		ev := s.next(t, 3*time.Second)
		lat := ev.At.Sub(approved)
		t.Logf("the stream on B saw the approval through C after %v", lat.Round(time.Millisecond))
		if ev.Status != "approved" || lat > time.Second {
			t.Fatalf("event %+v after %v, want approved within 1s", ev, lat)
		}
	})

	// A key rotated on A: a token A signs right after verifies on B and C at once
	// (bearer and introspection), and B's JWKS lists the key at once.
	t.Run("key rotation verifies everywhere at once", func(t *testing.T) {
		u := c.newUser(t)
		old := issue(t, B, u)
		for round := 0; round < 3; round++ { // also soon after a previous reload
			for _, srv := range []*testserver.Server{B, C} {
				want(t, "old token before", do(srv, false, http.MethodGet, api+"/me", old.AccessToken, nil), http.StatusOK)
			}
			r := do(A, true, http.MethodPost, "/admin/keys/rotate", "", nil)
			want(t, "rotate on A", r, http.StatusOK)
			kid := testkit.Str(data(t, r)["active"].(map[string]any)["kid"])
			ts := issue(t, A, u)
			if got := testkit.JWTKID(t, ts.AccessToken); got != kid {
				t.Fatalf("round %d: A signs with %s after rotating to %s", round, got, kid)
			}
			for i, srv := range []*testserver.Server{B, C} {
				name := "round " + itoa(int64(round)) + ", replica " + repName(i+1)
				want(t, name+": bearer of the new key", do(srv, false, http.MethodGet, api+"/me", ts.AccessToken, nil), http.StatusOK)
				if !testkit.IsActive(t, srv, ts.AccessToken) {
					t.Fatalf("%s: token of the new key introspects inactive", name)
				}
				if !jwksHas(t, srv, kid) {
					t.Fatalf("%s: JWKS lacks the new key %s right after the rotation", name, kid)
				}
				want(t, name+": old token", do(srv, false, http.MethodGet, api+"/me", old.AccessToken, nil), http.StatusOK)
			}
		}
		// A confirmation receipt A signs with the new key verifies offline with the JWKS
		// that B serves right after the rotation.
		d := c.register(t, issue(t, A, u).AccessToken)
		r := do(A, true, http.MethodPost, "/admin/keys/rotate", "", nil)
		want(t, "rotate on A", r, http.StatusOK)
		kid := testkit.Str(data(t, r)["active"].(map[string]any)["kid"])
		ts := issue(t, A, u)
		ci := data(t, do(A, false, http.MethodPost, api+"/confirmation/initiate", ts.AccessToken, map[string]any{"actionType": "transfer"}))
		r = do(A, false, http.MethodPost, api+"/confirmation/"+testkit.Str(ci["confirmationId"])+"/verify", ts.AccessToken,
			map[string]any{"deviceId": d.ID, "signedChallenge": d.sign(t, testkit.Str(ci["challenge"]))})
		want(t, "approve on A", r, http.StatusOK)
		receipt := testkit.Str(data(t, r)["receipt"])
		if got := testkit.JWTKID(t, receipt); got != kid {
			t.Fatalf("receipt signed with %s, want the new key %s", got, kid)
		}
		verifyWithJWKS(t, B, receipt)

		// B and C take the new key over for signing within about a second.
		r = do(A, true, http.MethodPost, "/admin/keys/rotate", "", nil)
		want(t, "rotate on A", r, http.StatusOK)
		kid = testkit.Str(data(t, r)["active"].(map[string]any)["kid"])
		for i, srv := range []*testserver.Server{B, C} {
			within(t, "replica "+repName(i+1)+" signs with the key rotated on A", 3*time.Second, func() bool {
				return testkit.JWTKID(t, issue(t, srv, u).AccessToken) == kid
			})
		}
	})

	// OAuth2 client changes made through A apply on B within 2 s.
	t.Run("oauth2 client changes within 2s", func(t *testing.T) {
		r := do(A, true, http.MethodPost, "/admin/clients", "", map[string]any{
			"client_name": "replica job", "grant_types": []string{"client_credentials"},
			"scope": "reports.read reports.write", "token_endpoint_auth_method": "client_secret_post"})
		want(t, "create client on A", r, http.StatusCreated)
		cl := data(t, r)
		id, secret := testkit.Str(cl["client_id"]), testkit.Str(cl["client_secret"])
		tokenResp := func(srv *testserver.Server, scope string) *testserver.Response {
			return form(srv, false, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {id},
				"client_secret": {secret}, "scope": {scope}})
		}
		token := func(srv *testserver.Server, scope string) int { return tokenResp(srv, scope).Status }
		// refused: whether r is the RFC 6749 refusal status + code (JSON, no token in it).
		refused := func(r *testserver.Response, status int, code string) bool {
			var e struct {
				Error string `json:"error"`
			}
			return r.Status == status && json.Unmarshal(r.Body, &e) == nil && e.Error == code &&
				!strings.Contains(string(r.Body), "access_token")
		}
		// Created: usable on B at once (unknown clients are not cached).
		if s := token(B, "reports.read"); s != http.StatusOK {
			t.Fatalf("client created on A: token on B %d", s)
		}
		// Updated: B served the old scope a moment ago (cached); the change shows within 2 s.
		want(t, "update on A", do(A, true, http.MethodPut, "/admin/clients/"+id, "", map[string]any{
			"client_name": "replica job", "grant_types": []string{"client_credentials"},
			"scope": "reports.write", "token_endpoint_auth_method": "client_secret_post"}), http.StatusOK)
		within(t, "scope removed on A refused on B", 2*time.Second, func() bool {
			return refused(tokenResp(B, "reports.read"), http.StatusBadRequest, "invalid_scope")
		})
		if s := token(B, "reports.write"); s != http.StatusOK {
			t.Fatalf("kept scope on B: %d", s)
		}
		// A redirect URI removed on A is refused by B's authorization endpoint within 2 s.
		r = do(A, true, http.MethodPost, "/admin/clients", "", map[string]any{
			"client_name": "replica RP", "grant_types": []string{"authorization_code"}, "response_types": []string{"code"},
			"redirect_uris": []string{callbackURL, callbackURL + "2"}, "scope": "openid", "token_endpoint_auth_method": "client_secret_basic"})
		want(t, "create code client on A", r, http.StatusCreated)
		rp := testkit.Str(data(t, r)["client_id"])
		authorizeResp := func(srv *testserver.Server) *testserver.Response { // B's answer for callback 2, not followed
			q := url.Values{"client_id": {rp}, "response_type": {"code"}, "redirect_uri": {callbackURL + "2"}, "scope": {"openid"},
				"state": {"some-state-value"}, "nonce": {"some-nonce-value"}}
			noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			req, err := http.NewRequest(http.MethodGet, srv.PublicURL+"/oauth2/auth?"+q.Encode(), nil)
			if err != nil {
				t.Fatal(err)
			}
			r := testkit.SendRequest(noFollow, req)
			if r.Status == 0 {
				t.Fatalf("authorize on B: %s", r.Body)
			}
			return r
		}
		authorize := func(srv *testserver.Server) bool { // whether B starts a login for callback 2
			return strings.HasPrefix(authorizeResp(srv).Header.Get("Location"), loginUI+"?")
		}
		if !authorize(B) {
			t.Fatal("B refuses a registered redirect URI")
		}
		want(t, "remove a redirect URI on A", do(A, true, http.MethodPut, "/admin/clients/"+rp, "", map[string]any{
			"client_name": "replica RP", "grant_types": []string{"authorization_code"}, "response_types": []string{"code"},
			"redirect_uris": []string{callbackURL}, "scope": "openid", "token_endpoint_auth_method": "client_secret_basic"}), http.StatusOK)
		// An unregistered redirect URI is refused with a JSON invalid_request, never a redirect.
		within(t, "redirect URI removed on A refused on B", 2*time.Second, func() bool {
			r := authorizeResp(B)
			return r.Header.Get("Location") == "" && refused(r, http.StatusBadRequest, "invalid_request")
		})

		// Deleted: refused on B within 2 s.
		want(t, "delete on A", do(A, true, http.MethodDelete, "/admin/clients/"+id, "", nil), http.StatusOK)
		within(t, "client deleted on A refused on B", 2*time.Second, func() bool {
			return refused(tokenResp(B, "reports.write"), http.StatusUnauthorized, "invalid_client")
		})
	})

	// Every "exactly once" of the contract, raced by 30 goroutines spread over the three
	// replicas.
	t.Run("exactly once", func(t *testing.T) {
		const n = 30
		u := c.newUser(t)
		c.enroll(t, u)
		ts := issue(t, A, u)
		d := c.register(t, ts.AccessToken)
		want(t, "fcm token", do(C, false, http.MethodPut, api+"/devices/fcm-token", ts.AccessToken,
			map[string]any{"deviceId": d.ID, "fcmToken": "fcm-" + d.Fingerprint}), http.StatusOK)

		t.Run("one challenge, one login", func(t *testing.T) {
			ch := data(t, do(A, false, http.MethodPost, api+"/mobile/challenge", "", map[string]any{"deviceFingerprint": d.Fingerprint}))
			body := map[string]any{"sessionId": ch["sessionId"], "signedChallenge": d.sign(t, testkit.Str(ch["challenge"]))}
			exactlyOne(t, "biometric login", c.race(n, func(_ int, srv *testserver.Server) *testserver.Response {
				return do(srv, false, http.MethodPost, api+"/mobile/biometric", "", body)
			}), http.StatusBadRequest)
		})

		t.Run("one TOTP step, one success", func(t *testing.T) {
			ps := make([]string, n)
			for i := range ps {
				ps[i] = pending(t, c.rep(i), u)
			}
			otp := code(t, u.Secret, u.nextStep())
			exactlyOne(t, "TOTP code", c.race(n, func(i int, srv *testserver.Server) *testserver.Response {
				return do(srv, false, http.MethodPost, api+"/otp/verify", ps[i], map[string]string{"otp": otp})
			}), http.StatusUnauthorized)
		})

		t.Run("one refresh token, one rotation, reuse detected", func(t *testing.T) {
			s := issue(t, B, u)
			win := exactlyOne(t, "refresh", c.race(n, func(_ int, srv *testserver.Server) *testserver.Response {
				return do(srv, false, http.MethodPost, api+"/refresh", "", map[string]string{"refreshToken": s.RefreshToken})
			}), http.StatusUnauthorized)
			// The losers presented a rotated token: reuse, so the family is revoked,
			// the winner's new tokens included, on every replica.
			nt := tokenSet(t, win)
			for i, srv := range c.reps {
				if testkit.IsActive(t, srv, nt.AccessToken) {
					t.Fatalf("replica %s: the winner's access token is active after reuse of its parent", repName(i))
				}
			}
			want(t, "winner's refresh token", do(C, false, http.MethodPost, api+"/refresh", "", map[string]string{"refreshToken": nt.RefreshToken}), http.StatusUnauthorized)
		})

		t.Run("one approval, one consume", func(t *testing.T) {
			ci := data(t, do(B, false, http.MethodPost, api+"/confirmation/initiate", ts.AccessToken, map[string]any{"actionType": "transfer"}))
			id := testkit.Str(ci["confirmationId"])
			body := map[string]any{"deviceId": d.ID, "signedChallenge": d.sign(t, testkit.Str(ci["challenge"]))}
			exactlyOne(t, "approval", c.race(n, func(_ int, srv *testserver.Server) *testserver.Response {
				return do(srv, false, http.MethodPost, api+"/confirmation/"+id+"/verify", ts.AccessToken, body)
			}), http.StatusConflict)
			exactlyOne(t, "consume", c.race(n, func(_ int, srv *testserver.Server) *testserver.Response {
				return do(srv, true, http.MethodPost, "/admin/confirmations/"+id+"/consume", "", nil)
			}), http.StatusConflict)
		})

		t.Run("one CIBA approval, one redemption", func(t *testing.T) {
			r := do(A, true, http.MethodPost, "/admin/clients", "", map[string]any{
				"client_name": "replica CIBA", "grant_types": []string{"urn:openid:params:grant-type:ciba"},
				"scope": "openid", "token_endpoint_auth_method": "client_secret_post"})
			want(t, "create CIBA client", r, http.StatusCreated)
			cl := data(t, r)
			auth := url.Values{"client_id": {testkit.Str(cl["client_id"])}, "client_secret": {testkit.Str(cl["client_secret"])}}
			bcForm := url.Values{"scope": {"openid"}, "login_hint": {u.Email}}
			for k, v := range auth {
				bcForm[k] = v
			}
			r = form(B, false, "/oauth2/bc-authorize", bcForm)
			want(t, "bc-authorize", r, http.StatusOK)
			var bc struct {
				AuthReqID string `json:"auth_req_id"`
			}
			if err := jsonUnmarshal(r.Body, &bc); err != nil || bc.AuthReqID == "" {
				t.Fatalf("bc-authorize: %s", r.Body)
			}
			// The phone learns the challenge from its push.
			req, err := C.Registry.OAuth2Persister().GetCIBARequest(context.Background(), x.SHA256Hex(bc.AuthReqID))
			if err != nil {
				t.Fatal(err)
			}
			ms, ok := fcm.WaitFor(5*time.Second, func(ms []fcmtest.Message) bool {
				for _, m := range ms {
					if m.Data["confirmationId"] == req.ConfirmationID {
						return true
					}
				}
				return false
			})
			if !ok {
				t.Fatal("no push of the CIBA request")
			}
			challenge := ""
			for _, m := range ms {
				if m.Data["confirmationId"] == req.ConfirmationID {
					challenge = m.Data["challenge"]
				}
			}
			want(t, "approve on the phone", do(A, false, http.MethodPost, api+"/confirmation/"+req.ConfirmationID+"/verify", ts.AccessToken,
				map[string]any{"deviceId": d.ID, "signedChallenge": d.sign(t, challenge)}), http.StatusOK)
			poll := url.Values{"grant_type": {"urn:openid:params:grant-type:ciba"}, "auth_req_id": {bc.AuthReqID}}
			for k, v := range auth {
				poll[k] = v
			}
			exactlyOne(t, "CIBA redemption", c.race(n, func(_ int, srv *testserver.Server) *testserver.Response {
				return form(srv, false, "/oauth2/token", poll)
			}), http.StatusBadRequest)
		})

		t.Run("one authorization code, one token", func(t *testing.T) {
			r := do(A, true, http.MethodPost, "/admin/clients", "", map[string]any{
				"client_name": "replica RP", "grant_types": []string{"authorization_code", "refresh_token"},
				"response_types": []string{"code"}, "redirect_uris": []string{callbackURL}, "skip_consent": true,
				"scope": "openid offline_access", "token_endpoint_auth_method": "client_secret_post"})
			want(t, "create client", r, http.StatusCreated)
			cl := data(t, r)
			codeValue, verifier := authorizationCode(t, c, testkit.Str(cl["client_id"]), ts.AccessToken)
			v := url.Values{"grant_type": {"authorization_code"}, "code": {codeValue}, "redirect_uri": {callbackURL},
				"code_verifier": {verifier}, "client_id": {testkit.Str(cl["client_id"])}, "client_secret": {testkit.Str(cl["client_secret"])}}
			exactlyOne(t, "code exchange", c.race(n, func(_ int, srv *testserver.Server) *testserver.Response {
				return form(srv, false, "/oauth2/token", v)
			}), http.StatusBadRequest)
		})
	})
}

// TestReplicasShareRateLimits: a limit of N allows N in total across the three
// replicas, not 3N: the login lockout per email and network, and the per-IP rule under
// concurrent requests.
func TestReplicasShareRateLimits(t *testing.T) {
	const loginLimit, ipLimit = 4, 12
	c := startCluster(t, map[string]any{
		"ratelimit.rules.login.limit":  loginLimit,
		"ratelimit.rules.login.window": "1m",
		"ratelimit.rules.ip.limit":     ipLimit,
		"ratelimit.rules.ip.window":    "1m",
	})
	t.Run("login lockout", func(t *testing.T) {
		u := c.newUser(t)
		attacker := randNet()
		counts := map[int]int{}
		for i := 0; i < 3*loginLimit; i++ {
			r := publicFrom(c.rep(i), attacker, http.MethodPost, api+"/login", map[string]any{"email": u.Email, "password": "guess " + itoa(int64(i))})
			counts[r.Status]++
			if i >= loginLimit && r.Status != http.StatusTooManyRequests {
				t.Fatalf("failure %d (on %s): %d, want 429 after %d failures over the cluster", i+1, repName(i), r.Status, loginLimit)
			}
		}
		t.Logf("%d wrong passwords from one network, round robin over 3 replicas: %v", 3*loginLimit, counts)
		if counts[http.StatusUnauthorized] != loginLimit {
			t.Fatalf("%d failures checked, want %d (the limit holds for the cluster)", counts[http.StatusUnauthorized], loginLimit)
		}
		// The owner, from another network, is not locked out.
		want(t, "owner from home", publicFrom(c.rep(1), randNet(), http.MethodPost, api+"/login", map[string]any{"email": u.Email, "password": password}), http.StatusOK)
	})
	t.Run("ip rule under concurrency", func(t *testing.T) {
		n := randNet()
		rs := c.race(3*ipLimit, func(_ int, srv *testserver.Server) *testserver.Response {
			return publicFrom(srv, n, http.MethodGet, "/health/alive", nil)
		})
		m := tally(rs)
		t.Logf("%d concurrent requests from one network over 3 replicas: %v", 3*ipLimit, m)
		if m[http.StatusOK] != ipLimit || m[http.StatusTooManyRequests] != 2*ipLimit {
			t.Fatalf("answers %v, want %d × 200 and %d × 429", m, ipLimit, 2*ipLimit)
		}
	})
}

// authorizationCode runs the code flow with PKCE for the user of access, each leg on
// another replica (the hand-off lives in the database; the browser's cookie goes to
// every replica of the one host), and returns the code and the PKCE verifier.
func authorizationCode(t *testing.T, c *cluster, clientID, access string) (string, string) {
	t.Helper()
	browser := testkit.Browser()
	verifier, pkceChallenge := testkit.PKCE()
	state := verifier[:16]
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "redirect_uri": {callbackURL},
		"scope": {"openid offline_access"}, "state": {state}, "nonce": {state + "n"},
		"code_challenge": {pkceChallenge}, "code_challenge_method": {"S256"}}
	get := func(rawURL string) *http.Response {
		t.Helper()
		resp, err := browser.Get(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := get(c.rep(0).PublicURL + "/oauth2/auth?" + q.Encode())
	loc, _ := url.Parse(resp.Header.Get("Location"))
	ch := loc.Query().Get("login_challenge")
	if ch == "" {
		t.Fatalf("authorize on A: %d to %q, want the login UI", resp.StatusCode, resp.Header.Get("Location"))
	}
	r := do(c.rep(1), false, http.MethodPost, api+"/oauth2/login/accept", access, map[string]any{"loginChallenge": ch})
	want(t, "login accept on B", r, http.StatusOK)
	next := testkit.Str(data(t, r)["redirectTo"])
	if !strings.HasPrefix(next, issuer+"/") {
		t.Fatalf("login accept redirects to %q", next)
	}
	resp = get(c.rep(2).PublicURL + strings.TrimPrefix(next, issuer))
	loc, _ = url.Parse(resp.Header.Get("Location"))
	if got := loc.Query().Get("code"); got != "" && loc.Query().Get("state") == state {
		return got, verifier
	}
	t.Fatalf("verifier leg on C: %d to %q, want the callback with a code", resp.StatusCode, resp.Header.Get("Location"))
	return "", ""
}

// clientIDOf is the first-party client a self-service token belongs to (introspection).
func clientIDOf(t *testing.T, srv *testserver.Server, token string) string {
	t.Helper()
	r := form(srv, true, "/admin/oauth2/introspect", url.Values{"token": {token}})
	var res struct {
		ClientID string `json:"client_id"`
	}
	_ = jsonUnmarshal(r.Body, &res)
	if res.ClientID == "" {
		t.Fatalf("no client_id at introspection: %s", r.Body)
	}
	return res.ClientID
}

// verifyWithJWKS verifies a JWT offline against the JWKS that srv serves now.
func verifyWithJWKS(t *testing.T, srv *testserver.Server, token string) {
	t.Helper()
	r := do(srv, false, http.MethodGet, "/.well-known/jwks.json", "", nil)
	want(t, "jwks", r, http.StatusOK)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(token)
	if err != nil {
		t.Fatalf("not a JWS: %v", err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not in the JWKS", jws.Signatures[0].Header.KeyID)
	}
	if _, err := jws.Verify(keys[0]); err != nil {
		t.Fatalf("does not verify with the JWKS key: %v", err)
	}
}
