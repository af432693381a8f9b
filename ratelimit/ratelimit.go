// Package ratelimit applies the configured rules (ratelimit.rules.<name>) with fixed
// windows. The counters live in a limiter.Store: in memory by default, or in Redis
// (RedisStore) when replicas must share limits. A failing store lets requests through.
package ratelimit

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"

	"github.com/pvpipe/pvauth/x"
)

// Rule names of the contract (API.md §6).
const (
	RuleLogin                   = "login"
	RuleLoginEmail              = "login_email"
	RuleOTPVerify               = "otp_verify"
	RuleIP                      = "ip"
	RuleMobileChallenge         = "mobile_challenge"
	RuleDeviceRegisterChallenge = "device_register_challenge"
	RuleConfirmationInitiate    = "confirmation_initiate"
	RuleMobileBiometric         = "mobile_biometric"
)

// Rule is a limit per window.
type Rule struct {
	Limit  int
	Window time.Duration
}

// Store is where counters live.
type Store = limiter.Store

// NewMemoryStore is the default, per-process store.
func NewMemoryStore() Store {
	return memory.NewStoreWithOptions(limiter.StoreOptions{Prefix: "pvauth", CleanUpInterval: time.Minute})
}

// LimiterProvider is implemented by the registry.
type LimiterProvider interface {
	RateLimiter() *Limiter
}

// Limiter checks requests against named rules.
type Limiter struct {
	enabled bool
	rules   map[string]*limiter.Limiter
	onError func()
	// Store failures are logged at most once per storeErrorLogEvery, with a count.
	lastLog  atomic.Int64
	unlogged atomic.Int64
}

// storeErrorLogEvery spaces the log lines of a failing store (a dead Redis would
// otherwise log once per request).
const storeErrorLogEvery = 10 * time.Second

// OnStoreError sets fn to be called once per failed store call (the metrics counter).
// Call it before serving.
func (l *Limiter) OnStoreError(fn func()) { l.onError = fn }

// storeFailed records a failed store call; the request it was for is let through.
func (l *Limiter) storeFailed(rule string, err error) {
	if l.onError != nil {
		l.onError()
	}
	n := l.unlogged.Add(1)
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(storeErrorLogEvery) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.unlogged.Add(-n)
	// err.Error(): the Redis store's errors carry a stack trace in their %+v form.
	slog.Error("rate limit store failed; requests are let through", "rule", rule, "failures", n, "error", err.Error())
}

// New builds a Limiter; with enabled false every check passes.
func New(enabled bool, rules map[string]Rule, store Store) *Limiter {
	l := &Limiter{enabled: enabled, rules: map[string]*limiter.Limiter{}}
	for name, r := range rules {
		if r.Limit <= 0 || r.Window <= 0 {
			continue
		}
		l.rules[name] = limiter.New(store, limiter.Rate{Period: r.Window, Limit: int64(r.Limit)})
	}
	return l
}

// Allow counts one request for key under rule. It returns nil, or a 429 *x.Error whose
// RetryAfter is the whole seconds until the window resets. An unknown rule, or a store
// failure, lets the request through: limiting must not take the service down.
func (l *Limiter) Allow(ctx context.Context, rule, key string) error {
	if l == nil || !l.enabled {
		return nil
	}
	lim, ok := l.rules[rule]
	if !ok {
		return nil
	}
	c, err := lim.Get(ctx, rule+":"+key)
	if err != nil {
		l.storeFailed(rule, err)
		return nil
	}
	if !c.Reached {
		return nil
	}
	return tooMany(c)
}

func tooMany(c limiter.Context) *x.Error {
	retry := int(math.Ceil(time.Until(time.Unix(c.Reset, 0)).Seconds()))
	if retry < 1 {
		retry = 1
	}
	e := x.ErrTooManyRequests.WithMessagef("Too many requests. Try again in %d seconds.", retry)
	e.RetryAfter = retry
	return e
}

// Key is one counter: a rule and the key it counts under.
type Key struct{ Rule, Key string }

// Reservation holds one counted attempt under several keys until its outcome is known.
type Reservation struct {
	l    *Limiter
	held []Key
}

// Reserve counts one attempt under every key, all or nothing: when one key is over its
// limit the others are refunded and that rule's 429 is returned, so a refused request is
// charged by no rule. Counting before the attempt (not after a failure) keeps concurrent
// guesses from all slipping in under the limit.
func (l *Limiter) Reserve(ctx context.Context, keys ...Key) (*Reservation, error) {
	res := &Reservation{l: l}
	if l == nil || !l.enabled {
		return res, nil
	}
	for _, k := range keys {
		lim, ok := l.rules[k.Rule]
		if !ok {
			continue
		}
		c, err := lim.Increment(ctx, k.Rule+":"+k.Key, 1)
		if err != nil {
			l.storeFailed(k.Rule, err)
			continue
		}
		res.held = append(res.held, k)
		if c.Reached {
			res.Refund(ctx)
			return &Reservation{l: l}, tooMany(c)
		}
	}
	return res, nil
}

// Refund gives the counted attempt back: it did not fail (a server error, say).
func (r *Reservation) Refund(ctx context.Context) { r.Succeed(ctx) }

// Succeed ends an attempt that succeeded: the keys in clear are set back to zero (a
// successful login clears its failures), the others get their count back.
func (r *Reservation) Succeed(ctx context.Context, clear ...Key) {
	for _, k := range r.held {
		lim := r.l.rules[k.Rule]
		var err error
		if slices.Contains(clear, k) {
			_, err = lim.Reset(ctx, k.Rule+":"+k.Key)
		} else {
			_, err = lim.Increment(ctx, k.Rule+":"+k.Key, -1)
		}
		if err != nil {
			r.l.storeFailed(k.Rule, err)
		}
	}
	r.held = nil
}

// Middleware limits every request by a key derived from it (the "ip" rule).
func (l *Limiter) Middleware(rule string, key func(*http.Request) string) x.Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := l.Allow(r.Context(), rule, key(r)); err != nil {
				x.WriteError(w, r, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
