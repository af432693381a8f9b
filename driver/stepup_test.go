package driver_test

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/session"
)

var suSeq atomic.Int64

// suLogin issues a full session whose login happened at authTime (zero: now).
func suLogin(t *testing.T, srv *testserver.Server, u *testkit.Identity, authTime time.Time) *session.TokenSet {
	t.Helper()
	ts, err := srv.Registry.Tokens().Issue(context.Background(), session.IssueRequest{
		IdentityID: u.ID, Email: u.Email, AMR: []string{"pwd", "otp"}, AuthTime: authTime})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

type suKey struct {
	priv *ecdsa.PrivateKey
	pem  string
}

func suNewKey(t *testing.T) suKey {
	t.Helper()
	priv := testkeys.NewES256(t)
	return suKey{priv: priv, pem: testkeys.PublicPEM(t, &priv.PublicKey)}
}

func (k suKey) sign(t *testing.T, challenge string) string {
	return testkeys.SignChallenge(t, k.priv, challenge)
}

func suRegisterBody(fp string, k suKey) map[string]any {
	return map[string]any{"deviceName": "Phone", "deviceType": "mobile", "deviceFingerprint": fp,
		"publicKey": k.pem, "keyAlgorithm": "ES256"}
}

func wantStepUp(t *testing.T, what string, resp *testserver.Response) {
	t.Helper()
	e := testkit.WantErrorOf(t, what, resp, http.StatusForbidden, "")
	if e.Error != "step_up_required" || !strings.Contains(e.Message, "recent login") {
		t.Errorf("%s: error %q message %q, want step_up_required / 'recent login'", what, e.Error, e.Message)
	}
}

// TestStepUpEnrolment: API.md §3 "Enrolling an authenticator needs a recent login". A
// token whose login is older than security.step_up.max_age cannot add a device key,
// generate one or add a passkey, also after a refresh (which keeps auth_time); a fresh
// login of any kind can.
func TestStepUpEnrolment(t *testing.T) {
	testkit.ForEachDB(t, map[string]any{"security.step_up.max_age": "10m"}, func(t *testing.T, srv *testserver.Server) {
		u := testkit.CreateIdentity(t, srv, map[string]any{"email": testkit.UniqueEmail("stepup")})
		oldAuth := time.Now().Add(-11 * time.Minute).UTC().Truncate(time.Second)
		old := suLogin(t, srv, u, oldAuth)
		fresh := suLogin(t, srv, u, time.Time{})

		// auth_time is in the access token and at introspection, and survives a refresh.
		if got := testkit.JWTClaims(t, old.AccessToken)["auth_time"]; got != float64(oldAuth.Unix()) {
			t.Fatalf("auth_time claim = %v, want %d", got, oldAuth.Unix())
		}
		resp := srv.Public(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]any{"refreshToken": old.RefreshToken})
		if resp.Status != http.StatusOK {
			t.Fatalf("refresh: %d %s", resp.Status, resp.Body)
		}
		var refreshed session.TokenSet
		resp.Data(t, &refreshed)
		if got := testkit.JWTClaims(t, refreshed.AccessToken)["auth_time"]; got != float64(oldAuth.Unix()) {
			t.Fatalf("auth_time after refresh = %v, want %d (a refresh must not renew it)", got, oldAuth.Unix())
		}
		intro := testkit.IntrospectClaims(t, srv, refreshed.AccessToken, "")
		if intro["active"] != true || intro["auth_time"] != float64(oldAuth.Unix()) {
			t.Fatalf("introspection = %v, want active with auth_time %d", intro, oldAuth.Unix())
		}

		key := suNewKey(t)
		fp := fmt.Sprintf("fp-stepup-%d", suSeq.Add(1))
		for _, tok := range []struct{ name, token string }{{"old login", old.AccessToken}, {"refreshed old login", refreshed.AccessToken}} {
			wantStepUp(t, tok.name+": register challenge",
				srv.Public(t, http.MethodPost, "/api/v1/auth/devices/register/challenge", tok.token, suRegisterBody(fp, key)))
			wantStepUp(t, tok.name+": keygen",
				srv.Public(t, http.MethodPost, "/api/v1/auth/mobile/keygen", tok.token, map[string]any{"keyAlgorithm": "ES256"}))
			wantStepUp(t, tok.name+": passkey register begin",
				srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/begin", tok.token, map[string]any{"name": "Key"}))
		}

		// The second step of a ceremony started with a fresh login is refused to an old one.
		resp = srv.Public(t, http.MethodPost, "/api/v1/auth/devices/register/challenge", fresh.AccessToken, suRegisterBody(fp, key))
		if resp.Status != http.StatusOK {
			t.Fatalf("fresh register challenge: %d %s", resp.Status, resp.Body)
		}
		var ch struct {
			Challenge string `json:"challenge"`
			SessionID string `json:"sessionId"`
		}
		resp.Data(t, &ch)
		verifyBody := map[string]any{"sessionId": ch.SessionID, "signedChallenge": key.sign(t, ch.Challenge)}
		wantStepUp(t, "old login: register verify",
			srv.Public(t, http.MethodPost, "/api/v1/auth/devices/register/verify", old.AccessToken, verifyBody))
		resp = srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/begin", fresh.AccessToken, map[string]any{"name": "Key"})
		if resp.Status != http.StatusOK {
			t.Fatalf("fresh passkey begin: %d %s", resp.Status, resp.Body)
		}
		var pk struct {
			SessionID string `json:"sessionId"`
		}
		resp.Data(t, &pk)
		wantStepUp(t, "old login: passkey register finish",
			srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/finish", old.AccessToken,
				map[string]any{"sessionId": pk.SessionID, "response": map[string]any{"id": "x"}}))

		// A fresh login enrols.
		resp = srv.Public(t, http.MethodPost, "/api/v1/auth/devices/register/verify", fresh.AccessToken, verifyBody)
		if resp.Status != http.StatusOK {
			t.Fatalf("fresh register verify: %d %s", resp.Status, resp.Body)
		}
		resp = srv.Public(t, http.MethodPost, "/api/v1/auth/mobile/keygen", fresh.AccessToken, map[string]any{"keyAlgorithm": "ES256"})
		if resp.Status != http.StatusOK {
			t.Fatalf("fresh keygen: %d %s", resp.Status, resp.Body)
		}

		// A device-key login is a full login: its session may enrol, and says when it began.
		resp = srv.Public(t, http.MethodPost, "/api/v1/auth/mobile/challenge", "", map[string]any{"deviceFingerprint": fp})
		if resp.Status != http.StatusOK {
			t.Fatalf("mobile challenge: %d %s", resp.Status, resp.Body)
		}
		resp.Data(t, &ch)
		resp = srv.Public(t, http.MethodPost, "/api/v1/auth/mobile/biometric", "", map[string]any{"sessionId": ch.SessionID, "signedChallenge": key.sign(t, ch.Challenge)})
		if resp.Status != http.StatusOK {
			t.Fatalf("biometric login: %d %s", resp.Status, resp.Body)
		}
		var bio struct {
			Tokens session.TokenSet `json:"tokens"`
		}
		resp.Data(t, &bio)
		at, _ := testkit.JWTClaims(t, bio.Tokens.AccessToken)["auth_time"].(float64)
		if d := time.Since(time.Unix(int64(at), 0)); d < -2*time.Second || d > 30*time.Second {
			t.Fatalf("device-key login auth_time %v is not now", at)
		}
		resp = srv.Public(t, http.MethodPost, "/api/v1/auth/passkeys/register/begin", bio.Tokens.AccessToken, map[string]any{"name": "Key"})
		if resp.Status != http.StatusOK {
			t.Fatalf("passkey begin after device-key login: %d %s", resp.Status, resp.Body)
		}

		// Each refusal is audited (the audit log writes in the background).
		deadline := time.Now().Add(5 * time.Second)
		for {
			r := srv.Admin(t, http.MethodGet, "/admin/audit-events?type=step_up.required&userId="+strconv.FormatInt(u.ID, 10), nil)
			var ev struct {
				Events []map[string]any `json:"events"`
			}
			r.Data(t, &ev)
			if len(ev.Events) >= 8 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("step-up refusals audited: %d, want 8", len(ev.Events))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
