package password_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

const (
	routeLogin    = "/api/v1/auth/login"
	routeSetup    = "/api/v1/auth/otp/setup"
	routeVerify   = "/api/v1/auth/otp/verify"
	routeMe       = "/api/v1/auth/me"
	routeRefresh  = "/api/v1/auth/refresh"
	routeLogout   = "/api/v1/auth/logout"
	routeAdminOTP = "/admin/otp/verify"
)

// wrongCode is a 6-digit code that is valid for no step near now.
func wrongCode(t testing.TB, secret string) string {
	t.Helper()
	cur := step(time.Now())
	valid := map[string]bool{}
	for s := cur - 2; s <= cur+3; s++ {
		valid[codeAt(t, secret, s)] = true
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", (i*137911+12345)%1000000)
		if !valid[c] {
			return c
		}
	}
}

// TestLoginGivesPendingTokenAndEnrolment: /login only gives a pending token that full
// endpoints refuse with 403; enrolment gives a secret and a QR code of the otpauth URL,
// and the first code completes it with recovery codes.
func TestLoginGivesPendingTokenAndEnrolment(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u := newUser(t, srv, nil)
		lr := login(t, srv, u.Email, u.Password, false)
		if !lr.RegisterOTP {
			t.Fatal("registerOtp must be true before enrolment")
		}
		if strings.Count(lr.Token, ".") == 2 {
			t.Fatalf("the pending token must not be a JWT access token: %q", lr.Token)
		}

		// The pending token is no access token.
		e := wantError(t, srv.Public(t, http.MethodGet, routeMe, lr.Token, nil), http.StatusForbidden)
		if !strings.Contains(e.Message, "otp") {
			t.Errorf("403 message should tell about the second factor: %q", e.Message)
		}
		wantError(t, srv.Public(t, http.MethodPost, routeLogout, lr.Token, nil), http.StatusForbidden)
		if introspect(t, srv, lr.Token) {
			t.Fatal("a pending token must introspect inactive")
		}
		// Verifying before setup is a 400, and does not count as a wrong code.
		wantError(t, verifyOTP(t, srv, lr.Token, "123456"), http.StatusBadRequest)

		resp := srv.Public(t, http.MethodGet, routeSetup, lr.Token, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("setup: %d %s", resp.Status, resp.Body)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("setup returns a secret: Cache-Control %q", cc)
		}
		var s setupResult
		resp.Data(t, &s)
		if len(s.Secret) < 16 {
			t.Fatalf("secret too short: %q", s.Secret)
		}
		ou, err := url.Parse(s.OTPAuthURL)
		if err != nil || ou.Scheme != "otpauth" || ou.Host != "totp" {
			t.Fatalf("otpauthUrl %q: %v", s.OTPAuthURL, err)
		}
		q := ou.Query()
		if q.Get("secret") != s.Secret {
			t.Fatalf("otpauthUrl secret %q, want %q", q.Get("secret"), s.Secret)
		}
		if p := q.Get("period"); p != "" && p != "30" {
			t.Errorf("period %q", p)
		}
		if d := q.Get("digits"); d != "" && d != "6" {
			t.Errorf("digits %q", d)
		}
		if a := q.Get("algorithm"); a != "" && a != "SHA1" {
			t.Errorf("algorithm %q", a)
		}
		if !strings.Contains(s.OTPAuthURL, url.PathEscape(u.Email)) && !strings.Contains(s.OTPAuthURL, url.QueryEscape(u.Email)) {
			t.Errorf("otpauthUrl does not name the account %q: %q", u.Email, s.OTPAuthURL)
		}
		if got := decodeQR(t, s.QRCodePNG); got != s.OTPAuthURL {
			t.Fatalf("QR code decodes to %q, want %q", got, s.OTPAuthURL)
		}

		u.Secret = s.Secret
		cur := step(time.Now())
		u.lastStep = cur
		resp = verifyOTP(t, srv, lr.Token, codeAt(t, s.Secret, cur))
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("verify returns tokens: Cache-Control %q", cc)
		}
		ts := wantTokens(t, resp)
		if len(ts.RecoveryCodes) != 10 {
			t.Fatalf("recovery codes: %q", ts.RecoveryCodes)
		}
		seen := map[string]bool{}
		for _, c := range ts.RecoveryCodes {
			if len(c) < 8 || seen[c] {
				t.Fatalf("weak or repeated recovery code %q in %q", c, ts.RecoveryCodes)
			}
			seen[c] = true
		}
		// The pending token served its one login.
		wantError(t, verifyOTP(t, srv, lr.Token, u.peekCode(t)), http.StatusUnauthorized)
		wantError(t, srv.Public(t, http.MethodGet, routeSetup, lr.Token, nil), http.StatusUnauthorized)

		// The tokens work; the next login no longer asks for enrolment, and setup is 409.
		if r := srv.Public(t, http.MethodGet, routeMe, ts.AccessToken, nil); r.Status != http.StatusOK {
			t.Fatalf("/me with the new access token: %d %s", r.Status, r.Body)
		}
		lr2 := login(t, srv, u.Email, u.Password, false)
		if lr2.RegisterOTP {
			t.Fatal("registerOtp must be false once enrolled")
		}
		wantError(t, srv.Public(t, http.MethodGet, routeSetup, lr2.Token, nil), http.StatusConflict)
		// The second-factor step uses the enrolled secret, not a new one.
		wantTokens(t, verifyOTP(t, srv, lr2.Token, u.nextCode(t)))

		// Garbage and missing bearer tokens on the pending endpoints are 401.
		wantError(t, srv.Public(t, http.MethodGet, routeSetup, "", nil), http.StatusUnauthorized)
		wantError(t, srv.Public(t, http.MethodGet, routeSetup, "pvauth_pending_nope", nil), http.StatusUnauthorized)
		wantError(t, verifyOTP(t, srv, ts.AccessToken, "123456"), http.StatusUnauthorized)
	})
}

