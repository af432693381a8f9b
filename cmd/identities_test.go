package cmd_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/cmd"
	"github.com/pvpipe/pvauth/internal/testserver"
)

const testAdminKey = "test-admin-key-0123456789"

// cliIdentity is an Identity as API.md §5 spells it, the fields these tests check; it
// is the test's own, so a renamed JSON tag on the server's struct fails here.
type cliIdentity struct {
	ID           int64           `json:"id"`
	Email        string          `json:"email"`
	Traits       json.RawMessage `json:"traits"`
	Permissions  []string        `json:"permissions"`
	IsSuperAdmin bool            `json:"isSuperAdmin"`
	MFAEnabled   bool            `json:"mfaEnabled"`
	State        string          `json:"state"`
}

// cliResult is what one in-process run of the CLI printed and returned.
type cliResult struct {
	Stdout, Stderr string
	Err            error
}

// runPVAuth runs the command tree in-process with args and stdin, like the binary
// would (a non-nil Err is a non-zero exit).
func runPVAuth(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	var out, errOut bytes.Buffer
	root := cmd.NewRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	err := root.Execute()
	return cliResult{Stdout: out.String(), Stderr: errOut.String(), Err: err}
}

// unsetEnv removes variables for the test and restores them afterwards.
func unsetEnv(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		t.Setenv(k, "") // registers the restore
		os.Unsetenv(k)
	}
}

func startAdminServer(t *testing.T) (*testserver.Server, []string) {
	t.Helper()
	unsetEnv(t, "PVAUTH_ADMIN_ENDPOINT", "PVAUTH_ADMIN_API_KEY")
	srv := testserver.Start(t, "memory", map[string]any{"serve.admin.api_keys": []any{testAdminKey}})
	return srv, []string{"--endpoint", srv.AdminURL, "--api-key", testAdminKey}
}

func identitiesArgs(conn []string, args ...string) []string {
	return append(append([]string{"identities"}, args...), conn...)
}

func mustOK(t *testing.T, r cliResult) cliResult {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("command failed: %v\nstdout: %s\nstderr: %s", r.Err, r.Stdout, r.Stderr)
	}
	return r
}

func mustFail(t *testing.T, r cliResult, wantInErr ...string) {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("command succeeded, want an error; stdout: %s", r.Stdout)
	}
	for _, w := range wantInErr {
		if !strings.Contains(r.Err.Error(), w) {
			t.Errorf("error %q does not contain %q", r.Err, w)
		}
	}
}

