package biometric

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/julienschmidt/httprouter"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
	"github.com/pvpipe/pvauth/x/secretbox"
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

// Messages the seed clients match on (API.md §1).
var (
	ErrSessionExpired    = x.ErrBadRequest.Derive("Session expired or not found")
	ErrDeviceInactive    = devicekey.ErrDeviceInactive
	ErrAlreadyRegistered = x.ErrConflict.Derive("Device with this fingerprint is already registered")
	ErrBadSignature      = devicekey.ErrBadSignature
	ErrKeygenDisabled    = x.ErrForbidden.Derive("Server-side key generation is disabled.")
)

type handlerDeps interface {
	Config() *config.Config
	PersisterProvider
	identity.PersisterProvider
	session.TokensProvider
	audit.LoggerProvider
	ratelimit.LimiterProvider
	devicekey.NotifierProvider
	Cipher() *secretbox.Box
}

// Handler serves device keys and mobile login.
type Handler struct{ d handlerDeps }

// NewHandler builds the handler.
func NewHandler(d handlerDeps) *Handler { return &Handler{d: d} }

func (h *Handler) RegisterPublicRoutes(r *x.PublicRouter) {
	t := h.d.Tokens()
	r.POST(RouteRegisterChallenge, t.RequireRecentLogin(h.registerChallenge))
	r.POST(RouteRegisterVerify, t.RequireRecentLogin(h.registerVerify))
	r.GET(RouteDevices, t.RequireUser(h.listDevices))
	r.DELETE(RouteDevice, t.RequireUser(h.deleteDevice))
	r.PUT(RouteFCMToken, t.RequireUser(h.updateFCMToken))
	r.POST(RouteMobileChallenge, h.mobileChallenge)
	r.POST(RouteMobileBiometric, h.mobileBiometric)
	r.POST(RouteMobileRefresh, h.mobileRefresh)
	r.POST(RouteMobileKeygen, t.RequireRecentLogin(h.keygen))
}

func (h *Handler) RegisterAdminRoutes(r *x.AdminRouter) {
	r.GET(RouteAdminDevices, h.adminListDevices)
	r.DELETE(RouteAdminDevice, h.adminDeleteDevice)
	r.DELETE(RouteAdminDevices, h.adminDeleteDevices)
}

type registerChallengeBody struct {
	DeviceName        string `json:"deviceName"`
	DeviceType        string `json:"deviceType"`
	DeviceFingerprint string `json:"deviceFingerprint"`
	PublicKey         string `json:"publicKey"`
	KeyAlgorithm      string `json:"keyAlgorithm"`
}

func (b *registerChallengeBody) Validate() error {
	return x.FirstError(
		x.Required("deviceName", b.DeviceName), x.MaxLen("deviceName", b.DeviceName, 255), noNUL("deviceName", b.DeviceName),
		x.Required("deviceType", b.DeviceType), x.OneOf("deviceType", b.DeviceType, devicekey.TypeMobile, devicekey.TypeDesktop, devicekey.TypeTablet),
		x.Required("deviceFingerprint", b.DeviceFingerprint), x.MaxLen("deviceFingerprint", b.DeviceFingerprint, 255),
		noNUL("deviceFingerprint", b.DeviceFingerprint),
		x.Required("publicKey", b.PublicKey),
		x.Required("keyAlgorithm", b.KeyAlgorithm), x.OneOf("keyAlgorithm", b.KeyAlgorithm, devicekey.AlgES256, devicekey.AlgRS256, devicekey.AlgPS256),
	)
}

type challengeResult struct {
	Challenge string    `json:"challenge"`
	ExpiresAt time.Time `json:"expiresAt"`
	DeviceID  string    `json:"deviceId,omitempty"`
	SessionID string    `json:"sessionId"`
}

