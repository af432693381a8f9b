package replicas_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testredis"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/session"
)

const (
	api         = "/api/v1/auth"
	password    = "correct horse battery staple"
	issuer      = "http://127.0.0.1" // testserver's base URL: one issuer for the whole cluster
	loginUI     = "http://ui.example.com/login"
	consentUI   = "http://ui.example.com/consent"
	callbackURL = "http://127.0.0.1:9/callback" // never visited: the browser does not follow redirects
)

// cluster is three replicas on one PostgreSQL database and one Redis.
type cluster struct {
	reps []*testserver.Server
	n    atomic.Int64
}

// startCluster starts three registries (both ports each, real HTTP) on a fresh PostgreSQL
// database with rate limits counted in the test Redis; set overrides config keys. Without
// PostgreSQL or Redis the test skips, or fails when CI is set.
func startCluster(t *testing.T, set map[string]any) *cluster {
	t.Helper()
	redisURL := testredis.URL(t)
	dsn := testdb.Postgres(t)
	o := map[string]any{
		"ratelimit.enabled":                               true,
		"ratelimit.store":                                 "redis",
		"ratelimit.redis.url":                             redisURL,
		"serve.public.trusted_proxies":                    []any{"127.0.0.1"},
		"urls.login_ui":                                   loginUI,
		"urls.consent_ui":                                 consentUI,
		"ratelimit.rules.login.limit":                     100000,
		"ratelimit.rules.login_email.limit":               100000,
		"ratelimit.rules.otp_verify.limit":                100000,
		"ratelimit.rules.ip.limit":                        1000000,
		"ratelimit.rules.mobile_challenge.limit":          100000,
		"ratelimit.rules.mobile_biometric.limit":          100000,
		"ratelimit.rules.confirmation_initiate.limit":     100000,
		"ratelimit.rules.device_register_challenge.limit": 100000,
	}
	for k, v := range set {
		o[k] = v
	}
	c := &cluster{}
	for i := 0; i < 3; i++ {
		c.reps = append(c.reps, testserver.Start(t, dsn, o))
	}
	return c
}

// next is the next replica, round robin: requests spread over the cluster.
func (c *cluster) next() *testserver.Server { return c.reps[int(c.n.Add(1))%len(c.reps)] }

// rep is replica i (0, 1, 2 = A, B, C) and its name.
func (c *cluster) rep(i int) *testserver.Server { return c.reps[i%len(c.reps)] }

func repName(i int) string { return string(rune('A' + i%3)) }

// do sends a JSON request to the public (admin=false) or admin port of srv; safe in any
// goroutine (a transport failure comes back as status 0 with the error as body).
func do(srv *testserver.Server, admin bool, method, path, bearer string, body any) *testserver.Response {
	base := srv.PublicURL
	if admin {
		base = srv.AdminURL
	}
	return testkit.Send(srv.Client, method, base+path, bearer, body)
}

// form posts an x-www-form-urlencoded body to the public (or admin) port.
func form(srv *testserver.Server, admin bool, path string, v url.Values) *testserver.Response {
	base := srv.PublicURL
	if admin {
		base = srv.AdminURL
	}
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(v.Encode()))
	if err != nil {
		return &testserver.Response{Body: []byte(err.Error())}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return testkit.SendRequest(srv.Client, req)
}

func want(t testing.TB, what string, r *testserver.Response, status int) {
	t.Helper()
	testkit.WantData(t, what, r, status, nil)
}

func data(t testing.TB, r *testserver.Response) map[string]any {
	t.Helper()
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &env); err != nil || env.Data == nil {
		t.Fatalf("status %d: no data object: %v: %s", r.Status, err, r.Body)
	}
	return env.Data
}

type user struct {
	ID     int64
	Email  string
	Secret string // TOTP, once enrolled
	last   int64  // newest TOTP step used
}

// newUser creates an identity on some replica.
func (c *cluster) newUser(t *testing.T) *user {
	t.Helper()
	u := &user{Email: "replicas-" + testkit.Unique() + "@example.com"}
	r := do(c.next(), true, http.MethodPost, "/admin/identities", "", map[string]any{"email": u.Email, "password": password})
	want(t, "create identity", r, http.StatusCreated)
	u.ID = int64(data(t, r)["id"].(float64))
	return u
}

