package provider

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"github.com/ory/fosite"

	"github.com/pvpipe/pvauth/x"
)

// IsServerError reports whether err is fosite's server_error: a failure of pvauth, not
// of the token or the request.
func IsServerError(err error) bool {
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		return rfc.ErrorField == fosite.ErrServerError.ErrorField
	}
	return false
}

// Introspection is the RFC 7662 response.
type Introspection struct {
	Active    bool     `json:"active"`
	Aud       []string `json:"aud,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	Jti       string   `json:"jti,omitempty"`
	Nbf       int64    `json:"nbf,omitempty"`
	Scope     string   `json:"scope,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	TokenUse  string   `json:"token_use,omitempty"`
	Username  string   `json:"username,omitempty"`
	Sid       string   `json:"sid,omitempty"`
	Amr       []string `json:"amr,omitempty"`
	Did       string   `json:"did,omitempty"`
	AuthTime  int64    `json:"auth_time,omitempty"`
}

// Introspect answers for any token pvauth issued; everything else is {active:false}.
func (p *Provider) Introspect(ctx context.Context, token, hint string) (*Introspection, error) {
	use := fosite.AccessToken
	if hint == "refresh_token" {
		use = fosite.RefreshToken
	}
	if token == "" || len(token) > 4096 {
		return &Introspection{Active: false}, nil
	}
	sess := &Session{}
	gotUse, ar, err := p.IntrospectToken(ctx, token, use, sess)
	if err != nil {
		if IsServerError(err) || x.IsUnavailable(err) {
			return nil, err
		}
		return &Introspection{Active: false}, nil
	}
	s, _ := ar.GetSession().(*Session)
	if s == nil {
		return &Introspection{Active: false}, nil
	}
	out := &Introspection{
		Active:   true,
		Aud:      ar.GetGrantedAudience(),
		ClientID: ar.GetClient().GetID(),
		Iss:      p.Issuer(),
		Scope:    strings.Join(ar.GetGrantedScopes(), " "),
		Sub:      s.Subject,
		Username: s.Email,
		Sid:      ar.GetID(),
		Amr:      s.AMR,
		Did:      s.DeviceID,
	}
	if !s.AuthTime.IsZero() {
		out.AuthTime = s.AuthTime.Unix()
	}
	if gotUse == fosite.AccessToken {
		out.TokenType, out.TokenUse = "Bearer", "access_token"
		out.Exp = s.GetExpiresAt(fosite.AccessToken).Unix()
		// The JWT was verified by fosite above; read its registered claims.
		if c := jwtPayload(token); c != nil {
			out.Jti, _ = c["jti"].(string)
			out.Iat = num(c["iat"])
			out.Nbf = num(c["nbf"])
			if e := num(c["exp"]); e > 0 {
				out.Exp = e
			}
		}
	} else {
		out.TokenType, out.TokenUse = "refresh_token", "refresh_token"
		out.Exp = s.GetExpiresAt(fosite.RefreshToken).Unix()
		out.Iat = ar.GetRequestedAt().Unix()
	}
	return out, nil
}

func jwtPayload(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

func num(v any) int64 {
	switch n := v.(type) {
	case float64:
		return int64(n)
	case int64:
		return n
	case int:
		return int64(n)
	case json.Number:
		i, _ := n.Int64()
		return i
	}
	return 0
}
