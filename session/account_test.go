package session_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/session"
)

// Tests of the signed-in user's own session: /me, /refresh and /logout. Their sessions
// come from testkit.IssueSession, the token issue every login ends in.

// signedIn creates an identity (extra as in testkit.CreateIdentity) with TOTP enrolled,
// as its first full login leaves it, and gives it a session.
func signedIn(t *testing.T, srv *testserver.Server, extra map[string]any) (*testkit.Identity, *session.TokenSet) {
	t.Helper()
	u := testkit.CreateIdentity(t, srv, extra)
	// The secret is never read here: only the enrolment flag shows (mfaEnabled).
	if err := srv.Registry.Persister().EnrollTOTP(t.Context(), u.ID, "sealed-secret", 1, nil); err != nil {
		t.Fatal(err)
	}
	return u, testkit.IssueSession(t, srv, u)
}

// TestRefreshRotatesAndReuseKillsTheFamily: refresh rotates; a rotated refresh token
// presented again is 401 and revokes the newest tokens of the family.
func TestRefreshRotatesAndReuseKillsTheFamily(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, t0 := signedIn(t, srv, nil)
		resp := testkit.Refresh(t, srv, t0.RefreshToken)
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("refresh returns tokens: Cache-Control %q", cc)
		}
		t1 := testkit.WantTokens(t, resp)
		if t1.RefreshToken == t0.RefreshToken || t1.AccessToken == t0.AccessToken {
			t.Fatal("refresh did not rotate the tokens")
		}
		if len(t1.RecoveryCodes) != 0 {
			t.Fatal("refresh must not return recovery codes")
		}
		if !testkit.IsActive(t, srv, t1.AccessToken) || !testkit.IsActive(t, srv, t1.RefreshToken) {
			t.Fatal("the new tokens must be active")
		}
		if testkit.IsActive(t, srv, t0.RefreshToken) {
			t.Fatal("the rotated refresh token must be inactive")
		}
		t2 := testkit.WantTokens(t, testkit.Refresh(t, srv, t1.RefreshToken))
		if !testkit.IsActive(t, srv, t2.AccessToken) {
			t.Fatal("newest access token inactive before reuse")
		}
		if r := srv.Public(t, http.MethodGet, session.RouteMe, t2.AccessToken, nil); r.Status != http.StatusOK {
			t.Fatalf("/me with the refreshed token: %d %s", r.Status, r.Body)
		}

		// Reuse of the first refresh token.
		e := testkit.WantError(t, testkit.Refresh(t, srv, t0.RefreshToken), http.StatusUnauthorized, "")
		if !strings.Contains(e.Message, "already used") {
			t.Errorf("reuse message %q", e.Message)
		}
		testkit.WantError(t, testkit.Refresh(t, srv, t2.RefreshToken), http.StatusUnauthorized, "")
		if testkit.IsActive(t, srv, t2.AccessToken) {
			t.Fatal("newest access token still active after refresh-token reuse")
		}
		if testkit.IsActive(t, srv, t2.RefreshToken) {
			t.Fatal("newest refresh token still active after refresh-token reuse")
		}
		testkit.WantError(t, srv.Public(t, http.MethodGet, session.RouteMe, t2.AccessToken, nil), http.StatusUnauthorized, "")

		// Another session of the same user is untouched.
		other := testkit.IssueSession(t, srv, u)
		testkit.WantTokens(t, testkit.Refresh(t, srv, other.RefreshToken))

		// Unknown and malformed refresh tokens.
		testkit.WantError(t, testkit.Refresh(t, srv, "nope"), http.StatusUnauthorized, "")
		testkit.WantError(t, testkit.Refresh(t, srv, "ory_rt_"+strings.Repeat("a", 43)+"."+strings.Repeat("b", 43)), http.StatusUnauthorized, "")
		testkit.WantError(t, testkit.Refresh(t, srv, t2.AccessToken), http.StatusBadRequest, "") // longer than a refresh token can be
		testkit.WantError(t, testkit.Refresh(t, srv, strings.Repeat("a", 600)), http.StatusBadRequest, "")
	})
}

