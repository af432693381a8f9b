package oauth2_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/oauth2/provider"
)

// noSecret fails when an admin answer carries a client secret or its hash.
func noSecret(t *testing.T, body []byte) {
	t.Helper()
	for _, w := range []string{`"client_secret"`, "secret_hash", "SecretHash"} {
		if strings.Contains(string(body), w) {
			t.Fatalf("answer shows %s: %s", w, body)
		}
	}
}

func TestAdminClients(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		o := startOP(t, dsn, nil)
		ctx := o.ctx()

		// Create: defaults filled in, the secret shown once (256 bits).
		r := o.srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{
			"client_name": "Docs", "redirect_uris": []string{callbackURL}, "scope": "openid  email",
			"audience": []string{reportsAudience},
		})
		if r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("create answer with the secret has Cache-Control %q", cc)
		}
		var c client
		r.Data(t, &c)
		if c.ID == "" || c.Name != "Docs" || c.Method != "client_secret_basic" || c.Scope != "openid email" || c.SkipConsent ||
			!slices.Equal(c.GrantTypes, []string{"authorization_code", "refresh_token"}) || !slices.Equal(c.ResponseTypes, []string{"code"}) ||
			!slices.Equal(c.RedirectURIs, []string{callbackURL}) || !slices.Equal(c.Audience, []string{reportsAudience}) {
			t.Fatalf("created %+v", c)
		}
		if raw, err := base64.RawURLEncoding.DecodeString(c.Secret); err != nil || len(raw) < 32 {
			t.Fatalf("secret %q is not 256 random bits", c.Secret)
		}
		var full map[string]any
		r.JSON(t, &full)
		for _, k := range []string{"created_at", "updated_at"} {
			if _, ok := full["data"].(map[string]any)[k]; !ok {
				t.Errorf("no %s in %s", k, r.Body)
			}
		}

		// GET never shows the secret.
		r = o.srv.Admin(t, http.MethodGet, "/admin/clients/"+c.ID, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("get: %d %s", r.Status, r.Body)
		}
		noSecret(t, r.Body)
		var got client
		r.Data(t, &got)
		if got.ID != c.ID || got.Name != "Docs" || got.Scope != "openid email" {
			t.Fatalf("get %+v", got)
		}

		// The secret works, and a client_id of the caller's choosing.
		cc := o.createClient(t, map[string]any{
			"client_id": "reporting-job", "client_name": "Reports", "grant_types": []string{"client_credentials"},
			"scope": "reports.read", "audience": []string{reportsAudience},
		})
		if cc.ID != "reporting-job" || cc.Secret == "" || cc.Secret == c.Secret {
			t.Fatalf("created %+v", cc)
		}
		ccTok, err := o.ccConfig(cc, "reports.read").Token(ctx)
		if err != nil {
			t.Fatalf("client_credentials with the new secret: %v", err)
		}

		// List: both, no secrets, paged.
		r = o.srv.Admin(t, http.MethodGet, "/admin/clients", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		noSecret(t, r.Body)
		var page struct {
			Clients       []client `json:"clients"`
			NextPageToken string   `json:"nextPageToken"`
		}
		r.Data(t, &page)
		ids := []string{}
		for _, x := range page.Clients {
			ids = append(ids, x.ID)
		}
		if len(ids) != 2 || !slices.Contains(ids, c.ID) || !slices.Contains(ids, cc.ID) || page.NextPageToken != "" {
			t.Fatalf("list %v next %q", ids, page.NextPageToken)
		}
		r = o.srv.Admin(t, http.MethodGet, "/admin/clients?page_size=1", nil)
		r.Data(t, &page)
		if len(page.Clients) != 1 || page.NextPageToken == "" {
			t.Fatalf("first page %s", r.Body)
		}
		first := page.Clients[0].ID
		r = o.srv.Admin(t, http.MethodGet, "/admin/clients?page_size=1&page_token="+url.QueryEscape(page.NextPageToken), nil)
		r.Data(t, &page)
		if len(page.Clients) != 1 || page.Clients[0].ID == first || page.NextPageToken != "" {
			t.Fatalf("second page %s", r.Body)
		}
		testkit.WantError(t, o.srv.Admin(t, http.MethodGet, "/admin/clients?page_size=0", nil), http.StatusBadRequest, "")

		// PUT replaces the metadata; the secret stays and is not shown.
		r = o.srv.Admin(t, http.MethodPut, "/admin/clients/"+cc.ID, map[string]any{
			"client_name": "Reports v2", "grant_types": []string{"client_credentials"},
			"scope": "reports.read reports.write", "audience": []string{reportsAudience}, "skip_consent": true,
		})
		if r.Status != http.StatusOK {
			t.Fatalf("put: %d %s", r.Status, r.Body)
		}
		noSecret(t, r.Body)
		r = o.srv.Admin(t, http.MethodGet, "/admin/clients/"+cc.ID, nil)
		r.Data(t, &got)
		if got.Name != "Reports v2" || got.Scope != "reports.read reports.write" || !got.SkipConsent {
			t.Fatalf("after put %+v", got)
		}
		if _, err := o.ccConfig(cc, "reports.write").Token(ctx); err != nil {
			t.Fatalf("the updated scope with the original secret: %v", err)
		}
		// Turning it public with client_credentials is refused.
		r = o.srv.Admin(t, http.MethodPut, "/admin/clients/"+cc.ID, map[string]any{
			"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "none",
		})
		testkit.WantError(t, r, http.StatusBadRequest, "")

		// DELETE: gone, and its tokens with it.
		rs := o.introspector(t)
		u := o.newUser(t, "del@example.com")
		rp := o.codeClient(t, "client_secret_basic", map[string]any{"skip_consent": true})
		rpConf := o.config(rp, "openid", "offline_access")
		code, a := o.code(t, rpConf, u, false)
		rpTok, err := rpConf.Exchange(ctx, code, oauth2.VerifierOption(a.Verifier))
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{ccTok.AccessToken, rpTok.AccessToken} {
			if in := o.introspect(t, rs, tok, ""); !in.Active {
				t.Fatalf("token inactive before delete")
			}
		}
		for _, id := range []string{cc.ID, rp.ID} {
			r = o.srv.Admin(t, http.MethodDelete, "/admin/clients/"+id, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("delete %s: %d %s", id, r.Status, r.Body)
			}
		}
		for name, tok := range map[string]string{"client_credentials": ccTok.AccessToken, "code flow": rpTok.AccessToken} {
			if in := o.introspect(t, rs, tok, ""); in.Active {
				t.Fatalf("%s token of a deleted client introspects active", name)
			}
		}
		if in := o.introspect(t, rs, rpTok.RefreshToken, "refresh_token"); in.Active {
			t.Fatalf("refresh token of a deleted client introspects active")
		}
		if _, err := rpConf.TokenSource(ctx, &oauth2.Token{RefreshToken: rpTok.RefreshToken}).Token(); err == nil {
			t.Fatalf("refresh with a deleted client")
		}
		if _, err := o.ccConfig(cc, "reports.read").Token(ctx); err == nil {
			t.Fatalf("client_credentials with a deleted client")
		}
		if r := o.srv.Public(t, http.MethodGet, "/userinfo", rpTok.AccessToken, nil); r.Status != http.StatusUnauthorized {
			t.Fatalf("userinfo with a deleted client's token: %d", r.Status)
		}

		// Unknown: 404 everywhere.
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			testkit.WantError(t, o.srv.Admin(t, m, "/admin/clients/"+cc.ID, nil), http.StatusNotFound, "")
			testkit.WantError(t, o.srv.Admin(t, m, "/admin/clients/no-such-client", nil), http.StatusNotFound, "")
		}
		testkit.WantError(t, o.srv.Admin(t, http.MethodPut, "/admin/clients/no-such-client", map[string]any{"grant_types": []string{"client_credentials"}}), http.StatusNotFound, "")
		// The first-party clients are not managed here.
		for _, id := range []string{provider.ClientSelfService, provider.ClientSelfServiceRemember} {
			testkit.WantError(t, o.srv.Admin(t, http.MethodDelete, "/admin/clients/"+id, nil), http.StatusNotFound, "")
			testkit.WantError(t, o.srv.Admin(t, http.MethodGet, "/admin/clients/"+id, nil), http.StatusNotFound, "")
		}

		// Bad bodies: 400 naming the field.
		for field, body := range map[string]any{
			"token_endpoint_auth_method": map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "private_key_jwt"},
			"grant_types":                map[string]any{"grant_types": []string{"password"}},
			"response_types":             map[string]any{"redirect_uris": []string{callbackURL}, "response_types": []string{"token"}},
			"redirect_uris":              map[string]any{"redirect_uris": []string{"not a uri"}},
			"client_id":                  map[string]any{"client_id": strings.Repeat("x", 300), "grant_types": []string{"client_credentials"}},
			"client_name":                map[string]any{"client_name": strings.Repeat("x", 300), "grant_types": []string{"client_credentials"}},
		} {
			r := o.srv.Admin(t, http.MethodPost, "/admin/clients", body)
			testkit.WantError(t, r, http.StatusBadRequest, "")
			if !strings.Contains(string(r.Body), field) {
				t.Errorf("%s: message does not name the field: %s", field, r.Body)
			}
		}
		for name, body := range map[string]any{
			"no redirect_uris for authorization_code": map[string]any{"grant_types": []string{"authorization_code"}},
			"fragment in a redirect URI":              map[string]any{"redirect_uris": []string{callbackURL + "#x"}},
			"plain http redirect URI":                 map[string]any{"redirect_uris": []string{"http://rp.example.com/cb"}},
			"relative redirect URI":                   map[string]any{"redirect_uris": []string{"/cb"}},
			"public client_credentials":               map[string]any{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "none"},
		} {
			r := o.srv.Admin(t, http.MethodPost, "/admin/clients", body)
			testkit.WantError(t, r, http.StatusBadRequest, "")
			if !strings.Contains(string(r.Body), "redirect_uris") && !strings.Contains(string(r.Body), "grant_types") {
				t.Errorf("%s: message does not name the field: %s", name, r.Body)
			}
		}
		for _, raw := range []string{"{", "[]", `{"grant_types":"client_credentials"}`, `{"skip_consent":"yes"}`} {
			testkit.WantError(t, o.srv.Admin(t, http.MethodPost, "/admin/clients", raw), http.StatusBadRequest, "")
		}
		testkit.WantError(t, o.srv.Admin(t, http.MethodPut, "/admin/clients/"+c.ID, "{"), http.StatusBadRequest, "")
		// Loopback http is fine (native apps and local development).
		o.createClient(t, map[string]any{"redirect_uris": []string{"http://127.0.0.1:8765/cb", "http://localhost/cb"}, "token_endpoint_auth_method": "none"})

		// Duplicate client_id: 409; the reserved prefix: 400.
		testkit.WantError(t, o.srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{"client_id": c.ID, "redirect_uris": []string{callbackURL}}), http.StatusConflict, "")
		for _, id := range []string{"pvauth-mine", provider.ClientSelfService} {
			r := o.srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{"client_id": id, "grant_types": []string{"client_credentials"}})
			testkit.WantError(t, r, http.StatusBadRequest, "")
			if !strings.Contains(string(r.Body), "client_id") {
				t.Errorf("reserved prefix message: %s", r.Body)
			}
		}
		// The original is untouched by the failed duplicate.
		r = o.srv.Admin(t, http.MethodGet, "/admin/clients/"+c.ID, nil)
		r.Data(t, &got)
		if got.Name != "Docs" {
			t.Fatalf("duplicate create changed the client: %+v", got)
		}
	})
}
