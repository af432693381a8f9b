package provider

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite/token/jwt"

	"github.com/pvpipe/pvauth/x"
	"github.com/pvpipe/pvauth/x/secretbox"
)

// Key is a signing key in memory.
type Key struct {
	KID       string
	Alg       string
	State     string
	Private   crypto.Signer
	CreatedAt time.Time
	RetiredAt *time.Time
}

// PublicJWK is the key's public half as a JWK.
func (k *Key) PublicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.KID, Algorithm: k.Alg, Use: "sig"}
}

// KeyManager holds the signing keys: one active key signs, every key whose tokens may
// still be alive verifies. Keys live in the database, private halves encrypted.
//
// Each replica keeps the set in memory and re-reads it from the shared database when it
// may be behind another replica's rotation: before refusing an unknown kid, before
// serving the JWKS or the key list, and before signing with a set older than
// KeySigningMaxAge (in the background once it is older than KeyRefreshAge). Re-reads are
// shared by everyone waiting for one (single flight) and start at most once per
// KeyReloadInterval, so a flood of tokens with made-up kids costs the database at most
// one small query per interval.
type KeyManager struct {
	p       KeyPersister
	box     *secretbox.Box
	alg     string
	keepFor func() time.Duration
	mu      sync.RWMutex
	active  *Key
	byKID   map[string]*Key

	// flightMu guards the reload bookkeeping below.
	flightMu sync.Mutex
	flight   *keyLoad
	// lastStart is when the latest reload (finished or in flight) started; loadedFrom
	// when the query of the set in memory started: it holds every key committed before.
	lastStart  time.Time
	loadedFrom time.Time
	// loads tracks reloads in flight, so Close can wait for them before the database
	// closes; closed stops new ones.
	loads  sync.WaitGroup
	closed bool
}

// errKeysClosed answers reloads asked for after Close.
var errKeysClosed = errors.New("signing keys: closed")

// Close waits for reloads in flight and starts no more (call before closing the
// database they read).
func (m *KeyManager) Close() {
	m.flightMu.Lock()
	m.closed = true
	m.flightMu.Unlock()
	m.loads.Wait()
}

// Reload pacing (variables so that tests can shorten them).
var (
	// KeyReloadInterval is the least time between the starts of two reloads.
	KeyReloadInterval = 100 * time.Millisecond
	// KeyRefreshAge is the age of the set after which signing re-reads it in the
	// background: another replica's rotation takes over signing here within about this.
	KeyRefreshAge = time.Second
	// KeySigningMaxAge is the age after which signing waits for a re-read first (after an
	// idle spell), so no replica signs with a key retired longer ago than this; retired
	// keys verify for the token lifetime plus a minute, which covers it.
	KeySigningMaxAge = 30 * time.Second
	// keyLoadTimeout bounds one reload, whoever waits for it.
	keyLoadTimeout = 5 * time.Second
)

// keyLoad is one reload of the key set; start is when its query is sent (not before).
type keyLoad struct {
	start time.Time
	done  chan struct{}
	err   error
}

// NewKeyManager builds a manager; keepFor tells how long a retired key must still verify
// (the longest access or ID token lifetime).
func NewKeyManager(p KeyPersister, box *secretbox.Box, alg string, keepFor func() time.Duration) *KeyManager {
	return &KeyManager{p: p, box: box, alg: alg, keepFor: keepFor, byKID: map[string]*Key{}}
}

// Init loads the keys and creates the first one when there is none.
func (m *KeyManager) Init(ctx context.Context) error {
	if err := m.load(ctx); err != nil {
		return err
	}
	m.mu.RLock()
	has := m.active != nil && m.active.Alg == m.alg
	m.mu.RUnlock()
	if has {
		return nil
	}
	_, err := m.Rotate(ctx)
	return err
}

func (m *KeyManager) load(ctx context.Context) error {
	start := time.Now()
	stored, err := m.p.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("loading signing keys: %w", err)
	}
	byKID := make(map[string]*Key, len(stored))
	var active *Key
	for _, s := range stored {
		k, err := m.decode(s)
		if err != nil {
			return fmt.Errorf("signing key %s: %w (is secrets.cipher the key it was stored with?)", s.KID, err)
		}
		byKID[k.KID] = k
		// Several replicas may create a key at once; the newest active one signs.
		if k.State == KeyActive && (active == nil || k.CreatedAt.After(active.CreatedAt) ||
			(k.CreatedAt.Equal(active.CreatedAt) && k.KID > active.KID)) {
			active = k
		}
	}
	m.flightMu.Lock()
	defer m.flightMu.Unlock()
	if start.After(m.lastStart) {
		m.lastStart = start
	}
	if start.Before(m.loadedFrom) {
		return nil // a read sent later (a rotation's) is already in place: keep it
	}
	m.loadedFrom = start
	m.mu.Lock()
	m.byKID, m.active = byKID, active
	m.mu.Unlock()
	return nil
}

