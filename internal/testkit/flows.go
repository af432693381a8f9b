package testkit

import (
	"crypto/ecdsa"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// Enrolment is the answer of a first login's TOTP verification.
type Enrolment struct {
	AccessToken   string   `json:"accessToken"`
	RefreshToken  string   `json:"refreshToken"`
	RecoveryCodes []string `json:"recoveryCodes"`
}

// EnrolTOTP logs id in for the first time through the real flows: password, TOTP
// set-up, and the verification of a current code.
func EnrolTOTP(t testing.TB, srv *testserver.Server, id *Identity) *Enrolment {
	t.Helper()
	r := srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", map[string]any{"email": id.Email, "password": id.Password})
	if r.Status != http.StatusOK {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	var lr struct {
		Token string `json:"token"`
	}
	r.Data(t, &lr)
	r = srv.Public(t, http.MethodGet, "/api/v1/auth/otp/setup", lr.Token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("otp setup: %d %s", r.Status, r.Body)
	}
	var setup struct {
		Secret string `json:"secret"`
	}
	r.Data(t, &setup)
	code, err := totp.GenerateCode(setup.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r = srv.Public(t, http.MethodPost, "/api/v1/auth/otp/verify", lr.Token, map[string]any{"otp": code})
	if r.Status != http.StatusOK {
		t.Fatalf("otp verify: %d %s", r.Status, r.Body)
	}
	var e Enrolment
	r.Data(t, &e)
	if e.AccessToken == "" {
		t.Fatalf("otp verify gave no access token: %s", r.Body)
	}
	return &e
}

// User is an identity and the access token of its first real login.
type User struct {
	ID    int64
	Email string
	JWT   string
}

// NewUser creates an identity (its email starting with prefix) and logs it in for the
// first time through the real flows (EnrolTOTP).
func NewUser(t testing.TB, srv *testserver.Server, prefix string) *User {
	t.Helper()
	id := CreateIdentity(t, srv, map[string]any{"email": UniqueEmail(prefix)})
	return &User{ID: id.ID, Email: id.Email, JWT: EnrolTOTP(t, srv, id).AccessToken}
}

// Device is a device key registered through the API.
type Device struct {
	ID          string
	Fingerprint string
	Key         *ecdsa.PrivateKey
}

// RegisterDevice registers the ES256 key k (a new one when nil) as a device of the
// session of access: the register challenge, then its signed verification. fields
// replace the challenge's defaults (deviceName "Phone", deviceType "mobile", a unique
// deviceFingerprint, the PEM public key).
func RegisterDevice(t testing.TB, srv *testserver.Server, access string, k *ecdsa.PrivateKey, fields map[string]any) *Device {
	t.Helper()
	if k == nil {
		k = testkeys.NewES256(t)
	}
	body := map[string]any{
		"deviceName": "Phone", "deviceType": "mobile", "deviceFingerprint": "fp-" + Unique(),
		"publicKey": testkeys.PublicPEM(t, &k.PublicKey), "keyAlgorithm": "ES256",
	}
	maps.Copy(body, fields)
	r := srv.Public(t, http.MethodPost, "/api/v1/auth/devices/register/challenge", access, body)
	if r.Status != http.StatusOK {
		t.Fatalf("device register challenge: %d %s", r.Status, r.Body)
	}
	var ch struct {
		Challenge string `json:"challenge"`
		SessionID string `json:"sessionId"`
	}
	r.Data(t, &ch)
	r = srv.Public(t, http.MethodPost, "/api/v1/auth/devices/register/verify", access, map[string]any{
		"sessionId": ch.SessionID, "signedChallenge": testkeys.SignChallenge(t, k, ch.Challenge),
	})
	if r.Status != http.StatusOK {
		t.Fatalf("device register verify: %d %s", r.Status, r.Body)
	}
	var v struct {
		DeviceID string `json:"deviceId"`
	}
	r.Data(t, &v)
	if v.DeviceID == "" {
		t.Fatalf("device register verify gave no deviceId: %s", r.Body)
	}
	d := &Device{ID: v.DeviceID, Key: k}
	d.Fingerprint, _ = body["deviceFingerprint"].(string)
	return d
}

// SetFCMToken gives the device deviceID of the session of access the FCM token fcmToken.
func SetFCMToken(t testing.TB, srv *testserver.Server, access, deviceID, fcmToken string) {
	t.Helper()
	r := srv.Public(t, http.MethodPut, "/api/v1/auth/devices/fcm-token", access, map[string]any{"deviceId": deviceID, "fcmToken": fcmToken})
	if r.Status != http.StatusOK {
		t.Fatalf("fcm token: %d %s", r.Status, r.Body)
	}
}

// MobileLogin logs in with the device key registered under fingerprint:
// /mobile/challenge, then /mobile/biometric with the challenge signed by key. Anything
// but a 200 with an access and a refresh token fails the test; it returns data.tokens.
func MobileLogin(t testing.TB, srv *testserver.Server, fingerprint string, key *ecdsa.PrivateKey, rememberMe bool) map[string]any {
	t.Helper()
	r := srv.Public(t, http.MethodPost, "/api/v1/auth/mobile/challenge", "", map[string]any{"deviceFingerprint": fingerprint})
	if r.Status != http.StatusOK {
		t.Fatalf("mobile challenge %s: %d %s", fingerprint, r.Status, r.Body)
	}
	c := DataObject(t, r)
	r = srv.Public(t, http.MethodPost, "/api/v1/auth/mobile/biometric", "", map[string]any{
		"sessionId": c["sessionId"], "signedChallenge": testkeys.SignChallenge(t, key, Str(c["challenge"])), "rememberMe": rememberMe,
	})
	if r.Status != http.StatusOK {
		t.Fatalf("mobile biometric %s: %d %s", fingerprint, r.Status, r.Body)
	}
	tokens, _ := DataObject(t, r)["tokens"].(map[string]any)
	if Str(tokens["accessToken"]) == "" || Str(tokens["refreshToken"]) == "" {
		t.Fatalf("mobile biometric gave no tokens: %s", r.Body)
	}
	return tokens
}
