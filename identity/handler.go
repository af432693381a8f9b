package identity

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/x"
)

// Admin routes. Every route under /admin/identities/ names the identity ":id", which
// httprouter requires of all routes sharing the prefix (devices, passkeys too).
const (
	RouteAdminIdentities       = "/admin/identities"
	RouteAdminIdentity         = "/admin/identities/:id"
	RouteAdminIdentityPassword = "/admin/identities/:id/password"
	RouteAdminIdentityOTP      = "/admin/identities/:id/otp"
	RouteAdminIdentitySessions = "/admin/identities/:id/sessions"
)

// Handler serves the admin identity API: it decodes, calls the Admin service and
// encodes.
type Handler struct {
	svc *Admin
}

// NewHandler returns the admin identity handler.
func NewHandler(d adminDeps) *Handler { return &Handler{svc: NewAdmin(d)} }

// RegisterAdminRoutes registers the routes on the admin router.
func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.POST(RouteAdminIdentities, x.Handle(h.create))
	r.GET(RouteAdminIdentities, x.Handle(h.list))
	r.GET(RouteAdminIdentity, x.Handle(h.get))
	r.PATCH(RouteAdminIdentity, x.Handle(h.patch))
	r.DELETE(RouteAdminIdentity, x.Handle(onIdentity(h.svc.Delete)))
	r.PUT(RouteAdminIdentityPassword, x.Handle(h.setPassword))
	r.DELETE(RouteAdminIdentityOTP, x.Handle(onIdentity(h.svc.ResetOTP)))
	r.DELETE(RouteAdminIdentitySessions, x.Handle(h.revokeSessions))
}

// toJSON is the contract's Identity: traits {} and permissions [] when empty, times in
// UTC.
func toJSON(i *Identity) *Identity {
	out := *i
	out.CreatedAt, out.UpdatedAt = i.CreatedAt.UTC(), i.UpdatedAt.UTC()
	if len(out.Traits) == 0 || string(out.Traits) == "null" || !json.Valid(out.Traits) {
		out.Traits = json.RawMessage("{}")
	}
	if out.Permissions == nil {
		out.Permissions = []string{}
	}
	return &out
}

type listResponse struct {
	Identities    []*Identity `json:"identities"`
	NextPageToken string      `json:"nextPageToken"`
}

type successResponse struct {
	Success bool `json:"success"`
}

type revokedResponse struct {
	Revoked int `json:"revoked"`
}

type createBody struct {
	Email        string          `json:"email"`
	Password     *string         `json:"password"`
	Traits       json.RawMessage `json:"traits"`
	Permissions  []string        `json:"permissions"`
	IsSuperAdmin bool            `json:"isSuperAdmin"`
}

func (b *createBody) Validate() error { return x.Required("email", b.Email) }

type patchBody struct {
	Email        *string          `json:"email"`
	Traits       *json.RawMessage `json:"traits"`
	Permissions  *[]string        `json:"permissions"`
	IsSuperAdmin *bool            `json:"isSuperAdmin"`
	State        *string          `json:"state"`
}

type passwordBody struct {
	Password string `json:"password"`
}

func (b *passwordBody) Validate() error { return x.Required("password", b.Password) }

func (h *Handler) create(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b createBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	i, err := h.svc.Create(r.Context(), CreateParams{
		Email: b.Email, Password: b.Password, Traits: b.Traits, Permissions: b.Permissions, IsSuperAdmin: b.IsSuperAdmin,
	})
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusCreated, toJSON(i))
	return nil
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	size, err := x.PageSize(r, DefaultPageSize, MaxPageSize)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	ids, next, err := h.svc.List(r.Context(), size, q.Get("page_token"), q.Get("email"))
	if err != nil {
		return err
	}
	out := listResponse{Identities: make([]*Identity, len(ids)), NextPageToken: next}
	for k := range ids {
		out.Identities[k] = toJSON(&ids[k])
	}
	x.WriteData(w, http.StatusOK, out)
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	id, err := x.IdentityIDParam(ps)
	if err != nil {
		return err
	}
	i, err := h.svc.Get(r.Context(), id)
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, toJSON(i))
	return nil
}

func (h *Handler) patch(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	id, err := x.IdentityIDParam(ps)
	if err != nil {
		return err
	}
	var b patchBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	i, err := h.svc.Update(r.Context(), id, PatchParams{
		Email: b.Email, Traits: b.Traits, Permissions: b.Permissions, IsSuperAdmin: b.IsSuperAdmin, State: b.State,
	})
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, toJSON(i))
	return nil
}

func (h *Handler) setPassword(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	id, err := x.IdentityIDParam(ps)
	if err != nil {
		return err
	}
	var b passwordBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	if err := h.svc.SetPassword(r.Context(), id, b.Password); err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, successResponse{Success: true})
	return nil
}

// onIdentity is a handler of a bodiless change of identity :id that answers
// {"success": true}.
func onIdentity(change func(ctx context.Context, id int64) error) x.HandleFunc {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		id, err := x.IdentityIDParam(ps)
		if err != nil {
			return err
		}
		if err := change(r.Context(), id); err != nil {
			return err
		}
		x.WriteData(w, http.StatusOK, successResponse{Success: true})
		return nil
	}
}

func (h *Handler) revokeSessions(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	id, err := x.IdentityIDParam(ps)
	if err != nil {
		return err
	}
	n, err := h.svc.RevokeSessions(r.Context(), id)
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, revokedResponse{Revoked: n})
	return nil
}
