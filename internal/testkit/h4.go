package testkit

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// WantErrorOf is WantError for tests that check many requests: when the check fails,
// it also names what was checked.
func WantErrorOf(t testing.TB, what string, resp *testserver.Response, status int, msgPart string) ErrorBody {
	t.Helper()
	passed := false
	defer func() {
		if !passed {
			t.Logf("the failed check: %s", what)
		}
	}()
	e := WantError(t, resp, status, msgPart)
	passed = true
	return e
}

// JWTClaims decodes a JWT's claims without checking its signature (tests that need
// the signature checked verify it against the JWKS).
func JWTClaims(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.40q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("JWT payload %s: %v", raw, err)
	}
	return c
}

// Introspect asks the admin port about a token (a form body, a bare RFC 7662 answer,
// which must be a 200).
func Introspect(t testing.TB, srv *testserver.Server, token string) map[string]any {
	t.Helper()
	resp, err := srv.Client.Post(srv.AdminURL+"/admin/oauth2/introspect", "application/x-www-form-urlencoded",
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &m) != nil {
		t.Fatalf("introspect: %d %s", resp.StatusCode, raw)
	}
	return m
}

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
	return &e
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
		var err error
		if k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	body := map[string]any{
		"deviceName": "Phone", "deviceType": "mobile", "deviceFingerprint": fmt.Sprintf("fp-%d-%d", time.Now().UnixNano(), seq.Add(1)),
		"publicKey": testkeys.PEM("PUBLIC KEY", testkeys.MustDER(t, &k.PublicKey)), "keyAlgorithm": "ES256",
	}
	maps.Copy(body, fields)
	r := srv.Public(t, http.MethodPost, "/api/v1/auth/devices/register/challenge", access, body)
	if r.Status != http.StatusOK {
		t.Fatalf("device register challenge: %d %s", r.Status, r.Body)
	}
	var ch struct {
		Challenge string `json:"challenge"`
		SessionID string `json:"sessionId"`
		DeviceID  string `json:"deviceId"`
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
	d := &Device{ID: cmp.Or(v.DeviceID, ch.DeviceID), Key: k}
	d.Fingerprint, _ = body["deviceFingerprint"].(string)
	return d
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
