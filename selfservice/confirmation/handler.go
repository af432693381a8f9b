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
	RouteConfirmationPrefix       = "/api/v1/auth/confirmation"
	RouteConfirmationInitiate     = "/api/v1/auth/confirmation/initiate"
	RouteConfirmationStatus       = "/api/v1/auth/confirmation/:id/status"
	RouteConfirmationEvents       = "/api/v1/auth/confirmation/:id/events"
	RouteConfirmationVerify       = "/api/v1/auth/confirmation/:id/verify"
	RouteConfirmationReject       = "/api/v1/auth/confirmation/:id/reject"
	RouteAdminConfirmation        = "/admin/confirmations/:id"
	RouteAdminConfirmationConsume = "/admin/confirmations/:id/consume"
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
	r.Group(http.MethodPost, RouteConfirmationPrefix, map[string]httprouter.Handle{
		"initiate":   t.RequireUser(x.Handle(h.initiate)),
		":id/verify": t.RequireUser(x.Handle(h.verify)),
		":id/reject": t.RequireUser(x.Handle(h.reject)),
	})
	r.GET(RouteConfirmationStatus, t.RequireUser(x.Handle(h.status)))
	r.GET(RouteConfirmationEvents, t.RequireUser(x.Handle(h.events)))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.GET(RouteAdminConfirmation, x.Handle(h.adminGet))
	r.POST(RouteAdminConfirmationConsume, x.Handle(h.adminConsume))
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

func (h *Handler) initiate(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	ctx := r.Context()
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	var b initiateBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	if err := h.d.RateLimiter().Allow(ctx, ratelimit.RuleConfirmationInitiate, "user:"+strconv.FormatInt(uid, 10)); err != nil {
		return err
	}
	in, err := h.svc.Initiate(ctx, uid, b.ActionType, b.ActionPayload)
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, initiateResult{
		ConfirmationID: in.ID, Challenge: in.Challenge, ExpiresAt: in.ExpiresAt, Status: StatusPending,
		ActionType: in.ActionType, ActionHash: in.Hash(), MatchCode: in.MatchCode,
	})
	return nil
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	_, v, err := h.svc.GetView(r.Context(), uid, ps.ByName("id"))
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, v)
	return nil
}

func (h *Handler) adminGet(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	c, v, err := h.svc.GetView(r.Context(), 0, ps.ByName("id"))
	if err != nil {
		return err
	}
	v.UserID = &c.IdentityID
	x.WriteData(w, http.StatusOK, v)
	return nil
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

func (h *Handler) adminConsume(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	c, err := h.svc.Consume(r.Context(), ps.ByName("id"))
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, consumeResult{
		ConfirmationID: c.ID, UserID: c.IdentityID, ActionType: c.ActionType, ActionPayload: c.Payload(),
		ActionHash: c.Hash(), ApprovedAt: c.ApprovedAt, DeviceID: c.DeviceID, ConsumedAt: c.ConsumedAt,
	})
	return nil
}

type verifyBody struct {
	DeviceID        string `json:"deviceId"`
	SignedChallenge string `json:"signedChallenge"`
	MatchCode       string `json:"matchCode"`
}

func (b *verifyBody) Validate() error {
	return x.FirstError(
		x.RequiredMaxLen("deviceId", b.DeviceID, 64),
		x.RequiredMaxLen("signedChallenge", b.SignedChallenge, 4096),
		x.MaxLen("matchCode", b.MatchCode, 16),
	)
}

type decisionResult struct {
	Success        bool   `json:"success"`
	ConfirmationID string `json:"confirmationId"`
	Status         string `json:"status"`
	Receipt        string `json:"receipt,omitempty"`
}

func (h *Handler) verify(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	var b verifyBody
	if err := x.DecodeJSON(r, &b); err != nil {
		return err
	}
	c, receipt, err := h.svc.Verify(r.Context(), uid, ps.ByName("id"), b.DeviceID, b.SignedChallenge, b.MatchCode)
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, decisionResult{Success: true, ConfirmationID: c.ID, Status: StatusApproved, Receipt: receipt})
	return nil
}

type rejectBody struct {
	Reason string `json:"reason"`
}

func (b *rejectBody) Validate() error { return x.MaxLen("reason", b.Reason, 500) }

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	uid, err := session.UserID(r)
	if err != nil {
		return err
	}
	var b rejectBody
	if r.ContentLength != 0 {
		if err := x.DecodeJSON(r, &b); err != nil {
			return err
		}
	}
	c, err := h.svc.Reject(r.Context(), uid, ps.ByName("id"), b.Reason)
	if err != nil {
		return err
	}
	x.WriteData(w, http.StatusOK, decisionResult{Success: true, ConfirmationID: c.ID, Status: StatusRejected})
	return nil
}
