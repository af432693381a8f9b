package ratelimit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/x"
)

func newLimiter(rules map[string]ratelimit.Rule) *ratelimit.Limiter {
	return ratelimit.New(true, rules, ratelimit.NewMemoryStore())
}

// exhaust makes n allowed calls and fails on any refusal.
func exhaust(t *testing.T, l *ratelimit.Limiter, rule, key string, n int) {
	t.Helper()
	for i := range n {
		if err := l.Allow(context.Background(), rule, key); err != nil {
			t.Fatalf("call %d of %d for %s/%s refused: %v", i+1, n, rule, key, err)
		}
	}
}

// refused asserts that the next call is a 429 and returns it.
func refused(t *testing.T, l *ratelimit.Limiter, rule, key string) *x.Error {
	t.Helper()
	err := l.Allow(context.Background(), rule, key)
	if err == nil {
		t.Fatalf("call over the limit for %s/%s allowed", rule, key)
	}
	var e *x.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not *x.Error", err, err)
	}
	if e.Status != http.StatusTooManyRequests || e.Code != "rate_limited" {
		t.Fatalf("got %d %s, want 429 rate_limited", e.Status, e.Code)
	}
	return e
}

func TestLimitThen429WithRetryAfter(t *testing.T) {
	for _, window := range []time.Duration{time.Minute, 5 * time.Minute, time.Hour} {
		t.Run(window.String(), func(t *testing.T) {
			l := newLimiter(map[string]ratelimit.Rule{ratelimit.RuleLogin: {Limit: 5, Window: window}})
			exhaust(t, l, ratelimit.RuleLogin, "alice@example.com", 5)
			for range 3 { // stays refused
				e := refused(t, l, ratelimit.RuleLogin, "alice@example.com")
				if e.RetryAfter <= 0 || time.Duration(e.RetryAfter)*time.Second > window {
					t.Fatalf("RetryAfter = %d s, want in (0, %s]", e.RetryAfter, window)
				}
			}
		})
	}
}

func TestKeysAreIndependent(t *testing.T) {
	l := newLimiter(map[string]ratelimit.Rule{ratelimit.RuleMobileChallenge: {Limit: 3, Window: time.Minute}})
	exhaust(t, l, ratelimit.RuleMobileChallenge, "fp-a", 3)
	refused(t, l, ratelimit.RuleMobileChallenge, "fp-a")
	exhaust(t, l, ratelimit.RuleMobileChallenge, "fp-b", 3)
	refused(t, l, ratelimit.RuleMobileChallenge, "fp-b")
	// A key that is a prefix of another shares nothing with it.
	exhaust(t, l, ratelimit.RuleMobileChallenge, "fp-", 3)
}

func TestRulesAreIndependent(t *testing.T) {
	l := newLimiter(map[string]ratelimit.Rule{
		ratelimit.RuleLogin:     {Limit: 2, Window: time.Minute},
		ratelimit.RuleOTPVerify: {Limit: 4, Window: time.Minute},
	})
	exhaust(t, l, ratelimit.RuleLogin, "42", 2)
	refused(t, l, ratelimit.RuleLogin, "42")
	// The same key under another rule has its own counter and its own limit.
	exhaust(t, l, ratelimit.RuleOTPVerify, "42", 4)
	refused(t, l, ratelimit.RuleOTPVerify, "42")
}

func TestRulesShareAStore(t *testing.T) {
	// Two limiters on one store (two servers of one process) count together.
	store := ratelimit.NewMemoryStore()
	rules := map[string]ratelimit.Rule{ratelimit.RuleIP: {Limit: 4, Window: time.Minute}}
	a := ratelimit.New(true, rules, store)
	b := ratelimit.New(true, rules, store)
	exhaust(t, a, ratelimit.RuleIP, "203.0.113.9", 2)
	exhaust(t, b, ratelimit.RuleIP, "203.0.113.9", 2)
	refused(t, a, ratelimit.RuleIP, "203.0.113.9")
}

func TestDisabledLimiterAlwaysAllows(t *testing.T) {
	l := ratelimit.New(false, map[string]ratelimit.Rule{ratelimit.RuleLogin: {Limit: 1, Window: time.Hour}}, ratelimit.NewMemoryStore())
	exhaust(t, l, ratelimit.RuleLogin, "k", 100)

	var nilLimiter *ratelimit.Limiter
	exhaust(t, nilLimiter, ratelimit.RuleLogin, "k", 10)
}

func TestUnknownOrEmptyRuleAllows(t *testing.T) {
	l := newLimiter(map[string]ratelimit.Rule{
		ratelimit.RuleLogin: {Limit: 1, Window: time.Minute},
		"zero_limit":        {Limit: 0, Window: time.Minute},
		"zero_window":       {Limit: 1, Window: 0},
	})
	exhaust(t, l, "no_such_rule", "k", 50)
	exhaust(t, l, "zero_limit", "k", 50)
	exhaust(t, l, "zero_window", "k", 50)
	// The configured rule still limits.
	exhaust(t, l, ratelimit.RuleLogin, "k", 1)
	refused(t, l, ratelimit.RuleLogin, "k")
}

