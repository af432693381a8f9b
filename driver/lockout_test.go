package driver_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// loLogin posts a password login as if from the client address xff (behind the trusted
// proxy 127.0.0.1, the test client itself).
func loLogin(t *testing.T, srv *testserver.Server, xff, email, pw string) *testserver.Response {
	t.Helper()
	raw, _ := json.Marshal(map[string]string{"email": email, "password": pw})
	return send(t, srv, http.MethodPost, srv.PublicURL+"/api/v1/auth/login", bytes.NewReader(raw),
		map[string]string{"Content-Type": "application/json", "X-Forwarded-For": xff})
}

func loFail(t *testing.T, srv *testserver.Server, xff, email string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		testkit.WantErrorOf(t, fmt.Sprintf("wrong password %d from %s", i+1, xff), loLogin(t, srv, xff, email, "wrong password"), http.StatusUnauthorized, "")
	}
}

func loOK(t *testing.T, srv *testserver.Server, xff, email, pw, what string) {
	t.Helper()
	if r := loLogin(t, srv, xff, email, pw); r.Status != http.StatusOK {
		t.Fatalf("%s: %d %s", what, r.Status, r.Body)
	}
}

// TestLoginLockout: API.md §6. Login limits count failures only, per email and client
// network, so nobody can lock a user out of the network the user signs in from; a
// success clears the count; login_email stops a guesser spread over many networks; a
// request refused by one rule is charged by no other.
func TestLoginLockout(t *testing.T) {
	testkit.ForEachDB(t, map[string]any{
		"ratelimit.enabled":                  true,
		"ratelimit.rules.login.limit":        3,
		"ratelimit.rules.login.window":       "1m",
		"ratelimit.rules.login_email.limit":  8,
		"ratelimit.rules.login_email.window": "1h",
		"serve.public.trusted_proxies":       []any{"127.0.0.1"},
	}, func(t *testing.T, srv *testserver.Server) {
		const attacker, home = "203.0.113.66", "198.51.100.7"
		victimAcct := testkit.CreateIdentity(t, srv, nil)
		victim, pw := victimAcct.Email, victimAcct.Password

		// The attacker's network exhausts its failures for the victim's email…
		loFail(t, srv, attacker, victim, 3)
		checkRateLimited(t, "attacker's 4th guess", loLogin(t, srv, attacker, victim, "guess"), time.Minute)
		checkRateLimited(t, "attacker with the right password", loLogin(t, srv, attacker, victim, pw), time.Minute)
		// …and the victim still logs in from home.
		loOK(t, srv, home, victim, pw, "victim from another network")

		// Two emails from one network each get their own count.
		otherAcct := testkit.CreateIdentity(t, srv, nil)
		other, otherPW := otherAcct.Email, otherAcct.Password
		loOK(t, srv, attacker, other, otherPW, "another email from the attacker's network")

		// Successes are not counted, and a success clears its network's failures.
		uAcct := testkit.CreateIdentity(t, srv, nil)
		u, upw := uAcct.Email, uAcct.Password
		for i := 0; i < 5; i++ {
			loOK(t, srv, home, u, upw, "repeated successful login")
		}
		loFail(t, srv, home, u, 2)
		loOK(t, srv, home, u, upw, "success after two failures")
		loFail(t, srv, home, u, 3) // three more allowed: the success cleared the two
		checkRateLimited(t, "after three new failures", loLogin(t, srv, home, u, "x"), time.Minute)

		// An IPv6 client's /64 is one network; another /64 is another.
		v6Acct := testkit.CreateIdentity(t, srv, nil)
		v6, v6pw := v6Acct.Email, v6Acct.Password
		loFail(t, srv, "2001:db8:1:2::1", v6, 2)
		loFail(t, srv, "2001:db8:1:2:ffff:ffff:ffff:fffe", v6, 1)
		checkRateLimited(t, "same /64, new address", loLogin(t, srv, "2001:db8:1:2::abcd", v6, "x"), time.Minute)
		loOK(t, srv, "2001:db8:1:3::1", v6, v6pw, "another /64")

		// An X-Forwarded-For entry with a port counts as its host.
		hp := testkit.CreateIdentity(t, srv, nil).Email
		loFail(t, srv, "192.0.2.9:1111", hp, 2)
		loFail(t, srv, "192.0.2.9", hp, 1)
		checkRateLimited(t, "host:port is its host", loLogin(t, srv, "192.0.2.9:2222", hp, "x"), time.Minute)

		// login_email: a guesser spread over many networks is stopped at 8 failures,
		// and the refused requests were not charged (the 8 come from 4 networks × 2).
		spreadAcct := testkit.CreateIdentity(t, srv, nil)
		spread, spreadPW := spreadAcct.Email, spreadAcct.Password
		for n := 0; n < 4; n++ {
			loFail(t, srv, fmt.Sprintf("100.64.0.%d", n+1), spread, 2)
		}
		checkRateLimited(t, "9th failure from a 5th network", loLogin(t, srv, "100.64.0.99", spread, "x"), time.Hour)
		checkRateLimited(t, "even the right password, for now", loLogin(t, srv, "100.64.0.100", spread, spreadPW), time.Hour)

		// A request refused by the network rule is not charged to login_email: after the
		// network is blocked, 20 more attempts from it leave login_email room for 5 more.
		refusedOnceAcct := testkit.CreateIdentity(t, srv, nil)
		refusedOnce, rpw := refusedOnceAcct.Email, refusedOnceAcct.Password
		loFail(t, srv, "100.65.0.1", refusedOnce, 3)
		for i := 0; i < 20; i++ {
			checkRateLimited(t, "blocked network", loLogin(t, srv, "100.65.0.1", refusedOnce, "x"), time.Minute)
		}
		loFail(t, srv, "100.65.0.2", refusedOnce, 3)
		loFail(t, srv, "100.65.0.3", refusedOnce, 1)
		loOK(t, srv, "100.65.0.4", refusedOnce, rpw, "login_email not charged by refusals")

		// Concurrent guesses cannot slip in under the limit: of 12 at once, 3 are tried.
		conc := testkit.CreateIdentity(t, srv, nil).Email
		var wg sync.WaitGroup
		var mu sync.Mutex
		statuses := map[int]int{}
		for i := 0; i < 12; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := loLogin(t, srv, "100.66.0.1", conc, "x")
				mu.Lock()
				statuses[r.Status]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if statuses[http.StatusUnauthorized] != 3 || statuses[http.StatusTooManyRequests] != 9 {
			t.Fatalf("12 concurrent guesses: %v, want 3×401 and 9×429", statuses)
		}
	})
}