// TestEnrolmentWrongFirstCode: a wrong first code does not enrol, and counts.
func TestEnrolmentWrongFirstCode(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u := newUser(t, srv, nil)
		lr := login(t, srv, u.Email, u.Password, false)
		s := setupOTP(t, srv, lr.Token)
		wantError(t, verifyOTP(t, srv, lr.Token, wrongCode(t, s.Secret)), http.StatusUnauthorized)
		wantError(t, verifyOTP(t, srv, lr.Token, "not-a-code"), http.StatusUnauthorized)
		if lr := login(t, srv, u.Email, u.Password, false); !lr.RegisterOTP {
			t.Fatal("a failed enrolment must leave the identity unenrolled")
		}
		ts := wantTokens(t, verifyOTP(t, srv, lr.Token, codeAt(t, s.Secret, step(time.Now()))))
		if len(ts.RecoveryCodes) != 10 {
			t.Fatalf("recovery codes %q", ts.RecoveryCodes)
		}
	})
}

// TestWrongCodesLockThePendingToken: five wrong codes are counted; the sixth attempt
// fails even with the right code.
func TestWrongCodesLockThePendingToken(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, _ := enrolledUser(t, srv, nil)
		lr := login(t, srv, u.Email, u.Password, false)
		bad := wrongCode(t, u.Secret)
		for i := 1; i <= 5; i++ {
			e := wantError(t, verifyOTP(t, srv, lr.Token, bad), http.StatusUnauthorized)
			if i == 1 && e.Message == "" {
				t.Fatal("no message")
			}
		}
		good := codeAt(t, u.Secret, max(u.lastStep+1, step(time.Now())))
		wantError(t, verifyOTP(t, srv, lr.Token, good), http.StatusUnauthorized)
		wantError(t, srv.Public(t, http.MethodGet, routeSetup, lr.Token, nil), http.StatusUnauthorized)

		// The failures were counted, one audit event each.
		var counts []int
		for _, e := range auditEvents(t, srv, u.ID) {
			if e.Type == audit.TypeOTPVerify && e.Result == audit.ResultFailure {
				if n, ok := e.Metadata["failedAttempts"].(float64); ok {
					counts = append(counts, int(n))
				}
			}
		}
		slices.Sort(counts)
		if !slices.Equal(counts, []int{1, 2, 3, 4, 5}) {
			t.Fatalf("failedAttempts in audit events: %v", counts)
		}

		// The refused right code was not consumed: a new login accepts it.
		lr2 := login(t, srv, u.Email, u.Password, false)
		u.lastStep = max(u.lastStep+1, step(time.Now()))
		wantTokens(t, verifyOTP(t, srv, lr2.Token, codeAt(t, u.Secret, u.lastStep)))
	})
}

// TestReplayedCodeIsRefused: a TOTP code accepted once is refused for the same user,
// on another pending token too.
func TestReplayedCodeIsRefused(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, _ := enrolledUser(t, srv, nil)
		// The enrolment code itself cannot be replayed.
		lr := login(t, srv, u.Email, u.Password, false)
		e := wantError(t, verifyOTP(t, srv, lr.Token, codeAt(t, u.Secret, u.lastStep)), http.StatusUnauthorized)
		if !strings.Contains(e.Message, "already used") {
			t.Errorf("replay message %q", e.Message)
		}
		code := u.nextCode(t)
		wantTokens(t, verifyOTP(t, srv, lr.Token, code))

		lr2 := login(t, srv, u.Email, u.Password, false)
		wantError(t, verifyOTP(t, srv, lr2.Token, code), http.StatusUnauthorized)
		// An older step than the last accepted one is refused as well.
		wantError(t, verifyOTP(t, srv, lr2.Token, codeAt(t, u.Secret, u.lastStep-1)), http.StatusUnauthorized)

		// The service check refuses it too.
		var res struct {
			Valid bool `json:"valid"`
		}
		srv.Admin(t, http.MethodPost, routeAdminOTP, map[string]any{"userId": u.ID, "otp": code}).Data(t, &res)
		if res.Valid {
			t.Fatal("/admin/otp/verify accepted a replayed code")
		}
	})
}

