package confirmation

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// Routes.
const (
	RoutePrefix       = "/api/v1/auth/confirmation"
	RouteInitiate     = "/api/v1/auth/confirmation/initiate"
	RouteStatus       = "/api/v1/auth/confirmation/:id/status"
	RouteEvents       = "/api/v1/auth/confirmation/:id/events"
	RouteVerify       = "/api/v1/auth/confirmation/:id/verify"
	RouteReject       = "/api/v1/auth/confirmation/:id/reject"
	RouteAdminStatus  = "/admin/confirmations/:id"
	RouteAdminConsume = "/admin/confirmations/:id/consume"
)

type handlerDeps interface {
	session.TokensProvider
	ratelimit.LimiterProvider
	ServiceProvider
}

// ServiceProvider is implemented by the registry.
type ServiceProvider interface {
	ConfirmationService() *Service
}

// Handler serves action confirmations over HTTP: it decodes, calls the Service and
// encodes.
type Handler struct {
	d   handlerDeps
	svc *Service
}

// NewHandler builds the handler.
func NewHandler(d handlerDeps) *Handler { return &Handler{d: d, svc: d.ConfirmationService()} }

func (h *Handler) RegisterPublicRoutes(r *x.PublicRouter) {
	t := h.d.Tokens()
	// httprouter cannot hold "initiate" beside ":id" in one tree; Group dispatches.
	r.Group(http.MethodPost, RoutePrefix, map[string]httprouter.Handle{
		"initiate":   t.RequireUser(h.initiate),
		":id/verify": t.RequireUser(h.verify),
		":id/reject": t.RequireUser(h.reject),
	})
	r.GET(RouteStatus, t.RequireUser(h.status))
	r.GET(RouteEvents, t.RequireUser(h.events))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.GET(RouteAdminStatus, h.adminGet)
	r.POST(RouteAdminConsume, h.adminConsume)
}

type initiateBody struct {
	ActionType    string          `json:"actionType"`
	ActionPayload json.RawMessage `json:"actionPayload"`
}

// ActionTypeCIBA is the action type of OAuth2 backchannel (CIBA) logins: only pvauth
// starts those, through Service.Initiate, never a client through the API.
const ActionTypeCIBA = "oauth2_ciba"

func (b *initiateBody) Validate() (err error) {
	if b.ActionType, err = NormalizeActionType(b.ActionType); err != nil {
		return err
	}
	if b.ActionType == ActionTypeCIBA {
		return x.ErrBadRequest.WithMessagef("Field 'actionType' must not be %q: it is reserved for OAuth2 backchannel logins.", ActionTypeCIBA)
	}
	b.ActionPayload, err = NormalizePayload(b.ActionPayload)
	return err
}

type initiateResult struct {
	ConfirmationID string    `json:"confirmationId"`
	Challenge      string    `json:"challenge"`
	ExpiresAt      time.Time `json:"expiresAt"`
	Status         string    `json:"status"`
	ActionType     string    `json:"actionType"`
	ActionHash     string    `json:"actionHash"`
	MatchCode      string    `json:"matchCode,omitempty"`
}

func (h *Handler) initiate(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b initiateBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := h.d.RateLimiter().Allow(ctx, ratelimit.RuleConfirmationInitiate, "user:"+strconv.FormatInt(uid, 10)); err != nil {
		x.WriteError(w, r, err)
		return
	}
	in, err := h.svc.Initiate(ctx, uid, b.ActionType, b.ActionPayload)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, initiateResult{
		ConfirmationID: in.ID, Challenge: in.Challenge, ExpiresAt: in.ExpiresAt, Status: StatusPending,
		ActionType: in.ActionType, ActionHash: in.Hash(), MatchCode: in.MatchCode,
	})
}

