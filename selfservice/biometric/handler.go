package biometric

import (
	"context"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// Routes.
const (
	RouteDevicesRegisterChallenge = "/api/v1/auth/devices/register/challenge"
	RouteDevicesRegisterVerify    = "/api/v1/auth/devices/register/verify"
	RouteDevices                  = "/api/v1/auth/devices"
	RouteDevice                   = "/api/v1/auth/devices/:deviceId"
	RouteDevicesFCMToken          = "/api/v1/auth/devices/fcm-token"
	RouteMobileChallenge          = "/api/v1/auth/mobile/challenge"
	RouteMobileBiometric          = "/api/v1/auth/mobile/biometric"
	RouteMobileRefresh            = "/api/v1/auth/mobile/refresh"
	RouteMobileKeygen             = "/api/v1/auth/mobile/keygen"
	RouteAdminIdentityDevices     = "/admin/identities/:id/devices"
	RouteAdminIdentityDevice      = "/admin/identities/:id/devices/:deviceId"
)

// Handler serves device keys and mobile login over HTTP; the work is the Service's.
type Handler struct {
	d serviceDeps
	s *Service
}

// NewHandler builds the handler.
func NewHandler(d serviceDeps) *Handler { return &Handler{d: d, s: NewService(d)} }

func (h *Handler) RegisterPublicRoutes(r *x.PublicRouter) {
	t, s := h.d.Tokens(), h.s
	r.POST(RouteDevicesRegisterChallenge, t.RequireRecentLogin(x.Handle(userJSON(s.RegisterChallenge))))
	r.POST(RouteDevicesRegisterVerify, t.RequireRecentLogin(x.Handle(userJSON(s.RegisterVerify))))
	r.GET(RouteDevices, t.RequireUser(x.Handle(h.listDevices)))
	r.DELETE(RouteDevice, t.RequireUser(x.Handle(h.deleteDevice)))
	r.PUT(RouteDevicesFCMToken, t.RequireUser(x.Handle(userJSON(h.updateFCMToken))))
	r.POST(RouteMobileChallenge, x.Handle(publicJSON(s.LoginChallenge)))
	r.POST(RouteMobileBiometric, x.Handle(publicJSON(s.Login)))
	r.POST(RouteMobileRefresh, x.Handle(publicJSON(h.mobileRefresh)))
	r.POST(RouteMobileKeygen, t.RequireRecentLogin(x.Handle(h.keygen)))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.GET(RouteAdminIdentityDevices, x.Handle(admin(h.adminListDevices)))
	r.DELETE(RouteAdminIdentityDevice, x.Handle(admin(h.adminDeleteDevice)))
	r.DELETE(RouteAdminIdentityDevices, x.Handle(admin(h.adminDeleteDevices)))
}

// body is a request body type B whose pointer validates itself.
type body[B any] interface {
	*B
	x.Validator
}

// publicJSON serves fn with the request's body, and its result as the data of a 200.
func publicJSON[B any, P body[B], R any](fn func(context.Context, P) (R, error)) x.HandleFunc {
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		b := P(new(B))
		if err := x.DecodeJSON(r, b); err != nil {
			return err
		}
		res, err := fn(r.Context(), b)
		return x.Reply(w, http.StatusOK, res, err)
	}
}

// userJSON serves fn with the signed-in user's id and the request's body (read in that
// order), and its result as the data of a 200.
func userJSON[B any, P body[B], R any](fn func(context.Context, int64, P) (R, error)) x.HandleFunc {
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		uid, err := session.UserID(r)
		if err != nil {
			return err
		}
		b := P(new(B))
		if err := x.DecodeJSON(r, b); err != nil {
			return err
		}
		res, err := fn(r.Context(), uid, b)
		return x.Reply(w, http.StatusOK, res, err)
	}
}

// admin serves fn with the identity of the path's :id, and its result as the data of
// a 200.
func admin[R any](fn func(ctx context.Context, uid int64, ps httprouter.Params) (R, error)) x.HandleFunc {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		uid, err := x.IdentityIDParam(ps)
		if err != nil {
			return err
		}
		res, err := fn(r.Context(), uid, ps)
		return x.Reply(w, http.StatusOK, res, err)
	}
}

func (h *Handler) listDevices(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	ds, err := h.s.Devices(r.Context(), uid)
	return x.Reply(w, http.StatusOK, map[string]any{"devices": ds}, err)
}

var deviceDeleted = map[string]any{"success": true, "message": "Device deleted successfully"}

func (h *Handler) deleteDevice(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	return x.Reply(w, http.StatusOK, deviceDeleted, h.s.RemoveDevice(r.Context(), uid, ps.ByName("deviceId"), "user"))
}

func (h *Handler) updateFCMToken(ctx context.Context, uid int64, b *FCMTokenRequest) (map[string]any, error) {
	return map[string]any{"success": true, "message": "FCM token updated successfully"}, h.s.UpdateFCMToken(ctx, uid, b)
}

type refreshBody struct {
	RefreshToken string `json:"refreshToken"`
}

func (b *refreshBody) Validate() error {
	return x.RequiredMaxLen("refreshToken", b.RefreshToken, 512)
}

// mobileRefreshResult carries the token set nested (OpenAPI seed) and flat (biometric
// guide's tests) so clients of either work.
type mobileRefreshResult struct {
	Success bool              `json:"success"`
	Tokens  *session.TokenSet `json:"tokens"`
	*session.TokenSet
}

func (h *Handler) mobileRefresh(ctx context.Context, b *refreshBody) (mobileRefreshResult, error) {
	ts, err := session.RefreshTokens(ctx, h.d, b.RefreshToken)
	return mobileRefreshResult{Success: true, Tokens: ts, TokenSet: ts}, err
}

// keygen refuses before reading the body when keygen is disabled.
func (h *Handler) keygen(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	if err := h.s.KeygenAllowed(); err != nil {
		return err
	}
	var b KeygenRequest
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	res, err := h.s.Keygen(r.Context(), uid, &b)
	return x.Reply(w, http.StatusOK, res, err)
}

func (h *Handler) adminListDevices(ctx context.Context, uid int64, _ httprouter.Params) (map[string]any, error) {
	ds, err := h.s.AdminDevices(ctx, uid)
	return map[string]any{"devices": ds}, err
}

func (h *Handler) adminDeleteDevice(ctx context.Context, uid int64, ps httprouter.Params) (map[string]any, error) {
	return deviceDeleted, h.s.RemoveDevice(ctx, uid, ps.ByName("deviceId"), "admin")
}

func (h *Handler) adminDeleteDevices(ctx context.Context, uid int64, _ httprouter.Params) (map[string]int, error) {
	n, err := h.s.RemoveAllDevices(ctx, uid)
	return map[string]int{"deleted": n}, err
}
