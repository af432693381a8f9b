package provider_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/ory/fosite/token/jwt"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testpg"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/x"
	"github.com/pvpipe/pvauth/x/secretbox"
)

// countingKeys counts the key-set reads a KeyManager sends to the database.
type countingKeys struct {
	provider.KeyPersister
	lists atomic.Int64
}

func (c *countingKeys) ListSigningKeys(ctx context.Context) ([]provider.StoredKey, error) {
	c.lists.Add(1)
	return c.KeyPersister.ListSigningKeys(ctx)
}

// replicaKeys returns two key managers on one database, as two replicas have.
func replicaKeys(t *testing.T, dsn string) (a, b *provider.KeyManager, bReads *countingKeys) {
	t.Helper()
	p := testdb.Persister(t, dsn)
	box, err := secretbox.New([]string{"0123456789abcdef0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	keep := func() time.Duration { return time.Hour }
	a = provider.NewKeyManager(p, box, "ES256", keep)
	if err := a.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	bReads = &countingKeys{KeyPersister: p}
	b = provider.NewKeyManager(bReads, box, "ES256", keep)
	if err := b.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a, b, bReads
}

func signWith(t *testing.T, m *provider.KeyManager) string {
	t.Helper()
	tok, _, err := m.Signer().Generate(context.Background(),
		jwt.MapClaims{"sub": "1", "exp": time.Now().Add(time.Hour).Unix()}, &jwt.Headers{})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestKeyRotatedElsewhereVerifiesAtOnce: API.md §9, a key rotated on one replica
// verifies on every replica at once. Replica b has never seen a's new key; the first
// token signed with it verifies on b (b re-reads the set before refusing the kid), and
// b's JWKS lists the key the moment a's rotation has answered.
func TestKeyRotatedElsewhereVerifiesAtOnce(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		a, b, _ := replicaKeys(t, dsn)
		for i := 0; i < 3; i++ { // also right after a previous re-read (no "once a second")
			k, err := a.Rotate(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			tok := signWith(t, a)
			if kid := testkit.JWTKID(t, tok); kid != k.KID {
				t.Fatalf("signed with %s, rotated to %s", kid, k.KID)
			}
			if _, err := b.Signer().Decode(context.Background(), tok); err != nil {
				t.Fatalf("rotation %d: token of the new key refused by the other replica: %v", i+1, err)
			}
			k2, err := a.Rotate(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// A second rotation within the same second takes over too (created_at keeps
			// microseconds: the newest active key signs).
			if k2.KID == k.KID || a.Active().KID != k2.KID {
				t.Fatalf("rotation %d: a quick second rotation returned %s, signing with %s; want a new key", i+1, k2.KID, a.Active().KID)
			}
			if err := b.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, j := range b.JWKS().Keys {
				found = found || j.KeyID == k2.KID
			}
			if !found {
				t.Fatalf("rotation %d: the other replica's JWKS lacks %s right after the rotation", i+1, k2.KID)
			}
		}
	})
}

// TestUnknownKIDFloodIsPaced: tokens with made-up kids cannot hammer the database: the
// re-reads they cause are shared and start at most once per KeyReloadInterval.
func TestUnknownKIDFloodIsPaced(t *testing.T) {
	a, b, reads := replicaKeys(t, testdb.SQLiteFile(t))
	parts := strings.Split(signWith(t, a), ".")
	before := reads.lists.Load()
	start := time.Now()
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				h := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"alg":"ES256","kid":"garbage-%d-%d","typ":"JWT"}`, g, i)))
				if _, err := b.Signer().Decode(context.Background(), h+"."+parts[1]+"."+parts[2]); err == nil {
					accepted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	n := reads.lists.Load() - before
	limit := int64(elapsed/provider.KeyReloadInterval) + 2
	t.Logf("1000 unknown kids in %v: %d key-set reads (limit %d)", elapsed.Round(time.Millisecond), n, limit)
	if accepted.Load() != 0 {
		t.Fatalf("%d forged tokens accepted", accepted.Load())
	}
	if n > limit || n == 0 {
		t.Fatalf("%d key-set reads for 1000 unknown kids in %v, want 1..%d", n, elapsed, limit)
	}
}

// TestConcurrentRotationsLeaveOneSigningKey: replicas rotating at the same moment (or
// starting at once on an empty database) must not retire each other's new key and leave
// none active.
func TestConcurrentRotationsLeaveOneSigningKey(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		a, b, _ := replicaKeys(t, dsn)
		for i := 0; i < 5; i++ {
			var wg sync.WaitGroup
			for _, m := range []*provider.KeyManager{a, b, a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := m.Rotate(context.Background()); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			for _, m := range []*provider.KeyManager{a, b} {
				if err := m.Refresh(context.Background()); err != nil {
					t.Fatal(err)
				}
				if m.Active() == nil {
					t.Fatalf("round %d: no active signing key after concurrent rotations", i+1)
				}
			}
			if a.Active().KID != b.Active().KID {
				t.Fatalf("round %d: replicas sign with different keys: %s and %s", i+1, a.Active().KID, b.Active().KID)
			}
		}
	})
}

// TestUnknownKIDWithoutDatabase: a token whose key this replica has not loaded yet, met
// while PostgreSQL is stopped, is a dependency failure (503), not an invalid token (401).
func TestUnknownKIDWithoutDatabase(t *testing.T) {
	pg := testpg.New(t)
	dsn := pg.DSN()
	a, _, _ := replicaKeys(t, dsn)
	b, _, _ := replicaKeys(t, dsn)
	if _, err := a.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok := signWith(t, a)
	pg.Stop("fast", true)
	_, err := b.Signer().Decode(context.Background(), tok)
	if err == nil || !x.IsUnavailable(err) {
		t.Fatalf("decoding with an unknown kid and no database: %v, want a dependency failure", err)
	}
	// A token without a kid (pvauth signs none) is still just invalid.
	if _, err := b.Signer().Decode(context.Background(), "e30.e30.e30"); err == nil || x.IsUnavailable(err) {
		t.Fatalf("a malformed token: %v", err)
	}
	pg.Start(true)
	if _, err := b.Signer().Decode(context.Background(), tok); err != nil {
		t.Fatalf("once the database is back: %v", err)
	}
}
