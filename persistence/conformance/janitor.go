package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/selfservice/passkey"
)

// RunJanitor checks janitor.Persister: only rows expired before the given time go, at
// most limit at a time, and unknown tables are refused.
func RunJanitor(t *testing.T, newStore func(t *testing.T) JanitorStore) {
	run(t, newStore, janitorDeleteExpired)
}

func janitorDeleteExpired(t *testing.T, p JanitorStore) {
	ctx := context.Background()
	now := time.Now()
	var live string
	for i, exp := range []time.Duration{-3 * time.Hour, -2 * time.Hour, -time.Hour, time.Hour} {
		s := &passkey.Session{ID: uuid.NewString(), Kind: passkey.KindLogin, Data: "{}", ExpiresAt: now.Add(exp)}
		must(t, p.CreatePasskeySession(ctx, s))
		if i == 3 {
			live = s.ID
		}
	}
	if n, err := p.DeleteExpired(ctx, "webauthn_sessions", now, 2); err != nil || n != 2 {
		t.Fatalf("first batch: %d %v", n, err)
	}
	if n, err := p.DeleteExpired(ctx, "webauthn_sessions", now, 2); err != nil || n != 1 {
		t.Fatalf("second batch: %d %v", n, err)
	}
	if n, err := p.DeleteExpired(ctx, "webauthn_sessions", now, 2); err != nil || n != 0 {
		t.Fatalf("nothing left to expire: %d %v", n, err)
	}
	if _, err := p.GetPasskeySession(ctx, live); err != nil {
		t.Fatalf("the live row went: %v", err)
	}
	if _, err := p.DeleteExpired(ctx, "identities", now, 1); err == nil {
		t.Fatal("an unknown table was accepted")
	}
}
