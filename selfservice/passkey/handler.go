package passkey

import (
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// Routes.
const (
	RoutePasskeysCheck          = "/api/v1/auth/passkeys/check"
	RoutePasskeysLoginBegin     = "/api/v1/auth/passkeys/login/begin"
	RoutePasskeysLoginFinish    = "/api/v1/auth/passkeys/login/finish"
	RoutePasskeys               = "/api/v1/auth/passkeys"
	RoutePasskeysPrompt         = "/api/v1/auth/passkeys/prompt"
	RoutePasskeysRegisterBegin  = "/api/v1/auth/passkeys/register/begin"
	RoutePasskeysRegisterFinish = "/api/v1/auth/passkeys/register/finish"
	RoutePasskey                = "/api/v1/auth/passkeys/:id"
	RouteAdminIdentityPasskeys  = "/admin/identities/:id/passkeys"
	RouteAdminIdentityPasskey   = "/admin/identities/:id/passkeys/:pid"
)

// Handler serves passkeys over HTTP; the work is the Service's.
type Handler struct {
	d serviceDeps
	s *Service
}

// NewHandler builds the handler and its service.
func NewHandler(d serviceDeps) (*Handler, error) {
	s, err := NewService(d)
	if err != nil {
		return nil, err
	}
	return &Handler{d: d, s: s}, nil
}

func (h *Handler) RegisterPublicRoutes(r *x.PublicRouter) {
	t := h.d.Tokens()
	r.POST(RoutePasskeysCheck, x.Handle(h.check))
	r.POST(RoutePasskeysLoginBegin, x.Handle(h.loginBegin))
	r.POST(RoutePasskeysLoginFinish, x.Handle(h.loginFinish))
	r.GET(RoutePasskeys, t.RequireUser(x.Handle(h.list)))
	r.PUT(RoutePasskeysPrompt, t.RequireUser(x.Handle(h.prompt)))
	r.POST(RoutePasskeysRegisterBegin, t.RequireRecentLogin(x.Handle(h.registerBegin)))
	r.POST(RoutePasskeysRegisterFinish, t.RequireRecentLogin(x.Handle(h.registerFinish)))
	r.PATCH(RoutePasskey, t.RequireUser(x.Handle(h.rename)))
	r.DELETE(RoutePasskey, t.RequireUser(x.Handle(h.remove)))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.GET(RouteAdminIdentityPasskeys, x.Handle(h.adminList))
	r.DELETE(RouteAdminIdentityPasskey, x.Handle(h.adminRemove))
	r.DELETE(RouteAdminIdentityPasskeys, x.Handle(h.adminRemoveAll))
}

// userBody reads the caller's user id and then the request body into b.
func userBody(r *http.Request, b x.Validator) (int64, error) {
	uid, err := session.UserID(r)
	if err == nil {
		err = x.DecodeJSON(r, b)
	}
	return uid, err
}

type emailBody struct {
	Email string `json:"email"`
}

func (b *emailBody) Validate() error { return x.MaxLen("email", b.Email, 320) }

func (h *Handler) check(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b emailBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	if err := x.Required("email", b.Email); err != nil {
		return err
	}
	has, err := h.s.HasPasskeys(r.Context(), b.Email)
	return x.Reply(w, http.StatusOK, map[string]bool{"hasPasskeys": has}, err)
}

// loginBegin accepts no body at all: a discoverable login.
func (h *Handler) loginBegin(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b emailBody
	if r.ContentLength != 0 {
		if err := x.DecodeJSON(r, &b); err != nil {
			return err
		}
	}
	res, err := h.s.LoginBegin(r.Context(), b.Email)
	return x.Reply(w, http.StatusOK, res, err)
}

func (h *Handler) loginFinish(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b FinishRequest
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	res, err := h.s.LoginFinish(r.Context(), &b)
	return x.Reply(w, http.StatusOK, res, err)
}

// caller loads the signed-in identity before it reads the body into b.
func (h *Handler) caller(r *http.Request, b x.Validator) (*identity.Identity, error) {
	uid, err := session.UserID(r)
	if err != nil {
		return nil, err
	}
	id, err := h.s.Caller(r.Context(), uid)
	if err != nil {
		return nil, err
	}
	return id, x.DecodeJSON(r, b)
}

func (h *Handler) registerBegin(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b NameRequest
	id, err := h.caller(r, &b)
	if err != nil {
		return err
	}
	res, err := h.s.RegisterBegin(r.Context(), id, b.Name)
	return x.Reply(w, http.StatusOK, res, err)
}

func (h *Handler) registerFinish(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b FinishRequest
	id, err := h.caller(r, &b)
	if err != nil {
		return err
	}
	c, err := h.s.RegisterFinish(r.Context(), id, &b)
	if err != nil {
		return err
	}
	return x.Reply(w, http.StatusOK, map[string]any{"success": true, "credentialId": c.CredentialID, "credential": NewView(c)}, nil)
}

type listItem struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	CreatedAt      time.Time  `json:"createdAt"`
	LastUsedAt     *time.Time `json:"lastUsedAt"`
	IsActive       bool       `json:"isActive"`
	TransportFlags []string   `json:"transportFlags"`
	CloneWarning   bool       `json:"cloneWarning"`
	BackupEligible bool       `json:"backupEligible"`
	BackupState    bool       `json:"backupState"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	vs, err := h.s.Passkeys(r.Context(), uid)
	out := make([]listItem, 0, len(vs))
	for _, v := range vs {
		out = append(out, listItem{ID: v.ID, Name: v.Name, CreatedAt: v.CreatedAt, LastUsedAt: v.LastUsedAt, IsActive: v.IsActive,
			TransportFlags: v.TransportFlags, CloneWarning: v.CloneWarning, BackupEligible: v.BackupEligible, BackupState: v.BackupState})
	}
	return x.Reply(w, http.StatusOK, map[string]any{"credentials": out}, err)
}

func (h *Handler) prompt(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b PromptRequest
	uid, err := userBody(r, &b)
	if err != nil {
		return err
	}
	return x.Reply(w, http.StatusOK, map[string]any{"success": true, "message": "Passkey prompt status updated"}, h.s.SetPrompt(r.Context(), uid, b.Status))
}

var success = map[string]bool{"success": true}

func (h *Handler) rename(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	var b NameRequest
	uid, err := userBody(r, &b)
	if err != nil {
		return err
	}
	return x.Reply(w, http.StatusOK, success, h.s.Rename(r.Context(), uid, ps.ByName("id"), b.Name))
}

func (h *Handler) remove(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	return x.Reply(w, http.StatusOK, success, h.s.Remove(r.Context(), uid, ps.ByName("id"), "user"))
}

func (h *Handler) adminList(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		return err
	}
	vs, err := h.s.AdminPasskeys(r.Context(), uid)
	return x.Reply(w, http.StatusOK, map[string]any{"credentials": vs}, err)
}

func (h *Handler) adminRemove(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		return err
	}
	return x.Reply(w, http.StatusOK, success, h.s.Remove(r.Context(), uid, ps.ByName("pid"), "admin"))
}

func (h *Handler) adminRemoveAll(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		return err
	}
	n, err := h.s.RemoveAll(r.Context(), uid)
	return x.Reply(w, http.StatusOK, map[string]int{"deleted": n}, err)
}
