package provider

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
)

// Authentication methods (the amr claim). A session signed in with AMRWebAuthn keeps
// its passkey on its token rows (see WithPasskey).
const (
	AMRPassword = "pwd"
	AMROTP      = "otp"
	AMRHardware = "hwk"
	AMRWebAuthn = "webauthn"
)

// Session is the fosite session stored with every token of a family. Its fields become
// the access token's claims.
type Session struct {
	Subject    string   `json:"sub"`
	IdentityID int64    `json:"identity_id,omitempty"`
	Email      string   `json:"email,omitempty"`
	AMR        []string `json:"amr,omitempty"`
	// SessionID is the family id: the fosite request id, stable across rotations.
	SessionID  string                         `json:"sid,omitempty"`
	DeviceID   string                         `json:"did,omitempty"`
	RememberMe bool                           `json:"remember_me,omitempty"`
	AuthTime   time.Time                      `json:"auth_time,omitempty"`
	Extra      map[string]any                 `json:"extra,omitempty"`
	ExpiresAt  map[fosite.TokenType]time.Time `json:"expires_at,omitempty"`

	// IDToken and IDHeaders are the OpenID Connect ID token claims; fosite edits them in
	// place, so the same pointers are returned every time.
	IDToken   *jwt.IDTokenClaims `json:"id_token,omitempty"`
	IDHeaders *jwt.Headers       `json:"id_token_headers,omitempty"`
}

var (
	_ fosite.Session = (*Session)(nil)
	_ openid.Session = (*Session)(nil)
)

// IDTokenClaims returns the ID token claims (fosite's openid.Session).
func (s *Session) IDTokenClaims() *jwt.IDTokenClaims {
	if s.IDToken == nil {
		s.IDToken = &jwt.IDTokenClaims{Subject: s.Subject, AuthTime: s.AuthTime}
	}
	return s.IDToken
}

// IDTokenHeaders returns the ID token headers (fosite's openid.Session).
func (s *Session) IDTokenHeaders() *jwt.Headers {
	if s.IDHeaders == nil {
		s.IDHeaders = &jwt.Headers{}
	}
	return s.IDHeaders
}

// NewSession returns the session of an identity.
func NewSession(identityID int64) *Session {
	return &Session{Subject: strconv.FormatInt(identityID, 10), IdentityID: identityID}
}

// GetJWTClaims builds fresh claims for each token: a new jti, iat and nbf every time.
func (s *Session) GetJWTClaims() jwt.JWTClaimsContainer {
	extra := make(map[string]any, len(s.Extra)+4)
	for k, v := range s.Extra {
		extra[k] = v
	}
	if s.SessionID != "" {
		extra["sid"] = s.SessionID
	}
	if len(s.AMR) > 0 {
		extra["amr"] = s.AMR
	}
	if s.Email != "" {
		extra["email"] = s.Email
	}
	if s.DeviceID != "" {
		extra["did"] = s.DeviceID
	}
	if !s.AuthTime.IsZero() {
		// The login that started the session: a refresh keeps it, so step-up checks
		// (and relying parties) can tell a recent login from a long-lived session.
		extra["auth_time"] = s.AuthTime.Unix()
	}
	return &jwt.JWTClaims{
		Subject:   s.Subject,
		NotBefore: time.Now().UTC().Truncate(time.Second),
		Extra:     extra,
	}
}

// GetJWTHeader returns the extra JWT headers (the signer adds kid and alg).
func (s *Session) GetJWTHeader() *jwt.Headers {
	return &jwt.Headers{Extra: map[string]any{"typ": "JWT"}}
}

func (s *Session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if s.ExpiresAt == nil {
		s.ExpiresAt = make(map[fosite.TokenType]time.Time)
	}
	s.ExpiresAt[key] = exp
}

func (s *Session) GetExpiresAt(key fosite.TokenType) time.Time {
	if s.ExpiresAt == nil {
		return time.Time{}
	}
	return s.ExpiresAt[key]
}

func (s *Session) GetUsername() string {
	if s == nil {
		return ""
	}
	return s.Email
}

func (s *Session) GetSubject() string {
	if s == nil {
		return ""
	}
	return s.Subject
}

func (s *Session) SetSubject(subject string) { s.Subject = subject }

// Clone deep-copies the session through JSON (the form it is stored in anyway).
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	raw, _ := json.Marshal(s)
	var c Session
	_ = json.Unmarshal(raw, &c)
	return &c
}