// TestRecoveryCodeWorksOnce: a recovery code replaces the TOTP code, once.
func TestRecoveryCodeWorksOnce(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, _ := enrolledUser(t, srv, nil)
		lr := login(t, srv, u.Email, u.Password, false)
		ts := wantTokens(t, verifyOTP(t, srv, lr.Token, u.Recovery[0]))
		if r := srv.Public(t, http.MethodGet, routeMe, ts.AccessToken, nil); r.Status != http.StatusOK {
			t.Fatalf("/me after recovery-code login: %d %s", r.Status, r.Body)
		}

		lr2 := login(t, srv, u.Email, u.Password, false)
		wantError(t, verifyOTP(t, srv, lr2.Token, u.Recovery[0]), http.StatusUnauthorized)
		// Codes are read case- and dash-insensitively; another code still works.
		other := strings.ToUpper(strings.ReplaceAll(u.Recovery[1], "-", " "))
		wantTokens(t, verifyOTP(t, srv, lr2.Token, other))
		lr3 := login(t, srv, u.Email, u.Password, false)
		wantError(t, verifyOTP(t, srv, lr3.Token, u.Recovery[1]), http.StatusUnauthorized)
		// A made-up recovery code is refused.
		wantError(t, verifyOTP(t, srv, lr3.Token, "aaaaa-bbbbb"), http.StatusUnauthorized)

		// The admin service check accepts a recovery code once too.
		var res struct {
			UserID int64 `json:"userId"`
			Valid  bool  `json:"valid"`
		}
		srv.Admin(t, http.MethodPost, routeAdminOTP, map[string]any{"userId": u.ID, "otp": u.Recovery[2]}).Data(t, &res)
		if !res.Valid || res.UserID != u.ID {
			t.Fatalf("admin check with a recovery code: %+v", res)
		}
		srv.Admin(t, http.MethodPost, routeAdminOTP, map[string]any{"userId": u.ID, "otp": u.Recovery[2]}).Data(t, &res)
		if res.Valid {
			t.Fatal("admin check accepted a used recovery code")
		}
	})
}

// TestRefreshRotatesAndReuseKillsTheFamily: refresh rotates; a rotated refresh token
// presented again is 401 and revokes the newest tokens of the family.
func TestRefreshRotatesAndReuseKillsTheFamily(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, t0 := enrolledUser(t, srv, nil)
		resp := refresh(t, srv, t0.RefreshToken)
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("refresh returns tokens: Cache-Control %q", cc)
		}
		t1 := wantTokens(t, resp)
		if t1.RefreshToken == t0.RefreshToken || t1.AccessToken == t0.AccessToken {
			t.Fatal("refresh did not rotate the tokens")
		}
		if len(t1.RecoveryCodes) != 0 {
			t.Fatal("refresh must not return recovery codes")
		}
		if !introspect(t, srv, t1.AccessToken) || !introspect(t, srv, t1.RefreshToken) {
			t.Fatal("the new tokens must be active")
		}
		if introspect(t, srv, t0.RefreshToken) {
			t.Fatal("the rotated refresh token must be inactive")
		}
		t2 := wantTokens(t, refresh(t, srv, t1.RefreshToken))
		if !introspect(t, srv, t2.AccessToken) {
			t.Fatal("newest access token inactive before reuse")
		}
		if r := srv.Public(t, http.MethodGet, routeMe, t2.AccessToken, nil); r.Status != http.StatusOK {
			t.Fatalf("/me with the refreshed token: %d %s", r.Status, r.Body)
		}

		// Reuse of the first refresh token.
		e := wantError(t, refresh(t, srv, t0.RefreshToken), http.StatusUnauthorized)
		if !strings.Contains(e.Message, "already used") {
			t.Errorf("reuse message %q", e.Message)
		}
		wantError(t, refresh(t, srv, t2.RefreshToken), http.StatusUnauthorized)
		if introspect(t, srv, t2.AccessToken) {
			t.Fatal("newest access token still active after refresh-token reuse")
		}
		if introspect(t, srv, t2.RefreshToken) {
			t.Fatal("newest refresh token still active after refresh-token reuse")
		}
		wantError(t, srv.Public(t, http.MethodGet, routeMe, t2.AccessToken, nil), http.StatusUnauthorized)

		// Another session of the same user is untouched.
		other := u.fullLogin(t, srv, false)
		wantTokens(t, refresh(t, srv, other.RefreshToken))

		// Unknown and malformed refresh tokens.
		wantError(t, refresh(t, srv, "nope"), http.StatusUnauthorized)
		wantError(t, refresh(t, srv, "ory_rt_"+strings.Repeat("a", 43)+"."+strings.Repeat("b", 43)), http.StatusUnauthorized)
		wantError(t, refresh(t, srv, t2.AccessToken), http.StatusBadRequest) // longer than a refresh token can be
		wantError(t, refresh(t, srv, strings.Repeat("a", 600)), http.StatusBadRequest)
	})
}

