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
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/selfservice/password"
)

const (
	routeLogin          = "/api/v1/auth/login"
	routeSetup          = "/api/v1/auth/otp/setup"
	routeVerify         = "/api/v1/auth/otp/verify"
	routeMe             = "/api/v1/auth/me"
	routeLogout         = "/api/v1/auth/logout"
	routeAdminOTPVerify = "/admin/otp/verify"
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
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u := newUser(t, srv, nil)
		lr := login(t, srv, u.Email, u.Password, false)
		if !lr.RegisterOTP {
			t.Fatal("registerOtp must be true before enrolment")
		}
		if strings.Count(lr.Token, ".") == 2 {
			t.Fatalf("the pending token must not be a JWT access token: %q", lr.Token)
		}

		// The pending token is no access token.
		e := testkit.WantError(t, srv.Public(t, http.MethodGet, routeMe, lr.Token, nil), http.StatusForbidden, "")
		if !strings.Contains(e.Message, "otp") {
			t.Errorf("403 message should tell about the second factor: %q", e.Message)
		}
		testkit.WantError(t, srv.Public(t, http.MethodPost, routeLogout, lr.Token, nil), http.StatusForbidden, "")
		if testkit.IsActive(t, srv, lr.Token) {
			t.Fatal("a pending token must introspect inactive")
		}
		// Verifying before setup is a 400, and does not count as a wrong code.
		testkit.WantError(t, verifyOTP(t, srv, lr.Token, "123456"), http.StatusBadRequest, "")

		resp := srv.Public(t, http.MethodGet, routeSetup, lr.Token, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("setup: %d %s", resp.Status, resp.Body)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("setup returns a secret: Cache-Control %q", cc)
		}
		var s password.SetupResult
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
		ts := testkit.WantTokens(t, resp)
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
		testkit.WantError(t, verifyOTP(t, srv, lr.Token, u.peekCode(t)), http.StatusUnauthorized, "")
		testkit.WantError(t, srv.Public(t, http.MethodGet, routeSetup, lr.Token, nil), http.StatusUnauthorized, "")

		// The tokens work; the next login no longer asks for enrolment, and setup is 409.
		if r := srv.Public(t, http.MethodGet, routeMe, ts.AccessToken, nil); r.Status != http.StatusOK {
			t.Fatalf("/me with the new access token: %d %s", r.Status, r.Body)
		}
		lr2 := login(t, srv, u.Email, u.Password, false)
		if lr2.RegisterOTP {
			t.Fatal("registerOtp must be false once enrolled")
		}
		testkit.WantError(t, srv.Public(t, http.MethodGet, routeSetup, lr2.Token, nil), http.StatusConflict, "")
		// The second-factor step uses the enrolled secret, not a new one.
		testkit.WantTokens(t, verifyOTP(t, srv, lr2.Token, u.nextCode(t)))

		// Garbage and missing bearer tokens on the pending endpoints are 401.
		testkit.WantError(t, srv.Public(t, http.MethodGet, routeSetup, "", nil), http.StatusUnauthorized, "")
		testkit.WantError(t, srv.Public(t, http.MethodGet, routeSetup, "pvauth_pending_nope", nil), http.StatusUnauthorized, "")
		testkit.WantError(t, verifyOTP(t, srv, ts.AccessToken, "123456"), http.StatusUnauthorized, "")
	})
}

// TestEnrolmentWrongFirstCode: a wrong first code does not enrol, and counts.
func TestEnrolmentWrongFirstCode(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u := newUser(t, srv, nil)
		lr := login(t, srv, u.Email, u.Password, false)
		s := setupOTP(t, srv, lr.Token)
		testkit.WantError(t, verifyOTP(t, srv, lr.Token, wrongCode(t, s.Secret)), http.StatusUnauthorized, "")
		testkit.WantError(t, verifyOTP(t, srv, lr.Token, "not-a-code"), http.StatusUnauthorized, "")
		if lr := login(t, srv, u.Email, u.Password, false); !lr.RegisterOTP {
			t.Fatal("a failed enrolment must leave the identity unenrolled")
		}
		ts := testkit.WantTokens(t, verifyOTP(t, srv, lr.Token, codeAt(t, s.Secret, step(time.Now()))))
		if len(ts.RecoveryCodes) != 10 {
			t.Fatalf("recovery codes %q", ts.RecoveryCodes)
		}
	})
}

