package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/x"
)

// cheap are test parameters: 64 KiB, one pass.
var cheap = config.Argon2{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32, MaxConcurrent: 2}

func newTestHasher(t testing.TB, c config.Argon2) *Hasher {
	t.Helper()
	h, err := NewHasher(c)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHasherRoundTrip(t *testing.T) {
	ctx := context.Background()
	h := newTestHasher(t, cheap)
	for _, pw := range []string{"correct horse battery", "ünïcødé-pässwörd", strings.Repeat("x", 1024), ""} {
		hash, err := h.Hash(ctx, pw)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(hash, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Fatalf("unexpected PHC prefix: %s", hash)
		}
		if err := h.Compare(ctx, pw, hash); err != nil {
			t.Fatalf("Compare(%q): %v", pw, err)
		}
		if err := h.Compare(ctx, pw+"x", hash); !errors.Is(err, ErrMismatchedPassword) {
			t.Fatalf("wrong password: got %v, want ErrMismatchedPassword", err)
		}
		if h.NeedsRehash(hash) {
			t.Fatal("a fresh hash must not need a rehash")
		}
	}
	// Salted: the same password hashes differently.
	a, _ := h.Hash(ctx, "same password")
	b, _ := h.Hash(ctx, "same password")
	if a == b {
		t.Fatal("two hashes of one password are equal: salt missing")
	}
}

func TestHasherWrongPassword(t *testing.T) {
	ctx := context.Background()
	h := newTestHasher(t, cheap)
	hash, err := h.Hash(ctx, "secret-password")
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"", "secret-passwor", "Secret-password", "secret-password "} {
		if err := h.Compare(ctx, pw, hash); !errors.Is(err, ErrMismatchedPassword) {
			t.Fatalf("Compare(%q) = %v, want ErrMismatchedPassword", pw, err)
		}
	}
	if err := h.CompareDummy(ctx, "secret-password"); !errors.Is(err, ErrMismatchedPassword) {
		t.Fatalf("CompareDummy = %v, want ErrMismatchedPassword", err)
	}
	if h.NeedsRehash(h.dummy) {
		t.Fatal("the dummy hash must use the current parameters")
	}
}

// Verification reads the parameters from the stored hash: a hasher with other settings
// still verifies old hashes, and reports that they need a rehash.
func TestHasherParamsFromStoredHash(t *testing.T) {
	ctx := context.Background()
	old := newTestHasher(t, config.Argon2{MemoryKiB: 32, Iterations: 2, Parallelism: 2, SaltLength: 8, KeyLength: 16})
	hash, err := old.Hash(ctx, "password123")
	if err != nil {
		t.Fatal(err)
	}
	p, salt, key, err := parseHash(hash)
	if err != nil {
		t.Fatal(err)
	}
	want := argonParams{memory: 32, time: 2, threads: 2, saltLen: 8, keyLen: 16}
	if p != want || len(salt) != 8 || len(key) != 16 {
		t.Fatalf("parsed %+v salt %d key %d, want %+v", p, len(salt), len(key), want)
	}
	cur := newTestHasher(t, cheap)
	if err := cur.Compare(ctx, "password123", hash); err != nil {
		t.Fatalf("new config broke an old hash: %v", err)
	}
	if !cur.NeedsRehash(hash) {
		t.Fatal("a hash with other parameters must need a rehash")
	}
	if !cur.NeedsRehash("garbage") {
		t.Fatal("an unreadable hash must need a rehash")
	}

	// A hash written by another implementation in the reference PHC format parses too.
	ref := "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$lb+S1IY9i8GlPRvxDG0hUSXvuBfhjttGsaGaVEsO3mM"
	if _, _, _, err := parseHash(ref); err != nil {
		t.Fatalf("reference hash: %v", err)
	}
}

func TestHasherDefaults(t *testing.T) {
	h := newTestHasher(t, config.Argon2{MemoryKiB: 64, Iterations: 1})
	if h.p.threads != DefaultArgon2Parallelism || h.p.saltLen != DefaultArgon2SaltLength || h.p.keyLen != DefaultArgon2KeyLength {
		t.Fatalf("defaults not applied: %+v", h.p)
	}
	if h.MaxConcurrent() < 1 {
		t.Fatal("MaxConcurrent 0 must mean NumCPU")
	}
	if _, err := NewHasher(config.Argon2{MemoryKiB: 8, Iterations: 1, Parallelism: 4}); err == nil {
		t.Fatal("memory below 8×parallelism must be refused")
	}
	if _, err := NewHasher(config.Argon2{MemoryKiB: 64, Iterations: 1, KeyLength: 4}); err == nil {
		t.Fatal("a 4-byte key must be refused")
	}
}

