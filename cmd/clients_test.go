package cmd_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

type cliClient struct {
	ClientID                string   `json:"client_id"`
	ClientName              string   `json:"client_name"`
	ClientSecret            *string  `json:"client_secret"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	Scope                   string   `json:"scope"`
	Audience                []string `json:"audience"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	SkipConsent             bool     `json:"skip_consent"`
	PostLogoutRedirectURIs  []string `json:"post_logout_redirect_uris"`
	DeliveryMode            string   `json:"backchannel_token_delivery_mode"`
}

func clientsArgs(conn []string, args ...string) []string {
	return append(append([]string{"clients"}, args...), conn...)
}

func TestClientsCreateListDelete(t *testing.T) {
	srv, conn := startAdminServer(t)

	// A confidential client_credentials client: the secret is printed once, and works.
	r := mustOK(t, runPVAuth(t, "", clientsArgs(conn, "create", "--id", "reporting-job", "--name", "Reporting job",
		"--grant-type", "client_credentials", "--scope", "reports.read, reports.write", "--audience", "https://reports.example.com")...))
	var job cliClient
	if err := json.Unmarshal([]byte(r.Stdout), &job); err != nil {
		t.Fatalf("create did not print a client: %v\n%s", err, r.Stdout)
	}
	if job.ClientID != "reporting-job" || job.ClientName != "Reporting job" || job.ClientSecret == nil || len(*job.ClientSecret) < 43 ||
		!slices.Equal(job.GrantTypes, []string{"client_credentials"}) || job.Scope != "reports.read reports.write" ||
		!slices.Equal(job.Audience, []string{"https://reports.example.com"}) || job.TokenEndpointAuthMethod != "client_secret_basic" {
		t.Fatalf("created %+v", job)
	}
	if !strings.Contains(r.Stderr, "not shown again") {
		t.Errorf("no warning about the one-time secret on stderr: %q", r.Stderr)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.PublicURL+"/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"reports.read"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(job.ClientID, *job.ClientSecret)
	resp, err := srv.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("client_credentials with the printed secret: %d", resp.StatusCode)
	}

	// A public SPA: no secret, no warning.
	r = mustOK(t, runPVAuth(t, "", clientsArgs(conn, "create", "--id", "docs-spa", "--name", "Docs", "--public",
		"--redirect-uri", "https://docs.example.com/callback", "--post-logout-redirect-uri", "https://docs.example.com/bye",
		"--scope", "openid offline_access", "--skip-consent")...))
	var spa cliClient
	if err := json.Unmarshal([]byte(r.Stdout), &spa); err != nil {
		t.Fatalf("create spa: %v\n%s", err, r.Stdout)
	}
	if spa.ClientSecret != nil || spa.TokenEndpointAuthMethod != "none" || !spa.SkipConsent ||
		!slices.Equal(spa.RedirectURIs, []string{"https://docs.example.com/callback"}) ||
		!slices.Equal(spa.GrantTypes, []string{"authorization_code", "refresh_token"}) || spa.Scope != "openid offline_access" ||
		!slices.Equal(spa.PostLogoutRedirectURIs, []string{"https://docs.example.com/bye"}) {
		t.Fatalf("created spa %+v", spa)
	}
	if r.Stderr != "" {
		t.Errorf("stderr for a public client: %q", r.Stderr)
	}
	// A CIBA client: poll mode by default.
	r = mustOK(t, runPVAuth(t, "", clientsArgs(conn, "create", "--grant-type", "urn:openid:params:grant-type:ciba", "--scope", "openid")...))
	var ciba cliClient
	if err := json.Unmarshal([]byte(r.Stdout), &ciba); err != nil || ciba.DeliveryMode != "poll" || ciba.ClientSecret == nil {
		t.Fatalf("create a CIBA client: %v %s", err, r.Stdout)
	}
	mustOK(t, runPVAuth(t, "", clientsArgs(conn, "delete", "--yes", ciba.ClientID)...))
	// A server-chosen id.
	r = mustOK(t, runPVAuth(t, "", clientsArgs(conn, "create", "--grant-type", "client_credentials")...))
	var anon cliClient
	if err := json.Unmarshal([]byte(r.Stdout), &anon); err != nil || len(anon.ClientID) != 36 {
		t.Fatalf("create without --id: %v %s", err, r.Stdout)
	}

	// The API's errors, with a non-zero exit.
	mustFail(t, runPVAuth(t, "", clientsArgs(conn, "create", "--id", "reporting-job", "--grant-type", "client_credentials")...),
		"already exists", "409")
	mustFail(t, runPVAuth(t, "", clientsArgs(conn, "create", "--public", "--grant-type", "client_credentials")...), "grant_types", "400")
	mustFail(t, runPVAuth(t, "", clientsArgs(conn, "create", "--id", "pvauth-x", "--grant-type", "client_credentials")...), "client_id", "400")
	mustFail(t, runPVAuth(t, "", clientsArgs(conn, "create", "--grant-type", "authorization_code")...), "redirect_uris")
	mustFail(t, runPVAuth(t, "", clientsArgs(conn, "create", "--public", "--token-endpoint-auth-method", "client_secret_post")...), "--public")

	// list as a table (ordered by client id).
	r = mustOK(t, runPVAuth(t, "", clientsArgs(conn, "list")...))
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("table has %d lines, want header + 3:\n%s", len(lines), r.Stdout)
	}
	if f := strings.Join(strings.Fields(lines[0]), " "); f != "CLIENT ID NAME GRANT TYPES AUTH METHOD SKIP CONSENT" {
		t.Errorf("header %q", lines[0])
	}
	var rows []string
	for _, l := range lines[1:] {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	for _, want := range []string{
		"docs-spa Docs authorization_code,refresh_token none true",
		"reporting-job Reporting job client_credentials client_secret_basic false",
		anon.ClientID + " - client_credentials client_secret_basic false",
	} {
		if !slices.Contains(rows, want) {
			t.Errorf("no row %q in\n%s", want, r.Stdout)
		}
	}
	if r.Stderr != "" {
		t.Errorf("a single page printed a page token: %q", r.Stderr)
	}

	// list as JSON: never a secret.
	r = mustOK(t, runPVAuth(t, "", clientsArgs(conn, "list", "-o", "json")...))
	if strings.Contains(r.Stdout, `"client_secret"`) || strings.Contains(r.Stdout, *job.ClientSecret) {
		t.Fatalf("list shows a secret:\n%s", r.Stdout)
	}
	var page struct {
		Clients       []cliClient `json:"clients"`
		NextPageToken string      `json:"nextPageToken"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &page); err != nil || len(page.Clients) != 3 {
		t.Fatalf("list json: %v\n%s", err, r.Stdout)
	}

	// paging
	r = mustOK(t, runPVAuth(t, "", clientsArgs(conn, "list", "--page-size", "1", "-o", "json")...))
	if err := json.Unmarshal([]byte(r.Stdout), &page); err != nil || len(page.Clients) != 1 || page.NextPageToken == "" {
		t.Fatalf("first page: %v %s", err, r.Stdout)
	}
	r = mustOK(t, runPVAuth(t, "", clientsArgs(conn, "list", "--page-size", "1")...))
	if !strings.Contains(r.Stderr, "--page-token "+page.NextPageToken) {
		t.Errorf("table mode did not print the next page token: %q", r.Stderr)
	}
	r = mustOK(t, runPVAuth(t, "", clientsArgs(conn, "list", "--page-size", "1", "--page-token", page.NextPageToken, "-o", "json")...))
	var second struct {
		Clients []cliClient `json:"clients"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &second); err != nil || len(second.Clients) != 1 || second.Clients[0].ClientID == page.Clients[0].ClientID {
		t.Errorf("second page: %v\n%s", err, r.Stdout)
	}
	mustFail(t, runPVAuth(t, "", clientsArgs(conn, "list", "--page-size", "0")...), "page_size")
	mustFail(t, runPVAuth(t, "", clientsArgs(conn, "list", "--format", "yaml")...), "--format")

	// delete: the prompt names the client; "n" keeps it, "y" deletes it and its tokens.
	r = runPVAuth(t, "n\n", clientsArgs(conn, "delete", "reporting-job")...)
	mustFail(t, r, "aborted")
	if !strings.Contains(r.Stdout, "reporting-job (Reporting job)") {
		t.Errorf("prompt does not name the client: %q", r.Stdout)
	}
	if resp := srv.Admin(t, http.MethodGet, "/admin/clients/reporting-job", nil); resp.Status != http.StatusOK {
		t.Fatalf("an aborted delete deleted: %d", resp.Status)
	}
	r = mustOK(t, runPVAuth(t, "yes\n", clientsArgs(conn, "delete", "reporting-job")...))
	if !strings.Contains(r.Stdout, "Deleted OAuth2 client reporting-job.") {
		t.Errorf("delete printed %q", r.Stdout)
	}
	if resp := srv.Admin(t, http.MethodGet, "/admin/clients/reporting-job", nil); resp.Status != http.StatusNotFound {
		t.Fatalf("client still there after delete: %d", resp.Status)
	}
	mustOK(t, runPVAuth(t, "", clientsArgs(conn, "delete", "--yes", "docs-spa")...))
	mustFail(t, runPVAuth(t, "", clientsArgs(conn, "delete", "--yes", "docs-spa")...), "OAuth2 client not found.", "404")
	mustFail(t, runPVAuth(t, "y\n", clientsArgs(conn, "delete", "no-such-client")...), "OAuth2 client not found.")
	r = mustOK(t, runPVAuth(t, "", clientsArgs(conn, "list")...))
	if n := len(strings.Split(strings.TrimSpace(r.Stdout), "\n")); n != 2 {
		t.Errorf("list after deleting two of three:\n%s", r.Stdout)
	}
}

