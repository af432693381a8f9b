package driver_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// The headers API.md §1 puts on every response.
var securityHeaders = map[string]string{
	"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
	"X-Content-Type-Options":    "nosniff",
	"X-Frame-Options":           "DENY",
	"X-Xss-Protection":          "1; mode=block",
	"Content-Security-Policy":   "default-src 'self'",
}

// checkHeaders fails unless resp has every security header and a request id.
func checkHeaders(t testing.TB, what string, resp *testserver.Response) {
	t.Helper()
	for k, want := range securityHeaders {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s (%d): %s = %q, want %q", what, resp.Status, k, got, want)
		}
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("%s (%d): no X-Request-Id", what, resp.Status)
	}
}

// send is a request with full control over headers; body may be nil.
func send(t testing.TB, srv *testserver.Server, method, url string, body io.Reader, hdr map[string]string) *testserver.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return &testserver.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// TestEveryResponseCarriesSecurityHeaders: successes, 4xx, unknown routes (404) and wrong
// methods (405) on both ports carry the headers and the contract's error body.
func TestEveryResponseCarriesSecurityHeaders(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		acct := testkit.CreateIdentity(t, srv, nil)
		email, pw := acct.Email, acct.Password
		type tc struct {
			name   string
			method string
			url    string
			body   any
			status int
		}
		pub, adm := srv.PublicURL, srv.AdminURL
		cases := []tc{
			{"public alive", http.MethodGet, pub + "/health/alive", nil, http.StatusOK},
			{"public ready", http.MethodGet, pub + "/health/ready", nil, http.StatusOK},
			{"jwks", http.MethodGet, pub + "/.well-known/jwks.json", nil, http.StatusOK},
			{"login ok", http.MethodPost, pub + "/api/v1/auth/login", map[string]string{"email": email, "password": pw}, http.StatusOK},
			{"login bad json", http.MethodPost, pub + "/api/v1/auth/login", `{"email":`, http.StatusBadRequest},
			{"login bad password", http.MethodPost, pub + "/api/v1/auth/login", map[string]string{"email": email, "password": "nope"}, http.StatusUnauthorized},
			{"me without token", http.MethodGet, pub + "/api/v1/auth/me", nil, http.StatusUnauthorized},
			{"public unknown route", http.MethodGet, pub + "/no/such/route", nil, http.StatusNotFound},
			{"public unknown api route", http.MethodPost, pub + "/api/v1/auth/nope", `{}`, http.StatusNotFound},
			{"public wrong method", http.MethodGet, pub + "/api/v1/auth/login", nil, http.StatusMethodNotAllowed},
			{"public wrong method on health", http.MethodDelete, pub + "/health/alive", nil, http.StatusMethodNotAllowed},
			{"public 413", http.MethodPost, pub + "/api/v1/auth/login", strings.Repeat("x", 2<<20), http.StatusRequestEntityTooLarge},
			{"admin is not on the public port", http.MethodGet, pub + "/admin/identities", nil, http.StatusNotFound},
			{"admin alive", http.MethodGet, adm + "/health/alive", nil, http.StatusOK},
			{"admin ready", http.MethodGet, adm + "/health/ready", nil, http.StatusOK},
			{"admin list", http.MethodGet, adm + "/admin/identities", nil, http.StatusOK},
			{"admin bad id", http.MethodGet, adm + "/admin/identities/abc", nil, http.StatusBadRequest},
			{"admin unknown identity", http.MethodGet, adm + "/admin/identities/999999999", nil, http.StatusNotFound},
			{"admin unknown route", http.MethodGet, adm + "/admin/nope", nil, http.StatusNotFound},
			{"admin wrong method", http.MethodGet, adm + "/admin/otp/verify", nil, http.StatusMethodNotAllowed},
			{"self-service is not on the admin port", http.MethodPost, adm + "/api/v1/auth/login", `{}`, http.StatusNotFound},
			{"admin 413", http.MethodPost, adm + "/admin/identities", strings.Repeat("x", 2<<20), http.StatusRequestEntityTooLarge},
		}
		for _, c := range cases {
			resp := srv.Do(t, c.method, c.url, "", c.body)
			if resp.Status != c.status {
				t.Errorf("%s: got %d %.200s, want %d", c.name, resp.Status, resp.Body, c.status)
				continue
			}
			checkHeaders(t, c.name, resp)
			if c.status >= 400 {
				testkit.WantErrorOf(t, c.name, resp, c.status, "")
			}
		}

		// The 404 names the route; the 405 says which methods are allowed.
		e := testkit.WantErrorOf(t, "404", srv.Public(t, http.MethodGet, "/no/such/route", "", nil), http.StatusNotFound, "")
		if !strings.Contains(e.Message, "/no/such/route") || e.Error != "not_found" {
			t.Errorf("404 body %+v", e)
		}
		resp := srv.Public(t, http.MethodGet, "/api/v1/auth/login", "", nil)
		if e := testkit.WantErrorOf(t, "405", resp, http.StatusMethodNotAllowed, ""); e.Error != "method_not_allowed" {
			t.Errorf("405 body %+v", e)
		}
		if allow := resp.Header.Get("Allow"); !strings.Contains(allow, http.MethodPost) {
			t.Errorf("405 Allow %q", allow)
		}
	})
}

