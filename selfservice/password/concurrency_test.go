package password_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testserver"
)

const concurrency = 20

// outcome is what one of the concurrent requests got.
type outcome struct {
	status int
	body   []byte
	err    error
}

// race sends n requests at once (released together) and returns their outcomes.
func race(n int, send func(i int) (int, []byte, error)) []outcome {
	out := make([]outcome, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i].status, out[i].body, out[i].err = send(i)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// tally fails on transport errors and 5xx, and checks every 4xx carries the error body.
// It returns how many requests got 200.
func tally(t *testing.T, what string, outs []outcome, allowed ...int) int {
	t.Helper()
	ok := 0
	hist := map[int]int{}
	for i, o := range outs {
		if o.err != nil {
			t.Fatalf("%s #%d: %v", what, i, o.err)
		}
		hist[o.status]++
		switch {
		case o.status == http.StatusOK:
			ok++
		case o.status >= 500:
			t.Errorf("%s #%d: %d %s", what, i, o.status, o.body)
		default:
			allowedStatus := false
			for _, a := range allowed {
				allowedStatus = allowedStatus || a == o.status
			}
			if !allowedStatus {
				t.Errorf("%s #%d: unexpected %d %s", what, i, o.status, o.body)
			}
			var e errorBody
			if err := json.Unmarshal(o.body, &e); err != nil || e.StatusCode != o.status || e.Message == "" {
				t.Errorf("%s #%d: bad error body %s", what, i, o.body)
			}
		}
	}
	t.Logf("%s: statuses %v", what, hist)
	return ok
}

// TestConcurrentRefreshOneWinner: 20 refreshes with one refresh token at once: exactly
// one succeeds, the rest are 401, none fails with 5xx. Repeated for a few families.
func TestConcurrentRefreshOneWinner(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		for round := 0; round < 3; round++ {
			_, ts := enrolledUser(t, srv, nil)
			body, _ := json.Marshal(map[string]string{"refreshToken": ts.RefreshToken})
			outs := race(concurrency, func(int) (int, []byte, error) {
				return postJSON(srv.Client, srv.PublicURL+routeRefresh, "", body)
			})
			if n := tally(t, fmt.Sprintf("round %d refresh", round), outs, http.StatusUnauthorized); n != 1 {
				t.Fatalf("round %d: %d of %d concurrent refreshes with one token succeeded, want exactly 1", round, n, concurrency)
			}
			// The token is spent whatever happened to the winner's family.
			wantError(t, refresh(t, srv, ts.RefreshToken), http.StatusUnauthorized)
		}
	})
}

// TestConcurrentRefreshDistinctFamilies: refreshes of different families at the same time
// all succeed and do not disturb each other.
func TestConcurrentRefreshDistinctFamilies(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		const families = 8
		sets := make([]tokens, families)
		for i := range sets {
			_, sets[i] = enrolledUser(t, srv, nil)
		}
		outs := race(families, func(i int) (int, []byte, error) {
			body, _ := json.Marshal(map[string]string{"refreshToken": sets[i].RefreshToken})
			return postJSON(srv.Client, srv.PublicURL+routeRefresh, "", body)
		})
		if n := tally(t, "distinct families", outs); n != families {
			t.Fatalf("%d of %d refreshes of distinct families succeeded", n, families)
		}
		for i, o := range outs {
			var env struct {
				Data tokens `json:"data"`
			}
			if err := json.Unmarshal(o.body, &env); err != nil {
				t.Fatal(err)
			}
			if !introspect(t, srv, env.Data.AccessToken) {
				t.Fatalf("family %d: new access token inactive", i)
			}
			wantTokens(t, refresh(t, srv, env.Data.RefreshToken))
		}
	})
}

