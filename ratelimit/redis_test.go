package ratelimit_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit/testnet"

	"github.com/pvpipe/pvauth/internal/testredis"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/x"
)

// uniq makes keys of this run's own on the shared test Redis.
func uniq(s string) string { return s + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) }

func redisStore(t *testing.T, url string) *ratelimit.RedisStore {
	t.Helper()
	s, err := ratelimit.NewRedisStore(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRedisStoreLimits: the limiter's operations (Get, Increment ±1, Reset) behave on
// Redis as on the memory store, and two stores (two replicas) on one Redis share counts.
func TestRedisStoreLimits(t *testing.T) {
	url := testredis.URL(t)
	ctx := context.Background()
	rules := map[string]ratelimit.Rule{
		"a": {Limit: 2, Window: time.Minute},
		"b": {Limit: 3, Window: time.Minute},
		"w": {Limit: 2, Window: time.Second},
	}
	l := ratelimit.New(true, rules, redisStore(t, url))
	other := ratelimit.New(true, rules, redisStore(t, url))

	t.Run("allow shared by two stores", func(t *testing.T) {
		k := uniq("ip")
		exhaust(t, l, "a", k, 1)
		exhaust(t, other, "a", k, 1)
		e := refused(t, l, "a", k)
		if e.RetryAfter < 1 || e.RetryAfter > 60 {
			t.Fatalf("RetryAfter = %d, want in [1, 60]", e.RetryAfter)
		}
		refused(t, other, "a", k)
		exhaust(t, l, "a", uniq("ip2"), 2)
	})

	t.Run("window expires", func(t *testing.T) {
		k := uniq("w")
		exhaust(t, l, "w", k, 2)
		refused(t, other, "w", k)
		time.Sleep(1100 * time.Millisecond)
		exhaust(t, other, "w", k, 2)
		refused(t, l, "w", k)
	})

	t.Run("reserve, refund, succeed", func(t *testing.T) {
		ka, kb := ratelimit.Key{Rule: "a", Key: uniq("k")}, ratelimit.Key{Rule: "b", Key: uniq("k")}
		if _, err := l.Reserve(ctx, ka, kb); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Reserve(ctx, ka, kb); err != nil {
			t.Fatal(err)
		}
		// a is full across both: refused, and b is not charged (b has 1 left).
		for i := 0; i < 3; i++ {
			if _, err := other.Reserve(ctx, ka, kb); err == nil || x.AsError(err).Status != 429 || x.AsError(err).RetryAfter < 1 {
				t.Fatalf("over a's limit: %v", err)
			}
		}
		if _, err := l.Reserve(ctx, kb); err != nil {
			t.Fatalf("b was charged by refusals: %v", err)
		}
		if _, err := other.Reserve(ctx, kb); err == nil {
			t.Fatal("b over its limit")
		}

		// Succeed (Reset) clears a for every replica; Refund (Increment -1) gives back.
		ka, kb = ratelimit.Key{Rule: "a", Key: uniq("k2")}, ratelimit.Key{Rule: "b", Key: uniq("k2")}
		r1, err := l.Reserve(ctx, ka, kb)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := other.Reserve(ctx, ka, kb)
		if err != nil {
			t.Fatal(err)
		}
		r1.Refund(ctx)
		r2.Succeed(ctx, ka)
		// a: 0 (cleared); b: 3 - 2 + 2 given back = room for 3.
		for i := 0; i < 2; i++ {
			if _, err := other.Reserve(ctx, ka, kb); err != nil {
				t.Fatalf("after clear and refund, reservation %d: %v", i+1, err)
			}
		}
		if _, err := l.Reserve(ctx, ka); err == nil {
			t.Fatal("a over its limit after two new reservations")
		}
		if _, err := l.Reserve(ctx, kb); err != nil {
			t.Fatalf("b's third: %v", err)
		}
		if _, err := l.Reserve(ctx, kb); err == nil {
			t.Fatal("b over its limit")
		}
	})
}

// TestRedisStoreFailsOpen: with nothing listening, every check passes quickly and every
// failed call is reported.
// The URL's password appears in no log line.
func TestRedisStoreFailsOpen(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })
	url := "redis://pvauth:s3cr3tpw@127.0.0.1:" + strconv.Itoa(testnet.FreePort(t)) + "/0"
	l := ratelimit.New(true, map[string]ratelimit.Rule{"a": {Limit: 1, Window: time.Minute}}, redisStore(t, url))
	var errs atomic.Int64
	l.OnStoreError(func() { errs.Add(1) })
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		start := time.Now()
		if err := l.Allow(ctx, "a", "k"); err != nil {
			t.Fatalf("allow %d: %v", i, err)
		}
		r, err := l.Reserve(ctx, ratelimit.Key{Rule: "a", Key: "k"})
		if err != nil {
			t.Fatalf("reserve %d: %v", i, err)
		}
		r.Succeed(ctx, ratelimit.Key{Rule: "a", Key: "k"})
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("a check against a dead Redis took %s", d)
		}
	}
	if errs.Load() != 10 {
		t.Fatalf("store errors = %d, want 10 (5 Allow + 5 Reserve; nothing held, nothing to clear)", errs.Load())
	}
	if !strings.Contains(logs.String(), "rate limit store failed") || strings.Contains(logs.String(), "s3cr3tpw") {
		t.Fatalf("logs: want the failure logged, without the password:\n%s", logs.String())
	}
}

// TestRedisStoreHungRedis: a Redis that accepts connections and never answers costs a
// check at most about the timeout, and the checks during the pause that follows nothing.
func TestRedisStoreHungRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn // accepted and never answered
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	l := ratelimit.New(true, map[string]ratelimit.Rule{"a": {Limit: 1, Window: time.Minute}}, redisStore(t, "redis://"+ln.Addr().String()+"/0"))
	var errs atomic.Int64
	l.OnStoreError(func() { errs.Add(1) })
	ctx := context.Background()
	check := func(what string, max time.Duration) {
		t.Helper()
		start := time.Now()
		if err := l.Allow(ctx, "a", "k"); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if d := time.Since(start); d > max {
			t.Fatalf("%s took %s, want at most %s", what, d, max)
		}
	}
	// Dial, HELLO and script loading each time out after RedisTimeout; allow slack for -race.
	check("first check", 4*ratelimit.RedisTimeout+time.Second)
	for i := 0; i < 20; i++ {
		check("check during the pause", 100*time.Millisecond)
	}
	time.Sleep(ratelimit.RedisPause)
	check("check after the pause", 4*ratelimit.RedisTimeout+time.Second)
	if errs.Load() != 22 {
		t.Fatalf("store errors = %d, want 22", errs.Load())
	}
}

// TestNewRedisStoreHidesPassword: a bad URL is an error that does not repeat it.
func TestNewRedisStoreHidesPassword(t *testing.T) {
	for _, u := range []string{
		"redis://user:s3cr3tpw@127.0.0.1:notaport/0",
		"redis://:s3cr3tpw@127.0.0.1:6379/notadb",
		"http://:s3cr3tpw@127.0.0.1:6379/0",
		"redis://:s3cr3tpw@[::1/0",
	} {
		_, err := ratelimit.NewRedisStore(u)
		if err == nil {
			t.Fatalf("%q accepted", u)
		}
		if strings.Contains(err.Error(), "s3cr3tpw") || !strings.Contains(err.Error(), "ratelimit.redis.url") {
			t.Fatalf("error %q: want the key named and no password", err)
		}
	}
}
