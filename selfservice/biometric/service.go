package biometric

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/ratelimit"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
	"github.com/pvpipe/pvauth/x/secretbox"
)

// Messages the seed clients match on (API.md §1).
var (
	ErrSessionExpired    = x.ErrBadRequest.Derive("Session expired or not found")
	ErrDeviceInactive    = devicekey.ErrDeviceInactive
	ErrAlreadyRegistered = x.ErrConflict.Derive("Device with this fingerprint is already registered")
	ErrBadSignature      = devicekey.ErrBadSignature
	ErrKeygenDisabled    = x.ErrForbidden.Derive("Server-side key generation is disabled.")
)

type serviceDeps interface {
	audit.LoggerProvider
	devicekey.NotifierProvider
	identity.PersisterProvider
	ratelimit.LimiterProvider
	session.TokensProvider
	PersisterProvider
	Config() *config.Config
	Cipher() *secretbox.Box
}

// Service registers device keys, signs users in with them and manages them; the
// handlers only decode requests and write answers.
type Service struct {
	d    serviceDeps
	devs *devicekey.Authenticators
}

// NewService builds the service.
func NewService(d serviceDeps) *Service {
	return &Service{d: d, devs: &devicekey.Authenticators{
		Kind: session.AuthenticatorDevice, NotFound: ErrDeviceInactive,
		Event: func(uid int64, id string, md map[string]any) audit.Event {
			if id == "" {
				md["all"] = true
			}
			return deviceEvent(audit.TypeDeviceDelete, uid, id, audit.ResultSuccess, "", md)
		},
		Audit: d.AuditLogger(), Tokens: d.Tokens(), Identities: d.IdentityPersister(),
	}}
}

// RegisterChallengeRequest is a device that asks to be registered.
type RegisterChallengeRequest struct {
	DeviceName        string `json:"deviceName"`
	DeviceType        string `json:"deviceType"`
	DeviceFingerprint string `json:"deviceFingerprint"`
	PublicKey         string `json:"publicKey"`
	KeyAlgorithm      string `json:"keyAlgorithm"`
}

func (b *RegisterChallengeRequest) Validate() error {
	return x.FirstError(
		x.RequiredMaxLen("deviceName", b.DeviceName, 255), noNUL("deviceName", b.DeviceName),
		x.Required("deviceType", b.DeviceType), x.OneOf("deviceType", b.DeviceType, devicekey.TypeMobile, devicekey.TypeDesktop, devicekey.TypeTablet),
		x.RequiredMaxLen("deviceFingerprint", b.DeviceFingerprint, 255),
		noNUL("deviceFingerprint", b.DeviceFingerprint),
		x.Required("publicKey", b.PublicKey),
		x.Required("keyAlgorithm", b.KeyAlgorithm), x.OneOf("keyAlgorithm", b.KeyAlgorithm, devicekey.AlgES256, devicekey.AlgRS256, devicekey.AlgPS256),
	)
}

// noNUL refuses U+0000, which PostgreSQL cannot store or compare in text columns (it
// would otherwise surface as a 500 there).
func noNUL(field, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return x.ErrBadRequest.WithMessagef("Field '%s' must not contain NUL characters.", field)
	}
	return nil
}

// ChallengeResult is a challenge to sign.
type ChallengeResult struct {
	Challenge string    `json:"challenge"`
	ExpiresAt time.Time `json:"expiresAt"`
	DeviceID  string    `json:"deviceId,omitempty"`
	SessionID string    `json:"sessionId"`
}

// RegisterChallenge starts the registration of b's device for uid.
func (s *Service) RegisterChallenge(ctx context.Context, uid int64, b *RegisterChallengeRequest) (*ChallengeResult, error) {
	if err := s.d.RateLimiter().Allow(ctx, ratelimit.RuleDeviceRegisterChallenge, "user:"+strconv.FormatInt(uid, 10)); err != nil {
		return nil, err
	}
	_, pemKey, err := devicekey.ParsePublicKey(b.PublicKey, b.KeyAlgorithm)
	if err != nil {
		return nil, x.ErrBadRequest.WithMessage(err.Error())
	}
	if _, err := s.d.BiometricPersister().FindActiveDeviceByFingerprint(ctx, b.DeviceFingerprint); err == nil {
		s.auditDevice(ctx, audit.TypeDeviceRegister, uid, "", audit.ResultFailure, "fingerprint already registered", nil)
		return nil, ErrAlreadyRegistered
	} else if !errors.Is(err, devicekey.ErrDeviceNotFound) {
		return nil, err
	}
	chal, hash, err := devicekey.NewChallenge()
	if err != nil {
		return nil, err
	}
	c := &Challenge{
		ID: uuid.NewString(), Kind: ChallengeRegister, IdentityID: uid, DeviceID: uuid.NewString(), ChallengeHash: hash,
		DeviceName: &b.DeviceName, DeviceType: &b.DeviceType, DeviceFingerprint: &b.DeviceFingerprint,
		KeyAlgorithm: &b.KeyAlgorithm, PublicKey: &pemKey,
		ExpiresAt: time.Now().Add(s.d.Config().TTL.Challenge),
	}
	al := s.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := s.d.BiometricPersister().CreateDeviceChallenge(ctx, c); err != nil {
			return err
		}
		return al.LogTx(ctx, deviceEvent(audit.TypeDeviceRegister, uid, c.DeviceID, audit.ResultSuccess, "",
			map[string]any{"step": "challenge", "challengeHash": hash, "sessionId": c.ID}))
	}); err != nil {
		return nil, err
	}
	return &ChallengeResult{Challenge: chal, ExpiresAt: c.ExpiresAt, DeviceID: c.DeviceID, SessionID: c.ID}, nil
}

