package oauth2

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/julienschmidt/httprouter"
	"github.com/ory/fosite"

	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

func (h *Handler) discovery(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	iss := h.issuer()
	alg := h.d.Config().Tokens.Algorithm
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Del("Pragma")
	x.WriteJSON(w, http.StatusOK, map[string]any{
		"issuer":                                        iss,
		"authorization_endpoint":                        iss + RouteOAuth2Auth,
		"token_endpoint":                                iss + RouteOAuth2Token,
		"userinfo_endpoint":                             iss + RouteUserinfo,
		"jwks_uri":                                      iss + RouteJWKS,
		"introspection_endpoint":                        iss + RouteOAuth2Introspect,
		"revocation_endpoint":                           iss + RouteOAuth2Revoke,
		"response_types_supported":                      []string{"code"},
		"response_modes_supported":                      []string{"query"},
		"grant_types_supported":                         []string{"authorization_code", "refresh_token", "client_credentials", GrantCIBA},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         []string{alg},
		"userinfo_signing_alg_values_supported":         []string{"none"},
		"scopes_supported":                              []string{"openid", "offline_access", "offline", "email", "profile"},
		"token_endpoint_auth_methods_supported":         []string{"client_secret_basic", "client_secret_post", "none"},
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":    []string{"client_secret_basic", "client_secret_post", "none"},
		"code_challenge_methods_supported":              []string{"S256"},
		"claims_supported":                              []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "email", "name"},
		"request_parameter_supported":                   false,
		"end_session_endpoint":                          iss + RouteOAuth2SessionsLogout,
		// CIBA Core §4: poll mode only, unsigned requests.
		"backchannel_authentication_endpoint":        iss + RouteOAuth2BCAuthorize,
		"backchannel_token_delivery_modes_supported": []string{"poll"},
		"backchannel_user_code_parameter_supported":  false,
	})
}

func (h *Handler) userinfo(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	p := session.PrincipalFrom(r.Context())
	if p == nil || p.IdentityID == 0 {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "The token does not belong to a user.")
		return
	}
	id, err := h.d.IdentityPersister().GetIdentity(r.Context(), p.IdentityID)
	if errors.Is(err, identity.ErrNotFound) || (err == nil && id.State != identity.StateActive) {
		// Disabling revokes the tokens too; this answers the same however they look.
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "The user no longer exists or is disabled.")
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	out := map[string]any{"sub": strconv.FormatInt(id.ID, 10)}
	scopes := fosite.Arguments(p.Scopes)
	self := provider.IsFirstPartyClient(p.ClientID)
	if self || scopes.Has("email") {
		out["email"] = id.Email
		out["email_verified"] = false
	}
	if self || scopes.Has("profile") {
		if e := id.TypedTraits().Employee; e != nil && e.Name != "" {
			out["name"] = e.Name
		}
	}
	x.WriteJSON(w, http.StatusOK, out)
}
