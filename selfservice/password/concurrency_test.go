package password_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

const concurrency = 20

// outcome is what one of the concurrent requests got.
type outcome struct {
	status int
	body   []byte
	err    error
}

// TestConcurrentOTPVerifyOneCode: 20 /otp/verify at once with one code: at most one
// succeeds, whether the requests use 20 pending tokens or a single one.
func TestConcurrentOTPVerifyOneCode(t *testing.T) {
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		t.Run("many pending tokens", func(t *testing.T) {
			u, _ := enrolledUser(t, srv, nil)
			pending := make([]string, concurrency)
			for i := range pending {
				pending[i] = login(t, srv, u.Email, u.Password, false).Token
			}
			body, _ := json.Marshal(map[string]string{"otp": u.nextCode(t)})
			outs := testkit.Race(concurrency, func(i int) (int, []byte, error) {
				return testkit.Do(srv.Client, http.MethodPost, srv.PublicURL+routeVerify, pending[i], body)
			})
			if n := testkit.Tally(t, "one code, many pending tokens", outs, http.StatusUnauthorized); n > 1 {
				t.Fatalf("%d concurrent logins succeeded with one TOTP code", n)
			} else if n == 0 {
				t.Logf("no request succeeded (step boundary?)")
			}
		})
		t.Run("one pending token", func(t *testing.T) {
			u, _ := enrolledUser(t, srv, nil)
			pending := login(t, srv, u.Email, u.Password, false).Token
			body, _ := json.Marshal(map[string]string{"otp": u.nextCode(t)})
			outs := testkit.Race(concurrency, func(int) (int, []byte, error) {
				return testkit.Do(srv.Client, http.MethodPost, srv.PublicURL+routeVerify, pending, body)
			})
			if n := testkit.Tally(t, "one code, one pending token", outs, http.StatusUnauthorized); n > 1 {
				t.Fatalf("%d concurrent verifications of one pending token succeeded", n)
			}
		})
		t.Run("one pending token, distinct recovery codes", func(t *testing.T) {
			u, _ := enrolledUser(t, srv, nil)
			pending := login(t, srv, u.Email, u.Password, false).Token
			outs := testkit.Race(len(u.Recovery), func(i int) (int, []byte, error) {
				body, _ := json.Marshal(map[string]string{"otp": u.Recovery[i]})
				return testkit.Do(srv.Client, http.MethodPost, srv.PublicURL+routeVerify, pending, body)
			})
			if n := testkit.Tally(t, "recovery codes, one pending token", outs, http.StatusUnauthorized); n != 1 {
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
			outs := testkit.Race(concurrency, func(i int) (int, []byte, error) {
				return testkit.Do(srv.Client, http.MethodPost, srv.PublicURL+routeVerify, pending[i%2], bodies[i%2])
			})
			if n := testkit.Tally(t, "enrolment", outs, http.StatusUnauthorized, http.StatusConflict); n > 1 {
				t.Fatalf("%d concurrent enrolments succeeded", n)
			}
		})
		t.Run("admin check", func(t *testing.T) {
			u, _ := enrolledUser(t, srv, nil)
			body, _ := json.Marshal(map[string]any{"userId": u.ID, "otp": u.nextCode(t)})
			outs := testkit.Race(concurrency, func(int) (int, []byte, error) {
				return testkit.Do(srv.Client, http.MethodPost, srv.AdminURL+routeAdminOTPVerify, "", body)
			})
			testkit.Tally(t, "admin check", outs)
			valid := 0
			for _, o := range outs {
				var env struct {
					Data struct {
						Valid bool `json:"valid"`
					} `json:"data"`
				}
				if err := json.Unmarshal(o.Body, &env); err != nil {
					t.Fatalf("%s: %v", o.Body, err)
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
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
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
		outs := testkit.Race(concurrency, func(i int) (int, []byte, error) {
			return testkit.Do(srv.Client, http.MethodPost, srv.PublicURL+routeVerify, pending, bodies[i])
		})
		testkit.Tally(t, "parallel wrong codes", outs, http.StatusUnauthorized)
		checked := 0
		for _, o := range outs {
			var e testkit.ErrorBody
			_ = json.Unmarshal(o.Body, &e)
			if e.Message == "Invalid one-time code." {
				checked++
			}
		}
		if checked > 5 {
			t.Fatalf("%d wrong codes were checked against one pending token, want at most 5", checked)
		}
	})
}
