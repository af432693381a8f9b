// Package oauth2 makes pvauth an OAuth2 / OpenID Connect provider on fosite: client
// registry, the authorization endpoint with the login and consent hand-off, the token,
// introspection and revocation endpoints, discovery and userinfo.
package oauth2

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"
)

// Client is a registered OAuth2 client, RFC 7591 field names.
type Client struct {
	ID                      string   `json:"client_id" db:"id"`
	Name                    string   `json:"client_name" db:"client_name"`
	SecretHash              string   `json:"-" db:"secret_hash"`
	RedirectURIs            []string `json:"redirect_uris" db:"-"`
	GrantTypes              []string `json:"grant_types" db:"-"`
	ResponseTypes           []string `json:"response_types" db:"-"`
	Scope                   string   `json:"scope" db:"scope"`
	Audience                []string `json:"audience" db:"-"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method" db:"token_endpoint_auth_method"`
	SkipConsent             bool     `json:"skip_consent" db:"skip_consent"`
	// BackchannelTokenDeliveryMode is "poll" for a CIBA client (OpenID CIBA Core §4).
	BackchannelTokenDeliveryMode string `json:"backchannel_token_delivery_mode,omitempty" db:"backchannel_token_delivery_mode"`
	// PostLogoutRedirectURIs are where RP-initiated logout may send the browser.
	PostLogoutRedirectURIs []string  `json:"post_logout_redirect_uris" db:"-"`
	CreatedAt              time.Time `json:"created_at" db:"created_at"`
	UpdatedAt              time.Time `json:"updated_at" db:"updated_at"`
}

// Public reports a client without a secret (PKCE required).
func (c *Client) Public() bool { return c.TokenEndpointAuthMethod == "none" }

// Errors of the client persister.
var (
	ErrClientNotFound = errors.New("client not found")
	ErrClientExists   = errors.New("client already exists")
	ErrFlowNotFound   = errors.New("flow not found")
)

// Persister stores clients, hand-off flows and remembered consent.
type Persister interface {
	CreateClient(ctx context.Context, c *Client) error
	GetOAuth2Client(ctx context.Context, id string) (*Client, error)
	ListClients(ctx context.Context, limit int, after string) ([]Client, error)
	UpdateClient(ctx context.Context, c *Client) error
	DeleteClient(ctx context.Context, id string) error

	CreateFlow(ctx context.Context, f *Flow) error
	// GetFlowBy finds a flow by one of its hashed challenges or verifiers
	// (column: login_challenge, login_verifier, consent_challenge, consent_verifier).
	GetFlowBy(ctx context.Context, column, hash string) (*Flow, error)
	// AdvanceFlow moves a flow from state `from` to f.State, storing f's fields, with one
	// conditional update; false when the flow was not in `from` any more or expired.
	AdvanceFlow(ctx context.Context, f *Flow, from string, now time.Time) (bool, error)

	CIBAPersister
	LoginSessionPersister

	GetConsent(ctx context.Context, identityID int64, clientID string) (string, error)
	RememberConsent(ctx context.Context, identityID int64, clientID, scope string) error
}

// PersisterProvider is implemented by the registry.
type PersisterProvider interface {
	OAuth2Persister() Persister
}

// fositeClient adapts a Client to fosite, with the secret hash kept for comparison.
type fositeClient struct {
	*fosite.DefaultOpenIDConnectClient
	skipConsent bool
	name        string
}

func toFosite(c *Client) *fositeClient {
	return &fositeClient{
		DefaultOpenIDConnectClient: &fosite.DefaultOpenIDConnectClient{
			DefaultClient: &fosite.DefaultClient{
				ID:            c.ID,
				Secret:        []byte(c.SecretHash),
				RedirectURIs:  c.RedirectURIs,
				GrantTypes:    c.GrantTypes,
				ResponseTypes: c.ResponseTypes,
				Scopes:        strings.Fields(c.Scope),
				Audience:      c.Audience,
				Public:        c.Public(),
			},
			TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
		},
		skipConsent: c.SkipConsent,
		name:        c.Name,
	}
}

// ClientStore resolves OAuth2 clients for fosite. Clients are read on every token and
// introspection request, so they are kept for ClientCacheTTL; this process's own updates
// and deletes take effect at once, other replicas' within the TTL (API.md §9: 2 s).
type ClientStore struct {
	p     Persister
	mu    sync.Mutex
	cache map[string]cachedClient
}

