package confirmation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/push"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/selfservice/biometric"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
	"github.com/pvpipe/pvauth/x/secretbox"
)

// Routes.
const (
	RoutePrefix      = "/api/v1/auth/confirmation"
	RouteInitiate    = "/api/v1/auth/confirmation/initiate"
	RouteStatus      = "/api/v1/auth/confirmation/:id/status"
	RouteVerify      = "/api/v1/auth/confirmation/:id/verify"
	RouteReject      = "/api/v1/auth/confirmation/:id/reject"
	RouteAdminStatus = "/admin/confirmations/:id"
)

// MaxPayloadBytes bounds the serialized actionPayload.
const MaxPayloadBytes = 4096

// Errors.
var (
	ErrConfirmationNotFound = x.ErrNotFound.WithMessage("Confirmation not found")
	ErrNotPending           = x.ErrConflict.WithMessage("Confirmation is no longer pending")
	ErrExpired              = x.ErrBadRequest.WithMessage("Confirmation expired")
)

type handlerDeps interface {
	Config() *config.Config
	PersisterProvider
	biometric.PersisterProvider
	session.TokensProvider
	audit.LoggerProvider
	ratelimit.LimiterProvider
	push.SenderProvider
	Cipher() *secretbox.Box
}

// Handler serves action confirmations.
type Handler struct{ d handlerDeps }

// NewHandler builds the handler.
func NewHandler(d handlerDeps) *Handler { return &Handler{d: d} }

func (h *Handler) RegisterPublicRoutes(r *x.PublicRouter) {
	t := h.d.Tokens()
	// httprouter cannot hold "initiate" beside ":id" in one tree; Group dispatches.
	r.Group(http.MethodPost, RoutePrefix, map[string]httprouter.Handle{
		"initiate":   t.RequireUser(h.initiate),
		":id/verify": t.RequireUser(h.verify),
		":id/reject": t.RequireUser(h.reject),
	})
	r.GET(RouteStatus, t.RequireUser(h.status))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.GET(RouteAdminStatus, h.adminGet)
}

type initiateBody struct {
	ActionType    string          `json:"actionType"`
	ActionPayload json.RawMessage `json:"actionPayload"`
}

func (b *initiateBody) Validate() error {
	b.ActionType = strings.TrimSpace(b.ActionType)
	if err := x.FirstError(x.Required("actionType", b.ActionType), x.MaxLen("actionType", b.ActionType, 100)); err != nil {
		return err
	}
	p := strings.TrimSpace(string(b.ActionPayload))
	if p == "" || p == "null" {
		b.ActionPayload = nil
		return nil
	}
	if !strings.HasPrefix(p, "{") {
		return x.ErrBadRequest.WithMessage("Field 'actionPayload' must be a JSON object.")
	}
	// Compact keeps the payload as sent (no re-encoding through float64 or HTML
	// escaping), so big integers survive and the size is what the client serialized.
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(p)); err != nil {
		return x.ErrBadRequest.WithMessage("Field 'actionPayload' must be a JSON object.")
	}
	if compact.Len() > MaxPayloadBytes {
		return x.ErrBadRequest.WithMessagef("Field 'actionPayload' must be at most %d bytes when serialized.", MaxPayloadBytes)
	}
	b.ActionPayload = compact.Bytes()
	return nil
}

type initiateResult struct {
	ConfirmationID string    `json:"confirmationId"`
	Challenge      string    `json:"challenge"`
	ExpiresAt      time.Time `json:"expiresAt"`
	Status         string    `json:"status"`
	ActionType     string    `json:"actionType"`
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
	challenge, hash, err := biometric.NewChallenge()
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	c := &Confirmation{
		ID: uuid.NewString(), IdentityID: uid, ActionType: b.ActionType, ChallengeHash: hash,
		Status: StatusPending, ExpiresAt: time.Now().Add(h.d.Config().TTL.Confirmation),
	}
	if b.ActionPayload != nil {
		s := string(b.ActionPayload)
		c.ActionPayload = &s
	}
	if err := h.d.ConfirmationPersister().CreateConfirmation(ctx, c); err != nil {
		x.WriteError(w, r, err)
		return
	}
	h.log(ctx, c, audit.ResultSuccess, "", map[string]any{"event": "initiated", "challengeHash": c.ChallengeHash})
	h.notify(ctx, c, challenge)
	x.WriteData(w, http.StatusOK, initiateResult{
		ConfirmationID: c.ID, Challenge: challenge, ExpiresAt: c.ExpiresAt, Status: StatusPending, ActionType: c.ActionType,
	})
}