// TestRequestID: a safe X-Request-Id is echoed; an unsafe or missing one is replaced by
// a fresh UUID, different for every request.
func TestRequestID(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		for _, url := range []string{srv.PublicURL + "/health/alive", srv.AdminURL + "/health/alive", srv.PublicURL + "/nope"} {
			got := send(t, srv, http.MethodGet, url, nil, map[string]string{"X-Request-Id": "trace-abc_123.4"})
			if id := got.Header.Get("X-Request-Id"); id != "trace-abc_123.4" {
				t.Errorf("%s: safe request id not echoed: %q", url, id)
			}
			seen := map[string]bool{}
			for _, bad := range []string{"", "has space", "evil\"<script>", strings.Repeat("a", 65)} {
				hdr := map[string]string{}
				if bad != "" {
					hdr["X-Request-Id"] = bad
				}
				id := send(t, srv, http.MethodGet, url, nil, hdr).Header.Get("X-Request-Id")
				if _, err := uuid.Parse(id); err != nil || seen[id] {
					t.Errorf("%s: request id for %q is %q", url, bad, id)
				}
				seen[id] = true
			}
		}
	})
}

// TestAdminAPIKeys: with serve.admin.api_keys set, a missing or wrong key is 401 with
// the error body; every configured key works; the public port needs none.
func TestAdminAPIKeys(t *testing.T) {
	const key1, key2 = "admin-key-one-0123456789abcdef0123", "admin-key-two-0123456789abcdef0123"
	testkit.ForEachDB(t, map[string]any{"serve.admin.api_keys": []any{key1, key2}}, func(t *testing.T, srv *testserver.Server) {
		list := srv.AdminURL + "/admin/identities"
		for name, auth := range map[string]string{
			"no key":        "",
			"wrong key":     "Bearer wrong-key",
			"key prefix":    "Bearer " + key1[:len(key1)-1],
			"key suffix":    "Bearer " + key1 + "x",
			"basic scheme":  "Basic " + key1,
			"bare key":      key1,
			"empty bearer":  "Bearer ",
			"other key mix": "Bearer " + key1 + key2,
		} {
			hdr := map[string]string{}
			if auth != "" {
				hdr["Authorization"] = auth
			}
			resp := send(t, srv, http.MethodGet, list, nil, hdr)
			e := testkit.WantErrorOf(t, name, resp, http.StatusUnauthorized, "")
			if e.Error != "unauthorized" {
				t.Errorf("%s: error %q", name, e.Error)
			}
			checkHeaders(t, name, resp)
			// Mutating routes are refused the same way, before their body is read.
			resp = send(t, srv, http.MethodPost, srv.AdminURL+"/admin/identities", strings.NewReader(`{"email":"x@example.com"}`),
				map[string]string{"Authorization": auth, "Content-Type": "application/json"})
			testkit.WantErrorOf(t, name+" (create)", resp, http.StatusUnauthorized, "")
		}
		for _, k := range []string{key1, key2} {
			for _, scheme := range []string{"Bearer ", "bearer "} {
				resp := send(t, srv, http.MethodGet, list, nil, map[string]string{"Authorization": scheme + k})
				if resp.Status != http.StatusOK {
					t.Fatalf("%s%s…: %d %s", scheme, k[:12], resp.Status, resp.Body)
				}
			}
		}
		// The refused calls created nothing.
		var out struct {
			Identities []json.RawMessage `json:"identities"`
		}
		srv.Admin(t, http.MethodGet, "/admin/identities", nil).Data(t, &out)
		if len(out.Identities) != 0 {
			t.Fatalf("a refused admin call created an identity: %d", len(out.Identities))
		}
		// The public port does not take admin keys and does not need them.
		if r := srv.Public(t, http.MethodGet, "/health/alive", "", nil); r.Status != http.StatusOK {
			t.Fatalf("public alive: %d", r.Status)
		}
		// Refusals are audited.
		srv.Registry.AuditLogger().Flush()
		var ev struct {
			Events []struct {
				Type   string `json:"type"`
				Result string `json:"result"`
			} `json:"events"`
		}
		srv.Admin(t, http.MethodGet, "/admin/audit-events?type=admin.auth_failure", nil).Data(t, &ev)
		if len(ev.Events) == 0 || ev.Events[0].Result != "failure" {
			t.Fatalf("admin auth failures not audited: %+v", ev)
		}
	})
}