// TestLogoutRevokesTheSession: after logout the access token introspects inactive and
// the refresh token fails.
func TestLogoutRevokesTheSession(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, ts := enrolledUser(t, srv, nil)
		other := u.fullLogin(t, srv, false)

		// Without a body, and then with the refresh token of another own session.
		resp := srv.Public(t, http.MethodPost, routeLogout, ts.AccessToken, map[string]string{"refreshToken": other.RefreshToken})
		if resp.Status != http.StatusOK {
			t.Fatalf("logout: %d %s", resp.Status, resp.Body)
		}
		var out struct {
			Success bool `json:"success"`
		}
		resp.Data(t, &out)
		if !out.Success {
			t.Fatalf("logout: %s", resp.Body)
		}
		if introspect(t, srv, ts.AccessToken) {
			t.Fatal("access token active after logout")
		}
		if introspect(t, srv, ts.RefreshToken) {
			t.Fatal("refresh token active after logout")
		}
		wantError(t, refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized)
		wantError(t, srv.Public(t, http.MethodGet, routeMe, ts.AccessToken, nil), http.StatusUnauthorized)
		wantError(t, srv.Public(t, http.MethodPost, routeLogout, ts.AccessToken, nil), http.StatusUnauthorized)
		if introspect(t, srv, other.AccessToken) {
			t.Fatal("the session named by refreshToken must end too")
		}

		// Logout with no body at all (a recovery code spares waiting for the next TOTP step).
		lr := login(t, srv, u.Email, u.Password, false)
		third := wantTokens(t, verifyOTP(t, srv, lr.Token, u.Recovery[0]))
		if r := srv.Public(t, http.MethodPost, routeLogout, third.AccessToken, nil); r.Status != http.StatusOK {
			t.Fatalf("logout without body: %d %s", r.Status, r.Body)
		}
		if introspect(t, srv, third.AccessToken) {
			t.Fatal("access token active after logout")
		}
		// Logout without a token.
		wantError(t, srv.Public(t, http.MethodPost, routeLogout, "", nil), http.StatusUnauthorized)
	})
}

// TestLogoutCannotEndAnotherUsersSession: the refreshToken of another user is ignored.
func TestLogoutCannotEndAnotherUsersSession(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		_, mine := enrolledUser(t, srv, nil)
		_, theirs := enrolledUser(t, srv, nil)
		resp := srv.Public(t, http.MethodPost, routeLogout, mine.AccessToken, map[string]string{"refreshToken": theirs.RefreshToken})
		if resp.Status != http.StatusOK {
			t.Fatalf("logout: %d %s", resp.Status, resp.Body)
		}
		if !introspect(t, srv, theirs.AccessToken) {
			t.Fatal("logout ended another user's session")
		}
		wantTokens(t, refresh(t, srv, theirs.RefreshToken))
	})
}

// TestUnknownEmailAndWrongPasswordLookTheSame.
func TestUnknownEmailAndWrongPasswordLookTheSame(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u := newUser(t, srv, nil)
		wrong := srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": u.Email, "password": "wrong password"})
		unknown := srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": "nobody-" + u.Email, "password": "wrong password"})
		ew := wantError(t, wrong, http.StatusUnauthorized)
		eu := wantError(t, unknown, http.StatusUnauthorized)
		if ew != eu {
			t.Fatalf("wrong password %+v vs unknown email %+v", ew, eu)
		}
		// Emails are compared normalized.
		lr := login(t, srv, "  "+strings.ToUpper(u.Email)+" ", u.Password, false)
		if !lr.RegisterOTP {
			t.Fatal("registerOtp")
		}
		// An identity without a password cannot log in, with the same answer.
		nopw := fmt.Sprintf("nopw-%d@example.com", time.Now().UnixNano())
		if r := srv.Admin(t, http.MethodPost, "/admin/identities", map[string]any{"email": nopw}); r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		en := wantError(t, srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": nopw, "password": "anything"}), http.StatusUnauthorized)
		if en != ew {
			t.Fatalf("password-less identity %+v vs wrong password %+v", en, ew)
		}
	})
}

// TestMeReturnsTheProfile: /me is the full Profile, and its signature verifies on the
// admin port.
func TestMeReturnsTheProfile(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, ts := enrolledUser(t, srv, map[string]any{
			"traits": map[string]any{
				"department": map[string]any{"id": "dep-7", "name": "Engineering"},
				"employee":   map[string]any{"id": "emp-42", "name": "Ada Lovelace", "avatarFileId": "file-9"},
			},
			"permissions":  []string{"files.read", "files.write"},
			"isSuperAdmin": true,
		})
		resp := srv.Public(t, http.MethodGet, routeMe, ts.AccessToken, nil)
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
		_, ts2 := enrolledUser(t, srv, nil)
		resp = srv.Public(t, http.MethodGet, routeMe, ts2.AccessToken, nil)
		resp.Data(t, &raw)
		if string(raw["permissions"]) != "[]" || string(raw["isSuperAdmin"]) != "false" || string(raw["mfaEnabled"]) != "true" {
			t.Fatalf("profile without traits: %s", resp.Body)
		}
		// /me without or with a garbage token.
		wantError(t, srv.Public(t, http.MethodGet, routeMe, "", nil), http.StatusUnauthorized)
		wantError(t, srv.Public(t, http.MethodGet, routeMe, "a.b.c", nil), http.StatusUnauthorized)
	})
}

