package ratelimit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"
	redisstore "github.com/ulule/limiter/v3/drivers/store/redis"
)

// RedisTimeout bounds every Redis call (dial, read, write, pool wait): a dead or slow
// Redis costs a request at most about this much before it is let through.
const RedisTimeout = 300 * time.Millisecond

// RedisPause is how long the store fails at once, without asking Redis, after a failed
// call: while Redis hangs, one request per pause waits for the timeout, not every one.
// Redis is asked again after it, so the limits come back by themselves.
const RedisPause = time.Second

// ErrRedisPaused is returned while the store pauses after a failure.
var ErrRedisPaused = errors.New("redis: paused after a failure")

// redisLogger sends go-redis's own messages (a failed dial, once per attempt) to slog at
// debug level: the limiter logs store failures itself, spaced out.
type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

var setRedisLogger sync.Once

// RedisStore is a Store shared by every replica pointed at the same Redis. It starts
// even when Redis is down (the counters' Lua scripts are loaded on first use, and again
// after a Redis restart), and every call fails fast, so that the limiter fails open.
type RedisStore struct {
	client *redis.Client
	store  atomic.Pointer[limiter.Store]
	// pausedUntil is when, in Unix nanoseconds, calls go to Redis again.
	pausedUntil atomic.Int64
}

// NewRedisStore parses rawURL (redis://[user:password@]host:port/db, or rediss://) and
// returns the store; it does not contact Redis. Errors never contain the URL, which
// may hold a password.
func NewRedisStore(rawURL string) (*RedisStore, error) {
	setRedisLogger.Do(func() { redis.SetLogger(redisLogger{}) })
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, fmt.Errorf("ratelimit.redis.url: not a valid redis:// URL: %v", err)
	}
	opt.DialTimeout = cmp.Or(opt.DialTimeout, RedisTimeout)
	opt.ReadTimeout = cmp.Or(opt.ReadTimeout, RedisTimeout)
	opt.WriteTimeout = cmp.Or(opt.WriteTimeout, RedisTimeout)
	opt.PoolTimeout = cmp.Or(opt.PoolTimeout, RedisTimeout)
	opt.MaxRetries = -1   // no command retries: a failed count lets the request through
	opt.DialerRetries = 1 // one dial per attempt, no backoff loop
	opt.ContextTimeoutEnabled = true
	return &RedisStore{client: redis.NewClient(opt)}, nil
}

// Close closes the connections.
func (s *RedisStore) Close() error { return s.client.Close() }

// Ping checks that Redis answers.
func (s *RedisStore) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, RedisTimeout)
	defer cancel()
	return s.client.Ping(ctx).Err()
}

// inner returns the ulule store, building it (which loads the Lua scripts) on first
// successful use. Two concurrent first uses may both load the scripts; that is harmless.
func (s *RedisStore) inner() (limiter.Store, error) {
	if p := s.store.Load(); p != nil {
		return *p, nil
	}
	st, err := redisstore.NewStoreWithOptions(s.client, limiter.StoreOptions{Prefix: "pvauth"})
	if err != nil {
		return nil, err
	}
	s.store.Store(&st)
	return st, nil
}

func (s *RedisStore) call(ctx context.Context, fn func(context.Context, limiter.Store) (limiter.Context, error)) (limiter.Context, error) {
	if time.Now().UnixNano() < s.pausedUntil.Load() {
		return limiter.Context{}, ErrRedisPaused
	}
	st, err := s.inner()
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*RedisTimeout)
		var c limiter.Context
		c, err = fn(cctx, st)
		cancel()
		if err == nil {
			return c, nil
		}
	}
	if ctx.Err() == nil { // not the caller giving up
		s.pausedUntil.Store(time.Now().Add(RedisPause).UnixNano())
	}
	return limiter.Context{}, err
}

// Get implements limiter.Store.
func (s *RedisStore) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	return s.call(ctx, func(ctx context.Context, st limiter.Store) (limiter.Context, error) { return st.Get(ctx, key, rate) })
}

// Peek implements limiter.Store.
func (s *RedisStore) Peek(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	return s.call(ctx, func(ctx context.Context, st limiter.Store) (limiter.Context, error) { return st.Peek(ctx, key, rate) })
}

// Reset implements limiter.Store.
func (s *RedisStore) Reset(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	return s.call(ctx, func(ctx context.Context, st limiter.Store) (limiter.Context, error) { return st.Reset(ctx, key, rate) })
}

// Increment implements limiter.Store.
func (s *RedisStore) Increment(ctx context.Context, key string, count int64, rate limiter.Rate) (limiter.Context, error) {
	return s.call(ctx, func(ctx context.Context, st limiter.Store) (limiter.Context, error) {
		return st.Increment(ctx, key, count, rate)
	})
}
