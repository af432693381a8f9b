package password_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	_ "image/png"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// tokens is the TokenSet of the contract, plus the recovery codes of the enrolment call.
type tokens struct {
	AccessToken           string    `json:"accessToken"`
	AccessTokenExpiresAt  time.Time `json:"accessTokenExpiresAt"`
	RefreshToken          string    `json:"refreshToken"`
	RefreshTokenExpiresAt time.Time `json:"refreshTokenExpiresAt"`
	Signature             string    `json:"signature"`
	RecoveryCodes         []string  `json:"recoveryCodes"`
}

type loginResult struct {
	RegisterOTP bool   `json:"registerOtp"`
	Token       string `json:"token"`
}

type setupResult struct {
	Secret     string `json:"secret"`
	OTPAuthURL string `json:"otpauthUrl"`
	QRCodePNG  string `json:"qrCodePng"`
}

type errorBody struct {
	Message    string `json:"message"`
	StatusCode int    `json:"statusCode"`
	Error      string `json:"error"`
}

// forEachDB starts a real server per database (SQLite in memory and a fresh PostgreSQL)
// and runs fn against it.
func forEachDB(t *testing.T, set map[string]any, fn func(t *testing.T, srv *testserver.Server)) {
	t.Helper()
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		fn(t, testserver.Start(t, dsn, set))
	})
}

var userSeq atomic.Int64

// user is a test identity with its credentials and the TOTP state the test knows.
type user struct {
	ID       int64
	Email    string
	Password string
	Secret   string
	Recovery []string
	// lastStep is the newest TOTP step the server has accepted for this user.
	lastStep int64
}

// newUser creates an identity through the admin API; extra adds fields of the create body.
func newUser(t testing.TB, srv *testserver.Server, extra map[string]any) *user {
	t.Helper()
	u := &user{
		Email:    fmt.Sprintf("user%d-%d@example.com", time.Now().UnixNano(), userSeq.Add(1)),
		Password: "correct horse battery staple",
	}
	body := map[string]any{"email": u.Email, "password": u.Password}
	for k, v := range extra {
		body[k] = v
	}
	resp := srv.Admin(t, http.MethodPost, "/admin/identities", body)
	if resp.Status != http.StatusCreated {
		t.Fatalf("create identity: %d %s", resp.Status, resp.Body)
	}
	var id struct {
		ID int64 `json:"id"`
	}
	resp.Data(t, &id)
	u.ID = id.ID
	return u
}

// login posts /login and expects 200.
func login(t testing.TB, srv *testserver.Server, email, password string, rememberMe bool) loginResult {
	t.Helper()
	body := map[string]any{"email": email, "password": password}
	if rememberMe {
		body["rememberMe"] = true
	}
	resp := srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", body)
	if resp.Status != http.StatusOK {
		t.Fatalf("login %s: %d %s", email, resp.Status, resp.Body)
	}
	var lr loginResult
	resp.Data(t, &lr)
	if lr.Token == "" {
		t.Fatalf("login gave no pending token: %s", resp.Body)
	}
	return lr
}

// setupOTP calls GET /otp/setup with a pending token and expects 200.
func setupOTP(t testing.TB, srv *testserver.Server, pending string) setupResult {
	t.Helper()
	resp := srv.Public(t, http.MethodGet, "/api/v1/auth/otp/setup", pending, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("otp setup: %d %s", resp.Status, resp.Body)
	}
	var s setupResult
	resp.Data(t, &s)
	return s
}

// verifyOTP posts /otp/verify with a pending token.
func verifyOTP(t testing.TB, srv *testserver.Server, pending, code string) *testserver.Response {
	t.Helper()
	return srv.Public(t, http.MethodPost, "/api/v1/auth/otp/verify", pending, map[string]string{"otp": code})
}

