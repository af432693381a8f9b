package sql

import (
	"context"
	"encoding/json"
	"time"

	"github.com/pvpipe/pvauth/oauth2"
)

var _ oauth2.Persister = (*Persister)(nil)

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
	err := p.Connection(ctx).RawQuery("INSERT INTO oauth2_clients ("+clientColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		c.ID, c.Name, c.SecretHash, jsonList(c.RedirectURIs), jsonList(c.GrantTypes), jsonList(c.ResponseTypes), c.Scope,
		jsonList(c.Audience), c.TokenEndpointAuthMethod, c.SkipConsent, c.CreatedAt, c.UpdatedAt, c.BackchannelTokenDeliveryMode, jsonList(c.PostLogoutRedirectURIs)).Exec()
	if IsUniqueViolation(err) {
		return oauth2.ErrClientExists
	}
	return err
}

func (p *Persister) GetOAuth2Client(ctx context.Context, id string) (*oauth2.Client, error) {
	var r clientRow
	err := p.Connection(ctx).RawQuery("SELECT "+clientColumns+" FROM oauth2_clients WHERE id = ?", id).First(&r)
	if IsNotFound(err) {
		return nil, oauth2.ErrClientNotFound
	}
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
	f.CreatedAt = now()
	f.ExpiresAt = dbExpiry(f.ExpiresAt)
	return p.Connection(ctx).RawQuery("INSERT INTO oauth2_flows ("+flowColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		f.ID, f.ClientID, f.RequestQuery, f.RequestedScope, f.LoginChallenge, f.LoginVerifier, f.ConsentChallenge, f.ConsentVerifier,
		f.IdentityID, f.AMR, f.AuthTime, f.GrantedScope, f.State, f.ExpiresAt, f.CreatedAt, f.BrowserHash, f.Remember, f.LoginSessionID).Exec()
}

var flowLookupColumns = map[string]bool{"login_challenge": true, "login_verifier": true, "consent_challenge": true, "consent_verifier": true}

func (p *Persister) GetFlowBy(ctx context.Context, column, hash string) (*oauth2.Flow, error) {
	if !flowLookupColumns[column] {
		return nil, oauth2.ErrFlowNotFound
	}
	var f oauth2.Flow
	err := p.Connection(ctx).RawQuery("SELECT "+flowColumns+" FROM oauth2_flows WHERE "+column+" = ?", hash).First(&f)
	if IsNotFound(err) {
		return nil, oauth2.ErrFlowNotFound
	}
	if err != nil {
		return nil, err
	}
	f.ExpiresAt, f.CreatedAt = f.ExpiresAt.UTC(), f.CreatedAt.UTC()
	if f.AuthTime != nil {
		t := f.AuthTime.UTC()
		f.AuthTime = &t
	}
	return &f, nil
}

func (p *Persister) AdvanceFlow(ctx context.Context, f *oauth2.Flow, from string, at time.Time) (bool, error) {
	var auth *time.Time
	if f.AuthTime != nil {
		t := dbTime(*f.AuthTime)
		auth = &t
	}
	n, err := p.Connection(ctx).RawQuery("UPDATE oauth2_flows SET login_verifier = ?, consent_challenge = ?, consent_verifier = ?, identity_id = ?, amr = ?, auth_time = ?, granted_scope = ?, state = ?, remember = ?, login_session_id = ? WHERE id = ? AND state = ? AND expires_at > ?",
		f.LoginVerifier, f.ConsentChallenge, f.ConsentVerifier, f.IdentityID, f.AMR, auth, f.GrantedScope, f.State, f.Remember, f.LoginSessionID, f.ID, from, dbTime(at)).ExecWithCount()
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
