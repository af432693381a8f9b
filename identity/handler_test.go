package identity_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/internal/testdb"
	sqlp "github.com/pvpipe/pvauth/persistence/sql"
	"github.com/pvpipe/pvauth/schema"
	"github.com/pvpipe/pvauth/x"
)

// cheapArgon2 keeps hashing fast in tests: 64 KiB, one pass.
var cheapArgon2 = config.Argon2{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32, MaxConcurrent: 4}

// countingRevoker is the test SessionRevoker: it counts calls per identity and reports
// `sessions` revoked sessions.
type countingRevoker struct {
	mu       sync.Mutex
	calls    map[int64]int
	sessions int
	err      error
}

func (r *countingRevoker) RevokeIdentitySessions(_ context.Context, id int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[int64]int{}
	}
	r.calls[id]++
	return r.sessions, r.err
}

func (r *countingRevoker) count(id int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[id]
}

// testDeps implements the handler's dependencies with the real SQL persister and a real
// audit logger.
type testDeps struct {
	m       *identity.Manager
	p       *sqlp.Persister
	h       *identity.Hasher
	logger  *audit.Logger
	revoker *countingRevoker
}

func (d *testDeps) IdentityManager() *identity.Manager              { return d.m }
func (d *testDeps) IdentityPersister() identity.Persister           { return d.p }
func (d *testDeps) AuditLogger() *audit.Logger                      { return d.logger }
func (d *testDeps) SessionRevoker() identity.SessionRevoker         { return d.revoker }
func (d *testDeps) IdentityHasher() *identity.Hasher                { return d.h }
func (d *testDeps) events(t *testing.T, userID int64) []audit.Event { return auditEvents(t, d, userID) }

func newDeps(t testing.TB, dsn string) *testDeps {
	t.Helper()
	p := testdb.Persister(t, dsn)
	h, err := identity.NewHasher(cheapArgon2)
	if err != nil {
		t.Fatal(err)
	}
	traits, err := schema.IdentityTraits()
	if err != nil {
		t.Fatal(err)
	}
	logger := audit.NewLogger(p)
	t.Cleanup(logger.Close) // runs before the persister closes
	return &testDeps{m: identity.NewManager(p, h, traits), p: p, h: h, logger: logger, revoker: &countingRevoker{sessions: 3}}
}

type env struct {
	*testDeps
	srv *httptest.Server
}

func newEnv(t testing.TB, dsn string) *env {
	t.Helper()
	d := newDeps(t, dsn)
	r := x.NewAdminRouter()
	identity.NewHandler(d).RegisterAdminRoutes(r)
	srv := httptest.NewServer(x.Chain(r, x.WithRequestID, x.Recover, x.LimitBody, audit.WithUserAgent))
	t.Cleanup(srv.Close)
	return &env{testDeps: d, srv: srv}
}

type response struct {
	status int
	raw    []byte
	data   json.RawMessage
	err    x.ErrorBody
}

func (e *env) do(t testing.TB, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "identity-test")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := response{status: res.StatusCode, raw: raw}
	if res.StatusCode < 300 {
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(raw, &env); err != nil || env.Data == nil {
			t.Fatalf("%s %s: success body is not {data: …}: %s", method, path, raw)
		}
		out.data = env.Data
	} else {
		if err := json.Unmarshal(raw, &out.err); err != nil || out.err.StatusCode != res.StatusCode || out.err.Error == "" || out.err.Message == "" {
			t.Fatalf("%s %s: error body is not the contract's: %s", method, path, raw)
		}
	}
	return out
}

// must asserts the status and decodes data into v (when v is not nil).
func (r response) must(t testing.TB, status int, v any) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	if v != nil {
		if err := json.Unmarshal(r.data, v); err != nil {
			t.Fatalf("decode %s: %v", r.data, err)
		}
	}
	return r
}

