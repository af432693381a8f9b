package session_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/session"
)

// The audit event of a refresh is written in the rotation's transaction: when that
// transaction fails after the event was written, neither the rotation nor the event
// exists (the presented token still works, once); when it commits, both do. The same
// holds for the revocation of a family on reuse.
func TestRefreshEventCommitsWithTheRotation(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv := testserver.Start(t, dsn, nil)
		tk, al := srv.Registry.Tokens(), srv.Registry.AuditLogger()
		ap := srv.Registry.AuditPersister()
		ctx := context.Background()
		events := func(typ string) []audit.Event {
			t.Helper()
			evs, err := ap.ListAuditEvents(ctx, audit.Filter{Type: typ, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			return evs
		}
		id := testkit.CreateIdentity(t, srv, nil)
		ts := testkit.IssueSession(t, srv, id, session.AMRPassword)

		// The hook writes the event, then the transaction fails.
		injected := errors.New("injected after the event")
		var seen session.RefreshOutcome
		_, _, err := tk.Refresh(ctx, ts.RefreshToken, func(ctx context.Context, o session.RefreshOutcome) error {
			seen = o
			if err := al.LogTx(ctx, audit.Event{Type: audit.TypeTokenRefresh, Metadata: map[string]any{"sessionId": o.FamilyID}}); err != nil {
				t.Errorf("LogTx in the rotation: %v", err)
			}
			return injected
		})
		if err == nil {
			t.Fatal("a refresh whose transaction failed succeeded")
		}
		if seen.FamilyID != ts.SessionID || seen.IdentityID != id.ID || seen.Reused {
			t.Fatalf("outcome %+v, want family %s of identity %d", seen, ts.SessionID, id.ID)
		}
		if n := len(events(audit.TypeTokenRefresh)); n != 0 {
			t.Fatalf("%d refresh events survived the rolled-back rotation", n)
		}

		// Nothing was rotated: the same token refreshes now, and its event commits.
		next, err := session.RefreshTokens(ctx, srv.Registry, ts.RefreshToken)
		if err != nil {
			t.Fatalf("the token of a rolled-back rotation: %v", err)
		}
		if evs := events(audit.TypeTokenRefresh); len(evs) != 1 || evs[0].Metadata["sessionId"] != ts.SessionID {
			t.Fatalf("refresh events after a committed rotation: %+v", evs)
		}

		// Reuse: a failed revocation leaves the family alive and writes nothing.
		_, _, err = tk.Refresh(ctx, ts.RefreshToken, func(ctx context.Context, o session.RefreshOutcome) error {
			if !o.Reused {
				t.Errorf("outcome %+v, want a reuse", o)
			}
			if err := al.LogTx(ctx, audit.Event{Type: audit.TypeTokenReuse}); err != nil {
				t.Errorf("LogTx in the revocation: %v", err)
			}
			return injected
		})
		if err == nil {
			t.Fatal("reuse answered success")
		}
		if n := len(events(audit.TypeTokenReuse)); n != 0 {
			t.Fatalf("%d reuse events survived the rolled-back revocation", n)
		}
		if res, err := tk.Introspect(ctx, next.AccessToken, ""); err != nil || !res.Active {
			t.Fatalf("the family was revoked by a rolled-back revocation: %+v %v", res, err)
		}
		// A committed one revokes the family and stores its event.
		if _, err := session.RefreshTokens(ctx, srv.Registry, ts.RefreshToken); err == nil {
			t.Fatal("reuse answered success")
		}
		if n := len(events(audit.TypeTokenReuse)); n != 1 {
			t.Fatalf("%d reuse events, want 1", n)
		}
		if res, err := tk.Introspect(ctx, next.AccessToken, ""); err != nil || res.Active {
			t.Fatalf("the family survived its reuse: %+v %v", res, err)
		}
	})
}
