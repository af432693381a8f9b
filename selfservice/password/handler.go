package password

import (
	"context"
	"net/http"
	"strings"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// Routes.
const (
	RouteLogin          = "/api/v1/auth/login"
	RouteOTPSetup       = "/api/v1/auth/otp/setup"
	RouteOTPVerify      = "/api/v1/auth/otp/verify"
	RouteAdminOTPVerify = "/admin/otp/verify"
)

// Handler serves the password + TOTP API over Service.
type Handler struct{ s *Service }

// NewHandler builds the handler and its service.
func NewHandler(d serviceDeps) *Handler { return &Handler{s: NewService(d)} }

func (h *Handler) RegisterPublicRoutes(r *x.PublicRouter) {
	r.POST(RouteLogin, x.Handle(h.login))
	r.GET(RouteOTPSetup, x.Handle(h.otpSetup))
	r.POST(RouteOTPVerify, x.Handle(h.otpVerify))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.POST(RouteAdminOTPVerify, x.Handle(h.adminOTPVerify))
}

// PendingCheck is Service.PendingCheck, for session.Tokens' 403 on pending tokens.
func (h *Handler) PendingCheck(ctx context.Context, tok string) bool {
	return h.s.PendingCheck(ctx, tok)
}

type loginBody struct {
	Email      string `json:"email"`
	Password   string `json:"password"`
	RememberMe bool   `json:"rememberMe"`
}

func (b *loginBody) Validate() error {
	return x.FirstError(x.RequiredMaxLen("email", b.Email, 320), x.RequiredMaxLen("password", b.Password, 1024))
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b loginBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	res, err := h.s.Login(r.Context(), b.Email, b.Password, b.RememberMe)
	return x.Reply(w, http.StatusOK, res, err)
}

func (h *Handler) otpSetup(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	res, err := h.s.SetupOTP(r.Context(), session.BearerToken(r))
	return x.Reply(w, http.StatusOK, res, err)
}

type otpBody struct {
	OTP string `json:"otp"`
}

func (b *otpBody) Validate() error {
	b.OTP = strings.TrimSpace(b.OTP)
	return x.RequiredMaxLen("otp", b.OTP, 64)
}

func (h *Handler) otpVerify(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b otpBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	res, err := h.s.VerifyOTP(r.Context(), session.BearerToken(r), b.OTP)
	return x.Reply(w, http.StatusOK, res, err)
}

type adminOTPBody struct {
	UserID *int64 `json:"userId"`
	OTP    string `json:"otp"`
}

func (b *adminOTPBody) Validate() error {
	if b.UserID == nil {
		return x.ErrBadRequest.WithMessage("Field 'userId' is required.")
	}
	if *b.UserID <= 0 {
		return x.ErrBadRequest.WithMessage("Field 'userId' must be a positive integer.")
	}
	b.OTP = strings.TrimSpace(b.OTP)
	return x.RequiredMaxLen("otp", b.OTP, 64)
}

// adminOTPVerify is Service.CheckOTP for other PVPipe services: it answers valid:false
// rather than 4xx for a wrong code.
func (h *Handler) adminOTPVerify(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	var b adminOTPBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	valid, err := h.s.CheckOTP(r.Context(), *b.UserID, b.OTP)
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, map[string]any{"userId": *b.UserID, "valid": valid})
	return nil
}