// fails asserts a 4xx status with a message containing each of words.
func (r response) fails(t testing.TB, status int, words ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	for _, w := range words {
		if !strings.Contains(r.err.Message, w) {
			t.Fatalf("message %q does not contain %q", r.err.Message, w)
		}
	}
}

type identityOut struct {
	ID           int64           `json:"id"`
	Email        string          `json:"email"`
	Traits       json.RawMessage `json:"traits"`
	Permissions  []string        `json:"permissions"`
	IsSuperAdmin bool            `json:"isSuperAdmin"`
	MFAEnabled   bool            `json:"mfaEnabled"`
	State        string          `json:"state"`
	CreatedAt    string          `json:"createdAt"`
	UpdatedAt    string          `json:"updatedAt"`
}

type listOut struct {
	Identities    []identityOut `json:"identities"`
	NextPageToken *string       `json:"nextPageToken"`
}

// auditEvents returns the stored events of a user, oldest first, after flushing the queue.
func auditEvents(t *testing.T, d *testDeps, userID int64) []audit.Event {
	t.Helper()
	d.logger.Flush()
	evs, err := d.p.ListAuditEvents(context.Background(), audit.Filter{UserID: &userID, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].ID < evs[j].ID })
	return evs
}

func eventTypes(evs []audit.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func TestAdminIdentityLifecycle(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		ctx := context.Background()

		// Create: exactly the contract's fields, 201.
		res := e.do(t, "POST", "/admin/identities", `{"email":" Alice@Example.com ","password":"correct horse",
			"traits":{"department":{"id":"d1","name":"Ops"},"employee":{"id":"e1","name":"Alice","avatarFileId":"f1"}},
			"permissions":["files.read","files.read","files.write"],"isSuperAdmin":true,"unknownField":1}`)
		var keys map[string]json.RawMessage
		res.must(t, http.StatusCreated, &keys)
		var want []string
		for k := range keys {
			want = append(want, k)
		}
		sort.Strings(want)
		if got := strings.Join(want, ","); got != "createdAt,email,id,isSuperAdmin,mfaEnabled,permissions,state,traits,updatedAt" {
			t.Fatalf("identity fields: %s", got)
		}
		var a identityOut
		res.must(t, http.StatusCreated, &a)
		if a.ID <= 0 || a.Email != "Alice@Example.com" || !a.IsSuperAdmin || a.MFAEnabled || a.State != "active" ||
			strings.Join(a.Permissions, ",") != "files.read,files.write" {
			t.Fatalf("created: %+v", a)
		}
		var tr identity.Traits
		if err := json.Unmarshal(a.Traits, &tr); err != nil || tr.Department.Name != "Ops" || tr.Employee.AvatarFileID != "f1" {
			t.Fatalf("traits %s: %v", a.Traits, err)
		}
		for _, ts := range []string{a.CreatedAt, a.UpdatedAt} {
			p, err := time.Parse(time.RFC3339, ts)
			if err != nil || !strings.HasSuffix(ts, "Z") || p.Nanosecond() != 0 || time.Since(p) > time.Minute {
				t.Fatalf("timestamp %q is not RFC 3339 UTC: %v", ts, err)
			}
		}
		stored, err := e.p.GetIdentity(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.h.Compare(ctx, "correct horse", stored.PasswordHash); err != nil {
			t.Fatalf("stored password does not verify: %v", err)
		}

		// Get returns the same document.
		var g identityOut
		e.do(t, "GET", fmt.Sprintf("/admin/identities/%d", a.ID), "").must(t, http.StatusOK, &g)
		if fmt.Sprint(g) != fmt.Sprint(a) {
			t.Fatalf("get %+v != created %+v", g, a)
		}

		// Without traits and permissions: {} and [], never null; no password is fine.
		res = e.do(t, "POST", "/admin/identities", `{"email":"bob@example.com","traits":null,"permissions":null}`)
		res.must(t, http.StatusCreated, nil)
		if !bytes.Contains(res.data, []byte(`"traits":{}`)) || !bytes.Contains(res.data, []byte(`"permissions":[]`)) {
			t.Fatalf("empty traits/permissions must be {} and []: %s", res.data)
		}
		var b identityOut
		res.must(t, http.StatusCreated, &b)
		if st, _ := e.p.GetIdentity(ctx, b.ID); st.PasswordHash != "" {
			t.Fatal("an identity created without password has a password hash")
		}

		// Patch every field.
		var pa identityOut
		e.do(t, "PATCH", fmt.Sprintf("/admin/identities/%d", a.ID), `{"email":"alice@new.example.com",
			"traits":{"employee":{"name":"Alice B"}},"permissions":[],"isSuperAdmin":false}`).must(t, http.StatusOK, &pa)
		if pa.Email != "alice@new.example.com" || string(pa.Traits) != `{"employee":{"name":"Alice B"}}` ||
			len(pa.Permissions) != 0 || pa.IsSuperAdmin || pa.State != "active" || pa.CreatedAt != a.CreatedAt {
			t.Fatalf("patched: %+v", pa)
		}
		if e.revoker.count(a.ID) != 0 {
			t.Fatal("a patch that does not disable revoked sessions")
		}
		// An empty patch changes nothing.
		var same identityOut
		e.do(t, "PATCH", fmt.Sprintf("/admin/identities/%d", a.ID), `{}`).must(t, http.StatusOK, &same)
		if fmt.Sprint(same) != fmt.Sprint(pa) {
			t.Fatalf("empty patch changed %+v to %+v", pa, same)
		}
		// Disabling logs the identity out.
		e.do(t, "PATCH", fmt.Sprintf("/admin/identities/%d", a.ID), `{"state":"disabled"}`).must(t, http.StatusOK, &pa)
		if pa.State != "disabled" || e.revoker.count(a.ID) != 1 {
			t.Fatalf("disable: state %s, revocations %d", pa.State, e.revoker.count(a.ID))
		}
		e.do(t, "PATCH", fmt.Sprintf("/admin/identities/%d", a.ID), `{"state":"active"}`).must(t, http.StatusOK, &pa)
		if pa.State != "active" {
			t.Fatal("re-enable failed")
		}

		// Password: stored, verified, and every session revoked.
		var ok struct {
			Success bool `json:"success"`
		}
		before := e.revoker.count(a.ID)
		e.do(t, "PUT", fmt.Sprintf("/admin/identities/%d/password", a.ID), `{"password":"a new passphrase"}`).must(t, http.StatusOK, &ok)
		if !ok.Success || e.revoker.count(a.ID) != before+1 {
			t.Fatalf("password: success %v, revocations %d", ok.Success, e.revoker.count(a.ID)-before)
		}
		stored, _ = e.p.GetIdentity(ctx, a.ID)
		if err := e.h.Compare(ctx, "a new passphrase", stored.PasswordHash); err != nil {
			t.Fatalf("new password does not verify: %v", err)
		}
		if err := e.h.Compare(ctx, "correct horse", stored.PasswordHash); !errors.Is(err, identity.ErrMismatchedPassword) {
			t.Fatalf("old password still verifies: %v", err)
		}

		// OTP reset.
		if err := e.p.EnrollTOTP(ctx, a.ID, "enc", 7, []string{"h1"}); err != nil {
			t.Fatal(err)
		}
		e.do(t, "GET", fmt.Sprintf("/admin/identities/%d", a.ID), "").must(t, http.StatusOK, &g)
		if !g.MFAEnabled {
			t.Fatal("mfaEnabled false after enrolment")
		}
		ok.Success = false
		e.do(t, "DELETE", fmt.Sprintf("/admin/identities/%d/otp", a.ID), "").must(t, http.StatusOK, &ok)
		e.do(t, "GET", fmt.Sprintf("/admin/identities/%d", a.ID), "").must(t, http.StatusOK, &g)
		if !ok.Success || g.MFAEnabled {
			t.Fatal("otp reset did not reset")
		}
		if used, _ := e.p.ConsumeRecoveryCode(ctx, a.ID, "h1"); used {
			t.Fatal("recovery code survived the reset")
		}
		// Enrolment works again after the reset.
		if err := e.p.EnrollTOTP(ctx, a.ID, "enc2", 1, nil); err != nil {
			t.Fatalf("enrol after reset: %v", err)
		}

		// Sessions.
		var rev struct {
			Revoked *int `json:"revoked"`
		}
		before = e.revoker.count(a.ID)
		e.do(t, "DELETE", fmt.Sprintf("/admin/identities/%d/sessions", a.ID), "").must(t, http.StatusOK, &rev)
		if rev.Revoked == nil || *rev.Revoked != 3 || e.revoker.count(a.ID) != before+1 {
			t.Fatalf("sessions: %v", rev.Revoked)
		}

		// Delete: sessions revoked first, then 404 on every route.
		before = e.revoker.count(b.ID)
		ok.Success = false
		e.do(t, "DELETE", fmt.Sprintf("/admin/identities/%d", b.ID), "").must(t, http.StatusOK, &ok)
		if !ok.Success || e.revoker.count(b.ID) != before+1 {
			t.Fatal("delete did not revoke sessions")
		}
		e.do(t, "GET", fmt.Sprintf("/admin/identities/%d", b.ID), "").fails(t, http.StatusNotFound, "not found")
		e.do(t, "DELETE", fmt.Sprintf("/admin/identities/%d", b.ID), "").fails(t, http.StatusNotFound)

		// The audit trail.
		got := strings.Join(eventTypes(e.events(t, a.ID)), " ")
		wantTypes := strings.Join([]string{
			audit.TypeIdentityCreate, audit.TypeIdentityUpdate, audit.TypeIdentityUpdate, audit.TypeIdentityUpdate,
			audit.TypeIdentityPassword, audit.TypeIdentityOTPReset, audit.TypeIdentitySessions,
		}, " ")
		if got != wantTypes {
			t.Fatalf("audit events of a:\n got %s\nwant %s", got, wantTypes)
		}
		evs := e.events(t, a.ID)
		if evs[0].Result != audit.ResultSuccess || evs[0].UserAgent != "identity-test" || evs[0].Metadata["email"] != "Alice@Example.com" {
			t.Fatalf("create event: %+v", evs[0])
		}
		if evs[0].Metadata["password"] != true {
			t.Fatalf("create event metadata: %v", evs[0].Metadata)
		}
		if s := fmt.Sprint(evs[2].Metadata["sessionsRevoked"]); s != "3" {
			t.Fatalf("disable event metadata: %v", evs[2].Metadata)
		}
		for _, ev := range evs {
			if bytes.Contains([]byte(fmt.Sprint(ev.Metadata)), []byte("passphrase")) {
				t.Fatal("a password reached the audit log")
			}
		}
		if got := eventTypes(e.events(t, b.ID)); strings.Join(got, " ") != audit.TypeIdentityCreate+" "+audit.TypeIdentityDelete {
			t.Fatalf("audit events of b: %v", got)
		}
	})
}