func TestWindowResets(t *testing.T) {
	l := newLimiter(map[string]ratelimit.Rule{ratelimit.RuleMobileBiometric: {Limit: 3, Window: time.Second}})
	exhaust(t, l, ratelimit.RuleMobileBiometric, "session-1", 3)
	e := refused(t, l, ratelimit.RuleMobileBiometric, "session-1")
	if e.RetryAfter != 1 {
		t.Fatalf("RetryAfter = %d, want 1 for a 1 s window", e.RetryAfter)
	}
	time.Sleep(1100 * time.Millisecond)
	exhaust(t, l, ratelimit.RuleMobileBiometric, "session-1", 3)
	refused(t, l, ratelimit.RuleMobileBiometric, "session-1")
}

func TestConcurrentCallsAllowExactlyTheLimit(t *testing.T) {
	l := newLimiter(map[string]ratelimit.Rule{ratelimit.RuleConfirmationInitiate: {Limit: 10, Window: time.Hour}})
	var allowed, limited atomic.Int64
	testkit.Together(100, func(int) {
		if err := l.Allow(context.Background(), ratelimit.RuleConfirmationInitiate, "user-7"); err == nil {
			allowed.Add(1)
		} else {
			limited.Add(1)
		}
	})
	if allowed.Load() != 10 || limited.Load() != 90 {
		t.Fatalf("allowed %d, limited %d; want 10 and 90", allowed.Load(), limited.Load())
	}
}

func TestMiddleware(t *testing.T) {
	const limit = 3
	l := newLimiter(map[string]ratelimit.Rule{ratelimit.RuleIP: {Limit: limit, Window: time.Minute}})
	var served atomic.Int64
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		x.WriteData(w, http.StatusOK, map[string]bool{"ok": true})
	})
	// The key is a header here so that one test client can act as several clients.
	h := l.Middleware(ratelimit.RuleIP, func(r *http.Request) string { return r.Header.Get("X-Test-Client") })(ok)
	srv := httptest.NewServer(h)
	defer srv.Close()

	do := func(client string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/auth/login", nil)
		req.Header.Set("X-Test-Client", client)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	for i := range limit {
		res := do("a")
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d", i+1, res.StatusCode)
		}
	}
	res := do("a")
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("request over the limit: %d %s", res.StatusCode, body)
	}
	ra, err := strconv.Atoi(res.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After = %q, want whole seconds in [1, 60]", res.Header.Get("Retry-After"))
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if len(raw) != 3 || raw["statusCode"] != float64(429) || raw["error"] != "rate_limited" {
		t.Fatalf("body %s, want {message, statusCode: 429, error: rate_limited}", body)
	}
	if msg, _ := raw["message"].(string); msg == "" {
		t.Fatalf("empty message: %s", body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if served.Load() != limit {
		t.Fatalf("the handler ran %d times, want %d: a limited request reached it", served.Load(), limit)
	}

	// Another client is not affected.
	res = do("b")
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("other client: %d", res.StatusCode)
	}
}

// Reserve is all or nothing; Succeed clears or refunds; a refused reservation charges
// no rule.
func TestReserve(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(map[string]ratelimit.Rule{
		"a": {Limit: 2, Window: time.Minute},
		"b": {Limit: 3, Window: time.Minute},
	})
	ka, kb := ratelimit.Key{Rule: "a", Key: "k"}, ratelimit.Key{Rule: "b", Key: "k"}
	for i := 0; i < 2; i++ {
		if _, err := l.Reserve(ctx, ka, kb); err != nil {
			t.Fatalf("reservation %d: %v", i+1, err)
		}
	}
	// a is full: the third is refused, and b is not charged by it (b has 1 left).
	for i := 0; i < 5; i++ {
		if _, err := l.Reserve(ctx, ka, kb); err == nil || x.AsError(err).Status != 429 || x.AsError(err).RetryAfter < 1 {
			t.Fatalf("over a's limit: %v", err)
		}
	}
	if _, err := l.Reserve(ctx, kb); err != nil {
		t.Fatalf("b was charged by refusals: %v", err)
	}
	if _, err := l.Reserve(ctx, kb); err == nil {
		t.Fatal("b over its limit")
	}
	// Succeed clears a and refunds b; Refund gives back.
	l2 := newLimiter(map[string]ratelimit.Rule{"a": {Limit: 2, Window: time.Minute}, "b": {Limit: 2, Window: time.Minute}})
	r1, _ := l2.Reserve(ctx, ka, kb)
	r2, _ := l2.Reserve(ctx, ka, kb)
	r1.Refund(ctx)
	r2.Succeed(ctx, ka)
	for i := 0; i < 2; i++ {
		if _, err := l2.Reserve(ctx, ka, kb); err != nil {
			t.Fatalf("after clear and refund, reservation %d: %v", i+1, err)
		}
	}
	if _, err := l2.Reserve(ctx, ka); err == nil {
		t.Fatal("a over its limit after two new reservations")
	}
	// Disabled or nil limiters reserve anything.
	off := ratelimit.New(false, map[string]ratelimit.Rule{"a": {Limit: 1, Window: time.Minute}}, ratelimit.NewMemoryStore())
	for i := 0; i < 3; i++ {
		r, err := off.Reserve(ctx, ka)
		if err != nil {
			t.Fatal(err)
		}
		r.Succeed(ctx)
	}
}