// TestRememberMeLengthensTheRefreshToken: 720 h with rememberMe, 72 h without; the
// rotated token keeps its family's lifetime.
func TestRememberMeLengthensTheRefreshToken(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, short := enrolledUser(t, srv, nil)
		long := u.fullLogin(t, srv, true)
		near := func(name string, got time.Time, want time.Duration) {
			t.Helper()
			if d := time.Until(got) - want; math.Abs(d.Seconds()) > 120 {
				t.Errorf("%s expires in %v, want about %v", name, time.Until(got).Round(time.Second), want)
			}
		}
		near("refresh token", short.RefreshTokenExpiresAt, 72*time.Hour)
		near("rememberMe refresh token", long.RefreshTokenExpiresAt, 720*time.Hour)
		near("access token", short.AccessTokenExpiresAt, time.Hour)
		near("rememberMe access token", long.AccessTokenExpiresAt, time.Hour)

		rl := wantTokens(t, refresh(t, srv, long.RefreshToken))
		near("rotated rememberMe refresh token", rl.RefreshTokenExpiresAt, 720*time.Hour)
		rs := wantTokens(t, refresh(t, srv, short.RefreshToken))
		near("rotated refresh token", rs.RefreshTokenExpiresAt, 72*time.Hour)
	})
}

// TestAccessTokenIsAnES256JWT: the access token verifies against the JWKS and carries
// the contract's claims.
func TestAccessTokenIsAnES256JWT(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, ts := enrolledUser(t, srv, nil)
		resp := srv.Public(t, http.MethodGet, "/.well-known/jwks.json", "", nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("jwks: %d %s", resp.Status, resp.Body)
		}
		var jwks jose.JSONWebKeySet
		resp.JSON(t, &jwks)
		if len(jwks.Keys) == 0 {
			t.Fatalf("empty JWKS: %s", resp.Body)
		}
		for _, k := range jwks.Keys {
			if !k.IsPublic() {
				t.Fatalf("the JWKS publishes a private key: %s", resp.Body)
			}
		}

		tok, err := jwt.ParseSigned(ts.AccessToken)
		if err != nil {
			t.Fatalf("access token is not a JWS: %v", err)
		}
		if len(tok.Headers) != 1 || tok.Headers[0].Algorithm != "ES256" || tok.Headers[0].KeyID == "" {
			t.Fatalf("header %+v", tok.Headers)
		}
		keys := jwks.Key(tok.Headers[0].KeyID)
		if len(keys) != 1 {
			t.Fatalf("kid %q not in the JWKS", tok.Headers[0].KeyID)
		}
		var std jwt.Claims
		var extra struct {
			Sid   string   `json:"sid"`
			Amr   []string `json:"amr"`
			Email string   `json:"email"`
		}
		if err := tok.Claims(keys[0].Key, &std, &extra); err != nil {
			t.Fatalf("signature does not verify against the JWKS: %v", err)
		}
		if err := std.ValidateWithLeeway(jwt.Expected{
			Issuer: srv.Config.Issuer(), Subject: strconv.FormatInt(u.ID, 10),
			Audience: jwt.Audience(srv.Config.Tokens.Audience), Time: time.Now(),
		}, 5*time.Second); err != nil {
			t.Fatalf("claims %+v: %v", std, err)
		}
		if std.ID == "" || std.Expiry == nil || std.IssuedAt == nil || std.NotBefore == nil {
			t.Fatalf("missing jti/exp/iat/nbf: %+v", std)
		}
		if d := std.Expiry.Time().Sub(ts.AccessTokenExpiresAt); d.Abs() > time.Second {
			t.Errorf("exp %v vs accessTokenExpiresAt %v", std.Expiry.Time(), ts.AccessTokenExpiresAt)
		}
		if extra.Sid == "" || !slices.Equal(extra.Amr, []string{"pwd", "otp"}) || extra.Email != u.Email {
			t.Fatalf("sid/amr/email: %+v", extra)
		}
		// A tampered token does not verify.
		parts := strings.Split(ts.AccessToken, ".")
		forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
		if ft, err := jwt.ParseSigned(forged); err == nil {
			if err := ft.Claims(keys[0].Key, &std); err == nil {
				t.Fatal("a forged signature verified")
			}
		}
		wantError(t, srv.Public(t, http.MethodGet, routeMe, forged, nil), http.StatusUnauthorized)

		// The refreshed token is a new JWT of the same session.
		t1 := wantTokens(t, refresh(t, srv, ts.RefreshToken))
		tok1, err := jwt.ParseSigned(t1.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		var std1 jwt.Claims
		var extra1 struct {
			Sid string `json:"sid"`
		}
		if err := tok1.Claims(keys[0].Key, &std1, &extra1); err != nil {
			t.Fatal(err)
		}
		if extra1.Sid != extra.Sid || std1.ID == std.ID {
			t.Fatalf("refreshed token: sid %q (was %q), jti %q (was %q)", extra1.Sid, extra.Sid, std1.ID, std.ID)
		}
	})
}

