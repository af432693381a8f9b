package oauth2_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/oauth2/provider"
)

func form(t *testing.T, srv *testserver.Server, path, user, pass string, v url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.PublicURL+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := srv.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := new(strings.Builder)
	_, _ = ioCopy(b, resp)
	return resp.StatusCode, b.String()
}

// TestTokenBoundaries: the holes a reviewer found stay closed.
func TestTokenBoundaries(t *testing.T) {
	srv := testserver.Start(t, "memory", nil)
	ctx := context.Background()
	self := testkit.IssueSession(t, srv, testkit.CreateIdentity(t, srv, nil))

	// A public client proves nothing by its id: it may not introspect.
	var pub struct {
		ClientID string `json:"client_id"`
	}
	srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{"client_name": "spa", "redirect_uris": []string{"http://localhost:9/cb"},
		"token_endpoint_auth_method": "none", "scope": "openid"}).Data(t, &pub)
	for _, id := range []string{pub.ClientID, provider.ClientSelfService} {
		if st, body := form(t, srv, "/oauth2/introspect", "", "", url.Values{"client_id": {id}, "token": {self.AccessToken}}); st != http.StatusUnauthorized || strings.Contains(body, "sec@example.com") {
			t.Fatalf("public client %s introspected: %d %s", id, st, body)
		}
	}

	// A confidential client may, and sees the self-service token.
	var conf struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{"client_name": "svc", "grant_types": []string{"client_credentials"}, "scope": "load"}).Data(t, &conf)
	if st, body := form(t, srv, "/oauth2/introspect", conf.ClientID, conf.ClientSecret, url.Values{"token": {self.AccessToken}}); st != 200 || !strings.Contains(body, `"active":true`) {
		t.Fatalf("confidential introspection: %d %s", st, body)
	}

	// A token issued to an OAuth2 client is not a self-service session.
	st, body := form(t, srv, "/oauth2/token", conf.ClientID, conf.ClientSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"load"}})
	if st != 200 {
		t.Fatalf("client credentials: %d %s", st, body)
	}
	tok := body[strings.Index(body, `"access_token":"`)+16:]
	tok = tok[:strings.IndexByte(tok, '"')]
	for _, path := range []string{"/api/v1/auth/me", "/api/v1/auth/devices", "/api/v1/auth/passkeys"} {
		if r := srv.Public(t, http.MethodGet, path, tok, nil); r.Status != http.StatusForbidden {
			t.Fatalf("OAuth2 client token on %s: %d %s", path, r.Status, r.Body)
		}
	}
	if r := srv.Public(t, http.MethodPost, "/api/v1/auth/oauth2/login/accept", tok, map[string]any{"loginChallenge": "x"}); r.Status != http.StatusForbidden {
		t.Fatalf("OAuth2 client token accepted a login: %d %s", r.Status, r.Body)
	}
	// The self-service token works there.
	if r := srv.Public(t, http.MethodGet, "/api/v1/auth/me", self.AccessToken, nil); r.Status != 200 {
		t.Fatalf("self-service token on /me: %d", r.Status)
	}

	// pvauth's first-party refresh tokens are not redeemable at /oauth2/token, however
	// the client id is spelled: the decision is on the client fosite authenticated.
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {self.RefreshToken}}
	with := func(k, v string) url.Values {
		c := url.Values{}
		for kk, vv := range refresh {
			c[kk] = vv
		}
		c.Set(k, v)
		return c
	}
	for name, try := range map[string]func() (int, string){
		"form client_id": func() (int, string) {
			return form(t, srv, "/oauth2/token", "", "", with("client_id", provider.ClientSelfService))
		},
		"form, remember client": func() (int, string) {
			return form(t, srv, "/oauth2/token", "", "", with("client_id", provider.ClientSelfServiceRemember))
		},
		"basic":                  func() (int, string) { return form(t, srv, "/oauth2/token", provider.ClientSelfService, "", refresh) },
		"basic, percent-encoded": func() (int, string) { return form(t, srv, "/oauth2/token", "%70vauth-self-service", "", refresh) },
		"basic, all percent-encoded": func() (int, string) {
			return form(t, srv, "/oauth2/token", "%70%76%61%75%74%68-self-service", "", refresh)
		},
		"form, percent-encoded twice": func() (int, string) {
			return form(t, srv, "/oauth2/token", "", "", with("client_id", "%70vauth-self-service"))
		},
	} {
		st, body := try()
		if st < 400 || st >= 500 || strings.Contains(body, "access_token") {
			t.Fatalf("%s: self-service refresh at /oauth2/token: %d %s", name, st, body)
		}
	}
	if _, _, err := srv.Registry.Tokens().Refresh(ctx, self.RefreshToken, nil); err != nil {
		t.Fatalf("the refresh token should still be unused: %v", err)
	}
}

