package biometric_test

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// TestConcurrency covers the exactly-once and revocation guarantees of mobile login
// (issue 3's acceptance), on both databases, over real HTTP. Rate limits stay off (the
// test server's default) so that only the guarantees under test decide the answers.
func TestConcurrency(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		e2eCloseIdle(t, srv)
		t.Run("OneSignedChallengeOneLogin", func(t *testing.T) { ccOneLogin(t, srv) })
		t.Run("DeleteDeviceRevokesEverything", func(t *testing.T) { ccDeleteDevice(t, srv) })
		t.Run("RefreshShapesAndRememberMe", func(t *testing.T) { ccRefreshShapes(t, srv) })
		t.Run("BiometricAccessTokenClaims", func(t *testing.T) { ccClaims(t, srv) })
		t.Run("LoginsRacingDeviceDeletion", func(t *testing.T) { ccLoginRacingDelete(t, srv) })
	})
}

// Device logins racing the device's deletion (API.md §2, complete revocation): once the
// delete has answered, no token minted by a login of that device works, including one
// whose login was in flight. Each round signs challenges first, then fires the logins
// and the delete together.
func ccLoginRacingDelete(t *testing.T, srv *testserver.Server) {
	u := testkit.NewUser(t, srv, "bio-")
	for round := 0; round < 15; round++ {
		key := e2eNewKey(t)
		fp := "CONC-RACE-" + testkit.Unique()
		deviceID := e2eRegister(t, srv, u.JWT, fp, key)
		type signed struct{ session, sig string }
		var logins []signed
		for i := 0; i < 4; i++ {
			r := srv.Public(t, http.MethodPost, e2eMobileChallenge, "", map[string]any{"deviceFingerprint": fp})
			if !testkit.CheckStatus(t, "mobile challenge", r, 200) {
				t.FailNow()
			}
			c := testkit.DataObject(t, r)
			logins = append(logins, signed{testkit.Str(c["sessionId"]), key.Sign(t, testkit.Str(c["challenge"]))})
		}
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			minted []string
		)
		for _, l := range logins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := srv.Public(t, http.MethodPost, e2eMobileBiometric, "", map[string]any{"sessionId": l.session, "signedChallenge": l.sig})
				if r.Status >= 500 {
					t.Errorf("login during the delete: %d %s", r.Status, r.Body)
				}
				if r.Status == http.StatusOK {
					tok, _ := e2eGet(testkit.DataObject(t, r), "tokens").(map[string]any)
					mu.Lock()
					minted = append(minted, testkit.Str(tok["accessToken"]), testkit.Str(tok["refreshToken"]))
					mu.Unlock()
				}
			}()
		}
		r := srv.Public(t, http.MethodDelete, e2eDevices+"/"+deviceID, u.JWT, nil)
		if !testkit.CheckStatus(t, "delete during logins", r, 200) {
			t.FailNow()
		}
		wg.Wait()
		for i, tok := range minted {
			hint := ""
			if i%2 == 1 {
				hint = "refresh_token"
			}
			if got := testkit.IntrospectClaims(t, srv, tok, hint); got["active"] != false {
				t.Fatalf("round %d: a token minted by a login racing the delete survived it: %v", round, got)
			}
		}
	}
}