// TestWrongCodesLockThePendingToken: five wrong codes are counted; the sixth attempt
// fails even with the right code.
func TestWrongCodesLockThePendingToken(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, _ := enrolledUser(t, srv, nil)
		lr := login(t, srv, u.Email, u.Password, false)
		bad := wrongCode(t, u.Secret)
		for i := 1; i <= 5; i++ {
			testkit.WantError(t, verifyOTP(t, srv, lr.Token, bad), http.StatusUnauthorized, "")
		}
		good := codeAt(t, u.Secret, max(u.lastStep+1, step(time.Now())))
		testkit.WantError(t, verifyOTP(t, srv, lr.Token, good), http.StatusUnauthorized, "")
		testkit.WantError(t, srv.Public(t, http.MethodGet, routeSetup, lr.Token, nil), http.StatusUnauthorized, "")

		// The failures were counted, one audit event each.
		var counts []int
		for _, e := range testkit.AuditEvents(t, srv, u.ID) {
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
		testkit.WantTokens(t, verifyOTP(t, srv, lr2.Token, codeAt(t, u.Secret, u.lastStep)))
	})
}

// TestPendingTokenExpires: once ttl.pending_login has passed, the pending token is a
// 401 with the contract's error body at /otp/setup and /otp/verify, even with a right code.
func TestPendingTokenExpires(t *testing.T) {
	testkit.ForEachDB(t, map[string]any{"ttl.pending_login": "1s"}, func(t *testing.T, srv *testserver.Server) {
		u := newUser(t, srv, nil)
		lr := login(t, srv, u.Email, u.Password, false)
		// Storage keeps expiries in whole seconds, rounded up: the token lives until at
		// most the next whole second after now+1s.
		deadline := time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second)
		// Still good right after the login.
		st := setupOTP(t, srv, lr.Token)
		time.Sleep(time.Until(deadline) + 200*time.Millisecond)
		testkit.WantError(t, srv.Public(t, http.MethodGet, routeSetup, lr.Token, nil), http.StatusUnauthorized, "")
		testkit.WantError(t, verifyOTP(t, srv, lr.Token, codeAt(t, st.Secret, step(time.Now()))), http.StatusUnauthorized, "")
		if testkit.IsActive(t, srv, lr.Token) {
			t.Fatal("an expired pending token introspects active")
		}
	})
}

// TestReplayedCodeIsRefused: a TOTP code accepted once is refused for the same user,
// on another pending token too.
func TestReplayedCodeIsRefused(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, _ := enrolledUser(t, srv, nil)
		// The enrolment code itself cannot be replayed.
		lr := login(t, srv, u.Email, u.Password, false)
		e := testkit.WantError(t, verifyOTP(t, srv, lr.Token, codeAt(t, u.Secret, u.lastStep)), http.StatusUnauthorized, "")
		if !strings.Contains(e.Message, "already used") {
			t.Errorf("replay message %q", e.Message)
		}
		code := u.nextCode(t)
		testkit.WantTokens(t, verifyOTP(t, srv, lr.Token, code))

		lr2 := login(t, srv, u.Email, u.Password, false)
		testkit.WantError(t, verifyOTP(t, srv, lr2.Token, code), http.StatusUnauthorized, "")
		// An older step than the last accepted one is refused as well.
		testkit.WantError(t, verifyOTP(t, srv, lr2.Token, codeAt(t, u.Secret, u.lastStep-1)), http.StatusUnauthorized, "")

		// The service check refuses it too.
		var res struct {
			Valid bool `json:"valid"`
		}
		srv.Admin(t, http.MethodPost, routeAdminOTPVerify, map[string]any{"userId": u.ID, "otp": code}).Data(t, &res)
		if res.Valid {
			t.Fatal("/admin/otp/verify accepted a replayed code")
		}
	})
}