// TestConcurrentOTPVerifyOneCode: 20 /otp/verify at once with one code: at most one
// succeeds, whether the requests use 20 pending tokens or a single one.
func TestConcurrentOTPVerifyOneCode(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		t.Run("many pending tokens", func(t *testing.T) {
			u, _ := enrolledUser(t, srv, nil)
			pending := make([]string, concurrency)
			for i := range pending {
				pending[i] = login(t, srv, u.Email, u.Password, false).Token
			}
			body, _ := json.Marshal(map[string]string{"otp": u.nextCode(t)})
			outs := race(concurrency, func(i int) (int, []byte, error) {
				return postJSON(srv.Client, srv.PublicURL+routeVerify, pending[i], body)
			})
			if n := tally(t, "one code, many pending tokens", outs, http.StatusUnauthorized); n > 1 {
				t.Fatalf("%d concurrent logins succeeded with one TOTP code", n)
			} else if n == 0 {
				t.Logf("no request succeeded (step boundary?)")
			}
		})
		t.Run("one pending token", func(t *testing.T) {
			u, _ := enrolledUser(t, srv, nil)
			pending := login(t, srv, u.Email, u.Password, false).Token
			body, _ := json.Marshal(map[string]string{"otp": u.nextCode(t)})
			outs := race(concurrency, func(int) (int, []byte, error) {
				return postJSON(srv.Client, srv.PublicURL+routeVerify, pending, body)
			})
			if n := tally(t, "one code, one pending token", outs, http.StatusUnauthorized); n > 1 {
				t.Fatalf("%d concurrent verifications of one pending token succeeded", n)
			}
		})
		t.Run("one pending token, distinct recovery codes", func(t *testing.T) {
			u, _ := enrolledUser(t, srv, nil)
			pending := login(t, srv, u.Email, u.Password, false).Token
			outs := race(len(u.Recovery), func(i int) (int, []byte, error) {
				body, _ := json.Marshal(map[string]string{"otp": u.Recovery[i]})
				return postJSON(srv.Client, srv.PublicURL+routeVerify, pending, body)
			})
			if n := tally(t, "recovery codes, one pending token", outs, http.StatusUnauthorized); n != 1 {
				t.Fatalf("%d concurrent recovery-code logins with one pending token succeeded, want 1", n)
			}
		})
		t.Run("enrolment", func(t *testing.T) {
			// Two pending tokens of a new user, both set up, racing to enrol.
			u := newUser(t, srv, nil)
			var pending []string
			var secrets []string
			for i := 0; i < 2; i++ {
				lr := login(t, srv, u.Email, u.Password, false)
				pending = append(pending, lr.Token)
				secrets = append(secrets, setupOTP(t, srv, lr.Token).Secret)
			}
			cur := step(time.Now())
			var bodies [][]byte
			for _, secret := range secrets {
				b, _ := json.Marshal(map[string]string{"otp": codeAt(t, secret, cur)})
				bodies = append(bodies, b)
			}
			outs := race(concurrency, func(i int) (int, []byte, error) {
				return postJSON(srv.Client, srv.PublicURL+routeVerify, pending[i%2], bodies[i%2])
			})
			if n := tally(t, "enrolment", outs, http.StatusUnauthorized, http.StatusConflict); n > 1 {
				t.Fatalf("%d concurrent enrolments succeeded", n)
			}
		})
		t.Run("admin check", func(t *testing.T) {
			u, _ := enrolledUser(t, srv, nil)
			body, _ := json.Marshal(map[string]any{"userId": u.ID, "otp": u.nextCode(t)})
			outs := race(concurrency, func(int) (int, []byte, error) {
				return postJSON(srv.Client, srv.AdminURL+routeAdminOTP, "", body)
			})
			tally(t, "admin check", outs)
			valid := 0
			for _, o := range outs {
				var env struct {
					Data struct {
						Valid bool `json:"valid"`
					} `json:"data"`
				}
				if err := json.Unmarshal(o.body, &env); err != nil {
					t.Fatalf("%s: %v", o.body, err)
				}
				if env.Data.Valid {
					valid++
				}
			}
			if valid > 1 {
				t.Fatalf("one code was valid %d times at /admin/otp/verify", valid)
			}
		})
	})
}

// TestConcurrentWrongCodesAreBounded: a pending token allows five wrong codes, also when
// they arrive at once: the handler reserves each attempt with one conditional update
// before it checks the code.
func TestConcurrentWrongCodesAreBounded(t *testing.T) {
	forEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u, _ := enrolledUser(t, srv, nil)
		pending := login(t, srv, u.Email, u.Password, false).Token
		bad := wrongCode(t, u.Secret)
		valid := map[string]bool{}
		for s := step(time.Now()) - 2; s <= step(time.Now())+3; s++ {
			valid[codeAt(t, u.Secret, s)] = true
		}
		var bodies [][]byte
		for i := 0; len(bodies) < concurrency; i++ {
			c := fmt.Sprintf("%06d", (i*7919+100003)%1000000)
			if valid[c] || c == bad {
				continue
			}
			b, _ := json.Marshal(map[string]string{"otp": c})
			bodies = append(bodies, b)
		}
		outs := race(concurrency, func(i int) (int, []byte, error) {
			return postJSON(srv.Client, srv.PublicURL+routeVerify, pending, bodies[i])
		})
		tally(t, "parallel wrong codes", outs, http.StatusUnauthorized)
		checked := 0
		for _, o := range outs {
			var e errorBody
			_ = json.Unmarshal(o.body, &e)
			if e.Message == "Invalid one-time code." {
				checked++
			}
		}
		if checked > 5 {
			t.Fatalf("%d wrong codes were checked against one pending token, want at most 5", checked)
		}
	})
}
