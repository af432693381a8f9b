package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/x"
)

// Admin routes. Every route under /admin/identities/ names the identity ":id", which
// httprouter requires of all routes sharing the prefix (devices, passkeys too).
const (
	RouteAdminIdentities = "/admin/identities"
	RouteAdminIdentity   = "/admin/identities/:id"
	RouteAdminPassword   = "/admin/identities/:id/password"
	RouteAdminOTP        = "/admin/identities/:id/otp"
	RouteAdminSessions   = "/admin/identities/:id/sessions"
)

// Listing page sizes.
const (
	DefaultPageSize = 100
	MaxPageSize     = 500
)

// SessionRevoker ends every session (all access and refresh tokens) of an identity.
type SessionRevoker interface {
	RevokeIdentitySessions(ctx context.Context, identityID int64) (int, error)
}

// SessionRevokerProvider is implemented by the registry.
type SessionRevokerProvider interface {
	SessionRevoker() SessionRevoker
}

type handlerDeps interface {
	ManagerProvider
	PersisterProvider
	audit.LoggerProvider
	SessionRevokerProvider
}

// Handler serves the admin identity API.
type Handler struct {
	d handlerDeps
}

// NewHandler returns the admin identity handler.
func NewHandler(d handlerDeps) *Handler { return &Handler{d: d} }

// RegisterAdminRoutes registers the routes on the admin router.
func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.POST(RouteAdminIdentities, h.create)
	r.GET(RouteAdminIdentities, h.list)
	r.GET(RouteAdminIdentity, h.get)
	r.PATCH(RouteAdminIdentity, h.patch)
	r.DELETE(RouteAdminIdentity, h.delete)
	r.PUT(RouteAdminPassword, h.setPassword)
	r.DELETE(RouteAdminOTP, h.resetOTP)
	r.DELETE(RouteAdminSessions, h.revokeSessions)
}

// identityJSON is the contract's Identity: traits {} and permissions [] when empty.
type identityJSON struct {
	ID           int64           `json:"id"`
	Email        string          `json:"email"`
	Traits       json.RawMessage `json:"traits"`
	Permissions  []string        `json:"permissions"`
	IsSuperAdmin bool            `json:"isSuperAdmin"`
	MFAEnabled   bool            `json:"mfaEnabled"`
	State        string          `json:"state"`
	CreatedAt    time.Time       `json:"createdAt"`
	UpdatedAt    time.Time       `json:"updatedAt"`
}

func toJSON(i *Identity) identityJSON {
	out := identityJSON{
		ID: i.ID, Email: i.Email, Traits: i.Traits, Permissions: i.Permissions,
		IsSuperAdmin: i.IsSuperAdmin, MFAEnabled: i.MFAEnabled, State: i.State,
		CreatedAt: i.CreatedAt.UTC(), UpdatedAt: i.UpdatedAt.UTC(),
	}
	if len(out.Traits) == 0 || string(out.Traits) == "null" || !json.Valid(out.Traits) {
		out.Traits = json.RawMessage("{}")
	}
	if out.Permissions == nil {
		out.Permissions = []string{}
	}
	return out
}

type listResponse struct {
	Identities    []identityJSON `json:"identities"`
	NextPageToken string         `json:"nextPageToken"`
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

// idParam reads the :id path parameter: a positive integer, else a 400 naming id.
// Page tokens are opaque to clients: unpadded URL-safe base64 of the last id served.
func encodePageToken(lastID int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(lastID, 10)))
}

func decodePageToken(tok string) (int64, error) {
	bad := x.ErrBadRequest.WithMessage("Query parameter 'page_token' is invalid.")
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, bad
	}
	id, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || id <= 0 {
		return 0, bad
	}
	return id, nil
}

// auditTx writes the event of an admin change in the transaction that makes it.
func (h *Handler) auditTx(ctx context.Context, typ string, id int64, md map[string]any) error {
	return h.d.AuditLogger().LogTx(ctx, audit.Event{Type: typ, UserID: audit.Int64(id), Result: audit.ResultSuccess, Metadata: md})
}

func (h *Handler) revoker() (SessionRevoker, error) {
	r := h.d.SessionRevoker()
	if r == nil {
		return nil, x.ErrInternal.WithCause(errors.New("identity: no session revoker configured"))
	}
	return r, nil
}

func (h *Handler) revokeSessions(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	id, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if _, err := h.d.IdentityManager().Get(r.Context(), id); err != nil {
		x.WriteError(w, r, err)
		return
	}
	var n int
	err = h.d.IdentityPersister().Transaction(r.Context(), func(ctx context.Context) (err error) {
		if n, err = h.revokeAll(ctx, id); err != nil {
			return err
		}
		return h.auditTx(ctx, audit.TypeIdentitySessions, id, map[string]any{"revoked": n})
	})
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, revokedResponse{Revoked: n})
}

