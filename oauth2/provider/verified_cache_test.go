package provider_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/session"
)

// The signer caches tokens that verified; these tests prove the cache changes nothing
// a client can observe: tampering, expiry and revocation all still count.
func TestVerifiedCacheKeepsSecurity(t *testing.T) {
	srv := testserver.Start(t, "memory", map[string]any{"ttl.access_token": "2s"})
	id := testkit.CreateIdentity(t, srv, nil)
	tk := srv.Registry.Tokens()
	ctx := context.Background()
	ts := testkit.IssueSession(t, srv, id)
	for i := 0; i < 3; i++ { // fill the cache
		if res, err := tk.Introspect(ctx, ts.AccessToken, ""); err != nil || !res.Active {
			t.Fatalf("fresh token inactive: %v %+v", err, res)
		}
	}

	// Same signature, other payload: must not ride on the cached verification.
	parts := strings.Split(ts.AccessToken, ".")
	forged := parts[0] + "." + strings.Replace(parts[1], parts[1][10:14], "AAAA", 1) + "." + parts[2]
	if res, _ := tk.Introspect(ctx, forged, ""); res.Active {
		t.Fatal("a token with an altered payload introspected active")
	}
	if _, err := tk.Authenticate(ctx, forged); err == nil {
		t.Fatal("a token with an altered payload authenticated")
	}

	// Revocation is seen at once although the token is cached.
	other := testkit.IssueSession(t, srv, id, session.AMRHardware)
	if res, _ := tk.Introspect(ctx, other.AccessToken, ""); !res.Active {
		t.Fatal("second token inactive")
	}
	if err := tk.RevokeSession(ctx, other.SessionID); err != nil {
		t.Fatal(err)
	}
	if res, _ := tk.Introspect(ctx, other.AccessToken, ""); res.Active {
		t.Fatal("revoked cached token introspected active")
	}

	// Expiry is checked on every use, cached or not.
	time.Sleep(time.Until(ts.AccessTokenExpiresAt) + 1100*time.Millisecond)
	if res, _ := tk.Introspect(ctx, ts.AccessToken, ""); res.Active {
		t.Fatal("expired cached token introspected active")
	}
	if _, err := tk.Authenticate(ctx, ts.AccessToken); err == nil {
		t.Fatal("expired cached token authenticated")
	}
}