// TestLogoutRevokesTheSession: after logout the access token introspects inactive and
// the refresh token fails.
func TestLogoutRevokesTheSession(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, ts := signedIn(t, srv, nil)
		other := testkit.IssueSession(t, srv, u)

		// With the refresh token of another own session (logout without a body follows below).
		resp := srv.Public(t, http.MethodPost, session.RouteLogout, ts.AccessToken, map[string]string{"refreshToken": other.RefreshToken})
		testkit.WantSuccess(t, "logout", resp)
		if testkit.IsActive(t, srv, ts.AccessToken) {
			t.Fatal("access token active after logout")
		}
		if testkit.IsActive(t, srv, ts.RefreshToken) {
			t.Fatal("refresh token active after logout")
		}
		testkit.WantError(t, testkit.Refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized, "")
		testkit.WantError(t, srv.Public(t, http.MethodGet, session.RouteMe, ts.AccessToken, nil), http.StatusUnauthorized, "")
		testkit.WantError(t, srv.Public(t, http.MethodPost, session.RouteLogout, ts.AccessToken, nil), http.StatusUnauthorized, "")
		if testkit.IsActive(t, srv, other.AccessToken) {
			t.Fatal("the session named by refreshToken must end too")
		}

		// Logout with no body at all.
		third := testkit.IssueSession(t, srv, u)
		if r := srv.Public(t, http.MethodPost, session.RouteLogout, third.AccessToken, nil); r.Status != http.StatusOK {
			t.Fatalf("logout without body: %d %s", r.Status, r.Body)
		}
		if testkit.IsActive(t, srv, third.AccessToken) {
			t.Fatal("access token active after logout")
		}
		// Logout without a token.
		testkit.WantError(t, srv.Public(t, http.MethodPost, session.RouteLogout, "", nil), http.StatusUnauthorized, "")
	})
}

// TestLogoutCannotEndAnotherUsersSession: the refreshToken of another user is ignored.
func TestLogoutCannotEndAnotherUsersSession(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		_, mine := signedIn(t, srv, nil)
		_, theirs := signedIn(t, srv, nil)
		resp := srv.Public(t, http.MethodPost, session.RouteLogout, mine.AccessToken, map[string]string{"refreshToken": theirs.RefreshToken})
		if resp.Status != http.StatusOK {
			t.Fatalf("logout: %d %s", resp.Status, resp.Body)
		}
		if testkit.IsActive(t, srv, mine.AccessToken) {
			t.Fatal("the caller's own session is still active after logout")
		}
		if !testkit.IsActive(t, srv, theirs.AccessToken) {
			t.Fatal("logout ended another user's session")
		}
		testkit.WantTokens(t, testkit.Refresh(t, srv, theirs.RefreshToken))
	})
}