// checkRateLimited checks a 429: Retry-After in whole seconds within the window, the
// error body and the standard headers.
func checkRateLimited(t testing.TB, what string, resp *testserver.Response, window time.Duration) {
	t.Helper()
	e := testkit.WantErrorOf(t, what, resp, http.StatusTooManyRequests, "")
	if e.Error != "rate_limited" {
		t.Errorf("%s: error %q", what, e.Error)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > int(window.Seconds())+1 {
		t.Errorf("%s: Retry-After %q, want 1..%d", what, resp.Header.Get("Retry-After"), int(window.Seconds()))
	}
	checkHeaders(t, what, resp)
}

// TestRateLimitOTPVerify: the otp_verify rule counts per user, on /otp/verify and on the
// admin service check alike.
func TestRateLimitOTPVerify(t *testing.T) {
	testkit.ForEachDB(t, map[string]any{
		"ratelimit.enabled":                 true,
		"ratelimit.rules.otp_verify.limit":  2,
		"ratelimit.rules.otp_verify.window": "2m",
	}, func(t *testing.T, srv *testserver.Server) {
		acct := testkit.CreateIdentity(t, srv, nil)
		id, email, pw := acct.ID, acct.Email, acct.Password
		resp := srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"email": email, "password": pw})
		var lr struct {
			Token string `json:"token"`
		}
		resp.Data(t, &lr)
		if r := srv.Public(t, http.MethodGet, "/api/v1/auth/otp/setup", lr.Token, nil); r.Status != http.StatusOK {
			t.Fatalf("setup: %d %s", r.Status, r.Body)
		}
		verify := func() *testserver.Response {
			return srv.Public(t, http.MethodPost, "/api/v1/auth/otp/verify", lr.Token, map[string]string{"otp": "abcdefg"})
		}
		testkit.WantErrorOf(t, "1st wrong code", verify(), http.StatusUnauthorized, "")
		testkit.WantErrorOf(t, "2nd wrong code", verify(), http.StatusUnauthorized, "")
		checkRateLimited(t, "3rd code", verify(), 2*time.Minute)
		checkRateLimited(t, "admin check for the same user",
			srv.Admin(t, http.MethodPost, "/admin/otp/verify", map[string]any{"userId": id, "otp": "123456"}), 2*time.Minute)
		// Another user is not limited.
		other := testkit.CreateIdentity(t, srv, nil).ID
		if r := srv.Admin(t, http.MethodPost, "/admin/otp/verify", map[string]any{"userId": other, "otp": "123456"}); r.Status != http.StatusOK {
			t.Fatalf("other user: %d %s", r.Status, r.Body)
		}
	})
}

