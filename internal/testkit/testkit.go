// Package testkit holds the helpers every package's tests share: the both-database
// loop, the contract's error-body assertion, and identity and session factories. A
// helper needed by tests of two packages lives here, once.
package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/session"
)

// Password is the password of every identity CreateIdentity makes.
const Password = "correct horse battery staple"

// ForEachDB starts a real server per database (a SQLite file and a fresh PostgreSQL
// database) with the config overrides set, and runs fn against each as a subtest.
func ForEachDB(t *testing.T, set map[string]any, fn func(t *testing.T, srv *testserver.Server)) {
	t.Helper()
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		fn(t, testserver.Start(t, dsn, set))
	})
}

// ErrorBody is the contract's error body (API.md §1).
type ErrorBody struct {
	Message    string `json:"message"`
	StatusCode int    `json:"statusCode"`
	Error      string `json:"error"`
}

// validErrorBody decodes body as the contract's error body and reports whether it is
// one for status: valid JSON, the same statusCode, and a message and an error.
func validErrorBody(body []byte, status int) (ErrorBody, bool) {
	var e ErrorBody
	if err := json.Unmarshal(body, &e); err != nil {
		return e, false
	}
	return e, e.StatusCode == status && e.Message != "" && e.Error != ""
}

// WantError checks a refusal: never a 5xx unless asked for, the status, the contract's
// error body as JSON, and, when msgPart is not empty, a message containing it (any case).
func WantError(t testing.TB, resp *testserver.Response, status int, msgPart string) ErrorBody {
	t.Helper()
	if resp.Status >= 500 && status < 500 {
		t.Fatalf("server error %d, want %d: %s", resp.Status, status, resp.Body)
	}
	if resp.Status != status {
		t.Fatalf("status %d, want %d: %s", resp.Status, status, resp.Body)
	}
	e, ok := validErrorBody(resp.Body, status)
	if !ok {
		t.Fatalf("error body %s does not follow the contract", resp.Body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type %q", ct)
	}
	if msgPart != "" && !strings.Contains(strings.ToLower(e.Message), strings.ToLower(msgPart)) {
		t.Fatalf("message %q does not contain %q", e.Message, msgPart)
	}
	return e
}

// Identity is an identity a test created, with its credentials.
type Identity struct {
	ID       int64
	Email    string
	Password string
}

var seq atomic.Int64

// Unique is a suffix no other call of this run gets.
func Unique() string { return fmt.Sprintf("%d-%d", time.Now().UnixNano(), seq.Add(1)) }

// UniqueEmail is an address no other test of this run uses.
func UniqueEmail(prefix string) string { return prefix + Unique() + "@example.com" }

// CreateIdentity creates an identity through the admin API with Password; extra adds
// fields to the create body (an "email" in it replaces the generated one).
func CreateIdentity(t testing.TB, srv *testserver.Server, extra map[string]any) *Identity {
	t.Helper()
	body := map[string]any{"email": UniqueEmail("user"), "password": Password}
	for k, v := range extra {
		body[k] = v
	}
	resp := srv.Admin(t, http.MethodPost, "/admin/identities", body)
	if resp.Status != http.StatusCreated {
		t.Fatalf("create identity: %d %s", resp.Status, resp.Body)
	}
	var out struct {
		ID int64 `json:"id"`
	}
	resp.Data(t, &out)
	pw, _ := body["password"].(string)
	return &Identity{ID: out.ID, Email: body["email"].(string), Password: pw}
}

// CreateClient registers an OAuth2 client through the admin API (body is RFC 7591
// metadata); anything but a 201 fails the test. The answer's data is decoded into out.
func CreateClient(t testing.TB, srv *testserver.Server, body map[string]any, out any) {
	t.Helper()
	r := srv.Admin(t, http.MethodPost, "/admin/clients", body)
	if r.Status != http.StatusCreated {
		t.Fatalf("create client: %d %s", r.Status, r.Body)
	}
	r.Data(t, out)
}

// IssueSession gives id a full session (access and refresh token) through the token
// mechanism every login ends in, as a finished login with the given methods would
// (password and TOTP when amr is empty).
func IssueSession(t testing.TB, srv *testserver.Server, id *Identity, amr ...string) *session.TokenSet {
	t.Helper()
	if len(amr) == 0 {
		amr = []string{session.AMRPassword, session.AMROTP}
	}
	ts, err := srv.Registry.Tokens().Issue(context.Background(), session.IssueRequest{IdentityID: id.ID, Email: id.Email, AMR: amr})
	if err != nil {
		t.Fatalf("issue tokens: %v", err)
	}
	return ts
}

// AuditEvents flushes the audit queue and lists the events of a user (newest first).
func AuditEvents(t testing.TB, srv *testserver.Server, userID int64) []audit.Event {
	t.Helper()
	srv.Registry.AuditLogger().Flush()
	resp := srv.Admin(t, http.MethodGet, fmt.Sprintf("/admin/audit-events?userId=%d&page_size=500", userID), nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("audit events: %d %s", resp.Status, resp.Body)
	}
	var out struct {
		Events []audit.Event `json:"events"`
	}
	resp.Data(t, &out)
	return out.Events
}

// HasEvent reports whether events hold one of type typ with result res.
func HasEvent(events []audit.Event, typ, res string) bool {
	for _, e := range events {
		if e.Type == typ && e.Result == res {
			return true
		}
	}
	return false
}
