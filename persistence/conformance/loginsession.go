package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/oauth2"
)

// RunLoginSessions checks oauth2.LoginSessionPersister: lookup by id and token hash
// only, families listed only under a live session, an end that happens once.
func RunLoginSessions(t *testing.T, newStore func(t *testing.T) OAuth2Store) {
	run(t, newStore, loginSessionLifecycle)
}

func loginSessionLifecycle(t *testing.T, p OAuth2Store) {
	ctx := context.Background()
	now := time.Now()
	s := &oauth2.LoginSession{ID: uuid.NewString(), TokenHash: "th", IdentityID: newIdentity(t, p), AMR: "pwd", AuthTime: now, ExpiresAt: now.Add(time.Hour)}
	must(t, p.CreateLoginSession(ctx, s))
	for _, by := range [][2]string{{"id", s.ID}, {"token_hash", "th"}} {
		got, err := p.GetLoginSession(ctx, by[0], by[1])
		must(t, err)
		if got.ID != s.ID || got.IdentityID != s.IdentityID || got.AMR != "pwd" {
			t.Fatalf("by %s: %+v", by[0], got)
		}
		wantUTC(t, "auth_time", got.AuthTime, now)
	}
	_, err := p.GetLoginSession(ctx, "identity_id", "1")
	wantErr(t, "a column that is no lookup", err, oauth2.ErrLoginSessionNotFound)
	_, err = p.GetLoginSession(ctx, "id", "nope")
	wantErr(t, "unknown session", err, oauth2.ErrLoginSessionNotFound)
	ok, err := p.AddLoginSessionFamily(ctx, s.ID, "req-1")
	wantOK(t, "family under a live session", ok, err, true)
	ok, err = p.EndLoginSession(ctx, s.ID)
	wantOK(t, "end", ok, err, true)
	ok, err = p.EndLoginSession(ctx, s.ID)
	wantOK(t, "end again", ok, err, false)
	ok, err = p.AddLoginSessionFamily(ctx, s.ID, "req-2")
	wantOK(t, "family under an ended session", ok, err, false)
	_, err = p.GetLoginSession(ctx, "id", s.ID)
	wantErr(t, "ended session", err, oauth2.ErrLoginSessionNotFound)
}
