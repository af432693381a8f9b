package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// OAuth2 paths: the client admin API and the public RFC endpoints.
const (
	pathClients          = "/admin/clients"
	pathOAuth2Token      = "/oauth2/token"
	pathOAuth2Introspect = "/oauth2/introspect"
	loadScope            = "load"
)

// oauthClient is a confidential client that may use the client_credentials grant.
type oauthClient struct {
	ID, Secret string
}

// createClient creates a confidential client_credentials client with scope "load"; the
// secret is in the create answer only.
func (a *api) createClient(ctx context.Context) (*oauthClient, error) {
	status, raw, err := a.postJSON(ctx, a.admin+pathClients, a.adminKey, map[string]any{
		"client_name": "loadtest " + runID, "grant_types": []string{"client_credentials"}, "scope": loadScope,
	})
	var c struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := expectData("POST "+pathClients, http.StatusCreated, status, raw, err, &c); err != nil {
		return nil, err
	}
	if c.ID == "" || c.Secret == "" {
		return nil, fmt.Errorf("POST %s: no client_id or client_secret in %s", pathClients, snippet(raw))
	}
	return &oauthClient{ID: c.ID, Secret: c.Secret}, nil
}

// postForm posts an OAuth2 form body with client_secret_basic (RFC 6749 §2.3.1: id and
// secret form-encoded before base64).
func (a *api) postForm(ctx context.Context, target string, c *oauthClient, form url.Values) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	return a.send(req)
}

// clientCredentialsToken asks for a token; the label is "" when the answer carries a JWT.
func (a *api) clientCredentialsToken(ctx context.Context, c *oauthClient) (string, string) {
	status, raw, err := a.postForm(ctx, a.public+pathOAuth2Token, c, url.Values{"grant_type": {"client_credentials"}, "scope": {loadScope}})
	if l := statusLabel("", status, err); l != "" {
		return "", l
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if json.Unmarshal(raw, &tr) != nil || tr.AccessToken == "" {
		return "", "no access_token"
	}
	if !isJWT(tr.AccessToken) {
		return "", "not a JWT"
	}
	return tr.AccessToken, ""
}

// isJWT checks the compact JWS shape: three base64url parts, a JSON header with "alg".
func isJWT(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return false
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	return json.Unmarshal(h, &hdr) == nil && hdr.Alg != "" && hdr.Alg != "none"
}

// loadClient creates the OAuth2 client on first use; both OAuth2 scenarios share it.
func (r *runner) loadClient(ctx context.Context) (*oauthClient, error) {
	r.devMu.Lock()
	defer r.devMu.Unlock()
	if r.client != nil {
		return r.client, nil
	}
	c, err := r.api.createClient(ctx)
	if err != nil {
		return nil, err
	}
	r.client = c
	r.logf("oauth2: client %s created (grant client_credentials, scope %q, client_secret_basic)", c.ID, loadScope)
	return c, nil
}

// clientCredentials: POST /oauth2/token grant_type=client_credentials with basic auth;
// every answer must carry a JWT access token. One row = one token issued.
func (r *runner) clientCredentials(ctx context.Context) (*result, error) {
	c, err := r.loadClient(ctx)
	if err != nil {
		return nil, fmt.Errorf("client_credentials setup: %w", err)
	}
	if _, l := r.api.clientCredentialsToken(ctx, c); l != "" {
		return nil, fmt.Errorf("client_credentials setup: a first token request failed (%s)", l)
	}
	r.logf("client_credentials: POST %s grant_type=client_credentials&scope=%s", pathOAuth2Token, loadScope)
	res := runLoad(ctx, "client_credentials", r.opt.Concurrency, r.opt.Duration, func(ctx context.Context, _ int) opResult {
		t0 := time.Now()
		_, l := r.api.clientCredentialsToken(ctx, c)
		return opResult{Latency: time.Since(t0), Err: l}
	})
	res.Notes = append(res.Notes, fmt.Sprintf("client_credentials: %.1f JWT access tokens/s over %d connections",
		float64(res.OK())/res.Elapsed.Seconds(), r.opt.Concurrency))
	return res, nil
}

// oauth2Introspect: POST /oauth2/introspect (RFC 7662, client basic auth) of one
// client_credentials token; an answer without "active": true counts as an error.
func (r *runner) oauth2Introspect(ctx context.Context) (*result, error) {
	c, err := r.loadClient(ctx)
	if err != nil {
		return nil, fmt.Errorf("oauth2_introspect setup: %w", err)
	}
	tok, l := r.api.clientCredentialsToken(ctx, c)
	if l != "" {
		return nil, fmt.Errorf("oauth2_introspect setup: token request failed (%s)", l)
	}
	form := url.Values{"token": {tok}}
	if l := activeLabel(r.api.postForm(ctx, r.api.public+pathOAuth2Introspect, c, form)); l != "" {
		return nil, fmt.Errorf("oauth2_introspect setup: the client_credentials token does not introspect as active (%s)", l)
	}
	r.logf("oauth2_introspect: one client_credentials token, POST %s with client_secret_basic", pathOAuth2Introspect)
	return runLoad(ctx, "oauth2_introspect", r.opt.Concurrency, r.opt.Duration, func(ctx context.Context, _ int) opResult {
		t0 := time.Now()
		status, raw, err := r.api.postForm(ctx, r.api.public+pathOAuth2Introspect, c, form)
		lat := time.Since(t0)
		return opResult{Latency: lat, Err: activeLabel(status, raw, err)}
	}), nil
}
