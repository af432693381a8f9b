package sql

import (
	"context"
	"encoding/json"
	"time"

	"github.com/pvpipe/pvauth/oauth2"
)

type clientRow struct {
	oauth2.Client
	RedirectURIs  string `db:"redirect_uris"`
	GrantTypes    string `db:"grant_types"`
	ResponseTypes string `db:"response_types"`
	Audience      string `db:"audience"`
	PostLogout    string `db:"post_logout_redirect_uris"`
}

const clientColumns = "id, client_name, secret_hash, redirect_uris, grant_types, response_types, scope, audience, token_endpoint_auth_method, skip_consent, created_at, updated_at, backchannel_token_delivery_mode, post_logout_redirect_uris"

func jsonList(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func fromJSONList(s string) []string {
	var v []string
	_ = json.Unmarshal([]byte(s), &v)
	if v == nil {
		v = []string{}
	}
	return v
}

func (r *clientRow) client() *oauth2.Client {
	c := r.Client
	c.RedirectURIs, c.GrantTypes = fromJSONList(r.RedirectURIs), fromJSONList(r.GrantTypes)
	c.ResponseTypes, c.Audience = fromJSONList(r.ResponseTypes), fromJSONList(r.Audience)
	c.PostLogoutRedirectURIs = fromJSONList(r.PostLogout)
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return &c
}

func (p *Persister) CreateClient(ctx context.Context, c *oauth2.Client) error {
	c.CreatedAt, c.UpdatedAt = now(), now()
	err := p.insertRow(ctx, "oauth2_clients", clientColumns, c.ID, c.Name, c.SecretHash, jsonList(c.RedirectURIs), jsonList(c.GrantTypes), jsonList(c.ResponseTypes), c.Scope,
		jsonList(c.Audience), c.TokenEndpointAuthMethod, c.SkipConsent, c.CreatedAt, c.UpdatedAt, c.BackchannelTokenDeliveryMode, jsonList(c.PostLogoutRedirectURIs))
	if IsUniqueViolation(err) {
		return oauth2.ErrClientExists
	}
	return err
}

func (p *Persister) GetOAuth2Client(ctx context.Context, id string) (*oauth2.Client, error) {
	r, err := getRow(p.Connection(ctx), oauth2.ErrClientNotFound, func(*clientRow) {}, "SELECT "+clientColumns+" FROM oauth2_clients WHERE id = ?", id)
	if err != nil {
		return nil, err
	}
	return r.client(), nil
}

func (p *Persister) ListClients(ctx context.Context, limit int, after string) ([]oauth2.Client, error) {
	var rows []clientRow
	if err := p.Connection(ctx).RawQuery("SELECT "+clientColumns+" FROM oauth2_clients WHERE id > ? ORDER BY id LIMIT ?", after, limit).All(&rows); err != nil {
		return nil, err
	}
	out := make([]oauth2.Client, 0, len(rows))
	for i := range rows {
		out = append(out, *rows[i].client())
	}
	return out, nil
}

func (p *Persister) UpdateClient(ctx context.Context, c *oauth2.Client) error {
	c.UpdatedAt = now()
	n, err := p.Connection(ctx).RawQuery("UPDATE oauth2_clients SET client_name = ?, secret_hash = ?, redirect_uris = ?, grant_types = ?, response_types = ?, scope = ?, audience = ?, token_endpoint_auth_method = ?, skip_consent = ?, backchannel_token_delivery_mode = ?, post_logout_redirect_uris = ?, updated_at = ? WHERE id = ?",
		c.Name, c.SecretHash, jsonList(c.RedirectURIs), jsonList(c.GrantTypes), jsonList(c.ResponseTypes), c.Scope,
		jsonList(c.Audience), c.TokenEndpointAuthMethod, c.SkipConsent, c.BackchannelTokenDeliveryMode, jsonList(c.PostLogoutRedirectURIs), c.UpdatedAt, c.ID).ExecWithCount()
	if err != nil {
		return err
	}
	if n == 0 {
		return oauth2.ErrClientNotFound
	}
	return nil
}

func (p *Persister) DeleteClient(ctx context.Context, id string) error {
	return p.Transaction(ctx, func(ctx context.Context) error {
		c := p.Connection(ctx)
		n, err := c.RawQuery("DELETE FROM oauth2_clients WHERE id = ?", id).ExecWithCount()
		if err != nil {
			return err
		}
		if n == 0 {
			return oauth2.ErrClientNotFound
		}
		// Tokens of a deleted client must stop working at once.
		for _, t := range []string{"oauth2_access", "oauth2_refresh", "oauth2_code"} {
			if err := c.RawQuery("UPDATE "+t+" SET active = ? WHERE client_id = ?", false, id).Exec(); err != nil {
				return err
			}
		}
		return c.RawQuery("DELETE FROM oauth2_flows WHERE client_id = ?", id).Exec()
	})
}

const flowColumns = "id, client_id, request_query, requested_scope, login_challenge, login_verifier, consent_challenge, consent_verifier, identity_id, amr, auth_time, granted_scope, state, expires_at, created_at, browser_hash, remember, login_session_id"

func (p *Persister) CreateFlow(ctx context.Context, f *oauth2.Flow) error {
	f.CreatedAt, f.ExpiresAt = now(), dbExpiry(f.ExpiresAt)
	return p.insertRow(ctx, "oauth2_flows", flowColumns, f.ID, f.ClientID, f.RequestQuery, f.RequestedScope, f.LoginChallenge, f.LoginVerifier, f.ConsentChallenge, f.ConsentVerifier,
		f.IdentityID, f.AMR, f.AuthTime, f.GrantedScope, f.State, f.ExpiresAt, f.CreatedAt, f.BrowserHash, f.Remember, f.LoginSessionID)
}

var flowLookupColumns = map[string]bool{"login_challenge": true, "login_verifier": true, "consent_challenge": true, "consent_verifier": true}

func (p *Persister) GetFlowBy(ctx context.Context, column, hash string) (*oauth2.Flow, error) {
	if !flowLookupColumns[column] {
		return nil, oauth2.ErrFlowNotFound
	}
	return getRow(p.Connection(ctx), oauth2.ErrFlowNotFound, func(f *oauth2.Flow) {
		f.ExpiresAt, f.CreatedAt, f.AuthTime = f.ExpiresAt.UTC(), f.CreatedAt.UTC(), utcPtr(f.AuthTime)
	}, "SELECT "+flowColumns+" FROM oauth2_flows WHERE "+column+" = ?", hash)
}

func (p *Persister) AdvanceFlow(ctx context.Context, f *oauth2.Flow, from string, at time.Time) (bool, error) {
	n, err := p.Connection(ctx).RawQuery("UPDATE oauth2_flows SET login_verifier = ?, consent_challenge = ?, consent_verifier = ?, identity_id = ?, amr = ?, auth_time = ?, granted_scope = ?, state = ?, remember = ?, login_session_id = ? WHERE id = ? AND state = ? AND expires_at > ?",
		f.LoginVerifier, f.ConsentChallenge, f.ConsentVerifier, f.IdentityID, f.AMR, dbTimePtr(f.AuthTime), f.GrantedScope, f.State, f.Remember, f.LoginSessionID, f.ID, from, dbTime(at)).ExecWithCount()
	return n == 1, err
}

func (p *Persister) GetConsent(ctx context.Context, identityID int64, clientID string) (string, error) {
	var s string
	err := p.Connection(ctx).RawQuery("SELECT granted_scope FROM oauth2_consents WHERE identity_id = ? AND client_id = ?", identityID, clientID).First(&s)
	if IsNotFound(err) {
		return "", nil
	}
	return s, err
}

func (p *Persister) RememberConsent(ctx context.Context, identityID int64, clientID, scope string) error {
	return p.Transaction(ctx, func(ctx context.Context) error {
		c := p.Connection(ctx)
		if err := c.RawQuery("DELETE FROM oauth2_consents WHERE identity_id = ? AND client_id = ?", identityID, clientID).Exec(); err != nil {
			return err
		}
		return c.RawQuery("INSERT INTO oauth2_consents (identity_id, client_id, granted_scope, created_at) VALUES (?, ?, ?, ?)", identityID, clientID, scope, now()).Exec()
	})
}

// CIBA requests (oauth2.CIBAPersister).

const cibaColumns = "id, confirmation_id, client_id, identity_id, scope, poll_interval, last_polled_at, expires_at, created_at"

func (p *Persister) GetCIBARequest(ctx context.Context, id string) (*oauth2.CIBARequest, error) {
	return getRow(p.Connection(ctx), oauth2.ErrCIBARequestNotFound, func(r *oauth2.CIBARequest) {
		r.ExpiresAt, r.CreatedAt, r.LastPolledAt = r.ExpiresAt.UTC(), r.CreatedAt.UTC(), utcPtr(r.LastPolledAt)
	}, "SELECT "+cibaColumns+" FROM oauth2_ciba_requests WHERE id = ?", id)
}

func (p *Persister) CreateCIBARequest(ctx context.Context, r *oauth2.CIBARequest) error {
	r.CreatedAt, r.ExpiresAt = now(), dbExpiry(r.ExpiresAt)
	return p.insertRow(ctx, "oauth2_ciba_requests", cibaColumns, r.ID, r.ConfirmationID, r.ClientID, r.IdentityID, r.Scope, r.Interval, r.LastPolledAt, r.ExpiresAt, r.CreatedAt)
}

func (p *Persister) MarkCIBAPolled(ctx context.Context, id string, at time.Time) (bool, error) {
	t := dbTime(at)
	// The interval is whole seconds; the previous poll must be at least that long ago.
	n, err := p.Connection(ctx).RawQuery("UPDATE oauth2_ciba_requests SET last_polled_at = ? WHERE id = ? AND (last_polled_at IS NULL OR last_polled_at <= ?)",
		t, id, t.Add(-oauth2.CIBAInterval)).ExecWithCount()
	return n == 1, err
}
