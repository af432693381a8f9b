package testkit

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/session"
)

// Tokens is the contract's TokenSet as a client reads it, plus the recovery codes a
// TOTP enrolment adds.
type Tokens struct {
	session.TokenSet
	RecoveryCodes []string `json:"recoveryCodes"`
}

// WantTokens decodes a 200 answer carrying a complete token set.
func WantTokens(t testing.TB, resp *testserver.Response) Tokens {
	t.Helper()
	if resp.Status != http.StatusOK {
		t.Fatalf("want 200 with tokens, got %d %s", resp.Status, resp.Body)
	}
	var ts Tokens
	resp.Data(t, &ts)
	if ts.AccessToken == "" || ts.RefreshToken == "" || ts.Signature == "" {
		t.Fatalf("incomplete token set: %s", resp.Body)
	}
	return ts
}

// Refresh posts refreshToken to /api/v1/auth/refresh.
func Refresh(t testing.TB, srv *testserver.Server, refreshToken string) *testserver.Response {
	t.Helper()
	return srv.Public(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]string{"refreshToken": refreshToken})
}

// IntrospectClaims is the admin port's RFC 7662 answer for token (hint may be empty);
// anything but a 200 with a JSON object fails the test.
func IntrospectClaims(t testing.TB, srv *testserver.Server, token, hint string) map[string]any {
	t.Helper()
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	req, err := http.NewRequest(http.MethodPost, srv.AdminURL+"/admin/oauth2/introspect", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if keys := srv.Config.Serve.Admin.APIKeys; len(keys) > 0 {
		req.Header.Set("Authorization", "Bearer "+keys[0])
	}
	resp, err := srv.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect: %d %s", resp.StatusCode, raw)
	}
	return m
}

// IsActive reports whether the admin port finds token active; the answer must say.
func IsActive(t testing.TB, srv *testserver.Server, token string) bool {
	t.Helper()
	m := IntrospectClaims(t, srv, token, "")
	active, ok := m["active"].(bool)
	if !ok {
		t.Fatalf("introspect: no active flag in %v", m)
	}
	return active
}

// JWTClaims decodes the payload of a JWT without verifying it (the server under test is
// trusted; that it accepts the token is for the test to show).
func JWTClaims(t testing.TB, token string) map[string]any {
	t.Helper()
	var m map[string]any
	jwtPart(t, token, 1, &m)
	return m
}

// JWTKID is the kid in the header of a JWT (not verified).
func JWTKID(t testing.TB, token string) string {
	t.Helper()
	var h struct {
		KID string `json:"kid"`
	}
	jwtPart(t, token, 0, &h)
	return h.KID
}

// JWTPart is part i (0 the header, 1 the payload) of a JWT, base64url-decoded.
func JWTPart(t testing.TB, token string, i int) []byte {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("JWT part %d: %v", i, err)
	}
	return raw
}

// jwtPart decodes part i of a JWT into v.
func jwtPart(t testing.TB, token string, i int, v any) {
	t.Helper()
	raw := JWTPart(t, token, i)
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("JWT part %d: %v: %s", i, err, raw)
	}
}