func TestAdminIdentityListPaging(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		var ids []int64
		for k := 0; k < 5; k++ {
			var i identityOut
			e.do(t, "POST", "/admin/identities", fmt.Sprintf(`{"email":"user%d@example.com"}`, k)).must(t, http.StatusCreated, &i)
			ids = append(ids, i.ID)
		}

		// Default page holds everything and ends with an empty token.
		var l listOut
		e.do(t, "GET", "/admin/identities", "").must(t, http.StatusOK, &l)
		if len(l.Identities) != 5 || l.NextPageToken == nil || *l.NextPageToken != "" {
			t.Fatalf("default page: %d identities, token %v", len(l.Identities), l.NextPageToken)
		}

		// Pages of two: 2, 2, 1, in id order.
		var seen []int64
		tok := ""
		pages := 0
		for {
			l = listOut{}
			e.do(t, "GET", "/admin/identities?page_size=2&page_token="+url.QueryEscape(tok), "").must(t, http.StatusOK, &l)
			pages++
			for _, i := range l.Identities {
				seen = append(seen, i.ID)
			}
			if *l.NextPageToken == "" {
				break
			}
			tok = *l.NextPageToken
			if pages > 5 {
				t.Fatal("paging does not end")
			}
		}
		if pages != 3 || fmt.Sprint(seen) != fmt.Sprint(ids) {
			t.Fatalf("%d pages, ids %v, want 3 pages of %v", pages, seen, ids)
		}
		// An exactly full last page has no next token.
		l = listOut{}
		e.do(t, "GET", "/admin/identities?page_size=5", "").must(t, http.StatusOK, &l)
		if len(l.Identities) != 5 || *l.NextPageToken != "" {
			t.Fatalf("full page: %d, token %q", len(l.Identities), *l.NextPageToken)
		}

		// Email filter, case-insensitive; no match is an empty list, not null.
		l = listOut{}
		e.do(t, "GET", "/admin/identities?email="+url.QueryEscape("USER3@Example.com"), "").must(t, http.StatusOK, &l)
		if len(l.Identities) != 1 || l.Identities[0].ID != ids[3] {
			t.Fatalf("email filter: %+v", l)
		}
		res := e.do(t, "GET", "/admin/identities?email=nobody@example.com", "").must(t, http.StatusOK, nil)
		if !bytes.Contains(res.data, []byte(`"identities":[]`)) {
			t.Fatalf("empty listing: %s", res.data)
		}

		for _, q := range []string{"page_size=0", "page_size=501", "page_size=abc", "page_size=-1"} {
			e.do(t, "GET", "/admin/identities?"+q, "").fails(t, http.StatusBadRequest, "page_size")
		}
		e.do(t, "GET", "/admin/identities?page_size=500", "").must(t, http.StatusOK, nil)
		for _, tk := range []string{"!!!", "bm90LWEtbnVtYmVy", "LTE", "MA", "%00"} { // not base64, "not-a-number", "-1", "0"
			e.do(t, "GET", "/admin/identities?page_token="+tk, "").fails(t, http.StatusBadRequest, "page_token")
		}
	})
}

