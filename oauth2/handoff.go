package oauth2

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// Handoff is the login and consent hand-off of the login UI: it shows the UI the
// authorization request waiting behind a challenge, and takes the user's login, consent
// or refusal, answering where the browser continues (the authorization endpoint with a
// verifier).
type Handoff struct {
	p      Persister
	issuer string
	hints  idTokenHints
}

// NewHandoff builds the hand-off; signer verifies id_token_hint.
func NewHandoff(p Persister, issuer string, signer *provider.Signer) *Handoff {
	return &Handoff{p: p, issuer: issuer, hints: idTokenHints{signer: signer, issuer: issuer}}
}

// LoginRequest is the authorization request behind a login challenge.
type LoginRequest struct {
	ClientID       string   `json:"clientId"`
	ClientName     string   `json:"clientName"`
	RequestedScope []string `json:"requestedScope"`
	Skip           bool     `json:"skip"`
}

// ConsentRequest is the authorization request behind a consent challenge.
type ConsentRequest struct {
	ClientID       string   `json:"clientId"`
	ClientName     string   `json:"clientName"`
	RequestedScope []string `json:"requestedScope"`
}

var errChallengeUnknown = x.ErrNotFound.Derive("The challenge is unknown, expired or already used.")

func (s *Handoff) flowByChallenge(ctx context.Context, column, challenge, state string) (*Flow, *Client, error) {
	if challenge == "" || len(challenge) > 256 {
		field := map[string]string{"login_challenge": "loginChallenge", "consent_challenge": "consentChallenge"}[column]
		return nil, nil, x.ErrBadRequest.WithMessagef("Field '%s' (or query parameter '%s') is required.", field, column)
	}
	f, err := s.p.GetFlowBy(ctx, column, x.SHA256Hex(challenge))
	if errors.Is(err, ErrFlowNotFound) {
		return nil, nil, errChallengeUnknown
	} else if err != nil {
		return nil, nil, err
	}
	if f.State != state || !time.Now().Before(f.ExpiresAt) {
		return nil, nil, errChallengeUnknown
	}
	c, err := s.p.GetOAuth2Client(ctx, f.ClientID)
	if errors.Is(err, ErrClientNotFound) {
		return nil, nil, x.ErrNotFound.WithMessage("The client of this request no longer exists.")
	} else if err != nil {
		return nil, nil, err
	}
	return f, c, nil
}

// advance moves f on from state from (see Persister.AdvanceFlow); a flow that moved
// meanwhile is an unknown challenge.
func (s *Handoff) advance(ctx context.Context, f *Flow, from string) error {
	ok, err := s.p.AdvanceFlow(ctx, f, from, time.Now())
	if err != nil {
		return err
	}
	if !ok {
		return errChallengeUnknown
	}
	return nil
}

// authorizeURL is the authorization request of f with a verifier added.
func (s *Handoff) authorizeURL(f *Flow, key, value string) string {
	q, _ := url.ParseQuery(f.RequestQuery)
	q.Set(key, value)
	return s.issuer + RouteOAuth2Auth + "?" + q.Encode()
}

// Login shows the request behind a login challenge. A browser with a live login
// session never gets here (the authorize endpoint resumes it), so the user who does
// always logs in: Skip is false.
func (s *Handoff) Login(ctx context.Context, challenge string) (*LoginRequest, error) {
	f, c, err := s.flowByChallenge(ctx, "login_challenge", challenge, FlowLogin)
	if err != nil {
		return nil, err
	}
	return &LoginRequest{ClientID: c.ID, ClientName: c.Name, RequestedScope: fields(f.RequestedScope)}, nil
}