// wantTokens decodes a 200 TokenSet response.
func wantTokens(t testing.TB, resp *testserver.Response) tokens {
	t.Helper()
	if resp.Status != http.StatusOK {
		t.Fatalf("want 200 with tokens, got %d %s", resp.Status, resp.Body)
	}
	var ts tokens
	resp.Data(t, &ts)
	if ts.AccessToken == "" || ts.RefreshToken == "" || ts.Signature == "" {
		t.Fatalf("incomplete token set: %s", resp.Body)
	}
	return ts
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
func (u *user) enroll(t testing.TB, srv *testserver.Server) tokens {
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
	ts := wantTokens(t, verifyOTP(t, srv, lr.Token, codeAt(t, u.Secret, cur)))
	if len(ts.RecoveryCodes) != 10 {
		t.Fatalf("enrolment must return 10 recovery codes, got %q", ts.RecoveryCodes)
	}
	u.Recovery = ts.RecoveryCodes
	return ts
}

// fullLogin logs an enrolled user in with the password and a fresh TOTP code.
func (u *user) fullLogin(t testing.TB, srv *testserver.Server, rememberMe bool) tokens {
	t.Helper()
	lr := login(t, srv, u.Email, u.Password, rememberMe)
	if lr.RegisterOTP {
		t.Fatalf("an enrolled identity must not be asked to enrol again")
	}
	return wantTokens(t, verifyOTP(t, srv, lr.Token, u.nextCode(t)))
}

// loginFully creates nothing: it runs the whole password + TOTP login of an existing,
// not yet enrolled identity (enrolling it) and returns the tokens and the TOTP secret.
func loginFully(t testing.TB, srv *testserver.Server, email, password string) (tokens, string) {
	t.Helper()
	u := &user{Email: email, Password: password}
	ts := u.enroll(t, srv)
	return ts, u.Secret
}

// enrolledUser creates an identity and enrols it; the first token set is returned.
func enrolledUser(t testing.TB, srv *testserver.Server, extra map[string]any) (*user, tokens) {
	t.Helper()
	u := newUser(t, srv, extra)
	return u, u.enroll(t, srv)
}

// refresh posts /refresh.
func refresh(t testing.TB, srv *testserver.Server, refreshToken string) *testserver.Response {
	t.Helper()
	return srv.Public(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]string{"refreshToken": refreshToken})
}

// introspect asks the admin port whether a token is active.
func introspect(t testing.TB, srv *testserver.Server, token string) bool {
	t.Helper()
	form := url.Values{"token": {token}}.Encode()
	req, err := http.NewRequest(http.MethodPost, srv.AdminURL+"/admin/oauth2/introspect", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if keys := srv.Config.Serve.Admin.APIKeys; len(keys) > 0 {
		req.Header.Set("Authorization", "Bearer "+keys[0])
	}
	resp, err := srv.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		Active *bool `json:"active"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != http.StatusOK || out.Active == nil {
		t.Fatalf("introspect: %d %s", resp.StatusCode, raw)
	}
	return *out.Active
}

// postJSON is a request that reports failures instead of failing the test, for goroutines.
func postJSON(client *http.Client, url, bearer string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// wantError checks the status and the contract's error body.
func wantError(t testing.TB, resp *testserver.Response, status int) errorBody {
	t.Helper()
	if resp.Status != status {
		t.Fatalf("want %d, got %d %s", status, resp.Status, resp.Body)
	}
	var e errorBody
	resp.JSON(t, &e)
	if e.StatusCode != status || e.Message == "" || e.Error == "" {
		t.Fatalf("bad error body for %d: %s", status, resp.Body)
	}
	return e
}

// auditEvents flushes the audit queue and lists the events of a user.
func auditEvents(t testing.TB, srv *testserver.Server, userID int64) []audit.Event {
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

// hasEvent reports whether events hold one of type typ with result res.
func hasEvent(events []audit.Event, typ, res string) bool {
	for _, e := range events {
		if e.Type == typ && e.Result == res {
			return true
		}
	}
	return false
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

// parallel runs fn n times at once, released together, and returns the statuses.
func parallel(n int, fn func(i int) int) []int {
	statuses := make([]int, n)
	start := make(chan struct{})
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			<-start
			statuses[i] = fn(i)
		}()
	}
	close(start)
	for i := 0; i < n; i++ {
		<-done
	}
	return statuses
}

func count(statuses []int, status int) int {
	n := 0
	for _, s := range statuses {
		if s == status {
			n++
		}
	}
	return n
}