// TestRateLimitPerIP: the ip rule covers every public endpoint, 404s included; the admin
// port is not limited by it.
func TestRateLimitPerIP(t *testing.T) {
	testkit.ForEachDB(t, map[string]any{
		"ratelimit.enabled":         true,
		"ratelimit.rules.ip.limit":  5,
		"ratelimit.rules.ip.window": "30s",
	}, func(t *testing.T, srv *testserver.Server) {
		paths := []string{"/health/alive", "/.well-known/jwks.json", "/nope", "/health/ready", "/health/alive"}
		for _, p := range paths {
			if r := srv.Public(t, http.MethodGet, p, "", nil); r.Status == http.StatusTooManyRequests {
				t.Fatalf("%s limited too early", p)
			}
		}
		checkRateLimited(t, "6th public request", srv.Public(t, http.MethodGet, "/health/alive", "", nil), 30*time.Second)
		checkRateLimited(t, "login over the ip limit", srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", `{}`), 30*time.Second)
		for i := 0; i < 10; i++ {
			if r := srv.Admin(t, http.MethodGet, "/health/alive", nil); r.Status != http.StatusOK {
				t.Fatalf("admin port limited by the public ip rule: %d", r.Status)
			}
		}
	})
}

// TestBodyLimit: bodies over 1 MiB are 413, announced or streamed; just under is read.
func TestBodyLimit(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		big := []byte(`{"email":"a@example.com","password":"` + strings.Repeat("x", 2<<20) + `"}`)
		jsonCT := map[string]string{"Content-Type": "application/json"}
		for _, url := range []string{srv.PublicURL + "/api/v1/auth/login", srv.PublicURL + "/api/v1/auth/refresh", srv.AdminURL + "/admin/identities", srv.AdminURL + "/admin/otp/verify"} {
			// Announced length.
			resp := send(t, srv, http.MethodPost, url, bytes.NewReader(big), jsonCT)
			testkit.WantErrorOf(t, url+" (Content-Length)", resp, http.StatusRequestEntityTooLarge, "")
			checkHeaders(t, url, resp)
			// Streamed (chunked, no length): the reader hides its size.
			resp = send(t, srv, http.MethodPost, url, io.MultiReader(bytes.NewReader(big)), jsonCT)
			testkit.WantErrorOf(t, url+" (chunked)", resp, http.StatusRequestEntityTooLarge, "")
		}
		// A body just under the limit is decoded (and its too-long field named).
		under := []byte(`{"email":"a@example.com","password":"` + strings.Repeat("x", 1<<20-100) + `"}`)
		e := testkit.WantErrorOf(t, "under 1 MiB", send(t, srv, http.MethodPost, srv.PublicURL+"/api/v1/auth/login", bytes.NewReader(under), jsonCT), http.StatusBadRequest, "")
		if !strings.Contains(e.Message, "password") {
			t.Errorf("message %q", e.Message)
		}
	})
}

// TestMalformedAdminRequests: non-numeric ids and bad bodies on the admin port are 4xx
// with the error body.
func TestMalformedAdminRequests(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		for _, c := range []struct {
			method, path string
			body         any
			status       int
		}{
			{http.MethodGet, "/admin/identities/abc", nil, http.StatusBadRequest},
			{http.MethodGet, "/admin/identities/1.5", nil, http.StatusBadRequest},
			{http.MethodGet, "/admin/identities/0", nil, http.StatusBadRequest},
			{http.MethodPatch, "/admin/identities/abc", map[string]string{"state": "disabled"}, http.StatusBadRequest},
			{http.MethodDelete, "/admin/identities/abc", nil, http.StatusBadRequest},
			{http.MethodPut, "/admin/identities/abc/password", map[string]string{"password": "x"}, http.StatusBadRequest},
			{http.MethodDelete, "/admin/identities/abc/otp", nil, http.StatusBadRequest},
			{http.MethodDelete, "/admin/identities/abc/sessions", nil, http.StatusBadRequest},
			{http.MethodPost, "/admin/identities", `{"email":`, http.StatusBadRequest},
			{http.MethodPost, "/admin/identities", `{"email":42}`, http.StatusBadRequest},
			{http.MethodPost, "/admin/identities", `{}`, http.StatusBadRequest},
			{http.MethodPost, "/admin/otp/verify", `{"userId":"abc","otp":"1"}`, http.StatusBadRequest},
			{http.MethodPost, "/admin/signatures/verify", `{"signature":1}`, http.StatusBadRequest},
			{http.MethodGet, "/admin/audit-events?userId=abc", nil, http.StatusBadRequest},
		} {
			name := c.method + " " + c.path
			resp := srv.Admin(t, c.method, c.path, c.body)
			e := testkit.WantErrorOf(t, name, resp, c.status, "")
			if strings.Contains(c.path, "abc") && !strings.Contains(e.Message, "id") && !strings.Contains(e.Message, "userId") {
				t.Errorf("%s: message %q does not name the parameter", name, e.Message)
			}
			checkHeaders(t, name, resp)
		}
	})
}

