package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp/totp"
)

// api talks to a running pvauth over one shared HTTP client.
type api struct {
	public, admin, adminKey string
	hc                      *http.Client
}

// newAPI builds the client: one Transport whose idle pool keeps a connection per
// worker per port, so the measurement does not include TCP handshakes.
func newAPI(public, admin, adminKey string, conc int) *api {
	idle := 2*conc + 8
	tr := &http.Transport{
		Proxy:               nil, // loopback: never through a proxy from the environment
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &api{
		public:   strings.TrimSuffix(public, "/"),
		admin:    strings.TrimSuffix(admin, "/"),
		adminKey: adminKey,
		hc:       &http.Client{Transport: tr, Timeout: 60 * time.Second},
	}
}

func (a *api) close() { a.hc.CloseIdleConnections() }

// do sends one request and reads the whole answer (so the connection is reused).
func (a *api) do(ctx context.Context, method, url, bearer, contentType string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return a.send(req)
}

// send sends req and reads the whole answer (so the connection is reused).
func (a *api) send(req *http.Request) (int, []byte, error) {
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

func (a *api) postJSON(ctx context.Context, url, bearer string, v any) (int, []byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return 0, nil, err
	}
	return a.do(ctx, http.MethodPost, url, bearer, "application/json", raw)
}

// Self-service and admin paths of the contract.
const (
	pathLogin      = "/api/v1/auth/login"
	pathOTPSetup   = "/api/v1/auth/otp/setup"
	pathOTPVerify  = "/api/v1/auth/otp/verify"
	pathRefresh    = "/api/v1/auth/refresh"
	pathIdentities = "/admin/identities"
	pathIntrospect = "/admin/oauth2/introspect"
)

// tokenSet is the contract's TokenSet (+ recovery codes on the enrolment call).
type tokenSet struct {
	AccessToken   string   `json:"accessToken"`
	RefreshToken  string   `json:"refreshToken"`
	RecoveryCodes []string `json:"recoveryCodes"`
}

// decodeData unwraps {"data": …} into v.
func decodeData(raw []byte, v any) error {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || len(env.Data) == 0 {
		return fmt.Errorf("no data in %s", snippet(raw))
	}
	return json.Unmarshal(env.Data, v)
}

func snippet(raw []byte) string {
	s := strings.TrimSpace(string(raw))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// expect turns a non-wanted status into an error that shows the answer.
func expect(what string, want, status int, raw []byte, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if status != want {
		return fmt.Errorf("%s: HTTP %d: %s", what, status, snippet(raw))
	}
	return nil
}

// expectData is expect, then decodeData of the answer into v.
func expectData(what string, want, status int, raw []byte, err error, v any) error {
	if err := expect(what, want, status, raw, err); err != nil {
		return err
	}
	return decodeData(raw, v)
}

// user is an identity enrolled with TOTP, with its current session and unused
// recovery codes.
type user struct {
	Email, Password, Secret string
	ID                      int64
	Tokens                  tokenSet
	Recovery                []string
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runID makes the emails of one run unique, so runs against one database don't collide.
var runID = randomHex(4)

// createIdentity creates a fresh identity with a random email and password.
func (a *api) createIdentity(ctx context.Context, n int) (*user, error) {
	u := &user{
		Email:    fmt.Sprintf("loadtest-%s-%d-%s@example.com", runID, n, randomHex(3)),
		Password: "lt-" + randomHex(12),
	}
	status, raw, err := a.postJSON(ctx, a.admin+pathIdentities, a.adminKey, map[string]any{"email": u.Email, "password": u.Password})
	var id struct {
		ID int64 `json:"id"`
	}
	if err := expectData("POST "+pathIdentities, http.StatusCreated, status, raw, err, &id); err != nil {
		return nil, err
	}
	u.ID = id.ID
	return u, nil
}

// passwordStep is POST /login; it returns the pending token.
func (a *api) passwordStep(ctx context.Context, u *user) (string, bool, error) {
	status, raw, err := a.postJSON(ctx, a.public+pathLogin, "", map[string]any{"email": u.Email, "password": u.Password})
	var lr struct {
		RegisterOTP bool   `json:"registerOtp"`
		Token       string `json:"token"`
	}
	if err := expectData("POST "+pathLogin, http.StatusOK, status, raw, err, &lr); err != nil {
		return "", false, err
	}
	return lr.Token, lr.RegisterOTP, nil
}

// enrol creates an identity and completes its first login: password, TOTP setup and
// the first TOTP code. The user keeps that session and its 10 recovery codes.
func (a *api) enrol(ctx context.Context, n int) (*user, error) {
	u, err := a.createIdentity(ctx, n)
	if err != nil {
		return nil, err
	}
	pending, register, err := a.passwordStep(ctx, u)
	if err != nil {
		return nil, err
	}
	if !register {
		return nil, fmt.Errorf("a fresh identity %s does not need TOTP enrolment", u.Email)
	}
	status, raw, err := a.do(ctx, http.MethodGet, a.public+pathOTPSetup, pending, "", nil)
	var setup struct {
		Secret string `json:"secret"`
	}
	if err := expectData("GET "+pathOTPSetup, http.StatusOK, status, raw, err, &setup); err != nil {
		return nil, err
	}
	u.Secret = setup.Secret
	code, err := totp.GenerateCode(u.Secret, time.Now())
	if err != nil {
		return nil, err
	}
	status, raw, err = a.postJSON(ctx, a.public+pathOTPVerify, pending, map[string]string{"otp": code})
	if err := expectData("POST "+pathOTPVerify+" (enrolment)", http.StatusOK, status, raw, err, &u.Tokens); err != nil {
		return nil, err
	}
	if u.Tokens.AccessToken == "" || u.Tokens.RefreshToken == "" || len(u.Tokens.RecoveryCodes) == 0 {
		return nil, fmt.Errorf("enrolment of %s returned no tokens or recovery codes: %s", u.Email, snippet(raw))
	}
	u.Recovery, u.Tokens.RecoveryCodes = u.Tokens.RecoveryCodes, nil
	return u, nil
}

// recoveryLogin logs u in again with one of its recovery codes (a new session).
func (a *api) recoveryLogin(ctx context.Context, u *user) error {
	if len(u.Recovery) == 0 {
		return fmt.Errorf("%s has no recovery codes left", u.Email)
	}
	pending, _, err := a.passwordStep(ctx, u)
	if err != nil {
		return err
	}
	code := u.Recovery[0]
	u.Recovery = u.Recovery[1:]
	status, raw, err := a.postJSON(ctx, a.public+pathOTPVerify, pending, map[string]string{"otp": code})
	return expectData("POST "+pathOTPVerify+" (recovery code)", http.StatusOK, status, raw, err, &u.Tokens)
}

// introspect posts the form body of RFC 7662 to the admin port.
func (a *api) introspect(ctx context.Context, token string) (int, []byte, error) {
	return a.do(ctx, http.MethodPost, a.admin+pathIntrospect, a.adminKey,
		"application/x-www-form-urlencoded", []byte(url.Values{"token": {token}}.Encode()))
}
