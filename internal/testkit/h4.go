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
