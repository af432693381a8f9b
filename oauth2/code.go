package oauth2

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/ory/fosite"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// errVerifierUsed: a concurrent request ended the flow first.
var errVerifierUsed = errors.New("consent verifier already used")

// errSessionEnded: a logout ended the login session of the flow first.
var errSessionEnded = errors.New("login session ended")

// finishAuthorize ends a hand-off whose consent was given or refused: it issues the
// authorization code of the request stored at the start, or answers access_denied.
func (h *Handler) finishAuthorize(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, verifier string) {
	ctx := r.Context()
	p := h.provider()
	f, err := h.consentedFlow(ctx, ar, verifier)
	if err != nil {
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(err))
		return
	}
	from := f.State
	f.State = FlowDone
	if from == FlowConsentRejected {
		if ok, err := h.d.OAuth2Persister().AdvanceFlow(ctx, f, from, time.Now()); err != nil || !ok {
			p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The consent verifier was already used.").WithWrap(err)))
			return
		}
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The resource owner denied the request.")))
		return
	}
	id, err := h.d.IdentityPersister().GetIdentity(ctx, *f.IdentityID)
	if err != nil || id.State != identity.StateActive {
		p.WriteAuthorizeError(ctx, w, ar, authorizeError(fosite.ErrAccessDenied.WithHint("The user can no longer log in.").WithWrap(err)))
		return
	}
	for _, s := range strings.Fields(f.GrantedScope) {
		ar.GrantScope(s)
	}
	for _, a := range ar.GetRequestedAudience() {
		ar.GrantAudience(a)
	}
	resp, err := h.issueCode(ctx, ar, f, from, codeSession(ar, f, id))
	if err != nil {
		p.WriteAuthorizeError(ctx, w, ar, codeError(err))
		return
	}
	p.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// consentedFlow finds the flow of a consent verifier of this request's client, given
// or refused, and not expired.
func (h *Handler) consentedFlow(ctx context.Context, ar fosite.AuthorizeRequester, verifier string) (*Flow, error) {
	f, err := h.d.OAuth2Persister().GetFlowBy(ctx, "consent_verifier", x.SHA256Hex(verifier))
	if err != nil || f.ClientID != ar.GetClient().GetID() || !time.Now().Before(f.ExpiresAt) {
		return nil, fosite.ErrAccessDenied.WithHint("The consent verifier is invalid, used or expired.").WithWrap(err)
	}
	if f.State != FlowConsentAccepted && f.State != FlowConsentRejected {
		return nil, fosite.ErrAccessDenied.WithHint("The consent verifier is invalid, used or expired.")
	}
	return f, nil
}

// codeSession is the session of the tokens a code of flow f yields, with its ID token
// claims.
func codeSession(ar fosite.AuthorizeRequester, f *Flow, id *identity.Identity) *provider.Session {
	sess := provider.NewSession(id.ID)
	sess.Email = id.Email
	_ = json.Unmarshal([]byte(f.AMR), &sess.AMR)
	if f.AuthTime != nil {
		sess.AuthTime = *f.AuthTime
	}
	sess.SessionID = ar.GetID()
	claims := sess.IDTokenClaims()
	claims.Subject = sess.Subject
	claims.AuthTime = sess.AuthTime
	// When the request was made: prompt=login and max_age are checked against it.
	claims.RequestedAt = f.CreatedAt
	// sid names what a logout with this token as id_token_hint ends: the browser's login
	// session, or else this token family.
	if f.LoginSessionID != nil {
		claims.Add("sid", *f.LoginSessionID)
	} else {
		claims.Add("sid", ar.GetID())
	}
	claims.AuthenticationMethodsReferences = sess.AMR
	if ar.GetGrantedScopes().Has("email") {
		claims.Add("email", id.Email)
	}
	return sess
}

// issueCode ends the flow and stores its code in one transaction under the identity's
// lock (see provider.TokenPersister): a disable or revocation that came first refuses
// the code, one that comes after ends it.
func (h *Handler) issueCode(ctx context.Context, ar fosite.AuthorizeRequester, f *Flow, from string, sess *provider.Session) (fosite.AuthorizeResponder, error) {
	var (
		resp    fosite.AuthorizeResponder
		respErr error
	)
	err := h.d.Tokens().InIdentityTx(ctx, sess.IdentityID, func(ctx context.Context) error {
		ok, err := h.d.OAuth2Persister().AdvanceFlow(ctx, f, from, time.Now())
		if err != nil {
			return err
		}
		if !ok {
			return errVerifierUsed
		}
		if f.LoginSessionID != nil {
			// The tokens of this code end with the login session (logout).
			if ok, err := h.d.OAuth2Persister().AddLoginSessionFamily(ctx, *f.LoginSessionID, ar.GetID()); err != nil {
				return err
			} else if !ok {
				return errSessionEnded
			}
		}
		// A refusal of the request (say, no PKCE) still spends the verifier: single use.
		// A code issued commits with its event.
		if resp, respErr = h.provider().NewAuthorizeResponse(ctx, ar, sess); respErr != nil {
			return nil
		}
		return h.d.AuditLogger().LogTx(ctx, audit.Event{Type: "oauth2.authorize", UserID: audit.Int64(sess.IdentityID),
			Metadata: map[string]any{"clientId": f.ClientID, "scope": f.GrantedScope}})
	})
	if err == nil {
		err = respErr
	}
	return resp, err
}

// codeError is the authorization error of a code that could not be issued.
func codeError(err error) error {
	switch {
	case errors.Is(err, errSessionEnded):
		return fosite.ErrLoginRequired.WithHint("The browser's login session ended.")
	case errors.Is(err, errVerifierUsed):
		return authorizeError(fosite.ErrAccessDenied.WithHint("The consent verifier was already used."))
	case errors.Is(err, session.ErrIdentityInactive):
		return authorizeError(fosite.ErrAccessDenied.WithHint("The user can no longer log in."))
	}
	var rfc *fosite.RFC6749Error
	if !errors.As(err, &rfc) {
		err = fosite.ErrServerError.WithWrap(err)
	}
	return authorizeError(err)
}