// TestRecoveryCodeWorksOnce: a recovery code replaces the TOTP code, once.
func TestRecoveryCodeWorksOnce(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, _ := enrolledUser(t, srv, nil)
		lr := login(t, srv, u.Email, u.Password, false)
		ts := testkit.WantTokens(t, verifyOTP(t, srv, lr.Token, u.Recovery[0]))
		if r := srv.Public(t, http.MethodGet, routeMe, ts.AccessToken, nil); r.Status != http.StatusOK {
			t.Fatalf("/me after recovery-code login: %d %s", r.Status, r.Body)
		}

		lr2 := login(t, srv, u.Email, u.Password, false)
		testkit.WantError(t, verifyOTP(t, srv, lr2.Token, u.Recovery[0]), http.StatusUnauthorized, "")
		// Codes are read case- and dash-insensitively; another code still works.
		other := strings.ToUpper(strings.ReplaceAll(u.Recovery[1], "-", " "))
		testkit.WantTokens(t, verifyOTP(t, srv, lr2.Token, other))
		lr3 := login(t, srv, u.Email, u.Password, false)
		testkit.WantError(t, verifyOTP(t, srv, lr3.Token, u.Recovery[1]), http.StatusUnauthorized, "")
		// A made-up recovery code is refused.
		testkit.WantError(t, verifyOTP(t, srv, lr3.Token, "aaaaa-bbbbb"), http.StatusUnauthorized, "")

		// The admin service check accepts a recovery code once too.
		var res struct {
			UserID int64 `json:"userId"`
			Valid  bool  `json:"valid"`
		}
		srv.Admin(t, http.MethodPost, routeAdminOTPVerify, map[string]any{"userId": u.ID, "otp": u.Recovery[2]}).Data(t, &res)
		if !res.Valid || res.UserID != u.ID {
			t.Fatalf("admin check with a recovery code: %+v", res)
		}
		srv.Admin(t, http.MethodPost, routeAdminOTPVerify, map[string]any{"userId": u.ID, "otp": u.Recovery[2]}).Data(t, &res)
		if res.Valid {
			t.Fatal("admin check accepted a used recovery code")
		}
	})
}

// TestUnknownEmailAndWrongPasswordLookTheSame.
func TestUnknownEmailAndWrongPasswordLookTheSame(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u := newUser(t, srv, nil)
		wrong := srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": u.Email, "password": "wrong password"})
		unknown := srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": "nobody-" + u.Email, "password": "wrong password"})
		ew := testkit.WantError(t, wrong, http.StatusUnauthorized, "")
		eu := testkit.WantError(t, unknown, http.StatusUnauthorized, "")
		if ew != eu {
			t.Fatalf("wrong password %+v vs unknown email %+v", ew, eu)
		}
		// Emails are compared normalized.
		lr := login(t, srv, "  "+strings.ToUpper(u.Email)+" ", u.Password, false)
		if !lr.RegisterOTP {
			t.Fatal("registerOtp")
		}
		// An identity without a password cannot log in, with the same answer.
		nopw := testkit.UniqueEmail("nopw-")
		if r := srv.Admin(t, http.MethodPost, "/admin/identities", map[string]any{"email": nopw}); r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		en := testkit.WantError(t, srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": nopw, "password": "anything"}), http.StatusUnauthorized, "")
		if en != ew {
			t.Fatalf("password-less identity %+v vs wrong password %+v", en, ew)
		}
	})
}

// TestRememberMeLengthensTheRefreshToken: 720 h with rememberMe, 72 h without; the
// rotated token keeps its family's lifetime.
func TestRememberMeLengthensTheRefreshToken(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
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

		rl := testkit.WantTokens(t, testkit.Refresh(t, srv, long.RefreshToken))
		near("rotated rememberMe refresh token", rl.RefreshTokenExpiresAt, 720*time.Hour)
		rs := testkit.WantTokens(t, testkit.Refresh(t, srv, short.RefreshToken))
		near("rotated refresh token", rs.RefreshTokenExpiresAt, 72*time.Hour)
	})
}