func TestAdminIdentityErrors(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn)
		var a identityOut
		e.do(t, "POST", "/admin/identities", `{"email":"taken@example.com","password":"password123"}`).must(t, http.StatusCreated, &a)

		// Duplicate email, whatever the case and spacing: 409 with the contract's words.
		res := e.do(t, "POST", "/admin/identities", `{"email":"  TAKEN@Example.COM"}`)
		res.fails(t, http.StatusConflict, "An identity with this email already exists.")
		if res.err.Error != "conflict" {
			t.Fatalf("code %q", res.err.Error)
		}
		var b identityOut
		e.do(t, "POST", "/admin/identities", `{"email":"other@example.com"}`).must(t, http.StatusCreated, &b)
		e.do(t, "PATCH", fmt.Sprintf("/admin/identities/%d", b.ID), `{"email":"Taken@example.com"}`).
			fails(t, http.StatusConflict, "already exists")

		long := strings.Repeat("a", 310) + "@example.com"
		perm101 := strings.Repeat("p", 101)
		many := `[` + strings.TrimSuffix(strings.Repeat(`"p",`, 201), ",") + `]`
		cases := []struct {
			name, body string
			status     int
			words      []string
		}{
			{"malformed", `{"email":`, 400, []string{"Malformed JSON"}},
			{"trailing", `{"email":"a@example.com"} x`, 400, []string{"Malformed JSON"}},
			{"empty body", ``, 400, []string{"empty"}},
			{"array body", `[]`, 400, []string{"JSON object"}},
			{"email wrong type", `{"email":5}`, 400, []string{"email"}},
			{"password wrong type", `{"email":"x@example.com","password":12345678}`, 400, []string{"password"}},
			{"permissions wrong type", `{"email":"x@example.com","permissions":"admin"}`, 400, []string{"permissions"}},
			{"permission wrong type", `{"email":"x@example.com","permissions":[1]}`, 400, []string{"permissions"}},
			{"super admin wrong type", `{"email":"x@example.com","isSuperAdmin":"yes"}`, 400, []string{"isSuperAdmin"}},
			{"missing email", `{"password":"password123"}`, 400, []string{"'email'", "required"}},
			{"blank email", `{"email":"   "}`, 400, []string{"'email'"}},
			{"bad email", `{"email":"not-an-email"}`, 400, []string{"'email'", "valid email"}},
			{"display name email", `{"email":"Bob <bob@example.com>"}`, 400, []string{"'email'"}},
			{"long email", `{"email":"` + long + `"}`, 400, []string{"'email'", "320"}},
			{"short password", `{"email":"x@example.com","password":"short"}`, 400, []string{"'password'", "at least 8"}},
			{"empty password", `{"email":"x@example.com","password":""}`, 400, []string{"'password'"}},
			{"long password", `{"email":"x@example.com","password":"` + strings.Repeat("x", 1025) + `"}`, 400, []string{"'password'", "1024"}},
			{"password is email", `{"email":"x@example.com","password":"X@example.com"}`, 400, []string{"'password'", "email"}},
			{"traits string", `{"email":"x@example.com","traits":"dept"}`, 400, []string{"'traits'", "object"}},
			{"traits array", `{"email":"x@example.com","traits":[]}`, 400, []string{"'traits'", "object"}},
			{"traits wrong type", `{"email":"x@example.com","traits":{"department":{"id":5}}}`, 400, []string{"traits.department.id"}},
			{"traits too long", `{"email":"x@example.com","traits":{"employee":{"name":"` + strings.Repeat("n", 256) + `"}}}`, 400, []string{"traits.employee.name"}},
			{"traits unknown key", `{"email":"x@example.com","traits":{"salary":1}}`, 400, []string{"'traits'", "salary"}},
			{"permission too long", `{"email":"x@example.com","permissions":["` + perm101 + `"]}`, 400, []string{"permissions[0]", "100"}},
			{"permission empty", `{"email":"x@example.com","permissions":["ok",""]}`, 400, []string{"permissions[1]"}},
			{"too many permissions", `{"email":"x@example.com","permissions":` + many + `}`, 400, []string{"'permissions'", "200"}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e.do(t, "POST", "/admin/identities", c.body).fails(t, c.status, c.words...)
			})
		}

		// Wrong content type.
		req, _ := http.NewRequest("POST", e.srv.URL+"/admin/identities", strings.NewReader(`{"email":"ct@example.com"}`))
		req.Header.Set("Content-Type", "text/plain")
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Fatalf("text/plain: %d", resp.StatusCode)
		}

		// Patch validation.
		item := fmt.Sprintf("/admin/identities/%d", b.ID)
		e.do(t, "PATCH", item, `{"state":"deleted"}`).fails(t, 400, "'state'", "active, disabled")
		e.do(t, "PATCH", item, `{"state":5}`).fails(t, 400, "state")
		e.do(t, "PATCH", item, `{"email":"nope"}`).fails(t, 400, "'email'")
		e.do(t, "PATCH", item, `{"traits":{"department":"x"}}`).fails(t, 400, "traits.department")
		e.do(t, "PATCH", item, `{"permissions":["`+perm101+`"]}`).fails(t, 400, "permissions[0]")
		e.do(t, "PATCH", item, `{"isSuperAdmin":"true"}`).fails(t, 400, "isSuperAdmin")
		e.do(t, "PATCH", item, `not json`).fails(t, 400, "Malformed JSON")

		// Password validation.
		pw := fmt.Sprintf("/admin/identities/%d/password", a.ID)
		e.do(t, "PUT", pw, `{}`).fails(t, 400, "'password'", "required")
		e.do(t, "PUT", pw, `{"password":"short"}`).fails(t, 400, "'password'", "at least 8")
		e.do(t, "PUT", pw, `{"password":"TAKEN@example.com"}`).fails(t, 400, "'password'", "email")
		e.do(t, "PUT", pw, `{"password":5}`).fails(t, 400, "password")
		if n := e.revoker.count(a.ID); n != 0 {
			t.Fatalf("rejected password changes revoked sessions %d times", n)
		}

		// Bad and unknown ids on every route.
		routes := []struct{ method, suffix, body string }{
			{"GET", "", ""},
			{"PATCH", "", `{"state":"active"}`},
			{"DELETE", "", ""},
			{"PUT", "/password", `{"password":"long enough"}`},
			{"DELETE", "/otp", ""},
			{"DELETE", "/sessions", ""},
		}
		for _, r := range routes {
			for _, bad := range []string{"abc", "0", "-1", "1.5", "99999999999999999999", "1e3"} {
				e.do(t, r.method, "/admin/identities/"+bad+r.suffix, r.body).fails(t, http.StatusBadRequest, "'id'")
			}
			e.do(t, r.method, "/admin/identities/999999"+r.suffix, r.body).fails(t, http.StatusNotFound, "Identity not found")
		}
		if n := e.revoker.count(999999); n != 0 {
			t.Fatalf("unknown identity: sessions revoked %d times", n)
		}

		// A failing session revoker fails the password reset (the admin retries) rather
		// than leaving stolen sessions alive silently.
		e.revoker.mu.Lock()
		e.revoker.err = errors.New("session store down")
		e.revoker.mu.Unlock()
		e.do(t, "PUT", pw, `{"password":"another passphrase"}`).fails(t, http.StatusInternalServerError)
		e.do(t, "DELETE", fmt.Sprintf("/admin/identities/%d/sessions", a.ID), "").fails(t, http.StatusInternalServerError)

		// Failed requests wrote no change events.
		if got := eventTypes(e.events(t, b.ID)); len(got) != 1 || got[0] != audit.TypeIdentityCreate {
			t.Fatalf("events of b: %v", got)
		}
	})
}

