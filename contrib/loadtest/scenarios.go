package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Scenario names, in the order "all" runs them.
// login runs last: its argon2 hashes leave the server's heap grown, which would blur
// the RSS samples of the scenarios after it.
var scenarioNames = []string{"introspect", "refresh", "biometric", "confirmation", "confirmation_events", "streams", "client_credentials", "oauth2_introspect", "login"}

// hashSamples is how many serial logins time one argon2 verification.
const hashSamples = 20

// runner holds what the scenarios share.
type runner struct {
	api  *api
	opt  options
	logf func(format string, args ...any)
	seq  atomic.Int64

	// Shared by the scenarios that need them, created on first use.
	devMu   sync.Mutex
	devices []*device
	client  *oauthClient
}

func (r *runner) nextN() int { return int(r.seq.Add(1)) }

func (r *runner) scenario(ctx context.Context, name string) (*result, error) {
	res, err := r.runScenario(ctx, name)
	if res != nil {
		for l := range res.Errors {
			if h := rateLimitHint(l); h != "" {
				res.Notes = append(res.Notes, name+": "+strings.TrimPrefix(h, "; "))
				break
			}
		}
	}
	return res, err
}

// rateLimitHint is a hint for an error label that is a 429, else "".
func rateLimitHint(label string) string {
	if strings.HasSuffix(label, "429") {
		return "; HTTP 429: the server rate-limits, run it with RATELIMIT_ENABLED=false for load tests"
	}
	return ""
}

func (r *runner) runScenario(ctx context.Context, name string) (*result, error) {
	run, ok := map[string]func(context.Context) (*result, error){
		"introspect": r.introspect, "refresh": r.refresh, "login": r.login, "biometric": r.biometric,
		"confirmation": r.confirmation, "confirmation_events": r.confirmationEvents, "streams": r.streams,
		"client_credentials": r.clientCredentials, "oauth2_introspect": r.oauth2Introspect,
	}[name]
	if !ok {
		return nil, fmt.Errorf("unknown scenario %q", name)
	}
	return run(ctx)
}

// activeLabel is the error label of an introspection answer: "" when it says
// "active": true.
func activeLabel(status int, raw []byte, err error) string {
	if l := statusLabel("", status, err); l != "" {
		return l
	}
	var ir struct {
		Active bool `json:"active"`
	}
	if json.Unmarshal(raw, &ir) != nil || !ir.Active {
		return "inactive"
	}
	return ""
}

// introspect: one valid access token, POST /admin/oauth2/introspect over and over;
// an answer without "active": true counts as an error.
func (r *runner) introspect(ctx context.Context) (*result, error) {
	u, err := r.api.enrol(ctx, r.nextN())
	if err != nil {
		return nil, fmt.Errorf("introspect setup: %w", err)
	}
	tok := u.Tokens.AccessToken
	if l := activeLabel(r.api.introspect(ctx, tok)); l != "" {
		return nil, fmt.Errorf("introspect setup: the access token does not introspect as active (%s)", l)
	}
	r.logf("introspect: one access token of %s, POST %s", u.Email, pathIntrospect)
	return runLoad(ctx, "introspect", r.opt.Concurrency, r.opt.Duration, func(ctx context.Context, _ int) opResult {
		t0 := time.Now()
		status, raw, err := r.api.introspect(ctx, tok)
		lat := time.Since(t0)
		return opResult{Latency: lat, Err: activeLabel(status, raw, err)}
	}), nil
}

// refreshWorker is one worker's session; only that worker touches it.
type refreshWorker struct {
	u    *user
	dead bool
}