// SignedRequest is a signed challenge: of a registration or of a login.
type SignedRequest struct {
	SessionID       string `json:"sessionId"`
	SignedChallenge string `json:"signedChallenge"`
	RememberMe      bool   `json:"rememberMe"`
}

func (b *SignedRequest) Validate() error {
	return x.FirstError(x.RequiredMaxLen("sessionId", b.SessionID, 64), x.RequiredMaxLen("signedChallenge", b.SignedChallenge, 4096))
}

// challenge loads a challenge of kind; unknown ids are "expired or not found".
func (s *Service) challenge(ctx context.Context, id, kind string) (*Challenge, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, ErrSessionExpired
	}
	c, err := s.d.BiometricPersister().GetDeviceChallenge(ctx, id)
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

// RegisterResult is a registered device.
type RegisterResult struct {
	Success  bool    `json:"success"`
	DeviceID string  `json:"deviceId"`
	Device   *Device `json:"device"`
}

// RegisterVerify registers the device of uid's challenge once its key signed it.
func (s *Service) RegisterVerify(ctx context.Context, uid int64, b *SignedRequest) (*RegisterResult, error) {
	c, err := s.challenge(ctx, b.SessionID, ChallengeRegister)
	if err == nil && c.IdentityID != uid {
		err = ErrSessionExpired
	}
	if err != nil {
		return nil, err
	}
	if c.PublicKey == nil || c.KeyAlgorithm == nil {
		return nil, ErrSessionExpired
	}
	sigMeta := map[string]any{"step": "verify", "challengeHash": c.ChallengeHash, "signatureHash": audit.Hash(b.SignedChallenge), "sessionId": c.ID}
	if err := devicekey.VerifyChallenge(*c.PublicKey, *c.KeyAlgorithm, c.ChallengeHash, b.SignedChallenge); err != nil {
		s.auditDevice(ctx, audit.TypeDeviceRegister, uid, c.DeviceID, audit.ResultFailure, "signature verification failed", sigMeta)
		return nil, ErrBadSignature
	}
	now := time.Now()
	if !live(c, now) {
		return nil, ErrSessionExpired
	}
	d := &Device{
		ID: c.DeviceID, UserID: uid, DeviceName: *c.DeviceName, DeviceType: *c.DeviceType,
		DeviceFingerprint: *c.DeviceFingerprint, KeyAlgorithm: *c.KeyAlgorithm, PublicKey: *c.PublicKey,
	}
	// The challenge, the device and the event commit together.
	al := s.d.AuditLogger()
	err = al.Tx(ctx, func(ctx context.Context) error {
		ok, err := s.d.BiometricPersister().ConsumeDeviceChallenge(ctx, c.ID, now)
		if err != nil {
			return err
		}
		if !ok {
			return ErrSessionExpired
		}
		if err := s.d.BiometricPersister().CreateDevice(ctx, d); errors.Is(err, devicekey.ErrFingerprintTaken) {
			return ErrAlreadyRegistered
		} else if err != nil {
			return err
		}
		return al.LogTx(ctx, deviceEvent(audit.TypeDeviceRegister, uid, d.ID, audit.ResultSuccess, "", sigMeta))
	})
	if err != nil {
		if errors.Is(err, ErrAlreadyRegistered) {
			s.auditDevice(ctx, audit.TypeDeviceRegister, uid, c.DeviceID, audit.ResultFailure, "fingerprint already registered", sigMeta)
		}
		return nil, err
	}
	s.d.DeviceNotifier().AuthenticatorAdded(ctx, uid, devicekey.AuthenticatorDevice, d.ID, d.DeviceName, d.ID)
	return &RegisterResult{Success: true, DeviceID: d.ID, Device: s.view(d)}, nil
}

// view shows the FCM token in clear to the device's owner.
func (s *Service) view(d *Device) *Device {
	v := *d
	v.FCMToken = nil
	if tok := devicekey.DecryptFCMToken(s.d.Cipher(), d); tok != "" {
		v.FCMToken = &tok
	}
	return &v
}

