package driver_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/session"
)

// TestJanitorCleansAbandonedHandoffs: issue 10, "fill the database from outside". 10,000
// unauthenticated /oauth2/auth requests, each padded to 7 KiB, leave no row behind once
// ttl.oauth2_flow and one janitor pass have gone by; the janitor deletes in batches of at
// most Batch rows; what it deleted is counted on /metrics.
func TestJanitorCleansAbandonedHandoffs(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv := testserver.Start(t, dsn, map[string]any{"ttl.oauth2_flow": "1h", "janitor.interval": "1h"})
		var c struct {
			ClientID string `json:"client_id"`
		}
		srv.Admin(t, http.MethodPost, "/admin/clients", map[string]any{"client_name": "spa", "redirect_uris": []string{"https://spa.example.com/cb"},
			"token_endpoint_auth_method": "none", "scope": "openid"}).Data(t, &c)
		q := url.Values{"client_id": {c.ClientID}, "response_type": {"code"}, "redirect_uri": {"https://spa.example.com/cb"},
			"scope": {"openid"}, "state": {"state-0123456789"}, "code_challenge": {strings.Repeat("c", 43)}, "code_challenge_method": {"S256"}}
		q.Set("pad", strings.Repeat("p", 7<<10-len(q.Encode())-5))
		authURL := srv.PublicURL + "/oauth2/auth?" + q.Encode()
		if n := len(authURL) - len(srv.PublicURL+"/oauth2/auth?"); n < 7<<10-8 || n > 7<<10 {
			t.Fatalf("query of %d bytes, want 7 KiB", n)
		}

		const total, workers = 10000, 8
		client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
		var next, bad atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= total {
					resp, err := client.Get(authURL)
					if err != nil {
						bad.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), srv.Config.URLs.LoginUI) {
						bad.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if bad.Load() != 0 {
			t.Fatalf("%d of %d authorization requests did not start a hand-off", bad.Load(), total)
		}
		ctx := context.Background()
		count := func() int {
			var n int
			if err := srv.Registry.Persister().Connection(ctx).RawQuery("SELECT COUNT(*) FROM oauth2_flows").First(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := count(); n != total {
			t.Fatalf("%d hand-offs stored, want %d", n, total)
		}

		// A live session is not the janitor's business.
		acct := testkit.CreateIdentity(t, srv, nil)
		uid, email := acct.ID, acct.Email
		live, err := srv.Registry.Tokens().Issue(ctx, session.IssueRequest{IdentityID: uid, Email: email, AMR: []string{"pwd", "otp"}})
		if err != nil {
			t.Fatal(err)
		}

		j := srv.Registry.Janitor()
		var maxBatch time.Duration
		var maxRows int64
		j.OnBatch = func(_ string, n int64, took time.Duration) { maxBatch, maxRows = max(maxBatch, took), max(maxRows, n) }
		// Before the hand-offs expire, a pass deletes none of them.
		got, err := j.Pass(ctx, time.Now())
		if err != nil || got["oauth2_flows"] != 0 {
			t.Fatalf("a pass before expiry deleted %v (%v)", got, err)
		}
		// Once ttl.oauth2_flow has gone by (the clock of the pass, not a sleep): all gone.
		got, err = j.Pass(ctx, time.Now().Add(time.Hour+2*time.Second)) // expiries are rounded up to whole seconds
		if err != nil || got["oauth2_flows"] != total {
			t.Fatalf("the pass after expiry deleted %v (%v), want %d hand-offs", got, err, total)
		}
		if n := count(); n != 0 {
			t.Fatalf("%d hand-offs left after the pass", n)
		}
		if r := srv.Public(t, http.MethodGet, "/api/v1/auth/me", live.AccessToken, nil); r.Status != http.StatusOK {
			t.Fatalf("a live session after the pass: /me %d", r.Status)
		}
		if r := srv.Public(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]string{"refreshToken": live.RefreshToken}); r.Status != http.StatusOK {
			t.Fatalf("a live refresh token after the pass: %d", r.Status)
		}
		// Short statements keep the SQLite writer free between batches; their duration is
		// the load test's business (a timed assertion fails on a busy machine).
		if maxRows > int64(j.Batch) {
			t.Fatalf("a janitor batch deleted %d rows, want at most %d", maxRows, j.Batch)
		}
		t.Logf("longest janitor batch: %s", maxBatch)
		m := srv.Admin(t, http.MethodGet, "/metrics", nil)
		if !strings.Contains(string(m.Body), `pvauth_janitor_deleted_total{table="oauth2_flows"} 10000`) {
			t.Fatalf("metrics lack the janitor's count:\n%s", grepLines(string(m.Body), "pvauth_janitor"))
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