// StatusView is the status of a confirmation (status, events, admin get).
type StatusView struct {
	ConfirmationID string          `json:"confirmationId"`
	UserID         *int64          `json:"userId,omitempty"`
	Status         string          `json:"status"`
	ActionType     string          `json:"actionType"`
	ActionPayload  json.RawMessage `json:"actionPayload"`
	ActionHash     string          `json:"actionHash"`
	CreatedAt      time.Time       `json:"createdAt"`
	ExpiresAt      time.Time       `json:"expiresAt"`
	UpdatedAt      time.Time       `json:"updatedAt"`
	ApprovedAt     *time.Time      `json:"approvedAt"`
	DeviceID       *string         `json:"deviceId"`
	ConsumedAt     *time.Time      `json:"consumedAt"`
	Receipt        string          `json:"receipt,omitempty"`
}

// View is what status, events and the admin port show of c; the receipt is there while
// c is approved.
func (s *Service) View(c *Confirmation, now time.Time) (StatusView, error) {
	v := StatusView{
		ConfirmationID: c.ID, Status: c.EffectiveStatus(now), ActionType: c.ActionType, ActionPayload: c.Payload(),
		ActionHash: c.Hash(), CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt, UpdatedAt: c.UpdatedAt,
		ApprovedAt: c.ApprovedAt, DeviceID: c.DeviceID, ConsumedAt: c.ConsumedAt,
	}
	var err error
	v.Receipt, err = s.Receipt(c)
	return v, err
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	c, err := h.svc.Get(r.Context(), uid, ps.ByName("id"))
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	v, err := h.svc.View(c, time.Now())
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, v)
}

func (h *Handler) adminGet(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	c, err := h.svc.Get(r.Context(), 0, ps.ByName("id"))
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	v, err := h.svc.View(c, time.Now())
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	v.UserID = &c.IdentityID
	x.WriteData(w, http.StatusOK, v)
}

type consumeResult struct {
	ConfirmationID string          `json:"confirmationId"`
	UserID         int64           `json:"userId"`
	ActionType     string          `json:"actionType"`
	ActionPayload  json.RawMessage `json:"actionPayload"`
	ActionHash     string          `json:"actionHash"`
	ApprovedAt     *time.Time      `json:"approvedAt"`
	DeviceID       *string         `json:"deviceId"`
	ConsumedAt     *time.Time      `json:"consumedAt"`
}

func (h *Handler) adminConsume(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	c, err := h.svc.Consume(r.Context(), ps.ByName("id"))
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, consumeResult{
		ConfirmationID: c.ID, UserID: c.IdentityID, ActionType: c.ActionType, ActionPayload: c.Payload(),
		ActionHash: c.Hash(), ApprovedAt: c.ApprovedAt, DeviceID: c.DeviceID, ConsumedAt: c.ConsumedAt,
	})
}

type verifyBody struct {
	DeviceID        string `json:"deviceId"`
	SignedChallenge string `json:"signedChallenge"`
	MatchCode       string `json:"matchCode"`
}

func (b *verifyBody) Validate() error {
	return x.FirstError(
		x.Required("deviceId", b.DeviceID), x.MaxLen("deviceId", b.DeviceID, 64),
		x.Required("signedChallenge", b.SignedChallenge), x.MaxLen("signedChallenge", b.SignedChallenge, 4096),
		x.MaxLen("matchCode", b.MatchCode, 16),
	)
}

type decisionResult struct {
	Success        bool   `json:"success"`
	ConfirmationID string `json:"confirmationId"`
	Status         string `json:"status"`
	Receipt        string `json:"receipt,omitempty"`
}

func (h *Handler) verify(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b verifyBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	c, receipt, err := h.svc.Verify(r.Context(), uid, ps.ByName("id"), b.DeviceID, b.SignedChallenge, b.MatchCode)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, decisionResult{Success: true, ConfirmationID: c.ID, Status: StatusApproved, Receipt: receipt})
}

type rejectBody struct {
	Reason string `json:"reason"`
}

func (b *rejectBody) Validate() error { return x.MaxLen("reason", b.Reason, 500) }

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b rejectBody
	if r.ContentLength != 0 {
		if err := x.DecodeJSON(r, &b); err != nil {
			x.WriteError(w, r, err)
			return
		}
	}
	c, err := h.svc.Reject(r.Context(), uid, ps.ByName("id"), b.Reason)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, decisionResult{Success: true, ConfirmationID: c.ID, Status: StatusRejected})
}