// notify pushes the confirmation to every active device of the user that has an FCM
// token. Sends run concurrently under their own deadline; a failure is logged and
// audited, never returned: the client can still poll. An UNREGISTERED answer clears the
// device's token.
func (h *Handler) notify(ctx context.Context, c *Confirmation, challenge string) {
	devices, err := h.d.DevicePersister().ListDevices(ctx, c.IdentityID, true)
	if err != nil {
		h.log(ctx, c, audit.ResultFailure, "listing devices for push failed", nil)
		return
	}
	data := map[string]string{
		"type":           "action_confirmation",
		"confirmationId": c.ID,
		"actionType":     c.ActionType,
		"challenge":      challenge,
		"expiresAt":      c.ExpiresAt.UTC().Format(time.RFC3339),
	}
	sender := h.d.PushSender()
	done := make(chan struct{})
	pending := 0
	for i := range devices {
		d := devices[i]
		tok := biometric.DecryptFCMToken(h.d.Cipher(), &d)
		if tok == "" {
			continue
		}
		pending++
		go func() {
			defer func() { done <- struct{}{} }()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), push.SendTimeout)
			defer cancel()
			err := sender.Send(sctx, tok, data)
			if err == nil {
				return
			}
			did := d.ID
			reason := "push failed"
			if errors.Is(err, push.ErrUnregistered) {
				reason = "push token unregistered; cleared"
				_, _ = h.d.DevicePersister().UpdateDeviceFCMToken(context.WithoutCancel(ctx), d.UserID, d.ID, nil)
			}
			h.d.AuditLogger().Log(ctx, audit.Event{Type: audit.TypePushFailure, UserID: audit.Int64(c.IdentityID), DeviceID: &did,
				Result: audit.ResultFailure, Reason: reason, Metadata: map[string]any{"confirmationId": c.ID, "error": truncate(err.Error(), 200)}})
		}()
	}
	// Wait for the sends (each bounded by SendTimeout) so the push is on its way when the
	// initiator gets its answer; a slow FCM delays, never fails, the response.
	for ; pending > 0; pending-- {
		<-done
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// load returns the caller's confirmation; another user's is "not found".
func (h *Handler) load(ctx context.Context, id string, uid int64) (*Confirmation, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, ErrConfirmationNotFound
	}
	c, err := h.d.ConfirmationPersister().GetConfirmation(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrConfirmationNotFound
	} else if err != nil {
		return nil, err
	}
	if uid != 0 && c.IdentityID != uid {
		return nil, ErrConfirmationNotFound
	}
	return c, nil
}

// StatusView is the status of a confirmation.
type StatusView struct {
	ConfirmationID string          `json:"confirmationId"`
	UserID         *int64          `json:"userId,omitempty"`
	Status         string          `json:"status"`
	ActionType     string          `json:"actionType"`
	ActionPayload  json.RawMessage `json:"actionPayload"`
	DeviceID       *string         `json:"deviceId,omitempty"`
	CreatedAt      time.Time       `json:"createdAt"`
	ExpiresAt      time.Time       `json:"expiresAt"`
	UpdatedAt      time.Time       `json:"updatedAt"`
}

func view(c *Confirmation, now time.Time) StatusView {
	return StatusView{
		ConfirmationID: c.ID, Status: c.EffectiveStatus(now), ActionType: c.ActionType, ActionPayload: c.Payload(),
		CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt, UpdatedAt: c.UpdatedAt,
	}
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	c, err := h.load(r.Context(), ps.ByName("id"), uid)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, view(c, time.Now()))
}

func (h *Handler) adminGet(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	c, err := h.load(r.Context(), ps.ByName("id"), 0)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	v := view(c, time.Now())
	v.UserID = &c.IdentityID
	v.DeviceID = c.DeviceID
	x.WriteData(w, http.StatusOK, v)
}

