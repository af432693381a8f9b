package conformance

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/oauth2/provider"
)

// RunTokens checks provider.TokenPersister: tokens of each kind read back as stored,
// deactivation once, family and subject revocation (counting the sessions ended, only
// of that subject or device), deletion, and the subject's gate.
func RunTokens(t *testing.T, newStore func(t *testing.T) TokenStore) {
	run(t, newStore, tokenRows, tokenRevocation, tokenSubjectActive)
}

// RunKeys checks provider.KeyPersister: keys listed newest first, and a retirement that
// keeps the given key and any newer one active.
func RunKeys(t *testing.T, newStore func(t *testing.T) provider.KeyPersister) {
	run(t, newStore, keyRotation)
}

// NewTokenRow is an active token row of the request (token family) requestID and
// subject, expiring in an hour.
func NewTokenRow(signature, requestID, subject string, device *string) *provider.TokenRow {
	exp := time.Now().Add(time.Hour)
	return &provider.TokenRow{Signature: signature, RequestID: requestID, RequestedAt: time.Now(), ClientID: "c",
		Scope: "openid", GrantedScope: "openid", Form: "{}", SessionData: "{}", Subject: subject, DeviceID: device, Active: true, ExpiresAt: &exp}
}

// newToken stores a NewTokenRow of kind with a fresh signature.
func newToken(t *testing.T, p provider.TokenPersister, kind, requestID, subject string, device *string) *provider.TokenRow {
	t.Helper()
	r := NewTokenRow(kind+"-"+uuid.NewString(), requestID, subject, device)
	must(t, p.InsertToken(context.Background(), kind, r))
	return r
}

func tokenRows(t *testing.T, p TokenStore) {
	ctx := context.Background()
	sub := strconv.FormatInt(newIdentity(t, p), 10)
	for _, kind := range []string{provider.KindAccess, provider.KindRefresh, provider.KindCode} {
		r := newToken(t, p, kind, "req", sub, ptr("dev"))
		got, err := p.GetToken(ctx, kind, r.Signature)
		must(t, err)
		if got.RequestID != "req" || got.Subject != sub || *got.DeviceID != "dev" || !got.Active || got.ExpiresAt == nil {
			t.Fatalf("%s round trip: %+v", kind, got)
		}
		wantUTC(t, kind+" requested_at", got.RequestedAt, r.RequestedAt)
		ok, err := p.DeactivateToken(ctx, kind, r.Signature)
		wantOK(t, kind+" deactivate", ok, err, true)
		ok, err = p.DeactivateToken(ctx, kind, r.Signature)
		wantOK(t, kind+" deactivate again", ok, err, false)
		must(t, p.DeleteToken(ctx, kind, r.Signature))
		_, err = p.GetToken(ctx, kind, r.Signature)
		wantErr(t, kind+" deleted", err, provider.ErrTokenNotFound)
	}
	newToken(t, p, provider.KindCode, "fam", "1", nil)
	newToken(t, p, provider.KindCode, "fam", "1", nil)
	if n, err := p.DeactivateFamily(ctx, provider.KindCode, "fam"); err != nil || n != 2 {
		t.Fatalf("deactivate a family: %d %v", n, err)
	}
}

func tokenRevocation(t *testing.T, p TokenStore) {
	ctx := context.Background()
	sub, other := strconv.FormatInt(newIdentity(t, p), 10), strconv.FormatInt(newIdentity(t, p), 10)
	famAccess, famRefresh := newToken(t, p, provider.KindAccess, "f1", sub, nil), newToken(t, p, provider.KindRefresh, "f1", sub, nil)
	must(t, p.RevokeFamily(ctx, "f1"))
	for kind, r := range map[string]*provider.TokenRow{provider.KindAccess: famAccess, provider.KindRefresh: famRefresh} {
		if got, _ := p.GetToken(ctx, kind, r.Signature); got.Active {
			t.Fatalf("%s of a revoked family is active", kind)
		}
	}
	onDevice := newToken(t, p, provider.KindRefresh, "f2", sub, ptr("d1"))
	newToken(t, p, provider.KindRefresh, "f3", sub, ptr("d2"))
	code := newToken(t, p, provider.KindCode, "f4", sub, nil)
	kept := newToken(t, p, provider.KindRefresh, "f5", other, nil)
	if n, err := p.RevokeDevice(ctx, sub, "d1"); err != nil || n != 1 {
		t.Fatalf("revoke a device: %d sessions, %v", n, err)
	}
	if got, _ := p.GetToken(ctx, provider.KindRefresh, onDevice.Signature); got.Active {
		t.Fatal("the device's token is active")
	}
	if n, err := p.RevokeSubject(ctx, sub); err != nil || n != 1 {
		t.Fatalf("revoke the subject: %d sessions, %v (want the one left)", n, err)
	}
	if got, _ := p.GetToken(ctx, provider.KindCode, code.Signature); got.Active {
		t.Fatal("the subject's unexchanged code is active")
	}
	if got, _ := p.GetToken(ctx, provider.KindRefresh, kept.Signature); !got.Active {
		t.Fatal("another subject's token was revoked")
	}
}