// 20 concurrent /mobile/biometric with one valid signed challenge: exactly one gets
// tokens; every other one is told the session is used (400 "expired").
func ccOneLogin(t *testing.T, srv *testserver.Server) {
	u := testkit.NewUser(t, srv, "bio-")
	key := e2eNewKey(t)
	fp := "CONC-LOGIN-" + testkit.Unique()
	e2eRegister(t, srv, u.JWT, fp, key)

	r := srv.Public(t, http.MethodPost, e2eMobileChallenge, "", map[string]any{"deviceFingerprint": fp})
	if !testkit.CheckStatus(t, "mobile challenge", r, 200) {
		t.FailNow()
	}
	c := testkit.DataObject(t, r)
	body := map[string]any{"sessionId": c["sessionId"], "signedChallenge": key.Sign(t, testkit.Str(c["challenge"])), "rememberMe": false}

	const n = 20
	results := testkit.RaceResponses(n, func(int) *testserver.Response {
		return testkit.PublicRequest(srv, http.MethodPost, e2eMobileBiometric, "", body)
	})

	winners := 0
	for i, r := range results {
		switch r.Status {
		case http.StatusOK:
			winners++
			d := testkit.DataObject(t, r)
			if e2eGet(d, "success") != true || testkit.Str(e2eGet(d, "tokens", "accessToken")) == "" || testkit.Str(e2eGet(d, "tokens", "refreshToken")) == "" {
				t.Errorf("winner %d without tokens: %s", i, r.Body)
			}
		case http.StatusBadRequest:
			if msg := e2eErrMessage(t, r); !strings.Contains(strings.ToLower(msg), "expired") {
				t.Errorf("loser %d: message %q, want it to contain 'expired'", i, msg)
			}
		default:
			t.Errorf("request %d: status %d, want 200 or 400: %s", i, r.Status, r.Body)
		}
	}
	if winners != 1 {
		t.Errorf("%d of %d concurrent logins with one signed challenge got tokens, want exactly 1", winners, n)
	}
}

// Deleting a device: its access tokens introspect inactive, its refresh token fails,
// /mobile/challenge for its fingerprint is 404, and the fingerprint can be registered
// again (and used to log in).
func ccDeleteDevice(t *testing.T, srv *testserver.Server) {
	u := testkit.NewUser(t, srv, "bio-")
	key := e2eNewKey(t)
	fp := "CONC-DELETE-" + testkit.Unique()
	deviceID := e2eRegister(t, srv, u.JWT, fp, key)

	first := e2eMobileLogin(t, srv, fp, key, false)
	second := e2eMobileLogin(t, srv, fp, key, true)
	// A refreshed family too: its new tokens were issued through the device as well.
	r := srv.Public(t, http.MethodPost, e2eMobileRefresh, "", map[string]any{"refreshToken": second["refreshToken"]})
	if !testkit.CheckStatus(t, "refresh before delete", r, 200) {
		t.FailNow()
	}
	refreshed := testkit.DataObject(t, r)
	accessTokens := []string{testkit.Str(first["accessToken"]), testkit.Str(refreshed["accessToken"])}
	refreshTokens := []string{testkit.Str(first["refreshToken"]), testkit.Str(refreshed["refreshToken"])}
	for i, at := range accessTokens {
		if got := testkit.IntrospectClaims(t, srv, at, ""); got["active"] != true || got["did"] != deviceID {
			t.Fatalf("access token %d before delete: %v, want active with did %s", i, got, deviceID)
		}
	}

	// Another user's device id is "not found" and changes nothing.
	other := testkit.NewUser(t, srv, "bio-")
	r = srv.Public(t, http.MethodDelete, e2eDevices+"/"+deviceID, other.JWT, nil)
	if testkit.CheckStatus(t, "delete another user's device", r, 404) {
		if msg := e2eErrMessage(t, r); msg != "Device not found or inactive" {
			t.Errorf("message %q", msg)
		}
	}
	if got := testkit.IntrospectClaims(t, srv, accessTokens[0], ""); got["active"] != true {
		t.Fatalf("another user's delete revoked the device's token: %v", got)
	}

	r = srv.Public(t, http.MethodDelete, e2eDevices+"/"+deviceID, u.JWT, nil)
	if !testkit.CheckStatus(t, "delete device", r, 200) {
		t.FailNow()
	}
	if d := testkit.DataObject(t, r); d["success"] != true || d["message"] != "Device deleted successfully" {
		t.Errorf("delete answer: %s", r.Body)
	}

	for i, at := range accessTokens {
		if got := testkit.IntrospectClaims(t, srv, at, ""); got["active"] != false {
			t.Errorf("access token %d after delete introspects %v, want active false", i, got)
		}
		if r := srv.Public(t, http.MethodGet, e2eDevices, at, nil); r.Status != http.StatusUnauthorized {
			t.Errorf("access token %d after delete: GET /devices %d, want 401", i, r.Status)
		}
	}
	for i, rt := range refreshTokens {
		r := srv.Public(t, http.MethodPost, e2eMobileRefresh, "", map[string]any{"refreshToken": rt})
		if testkit.CheckStatus(t, "refresh token "+strconv.Itoa(i)+" after delete", r, 401) {
			e2eErrMessage(t, r)
		}
	}
	r = srv.Public(t, http.MethodPost, e2eMobileChallenge, "", map[string]any{"deviceFingerprint": fp})
	if testkit.CheckStatus(t, "mobile challenge for a deleted device", r, 404) {
		if msg := e2eErrMessage(t, r); msg != "Device not found or inactive" {
			t.Errorf("message %q, want 'Device not found or inactive'", msg)
		}
	}
	// The user's own password session was not issued through the device: still good.
	r = srv.Public(t, http.MethodGet, e2eDevices, u.JWT, nil)
	if testkit.CheckStatus(t, "list devices with the password session", r, 200) {
		if list, _ := e2eGet(testkit.DataObject(t, r), "devices").([]any); len(list) != 0 {
			t.Errorf("devices after delete: %s", r.Body)
		}
	}
	// Deleting it again is 404.
	r = srv.Public(t, http.MethodDelete, e2eDevices+"/"+deviceID, u.JWT, nil)
	testkit.CheckStatus(t, "delete the deleted device", r, 404)

	// The fingerprint is free again: register it with a new key and log in with it.
	newKey := e2eNewKey(t)
	newID := e2eRegister(t, srv, u.JWT, fp, newKey)
	if newID == deviceID {
		t.Errorf("re-registration reused the deleted device id %s", deviceID)
	}
	tokens := e2eMobileLogin(t, srv, fp, newKey, false)
	if got := testkit.IntrospectClaims(t, srv, testkit.Str(tokens["accessToken"]), ""); got["active"] != true || got["did"] != newID {
		t.Errorf("login with the re-registered fingerprint: %v", got)
	}
	// The old key no longer opens the fingerprint's sessions.
	r = srv.Public(t, http.MethodPost, e2eMobileChallenge, "", map[string]any{"deviceFingerprint": fp})
	if testkit.CheckStatus(t, "mobile challenge", r, 200) {
		c := testkit.DataObject(t, r)
		r = srv.Public(t, http.MethodPost, e2eMobileBiometric, "", map[string]any{
			"sessionId": c["sessionId"], "signedChallenge": key.Sign(t, testkit.Str(c["challenge"])),
		})
		testkit.CheckStatus(t, "login with the deleted device's key", r, 401)
	}
}

