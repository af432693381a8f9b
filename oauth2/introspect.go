package oauth2

import (
	"net/http"

	"github.com/julienschmidt/httprouter"
	"github.com/ory/fosite"

	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/x"
)

// Introspection (RFC 7662) and revocation (RFC 7009).

// introspect is RFC 7662 for authenticated clients; it answers for every token pvauth
// issues, self-service ones included, with the same fields as the admin endpoint.
func (h *Handler) introspect(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	if h.confidentialClient(w, r) != nil {
		h.writeIntrospection(w, r)
	}
}

// adminIntrospect is RFC 7662 for trusted callers on the admin port: a form body, and
// the bare response (not wrapped), like the public endpoint.
func (h *Handler) adminIntrospect(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	if parseForm(w, r) {
		h.writeIntrospection(w, r)
	}
}

// writeIntrospection answers for the token of the parsed form.
func (h *Handler) writeIntrospection(w http.ResponseWriter, r *http.Request) {
	token := r.PostForm.Get("token")
	if token == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The parameter 'token' is required.")
		return
	}
	res, err := h.provider().Introspect(r.Context(), token, r.PostForm.Get("token_type_hint"))
	if err != nil {
		if x.WriteOAuth2Unavailable(w, r, err) {
			return
		}
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "Introspection failed.")
		return
	}
	x.WriteJSON(w, http.StatusOK, res)
}

// parseForm parses the form body, or answers invalid_request and returns false.
func parseForm(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "The request body must be application/x-www-form-urlencoded.")
		return false
	}
	return true
}

// confidentialClient parses the form body and authenticates its client as the token
// endpoint does. Only a confidential client passes (a public one proves nothing by its
// id, and pvauth's own clients are public); otherwise it answers and returns nil.
func (h *Handler) confidentialClient(w http.ResponseWriter, r *http.Request) fosite.Client {
	if !parseForm(w, r) {
		return nil
	}
	c, err := h.provider().AuthenticateClient(r.Context(), r, r.PostForm)
	if err != nil || c.IsPublic() || provider.IsFirstPartyClient(c.GetID()) {
		if x.WriteOAuth2Unavailable(w, r, err) {
			return nil
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="pvauth"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
		return nil
	}
	return c
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	p := h.provider()
	err := p.NewRevocationRequest(ctx, r)
	if x.WriteOAuth2Unavailable(w, r, err) {
		return
	}
	p.WriteRevocationResponse(ctx, w, err)
}