// TestAdminOTPVerifyIsSingleUse: the service-to-service check.
func TestAdminOTPVerifyIsSingleUse(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, _ := enrolledUser(t, srv, nil)
		type result struct {
			UserID int64 `json:"userId"`
			Valid  bool  `json:"valid"`
		}
		check := func(code string) result {
			t.Helper()
			resp := srv.Admin(t, http.MethodPost, routeAdminOTP, map[string]any{"userId": u.ID, "otp": code})
			if resp.Status != http.StatusOK {
				t.Fatalf("admin otp verify: %d %s", resp.Status, resp.Body)
			}
			var r result
			resp.Data(t, &r)
			if r.UserID != u.ID {
				t.Fatalf("userId %d, want %d", r.UserID, u.ID)
			}
			return r
		}
		if check(wrongCode(t, u.Secret)).Valid {
			t.Fatal("a wrong code is valid")
		}
		code := u.nextCode(t)
		if !check(code).Valid {
			t.Fatal("a fresh code is not valid")
		}
		if check(code).Valid {
			t.Fatal("the same code is valid twice")
		}
		// The self-service login cannot reuse it either.
		lr := login(t, srv, u.Email, u.Password, false)
		wantError(t, verifyOTP(t, srv, lr.Token, code), http.StatusUnauthorized)

		// An identity without TOTP never validates.
		plain := newUser(t, srv, nil)
		resp := srv.Admin(t, http.MethodPost, routeAdminOTP, map[string]any{"userId": plain.ID, "otp": "123456"})
		var r result
		resp.Data(t, &r)
		if r.Valid {
			t.Fatal("an identity without TOTP validated")
		}

		wantError(t, srv.Admin(t, http.MethodPost, routeAdminOTP, map[string]any{"userId": 999999999, "otp": "123456"}), http.StatusNotFound)
		wantError(t, srv.Admin(t, http.MethodPost, routeAdminOTP, map[string]any{"otp": "123456"}), http.StatusBadRequest)
		wantError(t, srv.Admin(t, http.MethodPost, routeAdminOTP, map[string]any{"userId": u.ID}), http.StatusBadRequest)
		wantError(t, srv.Admin(t, http.MethodPost, routeAdminOTP, map[string]any{"userId": "1", "otp": "123456"}), http.StatusBadRequest)
		wantError(t, srv.Admin(t, http.MethodPost, routeAdminOTP, map[string]any{"userId": -1, "otp": "123456"}), http.StatusBadRequest)
		wantError(t, srv.Admin(t, http.MethodPost, routeAdminOTP, map[string]any{"userId": 1.5, "otp": "123456"}), http.StatusBadRequest)
	})
}

// TestDisabledIdentity: a disabled identity cannot log in, its tokens die and its
// refresh fails.
func TestDisabledIdentity(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, ts := enrolledUser(t, srv, nil)
		pending := login(t, srv, u.Email, u.Password, false)
		badCreds := wantError(t, srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": u.Email, "password": "wrong"}), http.StatusUnauthorized)

		resp := srv.Admin(t, http.MethodPatch, fmt.Sprintf("/admin/identities/%d", u.ID), map[string]string{"state": "disabled"})
		if resp.Status != http.StatusOK {
			t.Fatalf("disable: %d %s", resp.Status, resp.Body)
		}
		e := wantError(t, srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": u.Email, "password": u.Password}), http.StatusUnauthorized)
		if e != badCreds {
			t.Errorf("disabled login %+v differs from bad credentials %+v", e, badCreds)
		}
		wantError(t, refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized)
		if introspect(t, srv, ts.AccessToken) {
			t.Fatal("access token of a disabled identity is active")
		}
		wantError(t, srv.Public(t, http.MethodGet, routeMe, ts.AccessToken, nil), http.StatusUnauthorized)
		// A pending token from before cannot finish the login.
		wantError(t, verifyOTP(t, srv, pending.Token, u.peekCode(t)), http.StatusUnauthorized)

		// Enabled again, the user logs in (fresh login; old tokens stay dead).
		resp = srv.Admin(t, http.MethodPatch, fmt.Sprintf("/admin/identities/%d", u.ID), map[string]string{"state": "active"})
		if resp.Status != http.StatusOK {
			t.Fatalf("enable: %d %s", resp.Status, resp.Body)
		}
		wantError(t, refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized)
		u.fullLogin(t, srv, false)
	})
}

