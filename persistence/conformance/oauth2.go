package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/oauth2"
)

// RunOAuth2 checks oauth2.Persister's clients (unique ids, lists in id order after a
// cursor, update and delete of unknown ids), flows (lookup by each hashed column,
// advance once from a state, not after expiry) and remembered consent.
func RunOAuth2(t *testing.T, newStore func(t *testing.T) OAuth2Store) {
	run(t, newStore, oauth2Clients, oauth2Flows, oauth2Consent)
}

func newClient(t *testing.T, p oauth2.Persister, id string) *oauth2.Client {
	t.Helper()
	c := &oauth2.Client{ID: id, Name: "n-" + id, SecretHash: "s", RedirectURIs: []string{"https://a.example/cb"},
		GrantTypes: []string{"authorization_code"}, Scope: "openid", TokenEndpointAuthMethod: "client_secret_basic"}
	must(t, p.CreateClient(context.Background(), c))
	return c
}

func oauth2Clients(t *testing.T, p OAuth2Store) {
	ctx := context.Background()
	for _, id := range []string{"c-b", "c-a", "c-c"} {
		newClient(t, p, id)
	}
	wantErr(t, "duplicate client", p.CreateClient(ctx, &oauth2.Client{ID: "c-a"}), oauth2.ErrClientExists)
	got, err := p.GetOAuth2Client(ctx, "c-a")
	must(t, err)
	if got.Name != "n-c-a" || len(got.RedirectURIs) != 1 || got.Audience == nil || len(got.Audience) != 0 {
		t.Fatalf("round trip (nil lists read back empty): %+v", got)
	}
	_, err = p.GetOAuth2Client(ctx, "nope")
	wantErr(t, "get unknown", err, oauth2.ErrClientNotFound)
	page, err := p.ListClients(ctx, 2, "")
	must(t, err)
	if len(page) != 2 || page[0].ID != "c-a" || page[1].ID != "c-b" {
		t.Fatalf("first page: %+v", page)
	}
	if page, _ = p.ListClients(ctx, 2, "c-b"); len(page) != 1 || page[0].ID != "c-c" {
		t.Fatalf("after c-b: %+v", page)
	}
	got.Name, got.Audience = "renamed", []string{"api"}
	must(t, p.UpdateClient(ctx, got))
	if u, _ := p.GetOAuth2Client(ctx, "c-a"); u.Name != "renamed" || len(u.Audience) != 1 {
		t.Fatalf("update: %+v", u)
	}
	wantErr(t, "update unknown", p.UpdateClient(ctx, &oauth2.Client{ID: "nope"}), oauth2.ErrClientNotFound)
	must(t, p.DeleteClient(ctx, "c-a"))
	wantErr(t, "second delete", p.DeleteClient(ctx, "c-a"), oauth2.ErrClientNotFound)
	_, err = p.GetOAuth2Client(ctx, "c-a")
	wantErr(t, "get deleted", err, oauth2.ErrClientNotFound)
}

func oauth2Flows(t *testing.T, p OAuth2Store) {
	ctx := context.Background()
	newClient(t, p, "c")
	now := time.Now()
	f := &oauth2.Flow{ID: uuid.NewString(), ClientID: "c", LoginChallenge: "lc", State: oauth2.FlowLogin, ExpiresAt: now.Add(time.Minute)}
	must(t, p.CreateFlow(ctx, f))
	got, err := p.GetFlowBy(ctx, "login_challenge", "lc")
	must(t, err)
	if got.ID != f.ID || got.State != oauth2.FlowLogin || got.AuthTime != nil {
		t.Fatalf("by login challenge: %+v", got)
	}
	_, err = p.GetFlowBy(ctx, "login_challenge", "other")
	wantErr(t, "unknown challenge", err, oauth2.ErrFlowNotFound)
	_, err = p.GetFlowBy(ctx, "id", f.ID)
	wantErr(t, "a column that is no lookup", err, oauth2.ErrFlowNotFound)

	id := newIdentity(t, p)
	got.State, got.IdentityID, got.LoginVerifier, got.AuthTime = oauth2.FlowLoginAccepted, &id, ptr("lv"), ptr(now)
	ok, err := p.AdvanceFlow(ctx, got, oauth2.FlowLogin, now)
	wantOK(t, "advance from login", ok, err, true)
	ok, err = p.AdvanceFlow(ctx, got, oauth2.FlowLogin, now)
	wantOK(t, "advance from login again", ok, err, false)
	byVerifier, err := p.GetFlowBy(ctx, "login_verifier", "lv")
	must(t, err)
	if byVerifier.State != oauth2.FlowLoginAccepted || *byVerifier.IdentityID != id || byVerifier.AuthTime == nil {
		t.Fatalf("advanced: %+v", byVerifier)
	}
	wantUTC(t, "auth_time", *byVerifier.AuthTime, now)
	got.State = oauth2.FlowConsent
	ok, err = p.AdvanceFlow(ctx, got, oauth2.FlowLoginAccepted, now.Add(2*time.Minute))
	wantOK(t, "advance after expiry", ok, err, false)
}

func oauth2Consent(t *testing.T, p OAuth2Store) {
	ctx := context.Background()
	newClient(t, p, "c")
	id := newIdentity(t, p)
	s, err := p.GetConsent(ctx, id, "c")
	if err != nil || s != "" {
		t.Fatalf("no consent yet: %q %v", s, err)
	}
	must(t, p.RememberConsent(ctx, id, "c", "openid"))
	must(t, p.RememberConsent(ctx, id, "c", "openid email"))
	if s, err = p.GetConsent(ctx, id, "c"); err != nil || s != "openid email" {
		t.Fatalf("remembered consent replaces the last one: %q %v", s, err)
	}
}