func (h *Handler) registerChallenge(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b registerChallengeBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := h.d.RateLimiter().Allow(ctx, ratelimit.RuleDeviceRegisterChallenge, "user:"+strconv.FormatInt(uid, 10)); err != nil {
		x.WriteError(w, r, err)
		return
	}
	_, pemKey, err := devicekey.ParsePublicKey(b.PublicKey, b.KeyAlgorithm)
	if err != nil {
		x.WriteError(w, r, x.ErrBadRequest.WithMessage(err.Error()))
		return
	}
	if _, err := h.d.BiometricPersister().FindActiveDeviceByFingerprint(ctx, b.DeviceFingerprint); err == nil {
		h.auditDevice(ctx, audit.TypeDeviceRegister, uid, "", audit.ResultFailure, "fingerprint already registered", nil)
		x.WriteError(w, r, ErrAlreadyRegistered)
		return
	} else if !errors.Is(err, devicekey.ErrDeviceNotFound) {
		x.WriteError(w, r, err)
		return
	}
	chal, hash, err := devicekey.NewChallenge()
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	c := &Challenge{
		ID: uuid.NewString(), Kind: ChallengeRegister, IdentityID: uid, DeviceID: uuid.NewString(), ChallengeHash: hash,
		DeviceName: &b.DeviceName, DeviceType: &b.DeviceType, DeviceFingerprint: &b.DeviceFingerprint,
		KeyAlgorithm: &b.KeyAlgorithm, PublicKey: &pemKey,
		ExpiresAt: time.Now().Add(h.d.Config().TTL.Challenge),
	}
	al := h.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := h.d.BiometricPersister().CreateDeviceChallenge(ctx, c); err != nil {
			return err
		}
		return al.LogTx(ctx, deviceEvent(audit.TypeDeviceRegister, uid, c.DeviceID, audit.ResultSuccess, "",
			map[string]any{"step": "challenge", "challengeHash": hash, "sessionId": c.ID}))
	}); err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, challengeResult{Challenge: chal, ExpiresAt: c.ExpiresAt, DeviceID: c.DeviceID, SessionID: c.ID})
}

type signedBody struct {
	SessionID       string `json:"sessionId"`
	SignedChallenge string `json:"signedChallenge"`
	RememberMe      bool   `json:"rememberMe"`
}

func (b *signedBody) Validate() error {
	return x.FirstError(
		x.Required("sessionId", b.SessionID), x.MaxLen("sessionId", b.SessionID, 64),
		x.Required("signedChallenge", b.SignedChallenge), x.MaxLen("signedChallenge", b.SignedChallenge, 4096),
	)
}

// challenge loads a challenge of kind; unknown ids are "expired or not found".
func (h *Handler) challenge(ctx context.Context, id, kind string) (*Challenge, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, ErrSessionExpired
	}
	c, err := h.d.BiometricPersister().GetDeviceChallenge(ctx, id)
	if errors.Is(err, ErrChallengeNotFound) {
		return nil, ErrSessionExpired
	} else if err != nil {
		return nil, err
	}
	if c.Kind != kind {
		return nil, ErrSessionExpired
	}
	return c, nil
}

func live(c *Challenge, now time.Time) bool { return c.UsedAt == nil && now.Before(c.ExpiresAt) }

type registerResult struct {
	Success  bool    `json:"success"`
	DeviceID string  `json:"deviceId"`
	Device   *Device `json:"device"`
}

func (h *Handler) registerVerify(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b signedBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	c, err := h.challenge(ctx, b.SessionID, ChallengeRegister)
	if err == nil && c.IdentityID != uid {
		err = ErrSessionExpired
	}
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if c.PublicKey == nil || c.KeyAlgorithm == nil {
		x.WriteError(w, r, ErrSessionExpired)
		return
	}
	sigMeta := map[string]any{"step": "verify", "challengeHash": c.ChallengeHash, "signatureHash": audit.Hash(b.SignedChallenge), "sessionId": c.ID}
	if err := devicekey.VerifyChallenge(*c.PublicKey, *c.KeyAlgorithm, c.ChallengeHash, b.SignedChallenge); err != nil {
		h.auditDevice(ctx, audit.TypeDeviceRegister, uid, c.DeviceID, audit.ResultFailure, "signature verification failed", sigMeta)
		x.WriteError(w, r, ErrBadSignature)
		return
	}
	now := time.Now()
	if !live(c, now) {
		x.WriteError(w, r, ErrSessionExpired)
		return
	}
	d := &Device{
		ID: c.DeviceID, UserID: uid, DeviceName: *c.DeviceName, DeviceType: *c.DeviceType,
		DeviceFingerprint: *c.DeviceFingerprint, KeyAlgorithm: *c.KeyAlgorithm, PublicKey: *c.PublicKey,
	}
	// The challenge, the device and the event commit together.
	al := h.d.AuditLogger()
	err = al.Tx(ctx, func(ctx context.Context) error {
		ok, err := h.d.BiometricPersister().ConsumeDeviceChallenge(ctx, c.ID, now)
		if err != nil {
			return err
		}
		if !ok {
			return ErrSessionExpired
		}
		if err := h.d.BiometricPersister().CreateDevice(ctx, d); errors.Is(err, devicekey.ErrFingerprintTaken) {
			return ErrAlreadyRegistered
		} else if err != nil {
			return err
		}
		return al.LogTx(ctx, deviceEvent(audit.TypeDeviceRegister, uid, d.ID, audit.ResultSuccess, "", sigMeta))
	})
	if err != nil {
		if errors.Is(err, ErrAlreadyRegistered) {
			h.auditDevice(ctx, audit.TypeDeviceRegister, uid, c.DeviceID, audit.ResultFailure, "fingerprint already registered", sigMeta)
		}
		x.WriteError(w, r, err)
		return
	}
	h.d.DeviceNotifier().AuthenticatorAdded(ctx, uid, devicekey.AuthenticatorDevice, d.ID, d.DeviceName, d.ID)
	x.WriteData(w, http.StatusOK, registerResult{Success: true, DeviceID: d.ID, Device: h.view(d)})
}