// refreshSince makes sure the set in memory comes from a query sent at or after since
// (so it holds every key committed before since, whichever replica wrote it). It joins a
// reload in flight that started late enough, or starts one no sooner than
// KeyReloadInterval after the previous one. It returns the reload's error, or ctx's.
func (m *KeyManager) refreshSince(ctx context.Context, since time.Time) error {
	for {
		m.flightMu.Lock()
		if !m.loadedFrom.Before(since) {
			m.flightMu.Unlock()
			return nil
		}
		c := m.startLoadLocked()
		m.flightMu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !c.start.Before(since) || c.err != nil {
			return c.err
		}
		// That reload started before since: it may have missed the key; go again.
	}
}

// refreshAsync starts a reload without waiting for it, unless one is in flight.
func (m *KeyManager) refreshAsync() {
	m.flightMu.Lock()
	m.startLoadLocked()
	m.flightMu.Unlock()
}

// startLoadLocked returns the reload in flight, or starts one. flightMu is held.
func (m *KeyManager) startLoadLocked() *keyLoad {
	if m.flight != nil {
		return m.flight
	}
	if m.closed {
		c := &keyLoad{err: errKeysClosed, done: make(chan struct{})}
		close(c.done)
		return c
	}
	start := time.Now()
	if next := m.lastStart.Add(KeyReloadInterval); start.Before(next) {
		start = next
	}
	c := &keyLoad{start: start, done: make(chan struct{})}
	m.flight, m.lastStart = c, start
	m.loads.Add(1)
	go func() {
		defer m.loads.Done()
		time.Sleep(time.Until(c.start))
		ctx, cancel := context.WithTimeout(context.Background(), keyLoadTimeout)
		c.err = m.load(ctx)
		cancel()
		m.flightMu.Lock()
		m.flight = nil
		m.flightMu.Unlock()
		close(c.done)
	}()
	return c
}

// age is how old the set in memory is.
func (m *KeyManager) age() time.Duration {
	m.flightMu.Lock()
	defer m.flightMu.Unlock()
	return time.Since(m.loadedFrom)
}

// Refresh re-reads the key set unless it was read after this call began (JWKS and key
// listing: every replica lists a key from the moment its rotation answered). When the
// database does not answer in time the set in memory is kept.
func (m *KeyManager) Refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return m.refreshSince(ctx, time.Now())
}

func (m *KeyManager) decode(s StoredKey) (*Key, error) {
	der, err := m.box.Open(s.PrivateKey, []byte("signing-key:"+s.KID))
	if err != nil {
		return nil, err
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	signer, ok := pk.(crypto.Signer)
	if !ok {
		return nil, errors.New("not a signing key")
	}
	return &Key{KID: s.KID, Alg: s.Alg, State: s.State, Private: signer, CreatedAt: s.CreatedAt, RetiredAt: s.RetiredAt}, nil
}

// Rotate creates a new key and makes it the signing key; the previous keys are retired
// but keep verifying until their tokens have expired. The new key is stored before it
// signs anything, so it is in the JWKS before any token carries its kid.
func (m *KeyManager) Rotate(ctx context.Context) (*Key, error) { return m.RotateInTx(ctx, nil) }

// RotateInTx is Rotate with inTx run in the transaction that stores the new key and
// retires the old ones (the audit event): its error stores nothing. The keys in memory
// are reloaded only after the commit.
func (m *KeyManager) RotateInTx(ctx context.Context, inTx func(ctx context.Context, k *Key) error) (*Key, error) {
	priv, err := generateKey(m.alg)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	kid := thumbprintKID(priv.Public())
	enc, err := m.box.Seal(der, []byte("signing-key:"+kid))
	if err != nil {
		return nil, err
	}
	// Microseconds (what PostgreSQL keeps), not seconds: two rotations within one second
	// must still be ordered, since the newest active key is the one that signs.
	k := &Key{KID: kid, Alg: m.alg, State: KeyActive, Private: priv, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	pub, err := json.Marshal(k.PublicJWK())
	if err != nil {
		return nil, err
	}
	store := func(ctx context.Context) error {
		if err := m.p.InsertSigningKey(ctx, &StoredKey{KID: kid, Alg: m.alg, PrivateKey: enc, PublicJWK: string(pub), State: KeyActive, CreatedAt: k.CreatedAt}); err != nil {
			return err
		}
		if err := m.p.RetireSigningKeys(ctx, kid, time.Now().UTC()); err != nil {
			return err
		}
		if inTx != nil {
			return inTx(ctx, k)
		}
		return nil
	}
	if t, ok := m.p.(interface {
		Transaction(ctx context.Context, fn func(ctx context.Context) error) error
	}); ok {
		err = t.Transaction(ctx, store)
	} else {
		err = store(ctx)
	}
	if err != nil {
		return nil, err
	}
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	// Replicas rotating at the same moment agree on the newest key (see
	// RetireSigningKeys); report the one that signs.
	if a := m.Active(); a != nil {
		return a, nil
	}
	return k, nil
}

func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case "ES256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("unsupported signing algorithm %q", alg)
	}
}

