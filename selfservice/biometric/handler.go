package biometric

import (
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// Routes.
const (
	RouteRegisterChallenge = "/api/v1/auth/devices/register/challenge"
	RouteRegisterVerify    = "/api/v1/auth/devices/register/verify"
	RouteDevices           = "/api/v1/auth/devices"
	RouteDevice            = "/api/v1/auth/devices/:deviceId"
	RouteFCMToken          = "/api/v1/auth/devices/fcm-token"
	RouteMobileChallenge   = "/api/v1/auth/mobile/challenge"
	RouteMobileBiometric   = "/api/v1/auth/mobile/biometric"
	RouteMobileRefresh     = "/api/v1/auth/mobile/refresh"
	RouteMobileKeygen      = "/api/v1/auth/mobile/keygen"
	RouteAdminDevices      = "/admin/identities/:id/devices"
	RouteAdminDevice       = "/admin/identities/:id/devices/:deviceId"
)

// Handler serves device keys and mobile login over HTTP; the work is the Service's.
type Handler struct {
	d serviceDeps
	s *Service
}

// NewHandler builds the handler.
func NewHandler(d serviceDeps) *Handler { return &Handler{d: d, s: NewService(d)} }

func (h *Handler) RegisterPublicRoutes(r *x.PublicRouter) {
	t := h.d.Tokens()
	r.POST(RouteRegisterChallenge, t.RequireRecentLogin(x.Handle(h.registerChallenge)))
	r.POST(RouteRegisterVerify, t.RequireRecentLogin(x.Handle(h.registerVerify)))
	r.GET(RouteDevices, t.RequireUser(x.Handle(h.listDevices)))
	r.DELETE(RouteDevice, t.RequireUser(x.Handle(h.deleteDevice)))
	r.PUT(RouteFCMToken, t.RequireUser(x.Handle(h.updateFCMToken)))
	r.POST(RouteMobileChallenge, x.Handle(h.mobileChallenge))
	r.POST(RouteMobileBiometric, x.Handle(h.mobileBiometric))
	r.POST(RouteMobileRefresh, x.Handle(h.mobileRefresh))
	r.POST(RouteMobileKeygen, t.RequireRecentLogin(x.Handle(h.keygen)))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.GET(RouteAdminDevices, x.Handle(h.adminListDevices))
	r.DELETE(RouteAdminDevice, x.Handle(h.adminDeleteDevice))
	r.DELETE(RouteAdminDevices, x.Handle(h.adminDeleteDevices))
}

// decode reads the caller's user id and the request body into b.
func decode(r *http.Request, b x.Validator) (int64, error) {
	uid, err := session.UserID(r)
	if err != nil {
		return 0, err
	}
	return uid, x.DecodeJSON(r, b)
}

// answer writes v as the data of a 200, or returns err.
func answer(w http.ResponseWriter, v any, err error) error {
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, v)
	return nil
}

func (h *Handler) registerChallenge(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b RegisterChallengeRequest
	uid, err := decode(r, &b)
	if err != nil {
		return err
	}
	res, err := h.s.RegisterChallenge(r.Context(), uid, &b)
	return answer(w, res, err)
}

func (h *Handler) registerVerify(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b SignedRequest
	uid, err := decode(r, &b)
	if err != nil {
		return err
	}
	res, err := h.s.RegisterVerify(r.Context(), uid, &b)
	return answer(w, res, err)
}

func (h *Handler) listDevices(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	ds, err := h.s.Devices(r.Context(), uid)
	return answer(w, map[string]any{"devices": ds}, err)
}

var deviceDeleted = map[string]any{"success": true, "message": "Device deleted successfully"}

func (h *Handler) deleteDevice(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	return answer(w, deviceDeleted, h.s.RemoveDevice(r.Context(), uid, ps.ByName("deviceId"), "user"))
}

func (h *Handler) updateFCMToken(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b FCMTokenRequest
	uid, err := decode(r, &b)
	if err != nil {
		return err
	}
	return answer(w, map[string]any{"success": true, "message": "FCM token updated successfully"}, h.s.UpdateFCMToken(r.Context(), uid, &b))
}

func (h *Handler) mobileChallenge(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b LoginChallengeRequest
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	res, err := h.s.LoginChallenge(r.Context(), &b)
	return answer(w, res, err)
}

func (h *Handler) mobileBiometric(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b SignedRequest
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	res, err := h.s.Login(r.Context(), &b)
	return answer(w, res, err)
}

type refreshBody struct {
	RefreshToken string `json:"refreshToken"`
}

func (b *refreshBody) Validate() error {
	return x.FirstError(x.Required("refreshToken", b.RefreshToken), x.MaxLen("refreshToken", b.RefreshToken, 512))
}

// mobileRefreshResult carries the token set nested (OpenAPI seed) and flat (biometric
// guide's tests) so clients of either work.
type mobileRefreshResult struct {
	Success bool              `json:"success"`
	Tokens  *session.TokenSet `json:"tokens"`
	*session.TokenSet
}

func (h *Handler) mobileRefresh(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b refreshBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	ts, err := session.RefreshTokens(r.Context(), h.d, b.RefreshToken)
	return answer(w, mobileRefreshResult{Success: true, Tokens: ts, TokenSet: ts}, err)
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
	return answer(w, res, err)
}

func (h *Handler) adminListDevices(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		return err
	}
	ds, err := h.s.AdminDevices(r.Context(), uid)
	return answer(w, map[string]any{"devices": ds}, err)
}

func (h *Handler) adminDeleteDevice(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		return err
	}
	return answer(w, deviceDeleted, h.s.RemoveDevice(r.Context(), uid, ps.ByName("deviceId"), "admin"))
}

func (h *Handler) adminDeleteDevices(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		return err
	}
	n, err := h.s.RemoveAllDevices(r.Context(), uid)
	return answer(w, map[string]int{"deleted": n}, err)
}