// /mobile/refresh returns the token set nested (tokens) and flat; rememberMe picks the
// 30-day (720h) refresh lifetime, kept across refreshes; without it 72h.
func ccRefreshShapes(t *testing.T, srv *testserver.Server) {
	u := testkit.NewUser(t, srv, "bio-")
	key := e2eNewKey(t)
	fp := "CONC-REFRESH-" + testkit.Unique()
	e2eRegister(t, srv, u.JWT, fp, key)

	wantLifetime := func(what string, v any, want time.Duration) {
		t.Helper()
		at, err := time.Parse(time.RFC3339, testkit.Str(v))
		if err != nil {
			t.Errorf("%s: %v is not an RFC 3339 time", what, v)
			return
		}
		if d := time.Until(at) - want; d > time.Minute || d < -time.Minute {
			t.Errorf("%s = %v: lifetime %v, want about %v", what, at, time.Until(at).Round(time.Second), want)
		}
	}

	for _, tc := range []struct {
		rememberMe bool
		lifetime   time.Duration
	}{{true, 720 * time.Hour}, {false, 72 * time.Hour}} {
		name := "rememberMe=" + strconv.FormatBool(tc.rememberMe)
		tokens := e2eMobileLogin(t, srv, fp, key, tc.rememberMe)
		wantLifetime(name+": login refreshTokenExpiresAt", tokens["refreshTokenExpiresAt"], tc.lifetime)
		wantLifetime(name+": login accessTokenExpiresAt", tokens["accessTokenExpiresAt"], time.Hour)

		r := srv.Public(t, http.MethodPost, e2eMobileRefresh, "", map[string]any{"refreshToken": tokens["refreshToken"]})
		if !testkit.CheckStatus(t, name+": refresh", r, 200) {
			continue
		}
		d := testkit.DataObject(t, r)
		if d["success"] != true {
			t.Errorf("%s: success = %v", name, d["success"])
		}
		nested, ok := d["tokens"].(map[string]any)
		if !ok {
			t.Fatalf("%s: no nested tokens: %s", name, r.Body)
		}
		for _, k := range []string{"accessToken", "accessTokenExpiresAt", "refreshToken", "refreshTokenExpiresAt", "signature"} {
			if testkit.Str(nested[k]) == "" {
				t.Errorf("%s: tokens.%s missing: %s", name, k, r.Body)
			}
			if d[k] != nested[k] {
				t.Errorf("%s: flat %s = %v, nested %v", name, k, d[k], nested[k])
			}
		}
		if d["refreshToken"] == tokens["refreshToken"] || d["accessToken"] == tokens["accessToken"] {
			t.Errorf("%s: refresh did not rotate the tokens", name)
		}
		wantLifetime(name+": refreshed refreshTokenExpiresAt", d["refreshTokenExpiresAt"], tc.lifetime)
		wantLifetime(name+": refreshed accessTokenExpiresAt", d["accessTokenExpiresAt"], time.Hour)

		// Reuse of the rotated refresh token: 401, and the family (the new tokens) dies.
		r = srv.Public(t, http.MethodPost, e2eMobileRefresh, "", map[string]any{"refreshToken": tokens["refreshToken"]})
		testkit.CheckStatus(t, name+": reused refresh token", r, 401)
		if got := testkit.IntrospectClaims(t, srv, testkit.Str(d["accessToken"]), ""); got["active"] != false {
			t.Errorf("%s: after reuse the family's new access token is %v, want inactive", name, got)
		}
	}
}