// TestAccessTokenIsAnES256JWT: the access token verifies against the JWKS and carries
// the contract's claims.
func TestAccessTokenIsAnES256JWT(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
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
		testkit.WantError(t, srv.Public(t, http.MethodGet, routeMe, forged, nil), http.StatusUnauthorized, "")

		// The refreshed token is a new JWT of the same session.
		t1 := testkit.WantTokens(t, testkit.Refresh(t, srv, ts.RefreshToken))
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
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, _ := enrolledUser(t, srv, nil)
		type result struct {
			UserID int64 `json:"userId"`
			Valid  bool  `json:"valid"`
		}
		check := func(code string) result {
			t.Helper()
			resp := srv.Admin(t, http.MethodPost, routeAdminOTPVerify, map[string]any{"userId": u.ID, "otp": code})
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
		testkit.WantError(t, verifyOTP(t, srv, lr.Token, code), http.StatusUnauthorized, "")

		// An identity without TOTP never validates.
		plain := newUser(t, srv, nil)
		resp := srv.Admin(t, http.MethodPost, routeAdminOTPVerify, map[string]any{"userId": plain.ID, "otp": "123456"})
		var r result
		resp.Data(t, &r)
		if r.Valid {
			t.Fatal("an identity without TOTP validated")
		}

		testkit.WantError(t, srv.Admin(t, http.MethodPost, routeAdminOTPVerify, map[string]any{"userId": 999999999, "otp": "123456"}), http.StatusNotFound, "")
		testkit.WantError(t, srv.Admin(t, http.MethodPost, routeAdminOTPVerify, map[string]any{"otp": "123456"}), http.StatusBadRequest, "")
		testkit.WantError(t, srv.Admin(t, http.MethodPost, routeAdminOTPVerify, map[string]any{"userId": u.ID}), http.StatusBadRequest, "")
		testkit.WantError(t, srv.Admin(t, http.MethodPost, routeAdminOTPVerify, map[string]any{"userId": "1", "otp": "123456"}), http.StatusBadRequest, "")
		testkit.WantError(t, srv.Admin(t, http.MethodPost, routeAdminOTPVerify, map[string]any{"userId": -1, "otp": "123456"}), http.StatusBadRequest, "")
		testkit.WantError(t, srv.Admin(t, http.MethodPost, routeAdminOTPVerify, map[string]any{"userId": 1.5, "otp": "123456"}), http.StatusBadRequest, "")
	})
}

// TestDisabledIdentity: a disabled identity cannot log in, its tokens die and its
// refresh fails.
func TestDisabledIdentity(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, ts := enrolledUser(t, srv, nil)
		pending := login(t, srv, u.Email, u.Password, false)
		badCreds := testkit.WantError(t, srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": u.Email, "password": "wrong"}), http.StatusUnauthorized, "")

		resp := srv.Admin(t, http.MethodPatch, fmt.Sprintf("/admin/identities/%d", u.ID), map[string]string{"state": "disabled"})
		if resp.Status != http.StatusOK {
			t.Fatalf("disable: %d %s", resp.Status, resp.Body)
		}
		e := testkit.WantError(t, srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": u.Email, "password": u.Password}), http.StatusUnauthorized, "")
		if e != badCreds {
			t.Errorf("disabled login %+v differs from bad credentials %+v", e, badCreds)
		}
		testkit.WantError(t, testkit.Refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized, "")
		if testkit.IsActive(t, srv, ts.AccessToken) {
			t.Fatal("access token of a disabled identity is active")
		}
		testkit.WantError(t, srv.Public(t, http.MethodGet, routeMe, ts.AccessToken, nil), http.StatusUnauthorized, "")
		// A pending token from before cannot finish the login.
		testkit.WantError(t, verifyOTP(t, srv, pending.Token, u.peekCode(t)), http.StatusUnauthorized, "")

		// Enabled again, the user logs in (fresh login; old tokens stay dead).
		resp = srv.Admin(t, http.MethodPatch, fmt.Sprintf("/admin/identities/%d", u.ID), map[string]string{"state": "active"})
		if resp.Status != http.StatusOK {
			t.Fatalf("enable: %d %s", resp.Status, resp.Body)
		}
		testkit.WantError(t, testkit.Refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized, "")
		u.fullLogin(t, srv, false)
	})
}