type cachedClient struct {
	c   *fositeClient
	exp time.Time
}

// ClientCacheTTL bounds how long another replica's client change can go unseen. The
// contract allows 2 s; 1 s leaves room for the read that fills an entry (its clock
// starts before the query) and costs one small query per client per second per replica.
const ClientCacheTTL = time.Second

// NewClientStore wraps the persister.
func NewClientStore(p Persister) *ClientStore {
	return &ClientStore{p: p, cache: map[string]cachedClient{}}
}

func (s *ClientStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	now := time.Now()
	s.mu.Lock()
	if e, ok := s.cache[id]; ok && now.Before(e.exp) {
		s.mu.Unlock()
		return e.c, nil
	}
	s.mu.Unlock()
	c, err := s.p.GetOAuth2Client(ctx, id)
	if errors.Is(err, ErrClientNotFound) {
		return nil, fosite.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	fc := toFosite(c)
	s.mu.Lock()
	if len(s.cache) > 10000 {
		s.cache = map[string]cachedClient{}
	}
	s.cache[id] = cachedClient{c: fc, exp: now.Add(ClientCacheTTL)}
	s.mu.Unlock()
	return fc, nil
}

// Forget drops a client from the cache (after an update or delete).
func (s *ClientStore) Forget(id string) {
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
}

// SecretHasher hashes client secrets with HMAC-SHA256 under keys derived from
// secrets.default. The secrets are 256-bit random values made by the server, so a slow
// password hash would add cost without adding security; a keyed hash keeps a database
// leak from revealing usable secrets. Every configured key verifies (rotation).
type SecretHasher struct{ keys [][]byte }

// NewSecretHasher derives one key per system secret.
func NewSecretHasher(secrets []string) *SecretHasher {
	h := &SecretHasher{}
	for _, s := range secrets {
		m := hmac.New(sha256.New, []byte(s))
		m.Write([]byte("pvauth-oauth2-client-secret-v1"))
		h.keys = append(h.keys, m.Sum(nil))
	}
	return h
}

func (h *SecretHasher) hash(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return []byte(hex.EncodeToString(m.Sum(nil)))
}

// Hash implements fosite.Hasher with the first key.
func (h *SecretHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	return h.hash(h.keys[0], data), nil
}

// Compare implements fosite.Hasher in constant time against every key.
func (h *SecretHasher) Compare(_ context.Context, hash, data []byte) error {
	ok := 0
	for _, k := range h.keys {
		ok |= subtle.ConstantTimeCompare(hash, h.hash(k, data))
	}
	if ok != 1 || len(hash) == 0 {
		return errors.New("client secret mismatch")
	}
	return nil
}

// newSecret returns 32 random bytes (256 bits) as base64url.
func newSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Flow states.
const (
	FlowLogin           = "login"
	FlowLoginAccepted   = "login_accepted"
	FlowConsent         = "consent"
	FlowConsentAccepted = "consent_accepted"
	FlowConsentRejected = "consent_rejected"
	FlowDone            = "done"
	// FlowRevoked is a hand-off ended by a disable, a password reset or a sessions
	// delete of the identity that logged in to it.
	FlowRevoked = "revoked"
)

// Flow is one authorization request waiting for login and consent.
type Flow struct {
	ID               string     `db:"id"`
	ClientID         string     `db:"client_id"`
	RequestQuery     string     `db:"request_query"`
	RequestedScope   string     `db:"requested_scope"`
	LoginChallenge   string     `db:"login_challenge"`
	LoginVerifier    *string    `db:"login_verifier"`
	ConsentChallenge *string    `db:"consent_challenge"`
	ConsentVerifier  *string    `db:"consent_verifier"`
	IdentityID       *int64     `db:"identity_id"`
	AMR              string     `db:"amr"`
	AuthTime         *time.Time `db:"auth_time"`
	// Remember asks for a browser login session when the login is accepted;
	// LoginSessionID is the session the flow's login belongs to.
	Remember       bool      `db:"remember"`
	LoginSessionID *string   `db:"login_session_id"`
	GrantedScope   string    `db:"granted_scope"`
	State          string    `db:"state"`
	ExpiresAt      time.Time `db:"expires_at"`
	CreatedAt      time.Time `db:"created_at"`
	// BrowserHash is the SHA-256 of the binding cookie of the browser that started it.
	BrowserHash string `db:"browser_hash"`
}