// view shows the FCM token in clear to the device's owner.
func (h *Handler) view(d *Device) *Device {
	v := *d
	v.FCMToken = nil
	if tok := devicekey.DecryptFCMToken(h.d.Cipher(), d); tok != "" {
		v.FCMToken = &tok
	}
	return &v
}

func (h *Handler) views(ds []Device) []*Device {
	out := make([]*Device, 0, len(ds))
	for i := range ds {
		out = append(out, h.view(&ds[i]))
	}
	return out
}

func (h *Handler) listDevices(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	ds, err := h.d.BiometricPersister().ListDevices(r.Context(), uid, true)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]any{"devices": h.views(ds)})
}

// RemoveDevice deactivates a device of uid and revokes every token issued through it.
func (h *Handler) RemoveDevice(ctx context.Context, uid int64, deviceID string, by string) error {
	if _, err := uuid.Parse(deviceID); err != nil {
		return ErrDeviceInactive
	}
	// The device, its sessions and the event end in one transaction (the identity's
	// lock first, as for every removal of an authenticator).
	al := h.d.AuditLogger()
	return al.Tx(ctx, func(ctx context.Context) error {
		removed, n, err := h.d.Tokens().RemoveAuthenticators(ctx, uid, session.AuthenticatorDevice, deviceID)
		if err != nil {
			return err
		}
		if removed == 0 {
			return ErrDeviceInactive
		}
		return al.LogTx(ctx, deviceEvent(audit.TypeDeviceDelete, uid, deviceID, audit.ResultSuccess, "", map[string]any{"revokedSessions": n, "by": by}))
	})
}

func (h *Handler) deleteDevice(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := h.RemoveDevice(r.Context(), uid, ps.ByName("deviceId"), "user"); err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]any{"success": true, "message": "Device deleted successfully"})
}

type fcmBody struct {
	DeviceID string `json:"deviceId"`
	FCMToken string `json:"fcmToken"`
}

func (b *fcmBody) Validate() error {
	return x.FirstError(
		x.Required("deviceId", b.DeviceID), x.MaxLen("deviceId", b.DeviceID, 64),
		x.Required("fcmToken", b.FCMToken), x.MaxLen("fcmToken", b.FCMToken, 255),
	)
}

func (h *Handler) updateFCMToken(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	var b fcmBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	if _, err := uuid.Parse(b.DeviceID); err != nil {
		x.WriteError(w, r, ErrDeviceInactive)
		return
	}
	enc, err := devicekey.SealFCMToken(h.d.Cipher(), b.DeviceID, b.FCMToken)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	ok, err := h.d.BiometricPersister().UpdateDeviceFCMToken(r.Context(), uid, b.DeviceID, &enc)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if !ok {
		x.WriteError(w, r, ErrDeviceInactive)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]any{"success": true, "message": "FCM token updated successfully"})
}

type mobileChallengeBody struct {
	DeviceFingerprint string `json:"deviceFingerprint"`
}

func (b *mobileChallengeBody) Validate() error {
	return x.FirstError(x.Required("deviceFingerprint", b.DeviceFingerprint), x.MaxLen("deviceFingerprint", b.DeviceFingerprint, 255),
		noNUL("deviceFingerprint", b.DeviceFingerprint))
}

