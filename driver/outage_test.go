package driver_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkeys"

	"github.com/pquerna/otp/totp"

	"github.com/pvpipe/pvauth/internal/testpg"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// PostgreSQL stopped under load on three replicas and started again (API.md §1, §9;
// issue 11): while it is down or starting every answer is 503 with Retry-After and the
// error body, within 5 s; never 401, 404 or 500; the same servers serve again within
// 10 s, without a restart; and each refresh family's last acknowledged token still
// works, exactly once.
func TestPostgresRestartUnderLoad(t *testing.T) {
	pg := testpg.New(t)
	// Three replicas on the one PostgreSQL: the load is spread over them, and each must
	// come back by itself.
	srv := testserver.Start(t, pg.DSN(), nil)
	reps := []*testserver.Server{srv, testserver.Start(t, pg.DSN(), nil), testserver.Start(t, pg.DSN(), nil)}
	c := &outageClient{srv: srv, reps: reps, http: &http.Client{Timeout: 15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32}}}

	const families, devices = 4, 2
	var refresh []*outageFamily
	var devs []*outageDevice
	var access string
	for i := range max(families, devices) {
		u := c.newUser(t, i)
		if i < devices {
			devs = append(devs, c.registerDevice(t, u, i))
		}
		if i < families {
			refresh = append(refresh, &outageFamily{token: u.refresh})
		}
		access = u.access
	}

	// The load: refreshes (a 503 is retried with the same token, a 200 moves on to the
	// new one), biometric logins, password logins and authenticated reads.
	var (
		mu      sync.Mutex
		phase   = "before"
		counts  = map[string]map[int]int{}
		bad     []string
		maxWait time.Duration
		okTimes []time.Time
		last503 time.Time
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	record := func(what string, r *outageResp) {
		mu.Lock()
		defer mu.Unlock()
		if counts[phase] == nil {
			counts[phase] = map[int]int{}
		}
		counts[phase][r.status]++
		maxWait = max(maxWait, r.took)
		switch {
		case r.err != nil:
			bad = append(bad, fmt.Sprintf("%s (%s): %v", what, phase, r.err))
		case r.status == http.StatusOK:
			okTimes = append(okTimes, time.Now())
		case r.status == http.StatusServiceUnavailable && what == "oauth2 token":
			last503 = time.Now()
			var body struct {
				Error string `json:"error"`
			}
			if r.header.Get("Retry-After") == "" || json.Unmarshal(r.body, &body) != nil || body.Error != "temporarily_unavailable" {
				bad = append(bad, fmt.Sprintf("%s (%s): 503 without Retry-After or the RFC 6749 body: %s", what, phase, r.body))
			}
		case r.status == http.StatusServiceUnavailable:
			last503 = time.Now()
			var body struct {
				Message    string `json:"message"`
				StatusCode int    `json:"statusCode"`
				Error      string `json:"error"`
			}
			if r.header.Get("Retry-After") == "" || json.Unmarshal(r.body, &body) != nil ||
				body.StatusCode != 503 || body.Error != "service_unavailable" || body.Message == "" {
				bad = append(bad, fmt.Sprintf("%s (%s): 503 without Retry-After or the error body: %s", what, phase, r.body))
			}
		default:
			bad = append(bad, fmt.Sprintf("%s (%s): %d %s", what, phase, r.status, r.body))
		}
		if r.took > 5*time.Second {
			bad = append(bad, fmt.Sprintf("%s (%s): answered after %s", what, phase, r.took))
		}
	}
	for _, f := range refresh {
		wg.Go(func() {
			for !stop.Load() {
				r := c.do("POST", "/api/v1/auth/refresh", "", map[string]string{"refreshToken": f.token})
				record("refresh", r)
				if r.status == http.StatusOK {
					var ts struct {
						RefreshToken string `json:"refreshToken"`
					}
					r.data(&ts)
					f.token = ts.RefreshToken // acknowledged: the old one is spent
					f.rotations++
				}
			}
		})
	}
	for _, d := range devs {
		wg.Go(func() {
			for !stop.Load() {
				r := c.do("POST", "/api/v1/auth/mobile/challenge", "", map[string]string{"deviceFingerprint": d.fingerprint})
				record("mobile challenge", r)
				if r.status != http.StatusOK {
					continue
				}
				var ch struct {
					SessionID string `json:"sessionId"`
					Challenge string `json:"challenge"`
				}
				r.data(&ch)
				record("biometric login", c.do("POST", "/api/v1/auth/mobile/biometric", "", map[string]string{
					"sessionId": ch.SessionID, "signedChallenge": outageSign(t, d.key, ch.Challenge)}))
			}
		})
	}
	wg.Go(func() {
		for !stop.Load() {
			record("password login", c.do("POST", "/api/v1/auth/login", "", map[string]string{"email": "outage0@example.com", "password": outagePassword}))
		}
	})
	client := c.newClient(t)
	wg.Go(func() {
		for !stop.Load() {
			record("oauth2 token", c.form("/oauth2/token", client, "grant_type=client_credentials"))
		}
	})
	wg.Go(func() {
		for !stop.Load() {
			record("me", c.do("GET", "/api/v1/auth/me", access, nil))
		}
	})
	setPhase := func(p string) {
		mu.Lock()
		phase = p
		mu.Unlock()
	}
	okSince := func(t0 time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, at := range okTimes {
			if !at.Before(t0) {
				n++
			}
		}
		return n
	}

	time.Sleep(1500 * time.Millisecond)
	before := okSince(time.Time{})
	setPhase("down")
	pg.Stop("fast", true)
	attempts0, held0 := srv.Registry.Persister().DialStats()
	downFrom := time.Now()
	if r := c.do("GET", "/health/ready", "", nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("/health/ready while the database is down: %d %s", r.status, r.body)
	}
	time.Sleep(3 * time.Second)
	attempts1, held1 := srv.Registry.Persister().DialStats()
	downFor := time.Since(downFrom).Seconds()
	dialRate := float64(attempts1-attempts0) / downFor
	t.Logf("while down: %.1f dials/s sent, %.0f/s held back by the backoff", dialRate, float64(held1-held0)/downFor)
	if dialRate >= 20 {
		t.Errorf("the pool dialled %.1f times a second while the database was down (want < 20)", dialRate)
	}
	setPhase("starting")
	pg.Start(false) // not waiting: requests meet the server starting up (SQLSTATE 57P03)
	pg.WaitReady(30 * time.Second)
	upAt := time.Now()
	setPhase("after")
	// Back within 10 s: a second after the restart with at least half the throughput of
	// before (the load before ran 1.5 s).
	var backIn time.Duration
	for w := upAt; time.Since(upAt) < 10*time.Second; w = w.Add(250 * time.Millisecond) {
		time.Sleep(time.Until(w.Add(time.Second)))
		if okSince(w) >= before/3 {
			backIn = time.Since(upAt)
			break
		}
	}
	if r := c.do("GET", "/health/ready", "", nil); r.status != http.StatusOK {
		t.Errorf("/health/ready after the restart: %d %s", r.status, r.body)
	}
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	t.Logf("answers by phase: %v; slowest %s; %d OK in 1.5 s before; throughput back %s after the restart, last 503 %s after it",
		counts, maxWait, before, backIn, last503.Sub(upAt).Round(time.Millisecond))
	for i, b := range bad {
		if i == 20 {
			t.Errorf("... and %d more", len(bad)-20)
			break
		}
		t.Error(b)
	}
	mu.Unlock()
	if backIn == 0 {
		t.Errorf("throughput not back within 10 s of the restart")
	}
	// Errors only while the database is away: after it accepts sessions again, at
	// most the backoff's cap (1 s) and PostgreSQL's own start-up pass before the last 503.
	if late := last503.Sub(upAt); late > 3*time.Second {
		t.Errorf("a 503 came %s after the database was back", late)
	}
	if counts["down"][http.StatusServiceUnavailable] == 0 {
		t.Errorf("no 503 while the database was down: the outage was not exercised")
	}
	// The backoff is visible to operators, and no answer was counted as a 500.
	metrics := string(srv.Admin(t, http.MethodGet, "/metrics", nil).Body)
	if !regexp.MustCompile(`pvauth_db_dials_total\{result="held_back"\} [1-9]`).MatchString(metrics) {
		t.Errorf("metrics lack the held-back dials")
	}
	if strings.Contains(metrics, `code="500"`) {
		t.Errorf("a 500 was counted")
	}
	// Each family's last acknowledged refresh token works once, and only once.
	for i, f := range refresh {
		r := c.do("POST", "/api/v1/auth/refresh", "", map[string]string{"refreshToken": f.token})
		if r.status != http.StatusOK {
			t.Errorf("family %d (%d rotations): last acknowledged token answered %d %s", i, f.rotations, r.status, r.body)
			continue
		}
		if r := c.do("POST", "/api/v1/auth/refresh", "", map[string]string{"refreshToken": f.token}); r.status != http.StatusUnauthorized {
			t.Errorf("family %d: the same token a second time answered %d", i, r.status)
		}
	}
}