// AcceptLogin accepts p's login for the request behind a challenge; remember asks for
// a browser login session. It returns where the browser continues.
func (s *Handoff) AcceptLogin(ctx context.Context, p *session.Principal, challenge string, remember bool) (string, error) {
	if p == nil || p.IdentityID == 0 {
		return "", session.ErrNotAUser
	}
	f, _, err := s.flowByChallenge(ctx, "login_challenge", challenge, FlowLogin)
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	// auth_time is when the user signed in, not when an old session accepted the request.
	authTime := p.AuthTime
	if authTime.IsZero() {
		authTime = now
	}
	// prompt=login, max_age and id_token_hint ask for a particular login: an older one
	// (or another user's) is sent back to sign in again.
	q, _ := url.ParseQuery(f.RequestQuery)
	pr, err := s.hints.prompt(ctx, q, f.ClientID)
	if err != nil || !pr.freshEnough(strconv.FormatInt(p.IdentityID, 10), authTime, f.CreatedAt) {
		return "", ErrFreshLoginRequired
	}
	v := newSecret()
	hv := x.SHA256Hex(v)
	amr, _ := json.Marshal(p.AMR)
	f.LoginVerifier, f.IdentityID, f.AMR, f.AuthTime, f.State = &hv, &p.IdentityID, string(amr), &authTime, FlowLoginAccepted
	f.Remember = remember
	if err := s.advance(ctx, f, FlowLogin); err != nil {
		return "", err
	}
	return s.authorizeURL(f, "login_verifier", v), nil
}

// consentFlow loads a consent flow and checks it belongs to p.
func (s *Handoff) consentFlow(ctx context.Context, p *session.Principal, challenge string) (*Flow, *Client, error) {
	f, c, err := s.flowByChallenge(ctx, "consent_challenge", challenge, FlowConsent)
	if err != nil {
		return nil, nil, err
	}
	if p == nil || f.IdentityID == nil || *f.IdentityID != p.IdentityID {
		return nil, nil, errChallengeUnknown
	}
	return f, c, nil
}

// Consent shows p the request behind a consent challenge.
func (s *Handoff) Consent(ctx context.Context, p *session.Principal, challenge string) (*ConsentRequest, error) {
	f, c, err := s.consentFlow(ctx, p, challenge)
	if err != nil {
		return nil, err
	}
	return &ConsentRequest{ClientID: c.ID, ClientName: c.Name, RequestedScope: fields(f.RequestedScope)}, nil
}

// AcceptConsent grants the scopes grant (requested ones only) of the request behind a
// challenge; remember keeps the consent for later requests of the client. It returns
// where the browser continues.
func (s *Handoff) AcceptConsent(ctx context.Context, p *session.Principal, challenge string, grant []string, remember bool) (string, error) {
	f, _, err := s.consentFlow(ctx, p, challenge)
	if err != nil {
		return "", err
	}
	if !covers(f.RequestedScope, strings.Join(grant, " ")) {
		return "", x.ErrBadRequest.WithMessage("Field 'grantScope' may only contain requested scopes.")
	}
	v := newSecret()
	hv := x.SHA256Hex(v)
	f.ConsentVerifier, f.GrantedScope, f.State = &hv, strings.Join(grant, " "), FlowConsentAccepted
	if err := s.advance(ctx, f, FlowConsent); err != nil {
		return "", err
	}
	if remember {
		if err := s.p.RememberConsent(ctx, *f.IdentityID, f.ClientID, f.GrantedScope); err != nil {
			return "", err
		}
	}
	return s.authorizeURL(f, "consent_verifier", v), nil
}

// RejectConsent refuses the request behind a challenge; the client gets access_denied.
// It returns where the browser continues.
func (s *Handoff) RejectConsent(ctx context.Context, p *session.Principal, challenge string) (string, error) {
	f, _, err := s.consentFlow(ctx, p, challenge)
	if err != nil {
		return "", err
	}
	v := newSecret()
	hv := x.SHA256Hex(v)
	f.ConsentVerifier, f.State = &hv, FlowConsentRejected
	if err := s.advance(ctx, f, FlowConsent); err != nil {
		return "", err
	}
	return s.authorizeURL(f, "consent_verifier", v), nil
}

func fields(s string) []string {
	f := strings.Fields(s)
	if f == nil {
		f = []string{}
	}
	return f
}

// covers reports whether granted includes every scope of requested.
func covers(granted, requested string) bool {
	have := map[string]bool{}
	for _, s := range strings.Fields(granted) {
		have[s] = true
	}
	for _, s := range strings.Fields(requested) {
		if !have[s] {
			return false
		}
	}
	return true
}
