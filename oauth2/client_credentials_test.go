package oauth2_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/oauth2/provider"
)

const reportsAudience = "https://reports.example.com"

// ccClient registers a confidential client_credentials client.
func (o *op) ccClient(t *testing.T, method string) client {
	t.Helper()
	return o.createClient(t, map[string]any{
		"client_name":                "reporting job",
		"grant_types":                []string{"client_credentials"},
		"scope":                      "reports.read reports.write",
		"audience":                   []string{reportsAudience},
		"token_endpoint_auth_method": method,
	})
}

// ccConfig is the clientcredentials configuration of c.
func (o *op) ccConfig(c client, scopes ...string) *clientcredentials.Config {
	style := oauth2.AuthStyleInParams
	if c.Method == "client_secret_basic" {
		style = oauth2.AuthStyleInHeader
	}
	return &clientcredentials.Config{
		ClientID: c.ID, ClientSecret: c.Secret, TokenURL: o.issuer + "/oauth2/token",
		Scopes: scopes, AuthStyle: style,
		EndpointParams: url.Values{"audience": {reportsAudience}},
	}
}

// jwks fetches the published key set.
func (o *op) jwks(t *testing.T) jose.JSONWebKeySet {
	t.Helper()
	r := o.srv.Public(t, http.MethodGet, "/.well-known/jwks.json", "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("jwks: %d %s", r.Status, r.Body)
	}
	var set jose.JSONWebKeySet
	r.JSON(t, &set)
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("the JWKS publishes a private key: %s", k.KeyID)
		}
	}
	return set
}