// Devices lists uid's active devices as their owner sees them.
func (s *Service) Devices(ctx context.Context, uid int64) ([]*Device, error) {
	return s.devices(ctx, uid, true)
}

// AdminDevices lists every device of an identity, the inactive ones too.
func (s *Service) AdminDevices(ctx context.Context, uid int64) ([]*Device, error) {
	if err := identity.MustExist(ctx, s.d.IdentityPersister(), uid); err != nil {
		return nil, err
	}
	return s.devices(ctx, uid, false)
}

func (s *Service) devices(ctx context.Context, uid int64, activeOnly bool) ([]*Device, error) {
	ds, err := s.d.BiometricPersister().ListDevices(ctx, uid, activeOnly)
	if err != nil {
		return nil, err
	}
	out := make([]*Device, 0, len(ds))
	for i := range ds {
		out = append(out, s.view(&ds[i]))
	}
	return out, nil
}

// RemoveDevice deactivates a device of uid and revokes every token issued through it
// (by is "user" or "admin", for the event).
func (s *Service) RemoveDevice(ctx context.Context, uid int64, deviceID string, by string) error {
	return s.devs.Remove(ctx, uid, deviceID, by)
}

// RemoveAllDevices deletes every device of an identity and ends the sessions they
// signed in, in one transaction; it returns how many it deleted.
func (s *Service) RemoveAllDevices(ctx context.Context, uid int64) (int, error) {
	return s.devs.RemoveAll(ctx, uid)
}

// FCMTokenRequest sets the push token of a device.
type FCMTokenRequest struct {
	DeviceID string `json:"deviceId"`
	FCMToken string `json:"fcmToken"`
}

func (b *FCMTokenRequest) Validate() error {
	return x.FirstError(x.RequiredMaxLen("deviceId", b.DeviceID, 64), x.RequiredMaxLen("fcmToken", b.FCMToken, 255))
}

// UpdateFCMToken stores b's token, sealed, on uid's active device.
func (s *Service) UpdateFCMToken(ctx context.Context, uid int64, b *FCMTokenRequest) error {
	if _, err := uuid.Parse(b.DeviceID); err != nil {
		return ErrDeviceInactive
	}
	enc, err := devicekey.SealFCMToken(s.d.Cipher(), b.DeviceID, b.FCMToken)
	if err != nil {
		return err
	}
	ok, err := s.d.BiometricPersister().UpdateDeviceFCMToken(ctx, uid, b.DeviceID, &enc)
	if err != nil {
		return err
	}
	if !ok {
		return ErrDeviceInactive
	}
	return nil
}

// KeygenRequest asks for a key pair.
type KeygenRequest struct {
	KeyAlgorithm string `json:"keyAlgorithm"`
	KeyName      string `json:"keyName"`
}

func (b *KeygenRequest) Validate() error {
	return x.FirstError(x.Required("keyAlgorithm", b.KeyAlgorithm), x.OneOf("keyAlgorithm", b.KeyAlgorithm, devicekey.AlgES256),
		x.MaxLen("keyName", b.KeyName, 255))
}

// KeygenResult is a generated key pair.
type KeygenResult struct {
	KeyAlgorithm string `json:"keyAlgorithm"`
	Curve        string `json:"curve"`
	PrivateKey   string `json:"privateKey"`
	PublicKey    string `json:"publicKey"`
	KeyName      string `json:"keyName,omitempty"`
}

// KeygenAllowed is ErrKeygenDisabled unless biometric.keygen_enabled.
func (s *Service) KeygenAllowed() error {
	if !s.d.Config().Biometric.KeygenEnabled {
		return ErrKeygenDisabled
	}
	return nil
}

// Keygen makes a P-256 key pair for devices that cannot; the private key is returned
// once and never stored.
func (s *Service) Keygen(ctx context.Context, uid int64, b *KeygenRequest) (*KeygenResult, error) {
	if err := s.KeygenAllowed(); err != nil {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	priv, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	s.auditDevice(ctx, "device.keygen", uid, "", audit.ResultSuccess, "", map[string]any{"keyAlgorithm": devicekey.AlgES256})
	return &KeygenResult{
		KeyAlgorithm: devicekey.AlgES256, Curve: "P-256", KeyName: b.KeyName,
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})),
		PublicKey:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
	}, nil
}

// auditDevice logs an event that changes nothing in the background.
func (s *Service) auditDevice(ctx context.Context, typ string, uid int64, deviceID, result, reason string, md map[string]any) {
	s.d.AuditLogger().Log(ctx, deviceEvent(typ, uid, deviceID, result, reason, md))
}

func deviceEvent(typ string, uid int64, deviceID, result, reason string, md map[string]any) audit.Event {
	ev := audit.Event{Type: typ, UserID: audit.Int64(uid), Result: result, Reason: reason, Metadata: md}
	if deviceID != "" {
		ev.DeviceID = &deviceID
	}
	return ev
}