// thumbprintKID names a key by its RFC 7638 thumbprint.
func thumbprintKID(pub crypto.PublicKey) string {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		sum := sha256.Sum256([]byte(fmt.Sprint(pub)))
		tp = sum[:]
	}
	return base64.RawURLEncoding.EncodeToString(tp)[:16]
}

// Keys lists the keys that verify (active first, then newest).
func (m *KeyManager) Keys() []*Key {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Key, 0, len(m.byKID))
	for _, k := range m.byKID {
		if m.verifies(k) {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i] == m.active) != (out[j] == m.active) {
			return out[i] == m.active
		}
		return out[i].CreatedAt.After(out[j].CreatedAt)
	})
	return out
}

// verifies reports whether tokens signed by k may still be alive.
func (m *KeyManager) verifies(k *Key) bool {
	if k.State == KeyActive || k.RetiredAt == nil {
		return true
	}
	return time.Since(*k.RetiredAt) <= m.keepFor()+time.Minute
}

// JWKS is the public key set published at /.well-known/jwks.json.
func (m *KeyManager) JWKS() jose.JSONWebKeySet {
	keys := m.Keys()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.PublicJWK())
	}
	return set
}

// Active returns the signing key as last read.
func (m *KeyManager) Active() *Key {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.active
}

// signingKey is the key to sign with now: the set is re-read in the background once
// older than KeyRefreshAge, and first when older than KeySigningMaxAge, so a rotation on
// another replica takes over signing here within about a second under traffic, and a
// replica back from an idle spell never signs with a long-retired key.
func (m *KeyManager) signingKey(ctx context.Context) *Key {
	if age := m.age(); age > KeySigningMaxAge {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = m.refreshSince(rctx, time.Now()) // on failure: sign with the key as last read
		cancel()
	} else if age > KeyRefreshAge {
		m.refreshAsync()
	}
	return m.Active()
}

// lookup finds a verifying key by kid. An unknown kid may be a key another replica has
// just created: before refusing, the set is re-read by a query sent after the token
// arrived (shared with other waiters, paced by KeyReloadInterval), so a key rotated on
// any replica verifies here at once.
// A kid still unknown because the database could not be read is not a bad token: the
// re-read's error is returned when it is a dependency failure (answered 503).
func (m *KeyManager) lookup(ctx context.Context, kid string) (*Key, error) {
	if kid == "" {
		return nil, nil // every key pvauth signs with has one
	}
	since := time.Now()
	m.mu.RLock()
	k := m.byKID[kid]
	m.mu.RUnlock()
	if k == nil {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := m.refreshSince(rctx, since)
		cancel()
		m.mu.RLock()
		k = m.byKID[kid]
		m.mu.RUnlock()
		if k == nil && err != nil && x.IsUnavailable(err) {
			return nil, err
		}
	}
	if k != nil && m.verifies(k) {
		return k, nil
	}
	return nil, nil
}

// PublicKeyPEM renders a key's public half (admin listing).
func PublicKeyPEM(k *Key) string {
	der, err := x509.MarshalPKIXPublicKey(k.Private.Public())
	if err != nil {
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// SignTyped signs claims as a JWT with the current access-token signing key (its kid in
// the header, so the JWKS verifies it) and the header typ given: a token of another
// type, such as a confirmation receipt, that no verifier can take for an access token.
func (m *KeyManager) SignTyped(typ string, claims map[string]any) (string, error) {
	k := m.signingKey(context.Background())
	if k == nil {
		return "", errors.New("no active signing key")
	}
	tok := jwt.NewWithClaims(jose.SignatureAlgorithm(k.Alg), jwt.MapClaims(claims))
	tok.Header["kid"] = k.KID
	tok.Header["typ"] = typ
	return tok.SignedString(k.Private)
}