// verifyJWT verifies token against set with go-jose and returns its kid and claims.
func verifyJWT(t *testing.T, set jose.JSONWebKeySet, token string) (string, map[string]any) {
	t.Helper()
	jws, err := jose.ParseSigned(token)
	if err != nil {
		t.Fatalf("not a JWS: %v", err)
	}
	if len(jws.Signatures) != 1 {
		t.Fatalf("%d signatures", len(jws.Signatures))
	}
	h := jws.Signatures[0].Header
	if h.Algorithm != "ES256" {
		t.Fatalf("alg %q, want ES256", h.Algorithm)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not in the JWKS (%d matches)", h.KeyID, len(keys))
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("signature does not verify with the JWKS key %s: %v", h.KeyID, err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return h.KeyID, claims
}

func TestClientCredentials(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		o := startOP(t, dsn, nil)
		ctx := o.ctx()

		for _, method := range []string{"client_secret_basic", "client_secret_post"} {
			t.Run(method, func(t *testing.T) {
				c := o.ccClient(t, method)
				tok, err := o.ccConfig(c, "reports.read").Token(ctx)
				if err != nil {
					t.Fatalf("client_credentials: %v", err)
				}
				if !strings.EqualFold(tok.TokenType, "bearer") || tok.RefreshToken != "" || tok.Expiry.Before(time.Now().Add(30*time.Minute)) {
					t.Fatalf("token %+v", tok)
				}
				if _, ok := tok.Extra("id_token").(string); ok {
					t.Fatalf("an id_token for client_credentials")
				}

				// A JWT that verifies offline against the JWKS.
				_, claims := verifyJWT(t, o.jwks(t), tok.AccessToken)
				if claims["iss"] != o.issuer || claims["sub"] != c.ID {
					t.Fatalf("claims %v", claims)
				}
				if exp, _ := claims["exp"].(float64); int64(exp) <= time.Now().Unix() {
					t.Fatalf("exp %v", claims["exp"])
				}
				if aud, _ := claims["aud"].([]any); !slices.Contains(aud, any(reportsAudience)) {
					t.Fatalf("aud %v", claims["aud"])
				}
				if scp, _ := claims["scp"].([]any); !slices.Equal(scp, []any{"reports.read"}) {
					t.Fatalf("scp %v", claims["scp"])
				}

				// Introspection, authenticated as the client itself.
				in := o.introspect(t, c, tok.AccessToken, "")
				if !in.Active || in.ClientID != c.ID || in.Scope != "reports.read" || in.Sub != c.ID ||
					in.Iss != o.issuer || in.TokenType != "Bearer" || in.Exp <= time.Now().Unix() || in.Iat == 0 ||
					!slices.Contains(in.Aud, reportsAudience) || in.Jti == "" {
					t.Fatalf("introspection %+v", in)
				}

				// Both scopes, and none (no scope asked: none granted).
				tok2, err := o.ccConfig(c, "reports.read", "reports.write").Token(ctx)
				if err != nil {
					t.Fatalf("client_credentials with two scopes: %v", err)
				}
				if in := o.introspect(t, c, tok2.AccessToken, ""); in.Scope != "reports.read reports.write" {
					t.Fatalf("scope %q", in.Scope)
				}

				// Revoked by its client: inactive.
				o.revoke(t, c, tok.AccessToken, "access_token")
				if in := o.introspect(t, c, tok.AccessToken, ""); in.Active {
					t.Fatalf("revoked token introspects active: %+v", in)
				}
				if in := o.introspect(t, c, tok2.AccessToken, ""); !in.Active {
					t.Fatalf("revoking one client_credentials token ended another")
				}
			})
		}

		c := o.ccClient(t, "client_secret_basic")
		tok, err := o.ccConfig(c, "reports.read").Token(ctx)
		if err != nil {
			t.Fatal(err)
		}

		t.Run("introspection needs client authentication", func(t *testing.T) {
			v := url.Values{"token": {tok.AccessToken}}
			for name, r := range map[string]func() (int, []byte, http.Header){
				"none": func() (int, []byte, http.Header) {
					r := o.form(t, "/oauth2/introspect", v, "", "")
					return r.Status, r.Body, r.Header
				},
				"wrong secret": func() (int, []byte, http.Header) {
					r := o.form(t, "/oauth2/introspect", v, c.ID, c.Secret+"x")
					return r.Status, r.Body, r.Header
				},
				"unknown client": func() (int, []byte, http.Header) {
					r := o.form(t, "/oauth2/introspect", v, "nobody", "secret")
					return r.Status, r.Body, r.Header
				},
				// A public client proves nothing: it has no secret.
				"public client": func() (int, []byte, http.Header) {
					pub := o.codeClient(t, "none", nil)
					r := o.form(t, "/oauth2/introspect", url.Values{"token": {tok.AccessToken}, "client_id": {pub.ID}}, "", "")
					return r.Status, r.Body, r.Header
				},
				"self-service client id": func() (int, []byte, http.Header) {
					r := o.form(t, "/oauth2/introspect", url.Values{"token": {tok.AccessToken}, "client_id": {provider.ClientSelfService}}, "", "")
					return r.Status, r.Body, r.Header
				},
			} {
				status, body, _ := r()
				var e struct {
					Error  string `json:"error"`
					Active *bool  `json:"active"`
				}
				_ = json.Unmarshal(body, &e)
				if status != http.StatusUnauthorized || e.Error != "invalid_client" || e.Active != nil {
					t.Errorf("%s: %d %s, want 401 invalid_client", name, status, body)
				}
			}
			r := o.form(t, "/oauth2/introspect", url.Values{}, c.ID, c.Secret)
			oauthError(t, r, http.StatusBadRequest, "invalid_request")
		})

		t.Run("self-service tokens introspect and revoke", func(t *testing.T) {
			u := o.newUser(t, "eve@example.com")
			ts := testkit.IssueSession(t, o.srv, &testkit.Identity{ID: u.ID, Email: u.Email})
			in := o.introspect(t, c, ts.AccessToken, "")
			if !in.Active || in.ClientID != provider.ClientSelfService || in.Sub != strconv.FormatInt(u.ID, 10) || in.Username != u.Email ||
				in.TokenType != "Bearer" || in.Iss != o.issuer {
				t.Fatalf("self-service access token introspects as %+v", in)
			}
			if in := o.introspect(t, c, ts.RefreshToken, "refresh_token"); !in.Active || in.Sub != strconv.FormatInt(u.ID, 10) {
				t.Fatalf("self-service refresh token introspects as %+v", in)
			}
			// Revocable at /oauth2/revoke by its (public, first-party) client.
			o.revoke(t, client{ID: provider.ClientSelfService, Method: "none"}, ts.RefreshToken, "refresh_token")
			if in := o.introspect(t, c, ts.RefreshToken, "refresh_token"); in.Active {
				t.Fatalf("revoked self-service refresh token is active")
			}
			if in := o.introspect(t, c, ts.AccessToken, ""); in.Active {
				t.Fatalf("access token of a revoked self-service session is active")
			}
			// The user's other session is untouched.
			if in := o.introspect(t, c, u.Token, ""); !in.Active {
				t.Fatalf("revoking one session ended another")
			}
		})

		t.Run("revoking an unknown token", func(t *testing.T) {
			o.revoke(t, c, "not-a-token-we-issued", "")
			o.revoke(t, c, "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "access_token")
			o.revoke(t, c, "abc.def", "refresh_token")
			if in := o.introspect(t, c, "not-a-token-we-issued", ""); in.Active {
				t.Fatalf("garbage introspects active")
			}
			if in := o.introspect(t, c, tok.AccessToken, ""); !in.Active {
				t.Fatalf("revoking garbage ended a real token")
			}
		})
	})
}
