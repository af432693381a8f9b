package session

import (
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/x"
)

// Routes of the signed-in user's own session.
const (
	RouteMe      = "/api/v1/auth/me"
	RouteRefresh = "/api/v1/auth/refresh"
	RouteLogout  = "/api/v1/auth/logout"
)

// AccountHandler serves /me, /refresh and /logout over Account.
type AccountHandler struct{ a *Account }

// NewAccountHandler builds the handler.
func NewAccountHandler(d accountDeps) *AccountHandler { return &AccountHandler{a: NewAccount(d)} }

func (h *AccountHandler) RegisterPublicRoutes(r *x.PublicRouter) {
	t := h.a.d.Tokens()
	r.GET(RouteMe, t.RequireUser(x.Handle(h.me)))
	r.POST(RouteRefresh, x.Handle(h.refresh))
	r.POST(RouteLogout, t.RequireUser(x.Handle(h.logout)))
}

func (h *AccountHandler) me(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	prof, err := h.a.Profile(r.Context(), PrincipalFrom(r.Context()))
	return x.Reply(w, http.StatusOK, prof, err)
}

type refreshBody struct {
	RefreshToken string `json:"refreshToken"`
}

func (b *refreshBody) Validate() error {
	return x.RequiredMaxLen("refreshToken", b.RefreshToken, 512)
}

func (h *AccountHandler) refresh(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b refreshBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	ts, err := h.a.Refresh(r.Context(), b.RefreshToken)
	return x.Reply(w, http.StatusOK, ts, err)
}

type logoutBody struct {
	RefreshToken string `json:"refreshToken"`
}

func (h *AccountHandler) logout(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b logoutBody
	if err := x.DecodeJSONOptional(r, &b); err != nil {
		return err
	}
	if err := h.a.Logout(r.Context(), PrincipalFrom(r.Context()), b.RefreshToken); err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, map[string]bool{"success": true})
	return nil
}