// The biometric access token carries amr ["hwk"] and did (API.md §2), also after refresh.
func ccClaims(t *testing.T, srv *testserver.Server) {
	u := testkit.NewUser(t, srv, "bio-")
	key := e2eNewKey(t)
	fp := "CONC-CLAIMS-" + testkit.Unique()
	deviceID := e2eRegister(t, srv, u.JWT, fp, key)
	tokens := e2eMobileLogin(t, srv, fp, key, false)

	check := func(what, token string) {
		t.Helper()
		c := testkit.JWTClaims(t, token)
		amr, _ := c["amr"].([]any)
		if len(amr) != 1 || amr[0] != "hwk" {
			t.Errorf("%s: amr = %v, want [\"hwk\"]", what, c["amr"])
		}
		if c["did"] != deviceID {
			t.Errorf("%s: did = %v, want %s", what, c["did"], deviceID)
		}
		if c["sub"] != strconv.FormatInt(u.ID, 10) {
			t.Errorf("%s: sub = %v, want %d", what, c["sub"], u.ID)
		}
		if testkit.Str(c["sid"]) == "" || testkit.Str(c["jti"]) == "" {
			t.Errorf("%s: sid %v jti %v", what, c["sid"], c["jti"])
		}
	}
	check("biometric login", testkit.Str(tokens["accessToken"]))

	r := srv.Public(t, http.MethodPost, e2eMobileRefresh, "", map[string]any{"refreshToken": tokens["refreshToken"]})
	if testkit.CheckStatus(t, "refresh", r, 200) {
		check("refreshed", testkit.Str(testkit.DataObject(t, r)["accessToken"]))
	}

	// The password + TOTP session of the same user is not a device session.
	c := testkit.JWTClaims(t, u.JWT)
	if _, ok := c["did"]; ok {
		t.Errorf("password session carries did %v", c["did"])
	}
	if amr, _ := c["amr"].([]any); len(amr) == 0 || amr[0] == "hwk" {
		t.Errorf("password session amr = %v", c["amr"])
	}
}