// TestDeletedClientStopsAtOnce: the client cache never lets a deleted client in.
func TestDeletedClientStopsAtOnce(t *testing.T) {
	srv := testserver.Start(t, "memory", nil)
	var c struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{"client_name": "svc", "grant_types": []string{"client_credentials"}, "scope": "load"}).Data(t, &c)
	v := url.Values{"grant_type": {"client_credentials"}, "scope": {"load"}}
	if st, body := form(t, srv, "/oauth2/token", c.ClientID, c.ClientSecret, v); st != 200 {
		t.Fatalf("token: %d %s", st, body)
	}
	if r := srv.Admin(t, http.MethodDelete, "/admin/clients/"+c.ClientID, nil); r.Status != 200 {
		t.Fatalf("delete: %d", r.Status)
	}
	if st, body := form(t, srv, "/oauth2/token", c.ClientID, c.ClientSecret, v); st != http.StatusUnauthorized {
		t.Fatalf("deleted client got a token: %d %s", st, body)
	}
}

// Client ids are never all digits: a client acting for itself is the sub of its tokens.
func TestClientIDNotAllDigits(t *testing.T) {
	srv := testserver.Start(t, "memory", nil)
	for _, id := range []string{"5", "0042", "12345678901234567890"} {
		r := srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{"client_id": id, "client_name": "svc",
			"grant_types": []string{"client_credentials"}, "scope": "load"})
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "client_id") {
			t.Fatalf("client id %q: %d %s", id, r.Status, r.Body)
		}
	}
	if r := srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{"client_id": "svc-5", "client_name": "svc",
		"grant_types": []string{"client_credentials"}, "scope": "load"}); r.Status != http.StatusCreated {
		t.Fatalf("client id svc-5: %d %s", r.Status, r.Body)
	}
}

// The OAuth2 endpoints take forms: any other body is 415 (API.md §1), which also keeps
// a browser's cross-site "simple" requests (text/plain) out.
func TestOAuth2EndpointsTakeFormsOnly(t *testing.T) {
	srv := testserver.Start(t, "memory", nil)
	for _, u := range []string{srv.PublicURL + "/oauth2/token", srv.PublicURL + "/oauth2/introspect", srv.PublicURL + "/oauth2/revoke",
		srv.PublicURL + "/oauth2/auth", srv.AdminURL + "/admin/oauth2/introspect"} {
		for _, ct := range []string{"application/json", "text/plain", "multipart/form-data; boundary=x", ""} {
			req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader("token=x&grant_type=client_credentials"))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			resp, err := srv.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b := new(strings.Builder)
			_, _ = ioCopy(b, resp)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(b.String(), `"error":"invalid_request"`) {
				t.Errorf("POST %s with Content-Type %q: %d %s, want 415", u, ct, resp.StatusCode, b.String())
			}
		}
	}
	// A form is fine.
	if st, body := form(t, srv, "/oauth2/revoke", "", "", url.Values{"token": {"x"}, "client_id": {"nobody"}}); st == http.StatusUnsupportedMediaType {
		t.Fatalf("a form: %d %s", st, body)
	}
}
