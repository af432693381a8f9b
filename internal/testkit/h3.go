package testkit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/pvpipe/pvauth/internal/testserver"
)

// JWTClaims decodes the payload of a JWT without verifying it (the server under test is
// trusted; that it accepts the token is for the test to show).
func JWTClaims(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("JWT payload: %v: %s", err, raw)
	}
	return m
}

// LoginTOTP signs id in through the real password + TOTP flow (POST /login → pending
// token, GET /otp/setup → secret, POST /otp/verify) and returns the full access token.
func LoginTOTP(t testing.TB, srv *testserver.Server, id *Identity) string {
	t.Helper()
	var pending, secret, access struct {
		Token       string `json:"token"`
		Secret      string `json:"secret"`
		AccessToken string `json:"accessToken"`
	}
	r := srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", map[string]any{"email": id.Email, "password": id.Password})
	if r.Status != http.StatusOK {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	r.Data(t, &pending)
	r = srv.Public(t, http.MethodGet, "/api/v1/auth/otp/setup", pending.Token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("otp setup: %d %s", r.Status, r.Body)
	}
	r.Data(t, &secret)
	code, err := totp.GenerateCode(secret.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r = srv.Public(t, http.MethodPost, "/api/v1/auth/otp/verify", pending.Token, map[string]any{"otp": code})
	if r.Status != http.StatusOK {
		t.Fatalf("otp verify: %d %s", r.Status, r.Body)
	}
	r.Data(t, &access)
	if access.AccessToken == "" {
		t.Fatalf("otp verify gave no access token: %s", r.Body)
	}
	return access.AccessToken
}

// PublicRequest is Server.Public for goroutines other than the test's: it takes no
// testing.T and returns a failure to send as a response with status 0 and the error as
// its body.
func PublicRequest(srv *testserver.Server, method, path, bearer string, body any) *testserver.Response {
	raw, err := json.Marshal(body)
	if err != nil {
		return &testserver.Response{Body: []byte(err.Error())}
	}
	req, err := http.NewRequest(method, srv.PublicURL+path, bytes.NewReader(raw))
	if err != nil {
		return &testserver.Response{Body: []byte(err.Error())}
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := srv.Client.Do(req)
	if err != nil {
		return &testserver.Response{Body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return &testserver.Response{Status: resp.StatusCode, Header: resp.Header, Body: out}
}

// JSONObject decodes r's body as a JSON object, numbers as json.Number (ids stay exact).
func JSONObject(t testing.TB, r *testserver.Response) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("status %d: body is not a JSON object: %v: %s", r.Status, err, r.Body)
	}
	return m
}

// CheckStatus reports whether r has status want; when not, it marks the test failed
// (and goes on) with the body.
func CheckStatus(t testing.TB, what string, r *testserver.Response, want int) bool {
	t.Helper()
	if r.Status != want {
		t.Errorf("%s: status %d, want %d: %s", what, r.Status, want, r.Body)
		return false
	}
	return true
}