// TestDisabledIdentityRefreshFails: disabling alone (the token rows untouched) still
// stops refresh, through the subject check.
func TestDisabledIdentityRefreshFails(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, ts := enrolledUser(t, srv, nil)
		id, err := srv.Registry.Persister().GetIdentity(t.Context(), u.ID)
		if err != nil {
			t.Fatal(err)
		}
		id.State = "disabled"
		if err := srv.Registry.Persister().UpdateIdentity(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		wantError(t, refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized)
	})
}

// TestAdminRevokesAllSessions: DELETE /admin/identities/{id}/sessions.
func TestAdminRevokesAllSessions(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, a := enrolledUser(t, srv, nil)
		b := u.fullLogin(t, srv, true)
		_, bystander := enrolledUser(t, srv, nil)

		resp := srv.Admin(t, http.MethodDelete, fmt.Sprintf("/admin/identities/%d/sessions", u.ID), nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("revoke sessions: %d %s", resp.Status, resp.Body)
		}
		var out struct {
			Revoked int `json:"revoked"`
		}
		resp.Data(t, &out)
		if out.Revoked != 2 {
			t.Errorf("revoked %d, want 2", out.Revoked)
		}
		for _, ts := range []tokens{a, b} {
			if introspect(t, srv, ts.AccessToken) || introspect(t, srv, ts.RefreshToken) {
				t.Fatal("a token is active after the admin revoked every session")
			}
			wantError(t, refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized)
		}
		if !introspect(t, srv, bystander.AccessToken) {
			t.Fatal("another user's session was revoked")
		}
		wantError(t, srv.Admin(t, http.MethodDelete, "/admin/identities/999999999/sessions", nil), http.StatusNotFound)
	})
}

// TestAuditTrail: login success and failure, OTP verify, refresh reuse and logout are
// audited with the user id.
func TestAuditTrail(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, t0 := enrolledUser(t, srv, nil)
		wantError(t, srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": u.Email, "password": "wrong"}), http.StatusUnauthorized)
		lr := login(t, srv, u.Email, u.Password, false)
		wantError(t, verifyOTP(t, srv, lr.Token, wrongCode(t, u.Secret)), http.StatusUnauthorized)
		ts := wantTokens(t, verifyOTP(t, srv, lr.Token, u.nextCode(t)))

		wantTokens(t, refresh(t, srv, t0.RefreshToken))
		wantError(t, refresh(t, srv, t0.RefreshToken), http.StatusUnauthorized)
		if r := srv.Public(t, http.MethodPost, routeLogout, ts.AccessToken, nil); r.Status != http.StatusOK {
			t.Fatalf("logout: %d %s", r.Status, r.Body)
		}

		events := auditEvents(t, srv, u.ID)
		for _, want := range []struct{ typ, res string }{
			{audit.TypeLogin, audit.ResultSuccess},
			{audit.TypeLogin, audit.ResultFailure},
			{audit.TypeOTPEnroll, audit.ResultSuccess},
			{audit.TypeOTPVerify, audit.ResultSuccess},
			{audit.TypeOTPVerify, audit.ResultFailure},
			{audit.TypeTokenRefresh, audit.ResultSuccess},
			{audit.TypeTokenReuse, audit.ResultFailure},
			{audit.TypeLogout, audit.ResultSuccess},
		} {
			if !hasEvent(events, want.typ, want.res) {
				var have []string
				for _, e := range events {
					have = append(have, e.Type+"/"+e.Result)
				}
				t.Errorf("no %s/%s audit event for user %d; have %q", want.typ, want.res, u.ID, have)
			}
		}
		for _, e := range events {
			if e.UserID == nil || *e.UserID != u.ID || e.IP == "" || e.CreatedAt.IsZero() {
				t.Errorf("event %+v", e)
			}
			if e.Type == audit.TypeLogin && e.Result == audit.ResultFailure && e.Reason != "wrong_password" {
				t.Errorf("login failure reason %q", e.Reason)
			}
			raw, _ := json.Marshal(e)
			for _, secret := range []string{u.Password, u.Secret, t0.RefreshToken, ts.AccessToken} {
				if strings.Contains(string(raw), secret) {
					t.Fatalf("audit event leaks a secret: %s", raw)
				}
			}
		}
	})
}