const outagePassword = "correct horse battery staple"

type outageClient struct {
	srv  *testserver.Server   // the first replica: admin calls, metrics
	reps []*testserver.Server // public requests go round the replicas
	n    atomic.Int64
	http *http.Client
}

// pick returns the next replica for a public request.
func (c *outageClient) pick() *testserver.Server {
	if len(c.reps) == 0 {
		return c.srv
	}
	return c.reps[int(c.n.Add(1))%len(c.reps)]
}

type outageResp struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
	err    error
}

func (r *outageResp) data(v any) {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(r.body, &env) == nil {
		_ = json.Unmarshal(env.Data, v)
	}
}

// do sends a request to the public port; a transport error is returned, not fatal (it
// runs on the load goroutines).
func (c *outageClient) do(method, path, bearer string, body any) *outageResp {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.pick().PublicURL+path, rd)
	if err != nil {
		return &outageResp{err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return c.roundTrip(req)
}

// roundTrip sends req and reads the whole answer, timed.
func (c *outageClient) roundTrip(req *http.Request) *outageResp {
	t0 := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return &outageResp{err: err, took: time.Since(t0)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return &outageResp{status: resp.StatusCode, header: resp.Header, body: raw, took: time.Since(t0), err: err}
}

func (c *outageClient) must(t *testing.T, r *outageResp, want int, v any) {
	t.Helper()
	if r.err != nil || r.status != want {
		t.Fatalf("want %d, got %d %s %v", want, r.status, r.body, r.err)
	}
	if v != nil {
		r.data(v)
	}
}

// newClient registers a confidential client_credentials client; it returns its
// "id:secret" for HTTP Basic authentication.
func (c *outageClient) newClient(t *testing.T) [2]string {
	t.Helper()
	var cl struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	c.must(t, c.adminDo(t, "/admin/clients", map[string]any{"client_name": "outage", "grant_types": []string{"client_credentials"},
		"scope": "read", "token_endpoint_auth_method": "client_secret_basic"}), http.StatusCreated, &cl)
	return [2]string{cl.ID, cl.Secret}
}

// form posts an OAuth2 form with the client's Basic authentication.
func (c *outageClient) form(path string, client [2]string, body string) *outageResp {
	req, err := http.NewRequest("POST", c.pick().PublicURL+path, strings.NewReader(body))
	if err != nil {
		return &outageResp{err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client[0], client[1])
	return c.roundTrip(req)
}

type outageUser struct{ access, refresh string }

// newUser creates outage<i>@example.com, enrols TOTP and returns the enrolment login's tokens.
func (c *outageClient) newUser(t *testing.T, i int) *outageUser {
	t.Helper()
	email := fmt.Sprintf("outage%d@example.com", i)
	c.must(t, c.adminDo(t, "/admin/identities", map[string]any{"email": email, "password": outagePassword}), http.StatusCreated, nil)
	var lr struct {
		Token string `json:"token"`
	}
	c.must(t, c.do("POST", "/api/v1/auth/login", "", map[string]string{"email": email, "password": outagePassword}), http.StatusOK, &lr)
	var setup struct {
		Secret string `json:"secret"`
	}
	c.must(t, c.do("GET", "/api/v1/auth/otp/setup", lr.Token, nil), http.StatusOK, &setup)
	code, err := totp.GenerateCode(setup.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var ts struct {
		AccessToken  string `json:"accessToken"`
		RefreshToken string `json:"refreshToken"`
	}
	c.must(t, c.do("POST", "/api/v1/auth/otp/verify", lr.Token, map[string]string{"otp": code}), http.StatusOK, &ts)
	return &outageUser{access: ts.AccessToken, refresh: ts.RefreshToken}
}

func (c *outageClient) adminDo(t *testing.T, path string, body any) *outageResp {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", c.srv.AdminURL+path, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	if keys := c.srv.Config.Serve.Admin.APIKeys; len(keys) > 0 {
		req.Header.Set("Authorization", "Bearer "+keys[0])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &outageResp{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &outageResp{status: resp.StatusCode, body: b}
}

type outageFamily struct {
	token     string
	rotations int
}

type outageDevice struct {
	key         *ecdsa.PrivateKey
	fingerprint string
}

func (c *outageClient) registerDevice(t *testing.T, u *outageUser, i int) *outageDevice {
	t.Helper()
	k := testkeys.NewES256(t)
	d := &outageDevice{key: k, fingerprint: fmt.Sprintf("outage-fp-%d", i)}
	var ch struct {
		SessionID string `json:"sessionId"`
		Challenge string `json:"challenge"`
	}
	c.must(t, c.do("POST", "/api/v1/auth/devices/register/challenge", u.access, map[string]any{
		"deviceName": "Phone", "deviceType": "mobile", "deviceFingerprint": d.fingerprint,
		"publicKey": testkeys.PublicPEM(t, &k.PublicKey), "keyAlgorithm": "ES256",
	}), http.StatusOK, &ch)
	c.must(t, c.do("POST", "/api/v1/auth/devices/register/verify", u.access, map[string]any{
		"sessionId": ch.SessionID, "signedChallenge": outageSign(t, k, ch.Challenge)}), http.StatusOK, nil)
	return d
}

func outageSign(t *testing.T, k *ecdsa.PrivateKey, challenge string) string {
	raw, err := base64.StdEncoding.DecodeString(challenge)
	if err != nil {
		return "" // answered 401 and reported by the caller
	}
	sum := sha256.Sum256(raw)
	sig, err := ecdsa.SignASN1(rand.Reader, k, sum[:])
	if err != nil {
		t.Error(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}
