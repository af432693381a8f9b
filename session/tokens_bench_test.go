package session_test

import (
	"context"
	"testing"

	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/session"
)

// Run: go test -tags sqlite -run ^$ -bench . -benchmem ./session/
func benchTokens(b *testing.B) (*session.Tokens, *session.TokenSet) {
	srv := testserver.Start(b, "memory", nil)
	id := testkit.CreateIdentity(b, srv, map[string]any{"email": "bench@example.com"})
	return srv.Registry.Tokens(), testkit.IssueSession(b, srv, id)
}

func BenchmarkIntrospectAccessToken(b *testing.B) {
	t, ts := benchTokens(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := t.Introspect(ctx, ts.AccessToken, "")
		if err != nil || !res.Active {
			b.Fatal(err, res)
		}
	}
}

func BenchmarkRefresh(b *testing.B) {
	t, ts := benchTokens(b)
	ctx := context.Background()
	rt := ts.RefreshToken
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		next, _, err := t.Refresh(ctx, rt, nil)
		if err != nil {
			b.Fatal(err)
		}
		rt = next.RefreshToken
	}
}

func BenchmarkIssue(b *testing.B) {
	t, _ := benchTokens(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := t.Issue(ctx, session.IssueRequest{IdentityID: 1, Email: "bench@example.com", AMR: []string{"hwk"}}); err != nil {
			b.Fatal(err)
		}
	}
}