// TestHealth: alive and ready on both ports; ready is 503 with the error body once the
// database is gone, while alive stays 200.
func TestHealth(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		for _, base := range []string{srv.PublicURL, srv.AdminURL} {
			for _, p := range []string{"/health/alive", "/health/ready"} {
				resp := srv.Do(t, http.MethodGet, base+p, "", nil)
				var st struct {
					Status string `json:"status"`
				}
				if resp.Status != http.StatusOK {
					t.Fatalf("%s%s: %d %s", base, p, resp.Status, resp.Body)
				}
				resp.JSON(t, &st)
				if st.Status != "ok" {
					t.Fatalf("%s%s: %s", base, p, resp.Body)
				}
				checkHeaders(t, p, resp)
			}
		}

		if err := srv.Registry.Persister().Close(); err != nil {
			t.Fatalf("closing the database: %v", err)
		}
		for _, base := range []string{srv.PublicURL, srv.AdminURL} {
			resp := srv.Do(t, http.MethodGet, base+"/health/ready", "", nil)
			e := testkit.WantErrorOf(t, base+" ready without database", resp, http.StatusServiceUnavailable, "")
			if e.Error != "service_unavailable" {
				t.Errorf("ready 503 error %q", e.Error)
			}
			checkHeaders(t, "ready 503", resp)
			if r := srv.Do(t, http.MethodGet, base+"/health/alive", "", nil); r.Status != http.StatusOK {
				t.Errorf("%s alive without database: %d", base, r.Status)
			}
		}
		// API calls fail as server errors with the error body, not with a hang or a panic.
		resp := srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"email": "a@example.com", "password": "x"})
		if resp.Status < 500 {
			t.Errorf("login without database: %d %s", resp.Status, resp.Body)
		}
		var e testkit.ErrorBody
		if err := json.Unmarshal(resp.Body, &e); err != nil || e.StatusCode != resp.Status {
			t.Errorf("login without database: body %s", resp.Body)
		}
		if regexp.MustCompile(`(?i)sql|postgres|sqlite|database is closed`).Match(resp.Body) {
			t.Errorf("the error body leaks internals: %s", resp.Body)
		}
	})
}

// TestMetricsCountLogins: a password login shows up in pvauth_logins_total.
func TestMetricsCountLogins(t *testing.T) {
	srv := testserver.Start(t, "memory", nil)
	u := testkit.CreateIdentity(t, srv, nil)
	srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", map[string]any{"email": u.Email, "password": u.Password})
	srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", map[string]any{"email": u.Email, "password": "wrong password!"})
	body := string(srv.Admin(t, http.MethodGet, "/metrics", nil).Body)
	for _, want := range []string{
		`pvauth_logins_total{method="password",result="success"} 1`,
		`pvauth_logins_total{method="password",result="failure"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestMetricsDatabase: the SQLite file's pools and group commits are exported, and a
// biometric-style token issue goes through the group commit.
func TestMetricsDatabase(t *testing.T) {
	srv := testserver.Start(t, testdb.SQLiteFile(t), nil)
	testkit.IssueSession(t, srv, testkit.CreateIdentity(t, srv, nil), "hwk")
	body := string(srv.Admin(t, http.MethodGet, "/metrics", nil).Body)
	for _, want := range []string{
		`pvauth_db_waits_total{pool="writer"}`,
		`pvauth_db_wait_seconds_total{pool="reader"}`,
		`pvauth_db_connections_in_use{pool="writer"}`,
		"pvauth_db_group_transactions_total 1",
		"pvauth_db_group_commits_total 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
