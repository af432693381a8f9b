package password_test

import (
	"bytes"
	"encoding/base64"
	"image"
	_ "image/png"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/selfservice/password"
)

// user is a test identity with its credentials and the TOTP state the test knows.
type user struct {
	*testkit.Identity
	Secret   string
	Recovery []string
	// lastStep is the newest TOTP step the server has accepted for this user.
	lastStep int64
}

// newUser creates an identity (extra as in testkit.CreateIdentity) not enrolled yet.
func newUser(t testing.TB, srv *testserver.Server, extra map[string]any) *user {
	t.Helper()
	return &user{Identity: testkit.CreateIdentity(t, srv, extra)}
}

// login posts /login and expects 200.
func login(t testing.TB, srv *testserver.Server, email, pw string, rememberMe bool) password.LoginResult {
	t.Helper()
	body := map[string]any{"email": email, "password": pw}
	if rememberMe {
		body["rememberMe"] = true
	}
	resp := srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", body)
	if resp.Status != http.StatusOK {
		t.Fatalf("login %s: %d %s", email, resp.Status, resp.Body)
	}
	var lr password.LoginResult
	resp.Data(t, &lr)
	if lr.Token == "" {
		t.Fatalf("login gave no pending token: %s", resp.Body)
	}
	return lr
}

// setupOTP calls GET /otp/setup with a pending token and expects 200.
func setupOTP(t testing.TB, srv *testserver.Server, pending string) password.SetupResult {
	t.Helper()
	resp := srv.Public(t, http.MethodGet, "/api/v1/auth/otp/setup", pending, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("otp setup: %d %s", resp.Status, resp.Body)
	}
	var s password.SetupResult
	resp.Data(t, &s)
	return s
}

// verifyOTP posts /otp/verify with a pending token.
func verifyOTP(t testing.TB, srv *testserver.Server, pending, code string) *testserver.Response {
	t.Helper()
	return srv.Public(t, http.MethodPost, "/api/v1/auth/otp/verify", pending, map[string]string{"otp": code})
}

// step is the TOTP time step of tm.
func step(tm time.Time) int64 { return tm.Unix() / 30 }

// codeAt is the TOTP code of secret for time step s.
func codeAt(t testing.TB, secret string, s int64) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, time.Unix(s*30, 0).UTC(), totp.ValidateOpts{
		Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// nextCode returns a TOTP code the server has not seen for u and will accept (±1 step),
// and records it as used. It prefers the current step or the next one (never the previous,
// which may fall out of the window while the request travels), and waits for the next step
// when both are used up.
func (u *user) nextCode(t testing.TB) string {
	t.Helper()
	for {
		cur := step(time.Now())
		s := max(u.lastStep+1, cur)
		if s <= cur+1 {
			u.lastStep = s
			return codeAt(t, u.Secret, s)
		}
		time.Sleep(time.Until(time.Unix((cur+1)*30, 0)) + 50*time.Millisecond)
	}
}

// peekCode is the code nextCode would return, without recording it: for attempts the
// server is expected to refuse before it looks at the code.
func (u *user) peekCode(t testing.TB) string {
	t.Helper()
	return codeAt(t, u.Secret, min(max(u.lastStep+1, step(time.Now())), step(time.Now())+1))
}

// enroll logs u in for the first time, enrols TOTP and returns the first token set.
func (u *user) enroll(t testing.TB, srv *testserver.Server) testkit.Tokens {
	t.Helper()
	lr := login(t, srv, u.Email, u.Password, false)
	if !lr.RegisterOTP {
		t.Fatalf("a new identity must be asked to enrol TOTP")
	}
	s := setupOTP(t, srv, lr.Token)
	u.Secret = s.Secret
	// The first code: the current step, so that it stays in the window for the request.
	cur := step(time.Now())
	u.lastStep = cur
	ts := testkit.WantTokens(t, verifyOTP(t, srv, lr.Token, codeAt(t, u.Secret, cur)))
	if len(ts.RecoveryCodes) != 10 {
		t.Fatalf("enrolment must return 10 recovery codes, got %q", ts.RecoveryCodes)
	}
	u.Recovery = ts.RecoveryCodes
	return ts
}

// fullLogin logs an enrolled user in with the password and a fresh TOTP code.
func (u *user) fullLogin(t testing.TB, srv *testserver.Server, rememberMe bool) testkit.Tokens {
	t.Helper()
	lr := login(t, srv, u.Email, u.Password, rememberMe)
	if lr.RegisterOTP {
		t.Fatalf("an enrolled identity must not be asked to enrol again")
	}
	return testkit.WantTokens(t, verifyOTP(t, srv, lr.Token, u.nextCode(t)))
}

// enrolledUser creates an identity and enrols it; the first token set is returned.
func enrolledUser(t testing.TB, srv *testserver.Server, extra map[string]any) (*user, testkit.Tokens) {
	t.Helper()
	u := newUser(t, srv, extra)
	return u, u.enroll(t, srv)
}

// decodeQR reads the text of a QR code PNG given as a data URI.
func decodeQR(t testing.TB, dataURI string) string {
	t.Helper()
	const prefix = "data:image/png;base64,"
	if !strings.HasPrefix(dataURI, prefix) {
		t.Fatalf("qrCodePng is not a PNG data URI: %.40q", dataURI)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(dataURI, prefix))
	if err != nil {
		t.Fatalf("qrCodePng base64: %v", err)
	}
	img, format, err := image.Decode(bytes.NewReader(raw))
	if err != nil || format != "png" {
		t.Fatalf("qrCodePng is not a PNG (%q): %v", format, err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	// The detector occasionally misses the finder patterns of a clean, generated image
	// (about 1 in 40 codes): try harder, then read it as the pure barcode it is.
	var res *gozxing.Result
	for _, hints := range []map[gozxing.DecodeHintType]interface{}{
		nil,
		{gozxing.DecodeHintType_TRY_HARDER: true},
		{gozxing.DecodeHintType_PURE_BARCODE: true},
	} {
		if res, err = qrcode.NewQRCodeReader().Decode(bmp, hints); err == nil {
			return res.GetText()
		}
	}
	t.Fatalf("decoding the QR code: %v", err)
	return ""
}