func TestClientsAPIKeyAndErrors(t *testing.T) {
	srv, _ := startAdminServer(t)
	const msg = "A valid admin API key is required"
	mustFail(t, runPVAuth(t, "", "clients", "list", "--endpoint", srv.AdminURL, "--api-key", "wrong-key-0123456789"), msg, "401")
	mustFail(t, runPVAuth(t, "", "clients", "create", "--endpoint", srv.AdminURL, "--grant-type", "client_credentials"), msg)
	if resp := srv.Admin(t, http.MethodGet, "/admin/clients", nil); !strings.Contains(string(resp.Body), `"clients":[]`) {
		t.Fatalf("a create without a key created: %s", resp.Body)
	}
	// The environment supplies endpoint and key.
	t.Setenv("PVAUTH_ADMIN_ENDPOINT", srv.AdminURL)
	t.Setenv("PVAUTH_ADMIN_API_KEY", testAdminKey)
	mustOK(t, runPVAuth(t, "", "clients", "create", "--id", "env-client", "--grant-type", "client_credentials"))
	if r := mustOK(t, runPVAuth(t, "", "clients", "list")); !strings.Contains(r.Stdout, "env-client") {
		t.Errorf("list with env settings:\n%s", r.Stdout)
	}

	unsetEnv(t, "PVAUTH_ADMIN_ENDPOINT", "PVAUTH_ADMIN_API_KEY")
	mustFail(t, runPVAuth(t, "", "clients", "list", "--endpoint", "http://127.0.0.1:1"), "cannot reach the admin API")
	mustFail(t, runPVAuth(t, "", "clients", "list", "--endpoint", "ftp://x"), "invalid --endpoint")
	mustFail(t, runPVAuth(t, "", "clients", "delete", " ", "--yes"), "invalid client id")
	mustFail(t, runPVAuth(t, "", "clients", "delete", "a/b", "--yes"), "invalid client id")
	mustFail(t, runPVAuth(t, "", "clients", "delete"), "accepts 1 arg")
}
