package session_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/session"
)

// IssueRequest.InTx runs in the transaction that stores the tokens: its writes commit
// with them, and its error stores nothing, its own writes included.
func TestIssueInTx(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv := testserver.Start(t, dsn, nil)
		id := testkit.CreateIdentity(t, srv, nil)
		sub := strconv.FormatInt(id.ID, 10)
		tk, p := srv.Registry.Tokens(), srv.Registry.Persister()
		ctx := context.Background()
		marker := func(sig string) *provider.TokenRow {
			exp := time.Now().Add(time.Hour)
			return &provider.TokenRow{Signature: sig, RequestID: sig, RequestedAt: time.Now(), ClientID: provider.ClientSelfService,
				Form: "", SessionData: "{}", Subject: sub, Active: true, ExpiresAt: &exp}
		}

		// A failing InTx: Issue returns its error as is, and neither its write nor any
		// token is stored.
		refused := errors.New("refused by InTx")
		var runs int
		_, err := tk.Issue(ctx, session.IssueRequest{IdentityID: id.ID, Email: id.Email, AMR: []string{"hwk"},
			InTx: func(ctx context.Context) error {
				runs++
				if err := p.InsertToken(ctx, provider.KindCode, marker("marker-rolled-back")); err != nil {
					t.Errorf("insert in InTx: %v", err)
				}
				return refused
			}})
		if !errors.Is(err, refused) {
			t.Fatalf("Issue = %v, want the InTx error", err)
		}
		if runs != 1 {
			t.Fatalf("InTx ran %d times, want 1", runs)
		}
		if _, err := p.GetToken(ctx, provider.KindCode, "marker-rolled-back"); !errors.Is(err, provider.ErrTokenNotFound) {
			t.Fatalf("InTx's write survived its error: %v", err)
		}
		n, err := p.RevokeSubject(ctx, sub)
		if err != nil || n != 0 {
			t.Fatalf("a failed issue left %d live sessions (%v)", n, err)
		}

		// A succeeding InTx commits with the tokens.
		ts, err := tk.Issue(ctx, session.IssueRequest{IdentityID: id.ID, Email: id.Email, AMR: []string{"hwk"},
			InTx: func(ctx context.Context) error {
				return p.InsertToken(ctx, provider.KindCode, marker("marker-committed"))
			}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.GetToken(ctx, provider.KindCode, "marker-committed"); err != nil {
			t.Fatalf("InTx's write: %v", err)
		}
		if res, err := tk.Introspect(ctx, ts.AccessToken, ""); err != nil || !res.Active {
			t.Fatalf("token of a successful issue: %+v %v", res, err)
		}
		if _, _, err := tk.Refresh(ctx, ts.RefreshToken, nil); err != nil {
			t.Fatalf("refresh token of a successful issue: %v", err)
		}
	})
}