// TestRequestDecoding: malformed JSON, wrong types, missing fields, oversized bodies
// and wrong content types are 4xx with the error body, never 5xx.
func TestRequestDecoding(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, ts := enrolledUser(t, srv, nil)
		pending := login(t, srv, u.Email, u.Password, false).Token
		big := `{"email":"a@b.c","password":"` + strings.Repeat("x", 2<<20) + `"}`
		type tc struct {
			name, path, bearer, body string
			status                   int
			mention                  string
		}
		var cases []tc
		for _, ep := range []struct{ path, bearer, field string }{
			{routeLogin, "", "email"},
			{routeVerify, pending, "otp"},
			{routeRefresh, "", "refreshToken"},
		} {
			cases = append(cases,
				tc{"malformed", ep.path, ep.bearer, `{"` + ep.field + `":`, http.StatusBadRequest, "JSON"},
				tc{"not json", ep.path, ep.bearer, `hello`, http.StatusBadRequest, "JSON"},
				tc{"trailing data", ep.path, ep.bearer, `{"` + ep.field + `":"x"} {}`, http.StatusBadRequest, "JSON"},
				tc{"array", ep.path, ep.bearer, `[]`, http.StatusBadRequest, "object"},
				tc{"null", ep.path, ep.bearer, `null`, http.StatusBadRequest, ep.field},
				tc{"empty object", ep.path, ep.bearer, `{}`, http.StatusBadRequest, ep.field},
				tc{"empty body", ep.path, ep.bearer, ``, http.StatusBadRequest, ""},
				tc{"wrong type", ep.path, ep.bearer, `{"` + ep.field + `":123}`, http.StatusBadRequest, ep.field},
				tc{"wrong type object", ep.path, ep.bearer, `{"` + ep.field + `":{"a":1}}`, http.StatusBadRequest, ep.field},
				tc{"blank", ep.path, ep.bearer, `{"` + ep.field + `":"   "}`, http.StatusBadRequest, ep.field},
				tc{"too long", ep.path, ep.bearer, `{"` + ep.field + `":"` + strings.Repeat("7", 2000) + `"}`, http.StatusBadRequest, ep.field},
				tc{"2 MiB", ep.path, ep.bearer, big, http.StatusRequestEntityTooLarge, ""},
				tc{"invalid utf-8", ep.path, ep.bearer, "{\"" + ep.field + "\":\"\xff\xfe\"}", 0, ""},
			)
		}
		cases = append(cases,
			tc{"login missing password", routeLogin, "", `{"email":"a@b.c"}`, http.StatusBadRequest, "password"},
			tc{"login rememberMe string", routeLogin, "", `{"email":"a@b.c","password":"x","rememberMe":"yes"}`, http.StatusBadRequest, "rememberMe"},
			tc{"logout malformed", routeLogout, ts.AccessToken, `{"refreshToken":`, http.StatusBadRequest, "JSON"},
			tc{"logout wrong type", routeLogout, ts.AccessToken, `{"refreshToken":1}`, http.StatusBadRequest, "refreshToken"},
			tc{"admin otp malformed", routeAdminOTP, "", `{`, http.StatusBadRequest, "JSON"},
			tc{"admin otp string id", routeAdminOTP, "", `{"userId":"abc","otp":"123456"}`, http.StatusBadRequest, "userId"},
			tc{"admin otp huge id", routeAdminOTP, "", `{"userId":1e40,"otp":"123456"}`, http.StatusBadRequest, "userId"},
			tc{"admin otp 2 MiB", routeAdminOTP, "", big, http.StatusRequestEntityTooLarge, ""},
		)
		for _, c := range cases {
			url := srv.PublicURL + c.path
			if strings.HasPrefix(c.path, "/admin") {
				url = srv.AdminURL + c.path
			}
			var body any = c.body
			if c.body == "" {
				body = nil
			}
			resp := srv.Do(t, http.MethodPost, url, c.bearer, body)
			if resp.Status >= 500 || resp.Status < 400 || (c.status != 0 && resp.Status != c.status) {
				t.Errorf("%s %s: got %d %.200s, want %d", c.path, c.name, resp.Status, resp.Body, c.status)
				continue
			}
			var e errorBody
			if err := json.Unmarshal(resp.Body, &e); err != nil || e.StatusCode != resp.Status || e.Message == "" || e.Error == "" {
				t.Errorf("%s %s: bad error body %.200s", c.path, c.name, resp.Body)
				continue
			}
			if c.mention != "" && !strings.Contains(e.Message, c.mention) {
				t.Errorf("%s %s: message %q does not mention %q", c.path, c.name, e.Message, c.mention)
			}
		}

		// A wrong content type is 415.
		for _, path := range []string{routeLogin, routeRefresh} {
			req, _ := http.NewRequest(http.MethodPost, srv.PublicURL+path, strings.NewReader(`{"email":"a@b.c","password":"x"}`))
			req.Header.Set("Content-Type", "text/plain")
			r, err := srv.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode != http.StatusUnsupportedMediaType {
				t.Errorf("%s with text/plain: %d", path, r.StatusCode)
			}
		}

		// A non-numeric identity id is a 400 naming it.
		e := wantError(t, srv.Admin(t, http.MethodGet, "/admin/identities/abc", nil), http.StatusBadRequest)
		if !strings.Contains(e.Message, "id") {
			t.Errorf("message %q", e.Message)
		}
		wantError(t, srv.Admin(t, http.MethodDelete, "/admin/identities/abc/sessions", nil), http.StatusBadRequest)
		wantError(t, srv.Admin(t, http.MethodGet, "/admin/identities/-1", nil), http.StatusBadRequest)
		wantError(t, srv.Admin(t, http.MethodGet, "/admin/identities/99999999999999999999", nil), http.StatusBadRequest)

		// The pending token survived all the malformed verify requests: they are not
		// wrong codes.
		wantTokens(t, verifyOTP(t, srv, pending, u.nextCode(t)))
	})
}
