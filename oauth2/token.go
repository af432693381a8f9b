package oauth2

import (
	"errors"
	"net/http"

	"github.com/julienschmidt/httprouter"
	"github.com/ory/fosite"

	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/x"
)

// tokenGrants are the grant types /oauth2/token accepts.
var tokenGrants = map[string]bool{"authorization_code": true, "refresh_token": true, "client_credentials": true, GrantCIBA: true}

func (h *Handler) token(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	p := h.provider()
	sess := &provider.Session{}
	// RFC 6749 §5.2: a grant type pvauth does not serve here (the internal self-service
	// grant included) is unsupported_grant_type, decided before any grant handler runs.
	if g := r.PostFormValue("grant_type"); g != "" && !tokenGrants[g] {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "The grant type is not supported by the token endpoint.")
		return
	}
	ar, err := p.NewAccessRequest(ctx, r, sess)
	if err != nil {
		if !x.WriteOAuth2Unavailable(w, r, err) {
			p.WriteAccessError(ctx, w, ar, err)
		}
		return
	}
	// pvauth's own first-party clients refresh through /api/v1/auth/refresh, which also
	// checks the identity and returns the file signature; they have no business here.
	// Decided on the client fosite authenticated (however its id was encoded), before
	// any token is rotated or minted.
	if provider.IsFirstPartyClient(ar.GetClient().GetID()) {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "This client cannot use the token endpoint.")
		return
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		// The client acts for itself: it is the subject, and gets the scopes and audience
		// it asked for within what it may have.
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s)
		}
		for _, a := range ar.GetRequestedAudience() {
			ar.GrantAudience(a)
		}
		s := ar.GetSession().(*provider.Session)
		s.Subject = ar.GetClient().GetID()
		s.SessionID = ar.GetID()
	}
	wctx, lost := p.Store().WatchRotation(ctx)
	resp, err := p.NewAccessResponse(wctx, ar)
	if err != nil {
		if reused, rerr := lost(ctx); rerr != nil {
			err = rerr
		} else if reused {
			// Lost a refresh rotation race: reuse, the family is revoked (provider.Store).
			err = fosite.ErrInvalidGrant.WithHint("The refresh token was already used; its session has been revoked.").WithWrap(err)
		} else if errors.Is(err, fosite.ErrSerializationFailure) || errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
			// A concurrent request spent the same authorization code first (the store's
			// conditional update lets exactly one through): for this one the code is used,
			// not a server error.
			err = fosite.ErrInvalidGrant.WithHint("The authorization code has already been used.").WithWrap(err)
		}
		if !x.WriteOAuth2Unavailable(w, r, err) {
			p.WriteAccessError(ctx, w, ar, err)
		}
		return
	}
	p.WriteAccessResponse(ctx, w, ar, resp)
}
