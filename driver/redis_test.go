package driver_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit/testnet"

	"github.com/pvpipe/pvauth/driver"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testredis"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// randNet is a client address of this run's own: the test Redis outlives a test, and
// the ip rule counts per network.
func randNet() string {
	return fmt.Sprintf("10.%d.%d.%d", rand.IntN(256), rand.IntN(256), 1+rand.IntN(254))
}

// redisSet is the configuration of a server sharing its rate limits through url.
func redisSet(url string, loginLimit, ipLimit int) map[string]any {
	return map[string]any{
		"ratelimit.enabled":                  true,
		"ratelimit.store":                    "redis",
		"ratelimit.redis.url":                url,
		"ratelimit.rules.login.limit":        loginLimit,
		"ratelimit.rules.login.window":       "1m",
		"ratelimit.rules.login_email.limit":  1000,
		"ratelimit.rules.login_email.window": "1h",
		"ratelimit.rules.ip.limit":           ipLimit,
		"ratelimit.rules.ip.window":          "1m",
		"serve.public.trusted_proxies":       []any{"127.0.0.1"},
	}
}

// getFrom sends GET path to the public port as if from the client address xff.
func getFrom(t *testing.T, srv *testserver.Server, xff, path string) *testserver.Response {
	t.Helper()
	return send(t, srv, http.MethodGet, srv.PublicURL+path, nil, map[string]string{"X-Forwarded-For": xff})
}

var storeErrorsRe = regexp.MustCompile(`(?m)^pvauth_ratelimit_store_errors_total (\S+)$`)

// storeErrors reads pvauth_ratelimit_store_errors_total from the admin /metrics.
func storeErrors(t *testing.T, srv *testserver.Server) float64 {
	t.Helper()
	m := storeErrorsRe.FindSubmatch(srv.Admin(t, http.MethodGet, "/metrics", nil).Body)
	if m == nil {
		t.Fatal("no pvauth_ratelimit_store_errors_total on /metrics")
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRateLimitsSharedOnRedis: API.md §6, ratelimit.store redis. Two replicas on one
// Redis share every count: login failures spread over both lock the email and network
// at the limit, a success on one clears it for both, and the ip rule counts requests to
// either.
func TestRateLimitsSharedOnRedis(t *testing.T) {
	url := testredis.URL(t)
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		set := redisSet(url, 3, 10)
		a, b := testserver.Start(t, dsn, set), testserver.Start(t, dsn, set)
		victimAcct := testkit.CreateIdentity(t, a, nil)
		victim, pw := victimAcct.Email, victimAcct.Password

		// Failures spread over both replicas: 2 + 1, then both refuse.
		attacker := randNet()
		loFail(t, a, attacker, victim, 2)
		loFail(t, b, attacker, victim, 1)
		checkRateLimited(t, "4th failure, on replica a", loLogin(t, a, attacker, victim, "guess"), time.Minute)
		checkRateLimited(t, "4th failure, on replica b", loLogin(t, b, attacker, victim, pw), time.Minute)
		loOK(t, b, randNet(), victim, pw, "victim from another network")

		// A success on b clears the failures counted on a.
		home := randNet()
		uAcct := testkit.CreateIdentity(t, b, nil)
		u, upw := uAcct.Email, uAcct.Password
		loFail(t, a, home, u, 2)
		loOK(t, b, home, u, upw, "success after two failures on the other replica")
		loFail(t, a, home, u, 1)
		loFail(t, b, home, u, 2) // three allowed: the success cleared the two
		checkRateLimited(t, "after three new failures", loLogin(t, a, home, u, "x"), time.Minute)

		// The ip rule: 10 requests per network, wherever they land.
		n := randNet()
		for i := 0; i < 10; i++ {
			srv := a
			if i%2 == 1 {
				srv = b
			}
			if r := getFrom(t, srv, n, "/health/alive"); r.Status != http.StatusOK {
				t.Fatalf("request %d of 10 from one network: %d", i+1, r.Status)
			}
		}
		for _, srv := range []*testserver.Server{a, b} {
			if r := getFrom(t, srv, n, "/health/alive"); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
				t.Fatalf("11th request from one network: %d (Retry-After %q), want 429", r.Status, r.Header.Get("Retry-After"))
			}
		}
		if r := getFrom(t, b, randNet(), "/health/alive"); r.Status != http.StatusOK {
			t.Fatalf("another network: %d", r.Status)
		}
		if e := storeErrors(t, a) + storeErrors(t, b); e != 0 {
			t.Fatalf("store errors with Redis up: %v", e)
		}
	})
}