// FuzzCreateIdentityBody posts arbitrary bytes to the create handler: whatever arrives,
// the answer is a success or a 4xx with the contract's error body, never a 5xx.
func FuzzCreateIdentityBody(f *testing.F) {
	seeds := []string{
		`{"email":"a@example.com"}`,
		`{"email":"b@example.com","password":"password123","traits":{"department":{"id":"1","name":"x"}},"permissions":["a"],"isSuperAdmin":true}`,
		`{"email":"c@example.com","traits":{"employee":{"avatarFileId":null}}}`,
		`{"email":"d@example.com","traits":{"department":{"id":1e400}}}`,
		`{"email":"e@example.com","traits":"\u0000"}`,
		`{"email":"\"q\"@example.com","password":"\ud800\udc00aaaaaaa"}`,
		`{"email":"f@example.com","permissions":[null]}`,
		`{"email":null}`,
		`{"email":"g@example.com","traits":{"department":{"id":"` + strings.Repeat("x", 300) + `"}}}`,
		`{`, `[]`, `null`, `""`, `0`, ``, "\xff\xfe", `{"email":"a@b"}{}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	e := newEnv(f, "memory")
	client := e.srv.Client()
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := client.Post(e.srv.URL+"/admin/identities", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("status %d for body %q: %s", resp.StatusCode, body, raw)
		}
		if resp.StatusCode >= 400 {
			var eb x.ErrorBody
			if err := json.Unmarshal(raw, &eb); err != nil || eb.StatusCode != resp.StatusCode || eb.Message == "" {
				t.Fatalf("status %d with a non-contract body %q", resp.StatusCode, raw)
			}
		}
	})
}

var _ identity.HasherProvider = (*testDeps)(nil)
