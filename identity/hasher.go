package identity

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/x"
)

// Errors of the password hasher.
var (
	// ErrMismatchedPassword: the password does not match the hash.
	ErrMismatchedPassword = errors.New("password does not match")
	// ErrInvalidHash: the stored hash is not an argon2id PHC string this hasher can verify.
	ErrInvalidHash = errors.New("invalid password hash")
)

// Defaults for zero config values (OWASP: m=19 MiB, t=2, p=1).
const (
	DefaultArgon2MemoryKiB   = 19456
	DefaultArgon2Iterations  = 2
	DefaultArgon2Parallelism = 1
	DefaultArgon2SaltLength  = 16
	DefaultArgon2KeyLength   = 32
)

// Bounds of parameters read from a stored hash, so that a corrupt or hostile hash can
// neither panic argon2 nor make one comparison allocate gigabytes.
const (
	maxHashMemoryKiB = 4 * 1024 * 1024
	maxHashTime      = 100
	minHashSaltLen   = 8
	maxHashSaltLen   = 1024
	minHashKeyLen    = 16
	maxHashKeyLen    = 1024
)

// Hasher hashes and verifies passwords with argon2id in the PHC string format
// ($argon2id$v=19$m=…,t=…,p=…$salt$hash, unpadded standard base64). Verification takes
// the parameters from the stored hash, so that changing the configuration does not
// break existing hashes (NeedsRehash tells when to re-hash after a login).
//
// A semaphore bounds how many hashes run at once, so that memory stays at about
// MaxConcurrent × memory_kib under any load.
type Hasher struct {
	p       argonParams
	sem     chan struct{}
	maxWait time.Duration
	dummy   string

	// active and peak count hashes running inside the semaphore (observed by tests).
	active atomic.Int64
	peak   atomic.Int64
}

type argonParams struct {
	memory  uint32
	time    uint32
	threads uint8
	saltLen uint32
	keyLen  uint32
}

// HasherProvider is implemented by the registry.
type HasherProvider interface {
	IdentityHasher() *Hasher
}

// NewHasher returns a hasher with the given parameters; zero values get the defaults
// and MaxConcurrent 0 means runtime.NumCPU(). It computes the dummy hash used by
// CompareDummy once, with these parameters.
func NewHasher(c config.Argon2) (*Hasher, error) {
	p := argonParams{
		memory: cmp.Or(c.MemoryKiB, DefaultArgon2MemoryKiB), time: cmp.Or(c.Iterations, DefaultArgon2Iterations),
		threads: cmp.Or(c.Parallelism, DefaultArgon2Parallelism), saltLen: cmp.Or(c.SaltLength, DefaultArgon2SaltLength),
		keyLen: cmp.Or(c.KeyLength, DefaultArgon2KeyLength),
	}
	if p.memory > maxHashMemoryKiB || p.time > maxHashTime || p.saltLen < minHashSaltLen ||
		p.saltLen > maxHashSaltLen || p.keyLen < minHashKeyLen || p.keyLen > maxHashKeyLen ||
		p.memory < 8*uint32(p.threads) {
		return nil, fmt.Errorf("argon2: parameters out of range (m=%d KiB, t=%d, p=%d, salt=%d, key=%d)",
			p.memory, p.time, p.threads, p.saltLen, p.keyLen)
	}
	n := c.MaxConcurrent
	if n <= 0 {
		n = runtime.NumCPU()
	}
	h := &Hasher{p: p, sem: make(chan struct{}, n), maxWait: c.MaxWait}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	dummy, err := h.Hash(context.Background(), base64.RawStdEncoding.EncodeToString(secret))
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	return h, nil
}

// MaxConcurrent is the number of hashes that may run at once.
func (h *Hasher) MaxConcurrent() int { return cap(h.sem) }

// ErrHasherBusy is the 503 of a password check that found no hashing slot within
// hashers.argon2.max_wait: under overload, refusing early beats queueing without end.
var ErrHasherBusy = func() *x.Error {
	e := x.ErrUnavailable.WithMessage("Too many sign-ins at once. Try again in a moment.")
	e.RetryAfter = 1
	return e
}()