// TestRateLimitsFailOpenWithoutRedis: a Redis nobody listens on, from the start. pvauth
// starts, requests are let through (no 429, no 5xx) without delay, and the failures are
// counted on /metrics.
func TestRateLimitsFailOpenWithoutRedis(t *testing.T) {
	url := "redis://:not-logged-pw@127.0.0.1:" + strconv.Itoa(testnet.FreePort(t)) + "/0"
	srv := testserver.Start(t, testdb.SQLiteFile(t), redisSet(url, 1, 1))
	acct := testkit.CreateIdentity(t, srv, nil)
	email, pw := acct.Email, acct.Password
	before := storeErrors(t, srv)
	n := randNet()
	for i := 0; i < 5; i++ {
		start := time.Now()
		testkit.WantErrorOf(t, fmt.Sprintf("wrong password %d", i+1), loLogin(t, srv, n, email, "wrong"), http.StatusUnauthorized, "")
		if r := getFrom(t, srv, n, "/health/alive"); r.Status != http.StatusOK {
			t.Fatalf("request %d past the ip limit: %d", i+1, r.Status)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("two requests against a dead Redis took %s", d)
		}
	}
	loOK(t, srv, n, email, pw, "the right password")
	if after := storeErrors(t, srv); after < before+5 {
		t.Fatalf("pvauth_ratelimit_store_errors_total went from %v to %v, want at least 5 more", before, after)
	}
}

// TestRateLimitsRecoverWhenRedisReturns: Redis goes away while pvauth runs (requests are
// let through, failures counted) and comes back on the same port (empty, its scripts
// gone): the limits apply again without restarting pvauth.
func TestRateLimitsRecoverWhenRedisReturns(t *testing.T) {
	rs := testredis.NewServer(t)
	srv := testserver.Start(t, testdb.SQLiteFile(t), redisSet(rs.URL(), 2, 1000))
	email := testkit.CreateIdentity(t, srv, nil).Email

	limited := func(what string) bool { // two failures from a fresh network, then the third
		n := randNet()
		for i := 0; i < 2; i++ {
			testkit.WantErrorOf(t, what, loLogin(t, srv, n, email, "wrong"), http.StatusUnauthorized, "")
		}
		r := loLogin(t, srv, n, email, "wrong")
		if r.Status != http.StatusTooManyRequests && r.Status != http.StatusUnauthorized {
			t.Fatalf("%s: %d %s", what, r.Status, r.Body)
		}
		return r.Status == http.StatusTooManyRequests
	}
	if !limited("Redis up") {
		t.Fatal("Redis up: the third failure was not refused")
	}
	if e := storeErrors(t, srv); e != 0 {
		t.Fatalf("store errors with Redis up: %v", e)
	}

	rs.Stop()
	for i := 0; i < 3; i++ {
		start := time.Now()
		if limited("Redis down") {
			t.Fatal("Redis down: a request was refused")
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("three requests against a dead Redis took %s", d)
		}
	}
	down := storeErrors(t, srv)
	if down < 3 {
		t.Fatalf("store errors with Redis down: %v, want at least 3", down)
	}

	rs.Start()
	deadline := time.Now().Add(10 * time.Second)
	for !limited("Redis back") {
		if time.Now().After(deadline) {
			t.Fatal("limits did not apply again within 10 s of Redis coming back")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Recovered for good: the limit holds and nothing fails any more.
	settled := storeErrors(t, srv)
	if !limited("Redis back, again") {
		t.Fatal("Redis back: the limit did not hold")
	}
	if e := storeErrors(t, srv); e != settled {
		t.Fatalf("store errors after recovery: %v, then %v", settled, e)
	}
}

// TestRateLimitStoreBadRedisURL: an unusable ratelimit.redis.url stops the start with
// the key named and the password not repeated.
func TestRateLimitStoreBadRedisURL(t *testing.T) {
	set := map[string]any{
		"dsn":                 "memory",
		"ratelimit.store":     "redis",
		"ratelimit.redis.url": "redis://:s3cr3tpw@127.0.0.1:notaport/0",
	}
	for k, v := range testserver.TestSecrets {
		set[k] = v
	}
	cfg, err := config.Load(config.Options{Env: func(string) (string, bool) { return "", false }, Set: set})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := driver.New(context.Background(), cfg, driver.Options{})
	if err == nil {
		reg.Close()
		t.Fatal("started with a bad ratelimit.redis.url")
	}
	if !strings.Contains(err.Error(), "ratelimit.redis.url") || strings.Contains(err.Error(), "s3cr3tpw") {
		t.Fatalf("error %q: want the key named and no password", err)
	}
}