// TestMeReturnsTheProfile: /me is the full Profile, and its signature verifies on the
// admin port.
func TestMeReturnsTheProfile(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, ts := signedIn(t, srv, map[string]any{
			"traits": map[string]any{
				"department": map[string]any{"id": "dep-7", "name": "Engineering"},
				"employee":   map[string]any{"id": "emp-42", "name": "Ada Lovelace", "avatarFileId": "file-9"},
			},
			"permissions":  []string{"files.read", "files.write"},
			"isSuperAdmin": true,
		})
		resp := srv.Public(t, http.MethodGet, session.RouteMe, ts.AccessToken, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("/me: %d %s", resp.Status, resp.Body)
		}
		var raw map[string]json.RawMessage
		resp.Data(t, &raw)
		for _, k := range []string{"id", "email", "department", "employee", "isSuperAdmin", "mfaEnabled", "permissions", "passkeyPromptStatus", "signature", "signatureExpiresAt"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("Profile lacks %q: %s", k, resp.Body)
			}
		}
		var p struct {
			ID         int64  `json:"id"`
			Email      string `json:"email"`
			Department struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"department"`
			Employee struct {
				ID           string `json:"id"`
				Name         string `json:"name"`
				AvatarFileID string `json:"avatarFileId"`
			} `json:"employee"`
			IsSuperAdmin        bool      `json:"isSuperAdmin"`
			MFAEnabled          bool      `json:"mfaEnabled"`
			Permissions         []string  `json:"permissions"`
			PasskeyPromptStatus string    `json:"passkeyPromptStatus"`
			Signature           string    `json:"signature"`
			SignatureExpiresAt  time.Time `json:"signatureExpiresAt"`
		}
		resp.Data(t, &p)
		if p.ID != u.ID || p.Email != u.Email {
			t.Errorf("id/email %d %q, want %d %q", p.ID, p.Email, u.ID, u.Email)
		}
		if p.Department.ID != "dep-7" || p.Department.Name != "Engineering" {
			t.Errorf("department %+v", p.Department)
		}
		if p.Employee.ID != "emp-42" || p.Employee.Name != "Ada Lovelace" || p.Employee.AvatarFileID != "file-9" {
			t.Errorf("employee %+v", p.Employee)
		}
		if !p.IsSuperAdmin || !p.MFAEnabled {
			t.Errorf("isSuperAdmin %v mfaEnabled %v", p.IsSuperAdmin, p.MFAEnabled)
		}
		if !slices.Equal(p.Permissions, []string{"files.read", "files.write"}) {
			t.Errorf("permissions %q", p.Permissions)
		}
		if p.PasskeyPromptStatus != "pending" {
			t.Errorf("passkeyPromptStatus %q", p.PasskeyPromptStatus)
		}
		if p.Signature == "" || p.SignatureExpiresAt.Sub(ts.AccessTokenExpiresAt).Abs() > 2*time.Second {
			t.Errorf("signature %q expires %v, access token %v", p.Signature, p.SignatureExpiresAt, ts.AccessTokenExpiresAt)
		}
		for _, sig := range []string{p.Signature, ts.Signature} {
			var v struct {
				Valid     bool       `json:"valid"`
				UserID    *int64     `json:"userId"`
				ExpiresAt *time.Time `json:"expiresAt"`
			}
			srv.Admin(t, http.MethodPost, "/admin/signatures/verify", map[string]string{"signature": sig}).Data(t, &v)
			if !v.Valid || v.UserID == nil || *v.UserID != u.ID || v.ExpiresAt == nil {
				t.Fatalf("signature %q verifies as %+v", sig, v)
			}
		}
		var v struct {
			Valid bool `json:"valid"`
		}
		srv.Admin(t, http.MethodPost, "/admin/signatures/verify", map[string]string{"signature": p.Signature + "x"}).Data(t, &v)
		if v.Valid {
			t.Fatal("a forged signature verified")
		}

		// A user without traits gets empty objects, [] permissions.
		_, ts2 := signedIn(t, srv, nil)
		resp = srv.Public(t, http.MethodGet, session.RouteMe, ts2.AccessToken, nil)
		resp.Data(t, &raw)
		if string(raw["permissions"]) != "[]" || string(raw["isSuperAdmin"]) != "false" || string(raw["mfaEnabled"]) != "true" {
			t.Fatalf("profile without traits: %s", resp.Body)
		}
		// /me without or with a garbage token.
		testkit.WantError(t, srv.Public(t, http.MethodGet, session.RouteMe, "", nil), http.StatusUnauthorized, "")
		testkit.WantError(t, srv.Public(t, http.MethodGet, session.RouteMe, "a.b.c", nil), http.StatusUnauthorized, "")
	})
}

// TestDisabledIdentityRefreshFails: disabling alone (the token rows untouched) still
// stops refresh, in the rotation's transaction: the refusal is "invalid" (not reuse),
// and it changes nothing, so the token works again once the identity is enabled.
func TestDisabledIdentityRefreshFails(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, ts := signedIn(t, srv, nil)
		setState := func(state string) {
			t.Helper()
			id, err := srv.Registry.Persister().GetIdentity(t.Context(), u.ID)
			if err != nil {
				t.Fatal(err)
			}
			id.State = state
			if err := srv.Registry.Persister().UpdateIdentity(t.Context(), id); err != nil {
				t.Fatal(err)
			}
		}
		setState("disabled")
		testkit.WantError(t, testkit.Refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized, "invalid, expired or revoked")
		setState("active")
		if resp := testkit.Refresh(t, srv, ts.RefreshToken); resp.Status != http.StatusOK {
			t.Fatalf("the refused token after enabling: %d %s", resp.Status, resp.Body)
		}
	})
}

// TestAccountRequestDecoding: malformed, mistyped and oversized bodies of /refresh and
// /logout are 4xx with the error body, never 5xx; a wrong content type is 415.
func TestAccountRequestDecoding(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		_, ts := signedIn(t, srv, nil)
		cases := append(testkit.MalformedBodies(session.RouteRefresh, "", "refreshToken"),
			testkit.BodyCase{Name: "logout malformed", Path: session.RouteLogout, Bearer: ts.AccessToken, Body: `{"refreshToken":`, Status: http.StatusBadRequest, Mention: "JSON"},
			testkit.BodyCase{Name: "logout wrong type", Path: session.RouteLogout, Bearer: ts.AccessToken, Body: `{"refreshToken":1}`, Status: http.StatusBadRequest, Mention: "refreshToken"},
		)
		testkit.WantRefusals(t, srv, cases)
		testkit.WantUnsupportedMedia(t, srv, session.RouteRefresh)
	})
}

const concurrency = 20

// TestConcurrentRefreshOneWinner: 20 refreshes with one refresh token at once: exactly
// one succeeds, the rest are 401, none fails with 5xx. Repeated for a few families.
func TestConcurrentRefreshOneWinner(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		for round := 0; round < 3; round++ {
			_, ts := signedIn(t, srv, nil)
			body, _ := json.Marshal(map[string]string{"refreshToken": ts.RefreshToken})
			outs := testkit.Race(concurrency, func(int) (int, []byte, error) {
				return testkit.Do(srv.Client, http.MethodPost, srv.PublicURL+session.RouteRefresh, "", body)
			})
			if n := testkit.Tally(t, fmt.Sprintf("round %d refresh", round), outs, http.StatusUnauthorized); n != 1 {
				t.Fatalf("round %d: %d of %d concurrent refreshes with one token succeeded, want exactly 1", round, n, concurrency)
			}
			// The token is spent whatever happened to the winner's family.
			testkit.WantError(t, testkit.Refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized, "")
		}
	})
}

// TestConcurrentRefreshDistinctFamilies: refreshes of different families at the same time
// all succeed and do not disturb each other.
func TestConcurrentRefreshDistinctFamilies(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		const families = 8
		sets := make([]*session.TokenSet, families)
		for i := range sets {
			_, sets[i] = signedIn(t, srv, nil)
		}
		outs := testkit.Race(families, func(i int) (int, []byte, error) {
			body, _ := json.Marshal(map[string]string{"refreshToken": sets[i].RefreshToken})
			return testkit.Do(srv.Client, http.MethodPost, srv.PublicURL+session.RouteRefresh, "", body)
		})
		if n := testkit.Tally(t, "distinct families", outs); n != families {
			t.Fatalf("%d of %d refreshes of distinct families succeeded", n, families)
		}
		for i, o := range outs {
			var env struct {
				Data testkit.Tokens `json:"data"`
			}
			if err := json.Unmarshal(o.Body, &env); err != nil {
				t.Fatal(err)
			}
			if !testkit.IsActive(t, srv, env.Data.AccessToken) {
				t.Fatalf("family %d: new access token inactive", i)
			}
			testkit.WantTokens(t, testkit.Refresh(t, srv, env.Data.RefreshToken))
		}
	})
}

// FuzzRefreshBody posts arbitrary bytes to /refresh of a server started once (dsn
// "memory"): never a 5xx, and every 4xx has the contract's error body.
//
//	go test -tags sqlite ./session -run '^$' -fuzz FuzzRefreshBody -fuzztime 30s
func FuzzRefreshBody(f *testing.F) {
	srv := testserver.Start(f, "memory", nil)
	ts := testkit.IssueSession(f, srv, testkit.CreateIdentity(f, srv, nil))
	for _, s := range testkit.JSONFuzzSeeds {
		f.Add([]byte(s))
	}
	live, _ := json.Marshal(map[string]string{"refreshToken": ts.RefreshToken})
	f.Add(live)
	f.Add(live) // the second time it is a reuse
	f.Fuzz(func(t *testing.T, body []byte) {
		resp := srv.Public(t, http.MethodPost, session.RouteRefresh, "", body)
		testkit.CheckFuzzResponse(t, body, resp)
	})
}