func TestHasherBadHashes(t *testing.T) {
	ctx := context.Background()
	h := newTestHasher(t, cheap)
	good, err := h.Hash(ctx, "password123")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	bad := []string{
		"",
		"$",
		"plaintext",
		"$2a$10$abcdefghijklmnopqrstuu5Jq3Yd9l7yqF0Kw3h7N5i5XfQb4mYbK", // bcrypt
		"$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2d$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=1,x=2$" + salt + "$" + key,
		"$argon2id$v=19$m=64,m=64,t=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key,
		"$argon2id$v=19$m=0,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=-64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=+64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=256$" + salt + "$" + key,
		"$argon2id$v=19$m=99999999999,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=8388608,t=1,p=1$" + salt + "$" + key, // 8 GiB: refused, not allocated
		"$argon2id$v=19$m=64,t=1000,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=8,t=1,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$",
		"$argon2id$v=19$m=64,t=1,p=1$$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "!",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + key,     // 4-byte salt
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$AAAA", // 3-byte key
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "$extra",
		"x$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key,
	}
	for _, s := range bad {
		err := h.Compare(ctx, "password123", s)
		if !errors.Is(err, ErrInvalidHash) {
			t.Errorf("Compare with %q = %v, want ErrInvalidHash", s, err)
		}
		if !h.NeedsRehash(s) {
			t.Errorf("NeedsRehash(%q) = false", s)
		}
	}
}

func FuzzParseHash(f *testing.F) {
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$lb+S1IY9i8GlPRvxDG0hUSXvuBfhjttGsaGaVEsO3mM")
	f.Add("$argon2id$v=19$m=1,t=1,p=255$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	h := newTestHasher(f, cheap)
	f.Fuzz(func(t *testing.T, s string) {
		p, _, _, err := parseHash(s)
		if err != nil {
			return
		}
		// Anything parseHash accepts must be safe to hand to argon2, within bounds.
		if p.memory > 1024 || p.time > 2 {
			return // valid but too slow for a fuzz iteration
		}
		if err := h.Compare(context.Background(), "pw", s); err != nil && !errors.Is(err, ErrMismatchedPassword) {
			t.Fatalf("Compare(%q): %v", s, err)
		}
	})
}

// The semaphore bounds concurrent hashes: with MaxConcurrent 2 and 16 callers the peak
// never exceeds 2, and with every slot taken a caller waits until its context ends.
func TestHasherConcurrencyBound(t *testing.T) {
	ctx := context.Background()
	c := cheap
	c.MemoryKiB = 1024
	c.MaxConcurrent = 2
	h := newTestHasher(t, c)
	h.peak.Store(0)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			hash, err := h.Hash(ctx, fmt.Sprint("password-", i))
			if err == nil {
				err = h.Compare(ctx, fmt.Sprint("password-", i), hash)
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if p := h.peak.Load(); p < 1 || p > 2 {
		t.Fatalf("peak concurrent hashes = %d, want 1..2", p)
	}
	if a := h.active.Load(); a != 0 {
		t.Fatalf("active after all returned = %d", a)
	}

	// Saturate the semaphore: the next hash must block and honour cancellation.
	for i := 0; i < h.MaxConcurrent(); i++ {
		h.sem <- struct{}{}
	}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	deadline, _ := tctx.Deadline()
	if _, err := h.Hash(tctx, "password"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Hash with a full semaphore = %v, want DeadlineExceeded", err)
	}
	// It waited for a slot until the deadline (measured against the deadline itself, not
	// a clock started after it, which a busy machine may start late).
	if early := time.Until(deadline); early > 0 {
		t.Fatalf("Hash returned %v before its deadline without waiting for a slot", early)
	}
	if err := h.CompareDummy(tctx, "password"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CompareDummy with a full semaphore = %v, want DeadlineExceeded", err)
	}
	// Freeing one slot lets a waiting caller through.
	done := make(chan error, 1)
	go func() { _, err := h.Hash(ctx, "password"); done <- err }()
	select {
	case <-done:
		t.Fatal("Hash ran while every slot was taken")
	case <-time.After(30 * time.Millisecond):
	}
	<-h.sem
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := 1; i < h.MaxConcurrent(); i++ {
		<-h.sem
	}
}

// A check that finds no hashing slot within MaxWait gives up with ErrHasherBusy (a 503
// with Retry-After) instead of queueing without end; MaxWait 0 waits.
func TestHasherMaxWait(t *testing.T) {
	h, err := NewHasher(config.Argon2{MemoryKiB: 64, Iterations: 1, MaxConcurrent: 1, MaxWait: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := h.Hash(context.Background(), "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.acquire(context.Background()); err != nil { // hold the only slot
		t.Fatal(err)
	}
	t0 := time.Now()
	err = h.Compare(context.Background(), "correct horse", hash)
	if !errors.Is(err, ErrHasherBusy) || x.AsError(err).Status != 503 || x.AsError(err).RetryAfter < 1 {
		t.Fatalf("compare with no free slot: %v", err)
	}
	if d := time.Since(t0); d < 25*time.Millisecond || d > 2*time.Second {
		t.Fatalf("gave up after %s, want about max_wait", d)
	}
	if err := h.CompareDummy(context.Background(), "x"); !errors.Is(err, ErrHasherBusy) {
		t.Fatalf("dummy compare with no free slot: %v", err)
	}
	h.release()
	if err := h.Compare(context.Background(), "correct horse", hash); err != nil {
		t.Fatalf("compare with a free slot: %v", err)
	}
	// Without a bound, the check waits for the slot.
	u, err := NewHasher(config.Argon2{MemoryKiB: 64, Iterations: 1, MaxConcurrent: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(60 * time.Millisecond); u.release() }()
	if _, err := u.Hash(context.Background(), "x"); err != nil {
		t.Fatalf("unbounded wait: %v", err)
	}
}