// issue mints a full self-service session on srv (the login flows are not what these
// tests are about; where they are, the tests use HTTP).
func issue(t *testing.T, srv *testserver.Server, u *user) *session.TokenSet {
	t.Helper()
	ts, err := srv.Registry.Tokens().Issue(context.Background(), session.IssueRequest{
		IdentityID: u.ID, Email: u.Email, AMR: []string{session.AMRPassword, session.AMROTP}})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// pending logs u in with the password on srv and returns the pending (MFA) token.
func pending(t *testing.T, srv *testserver.Server, u *user) string {
	t.Helper()
	r := do(srv, false, http.MethodPost, api+"/login", "", map[string]any{"email": u.Email, "password": password})
	want(t, "login", r, http.StatusOK)
	return testkit.Str(data(t, r)["token"])
}

func code(t testing.TB, secret string, step int64) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, time.Unix(step*30, 0).UTC(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// nextStep is a TOTP step the server has not accepted for u yet and will accept now.
func (u *user) nextStep() int64 {
	for {
		cur := time.Now().Unix() / 30
		s := max(u.last+1, cur)
		if s <= cur+1 {
			u.last = s
			return s
		}
		time.Sleep(time.Until(time.Unix((cur+1)*30, 0)) + 50*time.Millisecond)
	}
}

// enroll enrols TOTP for u through the cluster (login on one replica, setup on the
// next, first code on the third).
func (c *cluster) enroll(t *testing.T, u *user) *session.TokenSet {
	t.Helper()
	p := pending(t, c.rep(0), u)
	r := do(c.rep(1), false, http.MethodGet, api+"/otp/setup", p, nil)
	want(t, "otp setup", r, http.StatusOK)
	u.Secret = testkit.Str(data(t, r)["secret"])
	r = do(c.rep(2), false, http.MethodPost, api+"/otp/verify", p, map[string]string{"otp": code(t, u.Secret, u.nextStep())})
	want(t, "otp verify (enrolment)", r, http.StatusOK)
	return tokenSet(t, r)
}

func tokenSet(t *testing.T, r *testserver.Response) *session.TokenSet {
	t.Helper()
	var env struct {
		Data session.TokenSet `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &env); err != nil || env.Data.AccessToken == "" {
		t.Fatalf("no token set: %v: %s", err, r.Body)
	}
	return &env.Data
}

// device is a registered device key.
type device struct {
	ID, Fingerprint string
	key             *ecdsa.PrivateKey
}

func (d *device) sign(t testing.TB, challenge string) string {
	return testkeys.SignChallenge(t, d.key, challenge)
}

// register registers a new device key for the session of access (challenge on one
// replica, verify on another).
func (c *cluster) register(t *testing.T, access string) *device {
	t.Helper()
	key := testkeys.NewES256(t)
	d := &device{Fingerprint: "replica-phone-" + testkit.Unique(), key: key}
	r := do(c.next(), false, http.MethodPost, api+"/devices/register/challenge", access, map[string]any{
		"deviceName": "Phone", "deviceType": "mobile", "deviceFingerprint": d.Fingerprint, "keyAlgorithm": "ES256",
		"publicKey": testkeys.PublicPEM(t, &key.PublicKey)})
	want(t, "register challenge", r, http.StatusOK)
	ch := data(t, r)
	r = do(c.next(), false, http.MethodPost, api+"/devices/register/verify", access, map[string]any{
		"sessionId": ch["sessionId"], "signedChallenge": d.sign(t, testkit.Str(ch["challenge"]))})
	want(t, "register verify", r, http.StatusOK)
	d.ID = testkit.Str(data(t, r)["deviceId"])
	return d
}

// race sends n requests at once (released together), spread over the replicas, and
// returns their statuses.
func (c *cluster) race(n int, req func(i int, srv *testserver.Server) *testserver.Response) []*testserver.Response {
	return testkit.RaceResponses(n, func(i int) *testserver.Response { return req(i, c.rep(i)) })
}

// tally counts the answers by status.
func tally(rs []*testserver.Response) map[int]int {
	m := map[int]int{}
	for _, r := range rs {
		m[r.Status]++
	}
	return m
}

// exactlyOne fails unless one answer is 200 and every other one is one of losers.
func exactlyOne(t *testing.T, what string, rs []*testserver.Response, losers ...int) *testserver.Response {
	t.Helper()
	var win *testserver.Response
	m := tally(rs)
	for _, r := range rs {
		if r.Status == http.StatusOK {
			win = r
			continue
		}
		ok := false
		for _, l := range losers {
			ok = ok || r.Status == l
		}
		if !ok {
			t.Errorf("%s: a loser answered %d: %s", what, r.Status, r.Body)
		}
	}
	t.Logf("%s: %d requests over 3 replicas: %v", what, len(rs), m)
	if m[http.StatusOK] != 1 {
		t.Fatalf("%s: %d successes, want exactly 1 (%v)", what, m[http.StatusOK], m)
	}
	return win
}

// jwksHas reports whether srv's JWKS lists kid.
func jwksHas(t *testing.T, srv *testserver.Server, kid string) bool {
	t.Helper()
	r := do(srv, false, http.MethodGet, "/.well-known/jwks.json", "", nil)
	want(t, "jwks", r, http.StatusOK)
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if k.KID == kid {
			return true
		}
	}
	return false
}

// sse is an open event stream; statuses arrive on C with the time they were read.
type sse struct {
	C      chan sseEvent
	cancel context.CancelFunc
}

type sseEvent struct {
	Status string
	At     time.Time
}

func openEvents(t *testing.T, srv *testserver.Server, bearer, id string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.PublicURL+api+"/confirmation/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		cancel()
		t.Fatalf("events: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("events: %d", resp.StatusCode)
	}
	s := &sse{C: make(chan sseEvent, 16), cancel: cancel}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	go func() {
		defer close(s.C)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "data: ") {
				var d struct {
					Status string `json:"status"`
				}
				_ = json.Unmarshal([]byte(line[len("data: "):]), &d)
				s.C <- sseEvent{Status: d.Status, At: time.Now()}
			}
		}
	}()
	return s
}

func (s *sse) next(t *testing.T, timeout time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.C:
		if !ok {
			t.Fatal("event stream ended")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %v", timeout)
	}
	return sseEvent{}
}

// randNet is a client network of the test's own (the test Redis outlives a test).
func randNet() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<24))
	v := n.Int64()
	return fmt.Sprintf("10.%d.%d.%d", v>>16&255, v>>8&255, 1+v%254)
}

// publicFrom sends a JSON request to srv's public port as if from client address xff.
func publicFrom(srv *testserver.Server, xff, method, path string, body any) *testserver.Response {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, srv.PublicURL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Forwarded-For", xff)
	return testkit.SendRequest(srv.Client, req)
}

// within polls cond every 20 ms until it holds or limit passes; it returns the time it
// took, or fails.
func within(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			d := time.Since(start)
			t.Logf("%s after %v", what, d.Round(time.Millisecond))
			return d
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