// refresh: each worker owns a session of its own identity (TOTP allows one login per
// 30-s step per user, so one identity per worker) and rotates its refresh token.
func (r *runner) refresh(ctx context.Context) (*result, error) {
	ws := make([]*refreshWorker, r.opt.Concurrency)
	for i := range ws {
		u, err := r.api.enrol(ctx, r.nextN())
		if err != nil {
			return nil, fmt.Errorf("refresh setup (identity %d of %d): %w", i+1, len(ws), err)
		}
		ws[i] = &refreshWorker{u: u}
	}
	r.logf("refresh: %d identities enrolled, one session each, POST %s", len(ws), pathRefresh)
	var recovered atomic.Int64
	res := runLoad(ctx, "refresh", r.opt.Concurrency, r.opt.Duration, func(ctx context.Context, w int) opResult {
		s := ws[w]
		if s.dead {
			return opResult{Stop: true}
		}
		t0 := time.Now()
		status, raw, err := r.api.postJSON(ctx, r.api.public+pathRefresh, "", map[string]string{"refreshToken": s.u.Tokens.RefreshToken})
		lat := time.Since(t0)
		l := statusLabel("", status, err)
		var ts tokenSet
		if l == "" && (decodeData(raw, &ts) != nil || ts.RefreshToken == "") {
			l = "no token in answer"
		}
		if l == "" {
			s.u.Tokens = ts
			return opResult{Latency: lat}
		}
		// The session may be gone (a rotated token is single use): start a new one,
		// outside the timed part, or retire the worker.
		if ctx.Err() == nil {
			if err := r.api.recoveryLogin(ctx, s.u); err != nil {
				s.dead = true
			} else {
				recovered.Add(1)
			}
		}
		return opResult{Latency: lat, Err: l}
	})
	if n := recovered.Load(); n > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("refresh: %d sessions re-established with recovery codes after errors", n))
	}
	return res, nil
}

// credential is one unused second factor of one user.
type credential struct {
	u    *user
	code string
}

// codePool hands out each recovery code once.
type codePool struct {
	mu    sync.Mutex
	items []credential
	next  int
}

func (p *codePool) pop() (credential, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next >= len(p.items) {
		return credential{}, false
	}
	c := p.items[p.next]
	p.next++
	return c, true
}

func (p *codePool) used() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next
}

// login: a full login = POST /login (one argon2 verification) + POST /otp/verify.
// TOTP replay protection allows one TOTP login per user per 30-s step, so the second
// factor is an unused recovery code of a pool of identities enrolled beforehand.
func (r *runner) login(ctx context.Context) (*result, error) {
	first, err := r.api.enrol(ctx, r.nextN())
	if err != nil {
		return nil, fmt.Errorf("login setup: %w", err)
	}
	// Serial password steps: the cost of one argon2 verification plus one round trip.
	t0 := time.Now()
	for i := range hashSamples {
		if _, _, err := r.api.passwordStep(ctx, first); err != nil {
			return nil, fmt.Errorf("login setup (serial login %d): %w", i+1, err)
		}
	}
	serial := time.Since(t0)
	hashRate := hashSamples / serial.Seconds()

	n := r.opt.LoginUsers
	if n <= 0 {
		// Enough codes for the server's parallel hash rate on this machine, with room.
		est := hashRate * float64(runtime.NumCPU()) * 1.5 * r.opt.Duration.Seconds()
		n = int(math.Ceil(est/10)) + r.opt.Concurrency
		n = min(max(n, r.opt.Concurrency), 5000)
	}
	users := make([]*user, 1, n)
	users[0] = first
	if n > 1 {
		r.logf("login: enrolling %d identities for their recovery codes…", n)
		more, err := r.enrolMany(ctx, n-1, r.opt.Concurrency)
		if err != nil {
			return nil, fmt.Errorf("login setup: %w", err)
		}
		users = append(users, more...)
	}
	pool := recoveryPool(users)
	r.logf("login: POST %s + POST %s with a recovery code; %d identities, %d unused codes", pathLogin, pathOTPVerify, len(users), len(pool.items))

	res := runLoad(ctx, "login", r.opt.Concurrency, r.opt.Duration, func(ctx context.Context, _ int) opResult {
		c, ok := pool.pop()
		if !ok {
			return opResult{Stop: true}
		}
		return r.loginOnce(ctx, c)
	})
	early := ""
	if res.StoppedEarly {
		early = "; STOPPED EARLY: the recovery codes ran out (raise -login-users)"
	}
	res.Notes = append(res.Notes,
		fmt.Sprintf("login: second factor = recovery codes (%d identities enrolled in setup; %d of %d codes used)%s",
			len(users), pool.used(), len(pool.items), early),
		fmt.Sprintf("login: %.1f logins/s over %d connections  vs  argon2 %.1f hashes/s serial (%d serial POST %s, %s each incl. round trip)",
			float64(res.OK())/res.Elapsed.Seconds(), r.opt.Concurrency, hashRate, hashSamples, pathLogin, fmtDur(serial/hashSamples)),
	)
	return res, nil
}