type verifyBody struct {
	DeviceID        string `json:"deviceId"`
	SignedChallenge string `json:"signedChallenge"`
}

func (b *verifyBody) Validate() error {
	return x.FirstError(
		x.Required("deviceId", b.DeviceID), x.MaxLen("deviceId", b.DeviceID, 64),
		x.Required("signedChallenge", b.SignedChallenge), x.MaxLen("signedChallenge", b.SignedChallenge, 4096),
	)
}

type decisionResult struct {
	Success        bool   `json:"success"`
	ConfirmationID string `json:"confirmationId"`
	Status         string `json:"status"`
}

// decide applies a decision exactly once; the loser of a race, or a late caller, learns
// why: 400 when the time has passed, 409 when someone already decided.
func (h *Handler) decide(ctx context.Context, c *Confirmation, status string, deviceID, reason *string) error {
	now := time.Now()
	ok, err := h.d.ConfirmationPersister().DecideConfirmation(ctx, c.ID, status, deviceID, reason, now)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	cur, err := h.d.ConfirmationPersister().GetConfirmation(ctx, c.ID)
	if err != nil {
		return err
	}
	if cur.EffectiveStatus(now) == StatusExpired {
		return ErrExpired
	}
	return ErrNotPending
}

func (h *Handler) verify(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	ctx := r.Context()
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
	c, err := h.load(ctx, ps.ByName("id"), uid)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if _, err := uuid.Parse(b.DeviceID); err != nil {
		x.WriteError(w, r, biometric.ErrDeviceInactive)
		return
	}
	d, err := h.d.DevicePersister().GetDevice(ctx, b.DeviceID)
	if errors.Is(err, biometric.ErrDeviceNotFound) || (err == nil && (d.UserID != uid || !d.IsActive)) {
		x.WriteError(w, r, biometric.ErrDeviceInactive)
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	meta := map[string]any{"event": "verify", "challengeHash": c.ChallengeHash, "signatureHash": audit.Hash(b.SignedChallenge)}
	if err := biometric.VerifyChallenge(d.PublicKey, d.KeyAlgorithm, c.ChallengeHash, b.SignedChallenge); err != nil {
		meta["deviceId"] = d.ID
		h.log(ctx, c, audit.ResultFailure, "signature verification failed", meta)
		x.WriteError(w, r, biometric.ErrBadSignature)
		return
	}
	if err := h.decide(ctx, c, StatusApproved, &d.ID, nil); err != nil {
		x.WriteError(w, r, err)
		return
	}
	_ = h.d.DevicePersister().TouchDevice(ctx, d.ID, time.Now())
	meta["deviceId"] = d.ID
	meta["status"] = StatusApproved
	h.log(ctx, c, audit.ResultSuccess, "", meta)
	x.WriteData(w, http.StatusOK, decisionResult{Success: true, ConfirmationID: c.ID, Status: StatusApproved})
}

type rejectBody struct {
	Reason string `json:"reason"`
}

func (b *rejectBody) Validate() error { return x.MaxLen("reason", b.Reason, 500) }

func (h *Handler) reject(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	ctx := r.Context()
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
	c, err := h.load(ctx, ps.ByName("id"), uid)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var reason *string
	if b.Reason != "" {
		reason = &b.Reason
	}
	if err := h.decide(ctx, c, StatusRejected, nil, reason); err != nil {
		x.WriteError(w, r, err)
		return
	}
	h.log(ctx, c, audit.ResultSuccess, b.Reason, map[string]any{"event": "reject", "status": StatusRejected})
	x.WriteData(w, http.StatusOK, decisionResult{Success: true, ConfirmationID: c.ID, Status: StatusRejected})
}

func (h *Handler) log(ctx context.Context, c *Confirmation, result, reason string, md map[string]any) {
	if md == nil {
		md = map[string]any{}
	}
	md["confirmationId"] = c.ID
	md["actionType"] = c.ActionType
	ev := audit.Event{Type: audit.TypeConfirmation, UserID: audit.Int64(c.IdentityID), Result: result, Reason: reason, Metadata: md}
	if did, ok := md["deviceId"].(string); ok {
		ev.DeviceID = &did
	}
	h.d.AuditLogger().Log(ctx, ev)
}