func (h *Handler) revokeAll(ctx context.Context, id int64) (int, error) {
	rv, err := h.revoker()
	if err != nil {
		return 0, err
	}
	n, err := rv.RevokeIdentitySessions(ctx, id)
	if err != nil {
		return 0, x.AsError(err)
	}
	return n, nil
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var b createBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	i, err := h.d.IdentityManager().Create(r.Context(), CreateParams{
		Email: b.Email, Password: b.Password, Traits: b.Traits, Permissions: b.Permissions, IsSuperAdmin: b.IsSuperAdmin,
		InTx: func(ctx context.Context, i *Identity) error {
			return h.auditTx(ctx, audit.TypeIdentityCreate, i.ID, map[string]any{
				"email": i.Email, "isSuperAdmin": i.IsSuperAdmin, "permissions": i.Permissions, "password": b.Password != nil,
			})
		},
	})
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusCreated, toJSON(i))
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	size, err := x.PageSize(r, DefaultPageSize, MaxPageSize)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	q := r.URL.Query()
	var after int64
	if tok := q.Get("page_token"); tok != "" {
		if after, err = decodePageToken(tok); err != nil {
			x.WriteError(w, r, err)
			return
		}
	}
	ids, err := h.d.IdentityPersister().ListIdentities(r.Context(), ListParams{
		PageSize: size + 1, AfterID: after, Email: NormalizeEmail(q.Get("email")),
	})
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	out := listResponse{Identities: make([]identityJSON, 0, min(len(ids), size))}
	for k := range ids {
		if k == size {
			out.NextPageToken = encodePageToken(ids[k-1].ID)
			break
		}
		out.Identities = append(out.Identities, toJSON(&ids[k]))
	}
	x.WriteData(w, http.StatusOK, out)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	id, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	i, err := h.d.IdentityManager().Get(r.Context(), id)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, toJSON(i))
}

func (h *Handler) patch(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	id, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b patchBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	m := h.d.IdentityManager()
	pp := PatchParams{Email: b.Email, Traits: b.Traits, Permissions: b.Permissions, IsSuperAdmin: b.IsSuperAdmin, State: b.State}
	// Disabling ends everything of the identity in the transaction that disables it:
	// when this answers, nothing of it works (re-disabling ends anything left). The
	// event commits there too.
	disable := b.State != nil && *b.State == StateDisabled
	pp.InTx = func(ctx context.Context, _ *Identity) error {
		md := map[string]any{"fields": patchedFields(pp)}
		if disable {
			revoked, err := h.revokeAll(ctx, id)
			if err != nil {
				return err
			}
			md["sessionsRevoked"] = revoked
		}
		return h.auditTx(ctx, audit.TypeIdentityUpdate, id, md)
	}
	i, err := m.Update(r.Context(), id, pp)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, toJSON(i))
}

func patchedFields(pp PatchParams) []string {
	var f []string
	if pp.Email != nil {
		f = append(f, "email")
	}
	if pp.Traits != nil {
		f = append(f, "traits")
	}
	if pp.Permissions != nil {
		f = append(f, "permissions")
	}
	if pp.IsSuperAdmin != nil {
		f = append(f, "isSuperAdmin")
	}
	if pp.State != nil {
		f = append(f, "state")
	}
	return f
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	id, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	m := h.d.IdentityManager()
	if _, err := m.Get(r.Context(), id); err != nil {
		x.WriteError(w, r, err)
		return
	}
	// Tokens reference the identity by subject only: end them before the identity goes,
	// in one transaction with the deletion and its event.
	err = h.d.IdentityPersister().Transaction(r.Context(), func(ctx context.Context) error {
		n, err := h.revokeAll(ctx, id)
		if err != nil {
			return err
		}
		if err := m.Delete(ctx, id); err != nil {
			return err
		}
		return h.auditTx(ctx, audit.TypeIdentityDelete, id, map[string]any{"sessionsRevoked": n})
	})
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, successResponse{Success: true})
}

func (h *Handler) setPassword(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	id, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b passwordBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	// A password reset must log out sessions an attacker may hold: in the transaction
	// that changes the password, so neither happens without the other.
	if err := h.d.IdentityManager().SetPassword(r.Context(), id, b.Password, func(ctx context.Context) error {
		n, err := h.revokeAll(ctx, id)
		if err != nil {
			return err
		}
		return h.auditTx(ctx, audit.TypeIdentityPassword, id, map[string]any{"sessionsRevoked": n})
	}); err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, successResponse{Success: true})
}

func (h *Handler) resetOTP(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	id, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	err = h.d.IdentityPersister().Transaction(r.Context(), func(ctx context.Context) error {
		if err := h.d.IdentityManager().ResetTOTP(ctx, id); err != nil {
			return err
		}
		return h.auditTx(ctx, audit.TypeIdentityOTPReset, id, nil)
	})
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, successResponse{Success: true})
}