// recoveryPool holds the recovery codes of users, round robin: consecutive logins
// use different identities.
func recoveryPool(users []*user) *codePool {
	pool := &codePool{}
	for k := 0; ; k++ {
		added := false
		for _, u := range users {
			if k < len(u.Recovery) {
				pool.items = append(pool.items, credential{u: u, code: u.Recovery[k]})
				added = true
			}
		}
		if !added {
			return pool
		}
	}
}

// loginOnce is one full login with c: password, then the recovery code.
func (r *runner) loginOnce(ctx context.Context, c credential) opResult {
	t0 := time.Now()
	status, raw, err := r.api.postJSON(ctx, r.api.public+pathLogin, "", map[string]string{"email": c.u.Email, "password": c.u.Password})
	if l := statusLabel("login", status, err); l != "" {
		return opResult{Latency: time.Since(t0), Err: l}
	}
	var lr struct {
		Token string `json:"token"`
	}
	if decodeData(raw, &lr) != nil || lr.Token == "" {
		return opResult{Latency: time.Since(t0), Err: "login: no pending token"}
	}
	status, raw, err = r.api.postJSON(ctx, r.api.public+pathOTPVerify, lr.Token, map[string]string{"otp": c.code})
	lat := time.Since(t0)
	if l := statusLabel("otp/verify", status, err); l != "" {
		return opResult{Latency: lat, Err: l}
	}
	var ts tokenSet
	if decodeData(raw, &ts) != nil || ts.AccessToken == "" {
		return opResult{Latency: lat, Err: "otp/verify: no tokens"}
	}
	return opResult{Latency: lat}
}

// enrolMany enrols n identities with up to par at a time.
func (r *runner) enrolMany(ctx context.Context, n, par int) ([]*user, error) {
	out := make([]*user, n)
	jobs := make(chan int)
	errs := make(chan error, par)
	var wg sync.WaitGroup
	for range min(par, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				u, err := r.api.enrol(ctx, r.nextN())
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				out[i] = u
			}
		}()
	}
	for i := range n {
		select {
		case jobs <- i:
		case err := <-errs:
			close(jobs)
			wg.Wait()
			return nil, err
		case <-ctx.Done():
			close(jobs)
			wg.Wait()
			return nil, ctx.Err()
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return out, nil
}

// checkServer fails fast with a clear message when nothing answers.
func (r *runner) checkServer(ctx context.Context) error {
	status, raw, err := r.api.do(ctx, http.MethodGet, r.api.public+"/health/alive", "", "", nil)
	if err := expect("GET "+r.api.public+"/health/alive", http.StatusOK, status, raw, err); err != nil {
		return fmt.Errorf("is pvauth running? %w", err)
	}
	// The admin port answers, and takes the key if it needs one.
	status, raw, err = r.api.do(ctx, http.MethodGet, r.api.admin+pathIdentities+"?page_size=1", r.api.adminKey, "", nil)
	switch {
	case err != nil:
		return fmt.Errorf("is pvauth's admin port at %s? %w", r.api.admin, err)
	case status == http.StatusUnauthorized:
		return fmt.Errorf("the admin API refused the key (-admin-key / env PVAUTH_ADMIN_API_KEY): %s", snippet(raw))
	}
	return expect("GET "+r.api.admin+pathIdentities, http.StatusOK, status, raw, nil)
}