// The ip rule counts by client network too (API.md §6): an IPv6 client cannot get a fresh
// count by changing its address within its /64.
func TestIPRuleCountsClientNetwork(t *testing.T) {
	testkit.ForEachDB(t, map[string]any{
		"ratelimit.enabled":            true,
		"ratelimit.rules.ip.limit":     3,
		"ratelimit.rules.ip.window":    "1m",
		"serve.public.trusted_proxies": []any{"127.0.0.1"},
	}, func(t *testing.T, srv *testserver.Server) {
		get := func(xff string) *testserver.Response { return getFrom(t, srv, xff, "/health/alive") }
		for i, a := range []string{"2001:db8:9:9::1", "2001:db8:9:9::2", "2001:db8:9:9:ffff::3"} {
			if r := get(a); r.Status != http.StatusOK {
				t.Fatalf("request %d from %s: %d", i+1, a, r.Status)
			}
		}
		checkRateLimited(t, "a 4th address of the same /64", get("2001:db8:9:9::4"), time.Minute)
		if r := get("2001:db8:9:a::1"); r.Status != http.StatusOK {
			t.Fatalf("another /64: %d", r.Status)
		}
		if r := get("198.51.100.9"); r.Status != http.StatusOK {
			t.Fatalf("an IPv4 client: %d", r.Status)
		}
	})
}

// Overload is refused early (API.md §9): a password login that gets no hashing slot
// within hashers.argon2.max_wait answers 503 with Retry-After, and is not counted as a
// failed guess.
func TestLoginRefusedWhenHashersBusy(t *testing.T) {
	srv := testserver.Start(t, testdb.SQLiteFile(t), map[string]any{
		"hashers.argon2.memory_kib":     32768,
		"hashers.argon2.iterations":     2,
		"hashers.argon2.max_concurrent": 1,
		"hashers.argon2.max_wait":       "5ms",
		"ratelimit.enabled":             true,
		"ratelimit.rules.login.limit":   8,
	})
	acct := testkit.CreateIdentity(t, srv, nil)
	email, pw := acct.Email, acct.Password
	statuses := make([]int, 8)
	var busy atomic.Int64
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"email": email, "password": "wrong"})
			statuses[i] = r.Status
			if r.Status == http.StatusServiceUnavailable {
				if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); ra < 1 {
					t.Errorf("503 without Retry-After: %v", r.Header)
				}
				if e := testkit.WantErrorOf(t, "busy login", r, http.StatusServiceUnavailable, ""); e.Error != "service_unavailable" {
					t.Errorf("busy login error %q", e.Error)
				}
				busy.Add(1)
			}
		}()
	}
	wg.Wait()
	for _, st := range statuses {
		if st != http.StatusUnauthorized && st != http.StatusServiceUnavailable {
			t.Fatalf("statuses %v: only 401 and 503 expected", statuses)
		}
	}
	if busy.Load() == 0 {
		t.Fatalf("8 concurrent logins on one hashing slot with max_wait 5ms: no 503 (%v)", statuses)
	}
	t.Logf("statuses %v", statuses)
	// The 8 attempts filled the login limit (8) while they ran; the refused ones were no
	// guesses and gave their count back, so the right password still gets in.
	if r := srv.Public(t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"email": email, "password": pw}); r.Status != http.StatusOK {
		t.Fatalf("login after the busy ones: %d %s", r.Status, r.Body)
	}
}