func tokenSubjectActive(t *testing.T, p TokenStore) {
	ctx := context.Background()
	id := newIdentity(t, p)
	ok, err := p.SubjectActive(ctx, id)
	wantOK(t, "an active identity", ok, err, true)
	sub := strconv.FormatInt(id, 10)
	live := newToken(t, p, provider.KindRefresh, "live", sub, nil)
	i, err := p.GetIdentity(ctx, id)
	must(t, err)
	i.State = identity.StateDisabled
	must(t, p.UpdateIdentity(ctx, i))
	ok, err = p.SubjectActive(ctx, id)
	wantOK(t, "a disabled identity", ok, err, false)
	ok, err = p.SubjectActive(ctx, id+1000)
	wantOK(t, "no identity", ok, err, false)

	// A refresh token rotates only while its identity is active (and it stays as it was);
	// one of a subject that is no identity (a client) has no identity to check.
	ok, err = p.DeactivateToken(ctx, provider.KindRefresh, live.Signature)
	wantErr(t, "rotate for a disabled identity", err, provider.ErrSubjectInactive)
	if got, gerr := p.GetToken(ctx, provider.KindRefresh, live.Signature); gerr != nil || !got.Active || ok {
		t.Fatalf("refused rotation changed the token: %v %+v", gerr, got)
	}
	gone := newToken(t, p, provider.KindRefresh, "gone", strconv.FormatInt(id+1000, 10), nil)
	_, err = p.DeactivateToken(ctx, provider.KindRefresh, gone.Signature)
	wantErr(t, "rotate for no identity", err, provider.ErrSubjectInactive)
	client := newToken(t, p, provider.KindRefresh, "client", "some-client", nil)
	ok, err = p.DeactivateToken(ctx, provider.KindRefresh, client.Signature)
	wantOK(t, "rotate for a client subject", ok, err, true)
	ok, err = p.DeactivateToken(ctx, provider.KindRefresh, "unknown")
	wantOK(t, "rotate an unknown token", ok, err, false)
}

func keyRotation(t *testing.T, p provider.KeyPersister) {
	ctx := context.Background()
	base := time.Now().UTC()
	for i, kid := range []string{"k1", "k2", "k3"} {
		must(t, p.InsertSigningKey(ctx, &provider.StoredKey{KID: kid, Alg: "RS256", PrivateKey: "priv", PublicJWK: "{}",
			State: provider.KeyActive, CreatedAt: base.Add(time.Duration(i) * time.Second)}))
	}
	must(t, p.RetireSigningKeys(ctx, "k2", base.Add(time.Minute)))
	ks, err := p.ListSigningKeys(ctx)
	must(t, err)
	if len(ks) != 3 || ks[0].KID != "k3" || ks[1].KID != "k2" || ks[2].KID != "k1" {
		t.Fatalf("newest first: %+v", ks)
	}
	if ks[0].State != provider.KeyActive || ks[1].State != provider.KeyActive || ks[2].State != provider.KeyRetired || ks[2].RetiredAt == nil {
		t.Fatalf("k1 retired, k2 (kept) and k3 (newer) active: %+v", ks)
	}
	wantUTC(t, "retired_at", *ks[2].RetiredAt, base.Add(time.Minute))
}