// TestAdminRevokesAllSessions: DELETE /admin/identities/{id}/sessions.
func TestAdminRevokesAllSessions(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
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
		for _, ts := range []testkit.Tokens{a, b} {
			if testkit.IsActive(t, srv, ts.AccessToken) || testkit.IsActive(t, srv, ts.RefreshToken) {
				t.Fatal("a token is active after the admin revoked every session")
			}
			testkit.WantError(t, testkit.Refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized, "")
		}
		if !testkit.IsActive(t, srv, bystander.AccessToken) {
			t.Fatal("another user's session was revoked")
		}
		testkit.WantError(t, srv.Admin(t, http.MethodDelete, "/admin/identities/999999999/sessions", nil), http.StatusNotFound, "")
	})
}

// TestAuditTrail: login success and failure, OTP verify, refresh reuse and logout are
// audited with the user id.
func TestAuditTrail(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, t0 := enrolledUser(t, srv, nil)
		testkit.WantError(t, srv.Public(t, http.MethodPost, routeLogin, "", map[string]string{"email": u.Email, "password": "wrong"}), http.StatusUnauthorized, "")
		lr := login(t, srv, u.Email, u.Password, false)
		testkit.WantError(t, verifyOTP(t, srv, lr.Token, wrongCode(t, u.Secret)), http.StatusUnauthorized, "")
		ts := testkit.WantTokens(t, verifyOTP(t, srv, lr.Token, u.nextCode(t)))

		testkit.WantTokens(t, testkit.Refresh(t, srv, t0.RefreshToken))
		testkit.WantError(t, testkit.Refresh(t, srv, t0.RefreshToken), http.StatusUnauthorized, "")
		if r := srv.Public(t, http.MethodPost, routeLogout, ts.AccessToken, nil); r.Status != http.StatusOK {
			t.Fatalf("logout: %d %s", r.Status, r.Body)
		}

		events := testkit.AuditEvents(t, srv, u.ID)
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
			if !testkit.HasEvent(events, want.typ, want.res) {
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
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, _ := enrolledUser(t, srv, nil)
		pending := login(t, srv, u.Email, u.Password, false).Token
		big := testkit.TooLargeBody()
		// /refresh and /logout: session's TestAccountRequestDecoding.
		cases := append(testkit.MalformedBodies(routeLogin, "", "email"), testkit.MalformedBodies(routeVerify, pending, "otp")...)
		cases = append(cases, []testkit.BodyCase{
			{Name: "login missing password", Path: routeLogin, Body: `{"email":"a@b.c"}`, Status: http.StatusBadRequest, Mention: "password"},
			{Name: "login rememberMe string", Path: routeLogin, Body: `{"email":"a@b.c","password":"x","rememberMe":"yes"}`, Status: http.StatusBadRequest, Mention: "rememberMe"},
			{Name: "admin otp malformed", Path: routeAdminOTPVerify, Body: `{`, Status: http.StatusBadRequest, Mention: "JSON"},
			{Name: "admin otp string id", Path: routeAdminOTPVerify, Body: `{"userId":"abc","otp":"123456"}`, Status: http.StatusBadRequest, Mention: "userId"},
			{Name: "admin otp huge id", Path: routeAdminOTPVerify, Body: `{"userId":1e40,"otp":"123456"}`, Status: http.StatusBadRequest, Mention: "userId"},
			{Name: "admin otp 2 MiB", Path: routeAdminOTPVerify, Body: big, Status: http.StatusRequestEntityTooLarge},
		}...)
		testkit.WantRefusals(t, srv, cases)

		// A wrong content type is 415.
		testkit.WantUnsupportedMedia(t, srv, routeLogin)

		// A non-numeric identity id is a 400 naming it.
		e := testkit.WantError(t, srv.Admin(t, http.MethodGet, "/admin/identities/abc", nil), http.StatusBadRequest, "")
		if !strings.Contains(e.Message, "id") {
			t.Errorf("message %q", e.Message)
		}
		testkit.WantError(t, srv.Admin(t, http.MethodDelete, "/admin/identities/abc/sessions", nil), http.StatusBadRequest, "")
		testkit.WantError(t, srv.Admin(t, http.MethodGet, "/admin/identities/-1", nil), http.StatusBadRequest, "")
		testkit.WantError(t, srv.Admin(t, http.MethodGet, "/admin/identities/99999999999999999999", nil), http.StatusBadRequest, "")

		// The pending token survived all the malformed verify requests: they are not
		// wrong codes.
		testkit.WantTokens(t, verifyOTP(t, srv, pending, u.nextCode(t)))
	})
}
