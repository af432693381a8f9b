package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/selfservice/passkey"
)

// RunPasskeys checks passkey.Persister: one stable user handle per identity, ceremonies
// consumed once and not after expiry, unique credential ids, lists oldest first, and
// rename or deactivation only of the owner's active credential.
func RunPasskeys(t *testing.T, newStore func(t *testing.T) PasskeyStore) {
	run(t, newStore, passkeyUserHandle, passkeySessions, passkeyCredentials)
}

func passkeyUserHandle(t *testing.T, p PasskeyStore) {
	ctx := context.Background()
	id := newIdentity(t, p)
	h, err := p.UserHandle(ctx, id, func() []byte { return []byte("handle-1") })
	must(t, err)
	again, err := p.UserHandle(ctx, id, func() []byte { return []byte("handle-2") })
	if err != nil || string(again) != string(h) || string(h) != "handle-1" {
		t.Fatalf("the handle is created once: %q %q %v", h, again, err)
	}
	owner, err := p.IdentityByUserHandle(ctx, h)
	if err != nil || owner != id {
		t.Fatalf("owner of the handle: %d %v", owner, err)
	}
	_, err = p.IdentityByUserHandle(ctx, []byte("nope"))
	wantErr(t, "unknown handle", err, passkey.ErrNotFound)
}

func passkeySessions(t *testing.T, p PasskeyStore) {
	ctx := context.Background()
	now := time.Now()
	s := &passkey.Session{ID: uuid.NewString(), Kind: passkey.KindLogin, Data: "{}", ExpiresAt: now.Add(time.Minute)}
	must(t, p.CreatePasskeySession(ctx, s))
	got, err := p.GetPasskeySession(ctx, s.ID)
	if err != nil || got.Kind != passkey.KindLogin || got.IdentityID != nil || got.UsedAt != nil {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	_, err = p.GetPasskeySession(ctx, "nope")
	wantErr(t, "unknown", err, passkey.ErrSessionNotFound)
	ok, err := p.ConsumePasskeySession(ctx, s.ID, now)
	wantOK(t, "consume", ok, err, true)
	ok, err = p.ConsumePasskeySession(ctx, s.ID, now)
	wantOK(t, "consume again", ok, err, false)
	late := &passkey.Session{ID: uuid.NewString(), Kind: passkey.KindLogin, Data: "{}", ExpiresAt: now.Add(time.Minute)}
	must(t, p.CreatePasskeySession(ctx, late))
	ok, err = p.ConsumePasskeySession(ctx, late.ID, now.Add(2*time.Minute))
	wantOK(t, "consume after expiry", ok, err, false)
}

func newPasskey(t *testing.T, p passkey.Persister, owner int64, credID string) *passkey.Credential {
	t.Helper()
	c := &passkey.Credential{ID: uuid.NewString(), IdentityID: owner, CredentialID: credID, Name: credID, Data: "{}", Transports: "[]"}
	must(t, p.CreatePasskey(context.Background(), c))
	return c
}

func passkeyCredentials(t *testing.T, p PasskeyStore) {
	ctx := context.Background()
	owner, other := newIdentity(t, p), newIdentity(t, p)
	a, b := newPasskey(t, p, owner, "cred-a"), newPasskey(t, p, owner, "cred-b")
	wantErr(t, "duplicate credential id", p.CreatePasskey(ctx, &passkey.Credential{ID: uuid.NewString(), IdentityID: other,
		CredentialID: "cred-a", Name: "x", Data: "{}", Transports: "[]"}), passkey.ErrDuplicateCredential)
	got, err := p.GetPasskeyByCredentialID(ctx, "cred-a")
	if err != nil || got.ID != a.ID || !got.IsActive || got.LastUsedAt != nil {
		t.Fatalf("by credential id: %+v %v", got, err)
	}
	_, err = p.GetPasskeyByCredentialID(ctx, "nope")
	wantErr(t, "unknown credential", err, passkey.ErrNotFound)
	at := time.Now()
	must(t, p.UpdatePasskeyUse(ctx, a.ID, "{\"n\":1}", 7, true, at))
	if got, _ = p.GetPasskeyByCredentialID(ctx, "cred-a"); got.SignCount != 7 || !got.CloneWarning || got.LastUsedAt == nil {
		t.Fatalf("use: %+v", got)
	}
	wantUTC(t, "last_used_at", *got.LastUsedAt, at)
	ok, err := p.RenamePasskey(ctx, other, a.ID, "stolen")
	wantOK(t, "rename by another identity", ok, err, false)
	ok, err = p.RenamePasskey(ctx, owner, a.ID, "mine")
	wantOK(t, "rename", ok, err, true)
	ok, err = p.DeactivatePasskey(ctx, owner, b.ID)
	wantOK(t, "deactivate", ok, err, true)
	ok, err = p.DeactivatePasskey(ctx, owner, b.ID)
	wantOK(t, "deactivate again", ok, err, false)
	ok, err = p.RenamePasskey(ctx, owner, b.ID, "gone")
	wantOK(t, "rename an inactive one", ok, err, false)
	all, err := p.ListPasskeys(ctx, owner, false)
	must(t, err)
	active, err := p.ListPasskeys(ctx, owner, true)
	must(t, err)
	wantOrdered(t, "all passkeys", all, func(c passkey.Credential) (time.Time, string) { return c.CreatedAt, c.ID }, a.ID, b.ID)
	if len(active) != 1 || active[0].ID != a.ID || active[0].Name != "mine" {
		t.Fatalf("active passkeys: %+v", active)
	}
	if none, err := p.ListPasskeys(ctx, other, false); err != nil || none == nil || len(none) != 0 {
		t.Fatalf("no passkeys is an empty list: %#v %v", none, err)
	}
}
