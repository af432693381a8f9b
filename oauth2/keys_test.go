package oauth2_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/pvpipe/pvauth/internal/testdb"
)

// keyView is a signing key as GET /admin/keys shows it.
type keyView struct {
	KID       string     `json:"kid"`
	Alg       string     `json:"alg"`
	State     string     `json:"state"`
	PublicKey string     `json:"publicKey"`
	CreatedAt time.Time  `json:"createdAt"`
	RetiredAt *time.Time `json:"retiredAt"`
}

func (o *op) adminKeys(t *testing.T) map[string]keyView {
	t.Helper()
	r := o.srv.Admin(t, http.MethodGet, "/admin/keys", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /admin/keys: %d %s", r.Status, r.Body)
	}
	var out struct {
		Keys []keyView `json:"keys"`
	}
	r.Data(t, &out)
	m := map[string]keyView{}
	for _, k := range out.Keys {
		m[k.KID] = k
	}
	if len(m) != len(out.Keys) {
		t.Fatalf("duplicate kids in %s", r.Body)
	}
	return m
}

func (o *op) rotate(t *testing.T) string {
	t.Helper()
	r := o.srv.Admin(t, http.MethodPost, "/admin/keys/rotate", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("POST /admin/keys/rotate: %d %s", r.Status, r.Body)
	}
	var out struct {
		Active keyView `json:"active"`
	}
	r.Data(t, &out)
	if out.Active.KID == "" || out.Active.State != "active" {
		t.Fatalf("rotate answered %s", r.Body)
	}
	return out.Active.KID
}

func jwksKIDs(o *op, t *testing.T) []string {
	t.Helper()
	var kids []string
	for _, k := range o.jwks(t).Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

func TestKeyRotation(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		o := startOP(t, dsn, nil)
		ctx := o.ctx()
		p, err := oidc.NewProvider(ctx, o.issuer)
		if err != nil {
			t.Fatal(err)
		}
		u := o.newUser(t, "keys@example.com")
		rs := o.introspector(t)
		cc := o.ccClient(t, "client_secret_basic")
		rp := o.codeClient(t, "client_secret_basic", map[string]any{"skip_consent": true})
		rpConf := o.config(rp, "openid")

		keys := o.adminKeys(t)
		if len(keys) != 1 {
			t.Fatalf("want one key at start, got %v", keys)
		}
		var k1 string
		for kid, k := range keys {
			k1 = kid
			if k.State != "active" || k.Alg != "ES256" || !strings.Contains(k.PublicKey, "BEGIN PUBLIC KEY") || k.RetiredAt != nil {
				t.Fatalf("first key %+v", k)
			}
		}

		// Tokens signed by the first key: client_credentials, an id_token, a user's.
		old, err := o.ccConfig(cc, "reports.read").Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if kid, _ := verifyJWT(t, o.jwks(t), old.AccessToken); kid != k1 {
			t.Fatalf("token kid %s, want %s", kid, k1)
		}
		// One the server never sees until the very end.
		unseen, err := o.ccConfig(cc, "reports.read").Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		code, a := o.code(t, rpConf, u, false)
		oldID, err := rpConf.Exchange(ctx, code, oauth2.VerifierOption(a.Verifier))
		if err != nil {
			t.Fatal(err)
		}
		verifyIDToken(t, ctx, p, rp, oldID, u, a.Nonce)

		k2 := o.rotate(t)
		if k2 == k1 {
			t.Fatal("rotation kept the kid")
		}

		// The JWKS publishes both; the old tokens still verify and are still active.
		kids := jwksKIDs(o, t)
		if len(kids) != 2 || kids[0] != k2 || kids[1] != k1 {
			t.Fatalf("JWKS kids %v, want [%s %s]", kids, k2, k1)
		}
		if kid, _ := verifyJWT(t, o.jwks(t), old.AccessToken); kid != k1 {
			t.Fatalf("old token kid %s", kid)
		}
		if in := o.introspect(t, rs, old.AccessToken, ""); !in.Active || in.ClientID != cc.ID {
			t.Fatalf("old token after rotation introspects as %+v", in)
		}
		verifyIDToken(t, ctx, p, rp, oldID, u, a.Nonce)
		if ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(oldID)); err != nil || ui.Email != "" && ui.Email != u.Email {
			t.Fatalf("userinfo with a token of the retired key: %v", err)
		}
		if r := o.srv.Public(t, http.MethodGet, "/api/v1/auth/me", u.Token, nil); r.Status != http.StatusOK {
			t.Fatalf("self-service token of the retired key: %d %s", r.Status, r.Body)
		}

		// New tokens carry the new kid, and verify (go-oidc refetches the JWKS).
		fresh, err := o.ccConfig(cc, "reports.read").Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if kid, _ := verifyJWT(t, o.jwks(t), fresh.AccessToken); kid != k2 {
			t.Fatalf("new token kid %s, want %s", kid, k2)
		}
		code, a = o.code(t, rpConf, u, false)
		newID, err := rpConf.Exchange(ctx, code, oauth2.VerifierOption(a.Verifier))
		if err != nil {
			t.Fatal(err)
		}
		verifyIDToken(t, ctx, p, rp, newID, u, a.Nonce)

		// The admin listing shows both, with their states.
		keys = o.adminKeys(t)
		if len(keys) != 2 {
			t.Fatalf("keys %v", keys)
		}
		if k := keys[k2]; k.State != "active" || k.RetiredAt != nil {
			t.Fatalf("new key %+v", k)
		}
		if k := keys[k1]; k.State != "retired" || k.RetiredAt == nil || time.Since(*k.RetiredAt) > time.Minute {
			t.Fatalf("old key %+v", k)
		}

		// Once a retired key's tokens must all have expired, it leaves the JWKS and its
		// tokens stop verifying. (Made to happen early here by backdating retired_at; a
		// token the server already verified stays in its verified cache until the token's
		// own exp, which in real life comes before the key is pruned.)
		longAgo := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
		if err := o.srv.Registry.Persister().Connection(context.Background()).
			RawQuery("UPDATE signing_keys SET retired_at = ? WHERE kid = ?", longAgo, k1).Exec(); err != nil {
			t.Fatal(err)
		}
		k3 := o.rotate(t)
		kids = jwksKIDs(o, t)
		if len(kids) != 2 || kids[0] != k3 || kids[1] != k2 {
			t.Fatalf("JWKS kids %v, want [%s %s]", kids, k3, k2)
		}
		if in := o.introspect(t, rs, unseen.AccessToken, ""); in.Active {
			t.Fatalf("token of a pruned key introspects active")
		}
		if in := o.introspect(t, rs, fresh.AccessToken, ""); !in.Active {
			t.Fatalf("token of the previous key is inactive after a second rotation")
		}
	})
}