func TestIdentitiesCreateGetListDelete(t *testing.T) {
	srv, conn := startAdminServer(t)

	// create, password from stdin, with traits, permissions and the super-admin flag.
	r := mustOK(t, runPVAuth(t, "a long enough password\n", identitiesArgs(conn, "create",
		"--email", "Ada@Example.com", "--password-stdin",
		"--traits", `{"department":{"id":"ops","name":"Operations"}}`,
		"--permissions", "files.read, files.write", "--super-admin")...))
	var ada cliIdentity
	if err := json.Unmarshal([]byte(r.Stdout), &ada); err != nil {
		t.Fatalf("create did not print an identity: %v\n%s", err, r.Stdout)
	}
	if ada.ID <= 0 || !strings.EqualFold(ada.Email, "ada@example.com") || !ada.IsSuperAdmin || ada.State != "active" || ada.MFAEnabled {
		t.Fatalf("created identity %+v", ada)
	}
	if strings.Join(ada.Permissions, ",") != "files.read,files.write" {
		t.Errorf("permissions %v", ada.Permissions)
	}
	if !strings.Contains(string(ada.Traits), `"Operations"`) {
		t.Errorf("traits %s", ada.Traits)
	}
	// The server has it, and the password from stdin (without its newline) logs in.
	if resp := srv.Admin(t, http.MethodGet, "/admin/identities/"+strconv.FormatInt(ada.ID, 10), nil); resp.Status != http.StatusOK {
		t.Fatalf("server does not have the identity: %d %s", resp.Status, resp.Body)
	}
	login := srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", map[string]any{"email": "ada@example.com", "password": "a long enough password"})
	if login.Status != http.StatusOK {
		t.Fatalf("login with the password given on stdin: %d %s", login.Status, login.Body)
	}

	// create with --password, then a duplicate: the API's message, non-zero exit.
	r = mustOK(t, runPVAuth(t, "", identitiesArgs(conn, "create", "--email", "bob@example.com", "--password", "another password")...))
	var bob cliIdentity
	if err := json.Unmarshal([]byte(r.Stdout), &bob); err != nil || bob.ID <= 0 || bob.IsSuperAdmin || bob.State != "active" || bob.MFAEnabled || len(bob.Permissions) != 0 {
		t.Fatalf("create bob: %v %+v", err, bob)
	}
	mustFail(t, runPVAuth(t, "", identitiesArgs(conn, "create", "--email", "bob@example.com")...),
		"An identity with this email already exists.", "409")
	mustFail(t, runPVAuth(t, "", identitiesArgs(conn, "create", "--email", "carl@example.com", "--password", "short")...),
		"Field 'password' must be at least 8 characters.")

	// get
	r = mustOK(t, runPVAuth(t, "", identitiesArgs(conn, "get", strconv.FormatInt(bob.ID, 10))...))
	var got cliIdentity
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil || got.ID != bob.ID || got.Email != "bob@example.com" {
		t.Fatalf("get: %v %s", err, r.Stdout)
	}
	mustFail(t, runPVAuth(t, "", identitiesArgs(conn, "get", "999999")...), "Identity not found.", "404")

	// list as a table
	r = mustOK(t, runPVAuth(t, "", identitiesArgs(conn, "list")...))
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines, want header + 2:\n%s", len(lines), r.Stdout)
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "ID EMAIL STATE MFA ENABLED" {
		t.Errorf("header %q", lines[0])
	}
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != fmt.Sprintf("%d %s active false", ada.ID, ada.Email) {
		t.Errorf("row %q", lines[1])
	}
	if r.Stderr != "" {
		t.Errorf("a single page printed a page token: %q", r.Stderr)
	}

	// list as JSON, filtered by email
	r = mustOK(t, runPVAuth(t, "", identitiesArgs(conn, "list", "--format", "json", "--email", "BOB@example.com")...))
	var page struct {
		Identities    []cliIdentity `json:"identities"`
		NextPageToken string        `json:"nextPageToken"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &page); err != nil {
		t.Fatalf("list json: %v\n%s", err, r.Stdout)
	}
	if len(page.Identities) != 1 || page.Identities[0].ID != bob.ID {
		t.Fatalf("filtered list %+v", page)
	}

	// paging: one per page, following the token
	r = mustOK(t, runPVAuth(t, "", identitiesArgs(conn, "list", "--page-size", "1", "-o", "json")...))
	if err := json.Unmarshal([]byte(r.Stdout), &page); err != nil || len(page.Identities) != 1 || page.NextPageToken == "" {
		t.Fatalf("first page: %v %s", err, r.Stdout)
	}
	r = mustOK(t, runPVAuth(t, "", identitiesArgs(conn, "list", "--page-size", "1")...))
	if !strings.Contains(r.Stderr, "--page-token "+page.NextPageToken) {
		t.Errorf("table mode did not print the next page token: %q", r.Stderr)
	}
	r = mustOK(t, runPVAuth(t, "", identitiesArgs(conn, "list", "--page-size", "1", "--page-token", page.NextPageToken)...))
	if !strings.Contains(r.Stdout, "bob@example.com") || strings.Contains(r.Stdout, ada.Email) {
		t.Errorf("second page:\n%s", r.Stdout)
	}
	mustFail(t, runPVAuth(t, "", identitiesArgs(conn, "list", "--page-size", "0")...), "page_size")
	mustFail(t, runPVAuth(t, "", identitiesArgs(conn, "list", "--format", "yaml")...), "--format")

	// delete: the prompt names the identity; "n" keeps it, "y" deletes it.
	id := strconv.FormatInt(bob.ID, 10)
	r = runPVAuth(t, "n\n", identitiesArgs(conn, "delete", id)...)
	mustFail(t, r, "aborted")
	if !strings.Contains(r.Stdout, "bob@example.com") {
		t.Errorf("prompt does not name the identity: %q", r.Stdout)
	}
	if resp := srv.Admin(t, http.MethodGet, "/admin/identities/"+id, nil); resp.Status != http.StatusOK {
		t.Fatalf("an aborted delete deleted: %d", resp.Status)
	}
	r = mustOK(t, runPVAuth(t, "y\n", identitiesArgs(conn, "delete", id)...))
	if !strings.Contains(r.Stdout, "Deleted identity "+id) {
		t.Errorf("delete printed %q", r.Stdout)
	}
	if resp := srv.Admin(t, http.MethodGet, "/admin/identities/"+id, nil); resp.Status != http.StatusNotFound {
		t.Fatalf("identity still there after delete: %d", resp.Status)
	}
	// --yes does not ask.
	id = strconv.FormatInt(ada.ID, 10)
	mustOK(t, runPVAuth(t, "", identitiesArgs(conn, "delete", "--yes", id)...))
	if resp := srv.Admin(t, http.MethodGet, "/admin/identities/"+id, nil); resp.Status != http.StatusNotFound {
		t.Fatalf("identity still there after delete --yes: %d", resp.Status)
	}
	mustFail(t, runPVAuth(t, "", identitiesArgs(conn, "delete", "--yes", id)...), "Identity not found.")
	r = mustOK(t, runPVAuth(t, "", identitiesArgs(conn, "list")...))
	if n := len(strings.Split(strings.TrimSpace(r.Stdout), "\n")); n != 1 {
		t.Errorf("list after deleting all:\n%s", r.Stdout)
	}
}

func TestIdentitiesAPIKey(t *testing.T) {
	srv, _ := startAdminServer(t)
	const msg = "A valid admin API key is required"

	mustFail(t, runPVAuth(t, "", "identities", "list", "--endpoint", srv.AdminURL, "--api-key", "wrong-key-0123456789"), msg, "401")
	mustFail(t, runPVAuth(t, "", "identities", "list", "--endpoint", srv.AdminURL), msg)
	mustFail(t, runPVAuth(t, "", "identities", "create", "--endpoint", srv.AdminURL, "--api-key", "nope", "--email", "x@example.com"), msg)
	if resp := srv.Admin(t, http.MethodGet, "/admin/identities?email=x@example.com", nil); !bytes.Contains(resp.Body, []byte(`"identities":[]`)) {
		t.Fatalf("a create with a wrong key created: %s", resp.Body)
	}

	// The environment supplies endpoint and key; flags win over it.
	t.Setenv("PVAUTH_ADMIN_ENDPOINT", srv.AdminURL)
	t.Setenv("PVAUTH_ADMIN_API_KEY", testAdminKey)
	mustOK(t, runPVAuth(t, "", "identities", "create", "--email", "env@example.com"))
	r := mustOK(t, runPVAuth(t, "", "identities", "list"))
	if !strings.Contains(r.Stdout, "env@example.com") {
		t.Errorf("list with env settings:\n%s", r.Stdout)
	}
	mustFail(t, runPVAuth(t, "", "identities", "list", "--api-key", "wrong-key-0123456789"), msg)
}

func TestIdentitiesClientErrors(t *testing.T) {
	unsetEnv(t, "PVAUTH_ADMIN_ENDPOINT", "PVAUTH_ADMIN_API_KEY")
	// Nothing listens on port 1 of loopback.
	mustFail(t, runPVAuth(t, "", "identities", "list", "--endpoint", "http://127.0.0.1:1"), "cannot reach the admin API")
	mustFail(t, runPVAuth(t, "", "identities", "list", "--endpoint", "ftp://x"), "invalid --endpoint")
	mustFail(t, runPVAuth(t, "", "identities", "get", "abc"), "invalid identity id")
	mustFail(t, runPVAuth(t, "", "identities", "delete", "0", "--yes"), "invalid identity id")
	mustFail(t, runPVAuth(t, "", "identities", "create"), "--email is required")
	mustFail(t, runPVAuth(t, "", "identities", "create", "--email", "a@example.com", "--traits", "[1]"), "--traits must be a JSON object")
	mustFail(t, runPVAuth(t, "pw\n", "identities", "create", "--email", "a@example.com", "--password", "x", "--password-stdin"), "not both")
}
