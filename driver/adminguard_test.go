package driver_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

func agDo(t *testing.T, srv *testserver.Server, method, url, host, ct, body, key string) *testserver.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := srv.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &testserver.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// TestAdminGuard: API.md §1, §5. A web page must not drive the admin API: a JSON body
// without Content-Type (a "simple" cross-site request) is 415, and without API keys a
// foreign Host (DNS rebinding) is 403.
func TestAdminGuard(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv := testserver.Start(t, dsn, map[string]any{"serve.admin.allowed_hosts": []any{"pvauth-admin.internal"}})
		body := `{"email": "guard@example.com", "password": "correct horse battery staple", "isSuperAdmin": true}`

		for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded"} {
			r := agDo(t, srv, http.MethodPost, srv.AdminURL+"/admin/identities", "", ct, body, "")
			testkit.WantErrorOf(t, "create identity with Content-Type "+ct, r, http.StatusUnsupportedMediaType, "")
		}
		r := agDo(t, srv, http.MethodPost, srv.PublicURL+"/api/v1/auth/login", "", "", `{"email": "a@example.com", "password": "x"}`, "")
		testkit.WantErrorOf(t, "public login without Content-Type", r, http.StatusUnsupportedMediaType, "")

		for _, host := range []string{"evil.example", "evil.example:8081", "10.1.2.3:8081", "localhost.evil.example"} {
			r := agDo(t, srv, http.MethodPost, srv.AdminURL+"/admin/identities", host, "application/json", body, "")
			testkit.WantErrorOf(t, "Host "+host, r, http.StatusForbidden, "")
			r = agDo(t, srv, http.MethodGet, srv.AdminURL+"/admin/identities", host, "", "", "")
			testkit.WantErrorOf(t, "GET with Host "+host, r, http.StatusForbidden, "")
		}
		if r := agDo(t, srv, http.MethodGet, srv.AdminURL+"/admin/identities?email=guard@example.com", "", "", "", ""); r.Status != http.StatusOK || strings.Contains(string(r.Body), "guard@example.com") {
			t.Fatalf("no identity may have been created: %d %s", r.Status, r.Body)
		}
		for _, host := range []string{"", "localhost", "pvauth-admin.internal:8081", "[::1]:1"} {
			r := agDo(t, srv, http.MethodGet, srv.AdminURL+"/admin/identities", host, "", "", "")
			if r.Status != http.StatusOK {
				t.Fatalf("Host %q: %d %s", host, r.Status, r.Body)
			}
		}
		// The public port answers any Host (it is meant to be reached by name).
		if r := agDo(t, srv, http.MethodGet, srv.PublicURL+"/health/alive", "auth.example.com", "", "", ""); r.Status != http.StatusOK {
			t.Fatalf("public port with a Host name: %d", r.Status)
		}

		// With API keys the key is the guard: any Host name (a load balancer's) works.
		keyed := testserver.Start(t, dsn, map[string]any{"serve.admin.api_keys": []any{"admin-key-0123456789abcdef"}})
		r = agDo(t, keyed, http.MethodGet, keyed.AdminURL+"/admin/identities", "pvauth-admin.prod.example", "", "", "admin-key-0123456789abcdef")
		if r.Status != http.StatusOK {
			t.Fatalf("keyed admin with a Host name: %d %s", r.Status, r.Body)
		}
	})
}