// noNUL refuses U+0000, which PostgreSQL cannot store or compare in text columns (it
// would otherwise surface as a 500 there).
func noNUL(field, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return x.ErrBadRequest.WithMessagef("Field '%s' must not contain NUL characters.", field)
	}
	return nil
}

func (h *Handler) mobileChallenge(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	var b mobileChallengeBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := h.d.RateLimiter().Allow(ctx, ratelimit.RuleMobileChallenge, "fp:"+b.DeviceFingerprint); err != nil {
		x.WriteError(w, r, err)
		return
	}
	chal, hash, err := devicekey.NewChallenge()
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	// The device is looked up by the insert itself: one statement on the login path.
	c := &Challenge{ID: uuid.NewString(), Kind: ChallengeLogin, ChallengeHash: hash,
		ExpiresAt: time.Now().Add(h.d.Config().TTL.Challenge)}
	ok, err := h.d.BiometricPersister().CreateLoginChallenge(ctx, b.DeviceFingerprint, c)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if !ok {
		x.WriteError(w, r, ErrDeviceInactive)
		return
	}
	x.WriteData(w, http.StatusOK, challengeResult{Challenge: chal, ExpiresAt: c.ExpiresAt, SessionID: c.ID})
}

type biometricResult struct {
	Success bool              `json:"success"`
	Tokens  *session.TokenSet `json:"tokens"`
}

// mobileBiometric checks the signature before the session's state, so that a bad
// signature is 401 even on a used session and a good one on a used session is 400.
func (h *Handler) mobileBiometric(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	ctx := r.Context()
	var b signedBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := h.d.RateLimiter().Allow(ctx, ratelimit.RuleMobileBiometric, "session:"+b.SessionID); err != nil {
		x.WriteError(w, r, err)
		return
	}
	if _, err := uuid.Parse(b.SessionID); err != nil {
		x.WriteError(w, r, ErrSessionExpired)
		return
	}
	// One read for the challenge, its device and the owner: this is the hot path.
	c, d, owner, err := h.d.BiometricPersister().GetLoginChallenge(ctx, b.SessionID)
	if errors.Is(err, ErrChallengeNotFound) {
		x.WriteError(w, r, ErrSessionExpired)
		return
	} else if err != nil {
		x.WriteError(w, r, err)
		return
	}
	meta := map[string]any{"challengeHash": c.ChallengeHash, "signatureHash": audit.Hash(b.SignedChallenge), "sessionId": c.ID}
	if err := devicekey.VerifyChallenge(d.PublicKey, d.KeyAlgorithm, c.ChallengeHash, b.SignedChallenge); err != nil {
		h.auditDevice(ctx, audit.TypeBiometricLogin, d.UserID, d.ID, audit.ResultFailure, "signature verification failed", meta)
		x.WriteError(w, r, ErrBadSignature)
		return
	}
	now := time.Now()
	if !live(c, now) {
		x.WriteError(w, r, ErrSessionExpired)
		return
	}
	if !d.IsActive {
		x.WriteError(w, r, ErrDeviceInactive)
		return
	}
	if owner.State != identity.StateActive {
		h.auditDevice(ctx, audit.TypeBiometricLogin, d.UserID, d.ID, audit.ResultFailure, "identity disabled or deleted", meta)
		x.WriteError(w, r, ErrBadSignature) // as for bad credentials: nothing about the account
		return
	}
	// The challenge is consumed in the transaction that stores the tokens: exactly one
	// of concurrent logins with it gets tokens, and a failed issue leaves it unused.
	// The login's event commits with the tokens too.
	sid := uuid.NewString()
	ts, err := h.d.Tokens().Issue(ctx, session.IssueRequest{
		IdentityID: d.UserID, Email: owner.Email, AMR: []string{session.AMRHardware}, DeviceID: d.ID, RememberMe: b.RememberMe,
		SessionID: sid,
		InTx: func(ctx context.Context) error {
			ok, err := h.d.BiometricPersister().ConsumeDeviceChallenge(ctx, c.ID, now)
			if err != nil {
				return err
			}
			if !ok {
				return ErrSessionExpired
			}
			meta["rememberMe"], meta["sessionFamily"] = b.RememberMe, sid
			return h.d.AuditLogger().LogTx(ctx, deviceEvent(audit.TypeBiometricLogin, d.UserID, d.ID, audit.ResultSuccess, "", meta))
		},
	})
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	// lastUsedAt is for display: a minute's precision spares a write per login under load.
	if d.LastUsedAt == nil || now.Sub(*d.LastUsedAt) >= time.Minute {
		_ = h.d.BiometricPersister().TouchDevice(ctx, d.ID, now)
	}
	x.WriteData(w, http.StatusOK, biometricResult{Success: true, Tokens: ts})
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

func (h *Handler) mobileRefresh(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var b refreshBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	ts, err := session.RefreshTokens(r.Context(), h.d, b.RefreshToken)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, mobileRefreshResult{Success: true, Tokens: ts, TokenSet: ts})
}