func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case h.sem <- struct{}{}:
	default:
		var timeout <-chan time.Time
		if h.maxWait > 0 {
			t := time.NewTimer(h.maxWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case h.sem <- struct{}{}:
		case <-timeout:
			return ErrHasherBusy
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	n := h.active.Add(1)
	for {
		p := h.peak.Load()
		if n <= p || h.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return nil
}

func (h *Hasher) release() {
	h.active.Add(-1)
	<-h.sem
}

func (h *Hasher) key(ctx context.Context, password, salt []byte, p argonParams) ([]byte, error) {
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	defer h.release()
	return argon2.IDKey(password, salt, p.time, p.memory, p.threads, p.keyLen), nil
}

// Hash returns the PHC string of password with the current parameters. It waits for a
// free slot and gives up with ctx's error when ctx ends first.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.p.saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := h.key(ctx, []byte(password), salt, h.p)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, h.p.memory, h.p.time, h.p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Compare checks password against the stored PHC hash: nil on a match,
// ErrMismatchedPassword on a mismatch, ErrInvalidHash (wrapped) for a hash it cannot
// read, or ctx's error. The key comparison is constant-time.
func (h *Hasher) Compare(ctx context.Context, password, hash string) error {
	p, salt, want, err := parseHash(hash)
	if err != nil {
		return err
	}
	got, err := h.key(ctx, []byte(password), salt, p)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMismatchedPassword
	}
	return nil
}

// CompareDummy costs what Compare costs with the current parameters and always fails
// with ErrMismatchedPassword (or ctx's error): call it for an unknown user or a user
// without a password, so that timing does not reveal which emails exist.
func (h *Hasher) CompareDummy(ctx context.Context, password string) error {
	if err := h.Compare(ctx, password, h.dummy); err != nil {
		return err
	}
	return ErrMismatchedPassword
}

// NeedsRehash reports whether hash was made with other parameters than the current
// ones (or cannot be read at all).
func (h *Hasher) NeedsRehash(hash string) bool {
	p, _, _, err := parseHash(hash)
	if err != nil {
		return true
	}
	return p != h.p
}

// parseHash reads $argon2id$v=19$m=…,t=…,p=…$salt$hash.
func parseHash(hash string) (argonParams, []byte, []byte, error) {
	var p argonParams
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" {
		return p, nil, nil, fmt.Errorf("%w: not a PHC string", ErrInvalidHash)
	}
	if parts[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("%w: unsupported algorithm", ErrInvalidHash)
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("%w: unsupported version", ErrInvalidHash)
	}
	var seen [3]bool
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return p, nil, nil, fmt.Errorf("%w: want parameters m, t and p", ErrInvalidHash)
	}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return p, nil, nil, fmt.Errorf("%w: malformed parameter", ErrInvalidHash)
		}
		var idx int
		var bits int
		switch k {
		case "m":
			idx, bits = 0, 32
		case "t":
			idx, bits = 1, 32
		case "p":
			idx, bits = 2, 8
		default:
			return p, nil, nil, fmt.Errorf("%w: unknown parameter", ErrInvalidHash)
		}
		if seen[idx] {
			return p, nil, nil, fmt.Errorf("%w: repeated parameter", ErrInvalidHash)
		}
		seen[idx] = true
		n, err := strconv.ParseUint(v, 10, bits)
		if err != nil || n == 0 {
			return p, nil, nil, fmt.Errorf("%w: parameter %s out of range", ErrInvalidHash, k)
		}
		switch idx {
		case 0:
			p.memory = uint32(n)
		case 1:
			p.time = uint32(n)
		case 2:
			p.threads = uint8(n)
		}
	}
	if p.memory > maxHashMemoryKiB || p.time > maxHashTime || p.memory < 8*uint32(p.threads) {
		return p, nil, nil, fmt.Errorf("%w: parameters out of range", ErrInvalidHash)
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < minHashSaltLen || len(salt) > maxHashSaltLen {
		return p, nil, nil, fmt.Errorf("%w: bad salt", ErrInvalidHash)
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil || len(key) < minHashKeyLen || len(key) > maxHashKeyLen {
		return p, nil, nil, fmt.Errorf("%w: bad key", ErrInvalidHash)
	}
	p.saltLen = uint32(len(salt))
	p.keyLen = uint32(len(key))
	return p, salt, key, nil
}