type keygenBody struct {
	KeyAlgorithm string `json:"keyAlgorithm"`
	KeyName      string `json:"keyName"`
}

func (b *keygenBody) Validate() error {
	return x.FirstError(x.Required("keyAlgorithm", b.KeyAlgorithm), x.OneOf("keyAlgorithm", b.KeyAlgorithm, devicekey.AlgES256),
		x.MaxLen("keyName", b.KeyName, 255))
}

type keygenResult struct {
	KeyAlgorithm string `json:"keyAlgorithm"`
	Curve        string `json:"curve"`
	PrivateKey   string `json:"privateKey"`
	PublicKey    string `json:"publicKey"`
	KeyName      string `json:"keyName,omitempty"`
}

// keygen makes a P-256 key pair for devices that cannot; the private key is returned
// once and never stored.
func (h *Handler) keygen(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	uid, err := session.UserID(r)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if !h.d.Config().Biometric.KeygenEnabled {
		x.WriteError(w, r, ErrKeygenDisabled)
		return
	}
	var b keygenBody
	if err := x.DecodeJSON(r, &b); err != nil {
		x.WriteError(w, r, err)
		return
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	priv, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	h.auditDevice(r.Context(), "device.keygen", uid, "", audit.ResultSuccess, "", map[string]any{"keyAlgorithm": devicekey.AlgES256})
	x.WriteData(w, http.StatusOK, keygenResult{
		KeyAlgorithm: devicekey.AlgES256, Curve: "P-256", KeyName: b.KeyName,
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})),
		PublicKey:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
	})
}

func (h *Handler) adminListDevices(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := identity.MustExist(r.Context(), h.d.IdentityPersister(), uid); err != nil {
		x.WriteError(w, r, err)
		return
	}
	ds, err := h.d.BiometricPersister().ListDevices(r.Context(), uid, false)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]any{"devices": h.views(ds)})
}

func (h *Handler) adminDeleteDevice(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	if err := h.RemoveDevice(r.Context(), uid, ps.ByName("deviceId"), "admin"); err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]any{"success": true, "message": "Device deleted successfully"})
}

// auditDevice logs an event that changes nothing in the background.
func (h *Handler) auditDevice(ctx context.Context, typ string, uid int64, deviceID, result, reason string, md map[string]any) {
	h.d.AuditLogger().Log(ctx, deviceEvent(typ, uid, deviceID, result, reason, md))
}

func deviceEvent(typ string, uid int64, deviceID, result, reason string, md map[string]any) audit.Event {
	ev := audit.Event{Type: typ, UserID: audit.Int64(uid), Result: result, Reason: reason, Metadata: md}
	if deviceID != "" {
		ev.DeviceID = &deviceID
	}
	return ev
}

// adminDeleteDevices deletes every device of an identity and ends the sessions they
// signed in, in one transaction.
func (h *Handler) adminDeleteDevices(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	uid, err := x.IdentityIDParam(ps)
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	ctx := r.Context()
	if err := identity.MustExist(ctx, h.d.IdentityPersister(), uid); err != nil {
		x.WriteError(w, r, err)
		return
	}
	var n int
	al := h.d.AuditLogger()
	err = al.Tx(ctx, func(ctx context.Context) error {
		var revoked int
		var err error
		if n, revoked, err = h.d.Tokens().RemoveAuthenticators(ctx, uid, session.AuthenticatorDevice, ""); err != nil {
			return err
		}
		return al.LogTx(ctx, deviceEvent(audit.TypeDeviceDelete, uid, "", audit.ResultSuccess, "",
			map[string]any{"deleted": n, "revokedSessions": revoked, "by": "admin", "all": true}))
	})
	if err != nil {
		x.WriteError(w, r, err)
		return
	}
	x.WriteData(w, http.StatusOK, map[string]int{"deleted": n})
}
