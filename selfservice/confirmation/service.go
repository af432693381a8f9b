package confirmation

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/driver/config"
	"github.com/pvpipe/pvauth/session"
	"github.com/pvpipe/pvauth/x"
)

// MaxPayloadBytes bounds the serialized actionPayload.
const MaxPayloadBytes = 4096

// MaxMatchFailures is how many wrong match codes a confirmation takes: the last one
// rejects it.
const MaxMatchFailures = 3

// ReceiptType is the typ header of a confirmation receipt.
const ReceiptType = "pvauth-confirmation+jwt"

// Errors as clients see them.
var (
	ErrConfirmationNotFound = x.ErrNotFound.Derive("Confirmation not found")
	ErrNotPending           = x.ErrConflict.Derive("Confirmation is no longer pending")
	ErrExpired              = x.ErrBadRequest.Derive("Confirmation expired")
	ErrNotConsumable        = x.ErrConflict.Derive("Confirmation is not approved or was already consumed")
	ErrMatchCodeMismatch    = x.NewError(400, "match_code_mismatch", "The match code does not match the one shown when the confirmation was initiated.")
)

type serviceDeps interface {
	Config() *config.Config
	PersisterProvider
	devicekey.PersisterProvider
	devicekey.NotifierProvider
	session.TokensProvider
	audit.LoggerProvider
}

// Service is the confirmation lifecycle: initiate, read, verify, reject, consume, and
// waiting for an outcome. It is safe for concurrent use; one per registry.
type Service struct {
	d         serviceDeps
	hub       *hub
	heartbeat atomicDuration
	receipts  receiptCache
	done      chan struct{}
	closeOnce sync.Once
}

// NewService builds the service.
func NewService(d serviceDeps) *Service {
	s := &Service{d: d, done: make(chan struct{})}
	s.hub = newHub(func(ctx context.Context, ids []string) (map[string]Version, error) {
		return d.ConfirmationPersister().GetConfirmationVersions(ctx, ids)
	})
	s.heartbeat.Store(15 * time.Second)
	return s
}

// Shutdown ends every event stream and wait (server shutdown: streams would otherwise
// hold the graceful shutdown until its deadline).
func (s *Service) Shutdown() { s.closeOnce.Do(func() { close(s.done) }) }

// Initiated is the answer of Initiate: the challenge (base64 of the text to sign) and,
// with number matching, the code for the initiating screen. Neither is stored.
type Initiated struct {
	*Confirmation
	Challenge string
	MatchCode string
}

// NormalizeActionType trims and checks an action type.
func NormalizeActionType(s string) (string, error) {
	s = strings.TrimSpace(s)
	if err := x.RequiredMaxLen("actionType", s, 100); err != nil {
		return "", err
	}
	// The action type is a line of the challenge text.
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return "", x.ErrBadRequest.WithMessage("Field 'actionType' must not contain control characters.")
	}
	return s, nil
}

// NormalizePayload checks an action payload (a JSON object of at most MaxPayloadBytes
// compact) and returns it compacted as sent, or nil when absent or null. Compact keeps
// the payload as the client wrote it (no re-encoding through float64), so big integers
// survive in what is shown; the action hash is over its JCS form.
func NormalizePayload(raw json.RawMessage) (json.RawMessage, error) {
	p := bytes.TrimSpace(raw)
	if len(p) == 0 || string(p) == "null" {
		return nil, nil
	}
	errObj := x.ErrBadRequest.WithMessage("Field 'actionPayload' must be a JSON object.")
	if p[0] != '{' {
		return nil, errObj
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, p); err != nil {
		return nil, errObj
	}
	if compact.Len() > MaxPayloadBytes {
		return nil, x.ErrBadRequest.WithMessagef("Field 'actionPayload' must be at most %d bytes when serialized.", MaxPayloadBytes)
	}
	return compact.Bytes(), nil
}

// Initiate starts a confirmation of actionType (payload may be nil) for userID and
// pushes it to the user's devices. A push failure does not fail it.
func (s *Service) Initiate(ctx context.Context, userID int64, actionType string, payload json.RawMessage) (*Initiated, error) {
	return s.InitiateWith(ctx, userID, actionType, payload, InitiateOptions{})
}

// InitiateOptions tune InitiateWith for a confirmation started by pvauth itself (a CIBA
// backchannel login).
type InitiateOptions struct {
	// TTL replaces ttl.confirmation when it is positive and shorter.
	TTL time.Duration
	// InTx runs in the transaction that stores the confirmation, before the push: its
	// error stores nothing and is returned as is.
	InTx func(ctx context.Context, c *Confirmation) error
}

// InitiateWith is Initiate with options.
func (s *Service) InitiateWith(ctx context.Context, userID int64, actionType string, payload json.RawMessage, o InitiateOptions) (*Initiated, error) {
	actionType, err := NormalizeActionType(actionType)
	if err != nil {
		return nil, err
	}
	if payload, err = NormalizePayload(payload); err != nil {
		return nil, err
	}
	actionHash, err := ActionHash(payload)
	if err != nil {
		return nil, x.ErrBadRequest.WithMessage("Field 'actionPayload' cannot be canonicalized (RFC 8785): " + err.Error())
	}
	// Whole seconds, as stored, so that the challenge's expiry is the stored one.
	ttl := s.d.Config().TTL.Confirmation
	if o.TTL > 0 && o.TTL < ttl {
		ttl = o.TTL
	}
	exp := ceilSecond(time.Now().Add(ttl))
	c := &Confirmation{
		ID: uuid.NewString(), IdentityID: userID, ActionType: actionType, ActionHash: &actionHash,
		Status: StatusPending, ExpiresAt: exp,
	}
	if payload != nil {
		p := string(payload)
		c.ActionPayload = &p
	}
	text, err := ChallengeText(c.ID, actionType, actionHash, exp)
	if err != nil {
		return nil, err
	}
	challenge, challengeHash := devicekey.EncodeChallenge([]byte(text))
	c.ChallengeHash = challengeHash
	out := &Initiated{Confirmation: c, Challenge: challenge}
	if s.d.Config().Confirmations.NumberMatching {
		n, err := rand.Int(rand.Reader, big.NewInt(100))
		if err != nil {
			return nil, err
		}
		out.MatchCode = fmt.Sprintf("%02d", n.Int64())
		h := matchHash(c.ID, out.MatchCode)
		c.MatchCodeHash = &h
	}
	al := s.d.AuditLogger()
	if err := al.Tx(ctx, func(ctx context.Context) error {
		if err := s.d.ConfirmationPersister().CreateConfirmation(ctx, c); err != nil {
			return err
		}
		if o.InTx != nil {
			if err := o.InTx(ctx, c); err != nil {
				return err
			}
		}
		return al.LogTx(ctx, event(c, audit.ResultSuccess, "", map[string]any{"event": "initiated", "challengeHash": challengeHash,
			"actionHash": actionHash, "numberMatching": c.MatchCodeHash != nil}))
	}); err != nil {
		return nil, err
	}
	s.d.DeviceNotifier().Notify(ctx, devicekey.Message{
		UserID: userID,
		Data: map[string]string{
			"type":           "action_confirmation",
			"confirmationId": c.ID,
			"actionType":     c.ActionType,
			"actionHash":     actionHash,
			"challenge":      challenge,
			"expiresAt":      c.ExpiresAt.UTC().Format(time.RFC3339),
		},
		Metadata: map[string]any{"confirmationId": c.ID},
	})
	return out, nil
}

// matchHash binds a match code to its confirmation; compared in constant time.
func matchHash(id, code string) string {
	sum := sha256.Sum256([]byte("pvauth-match-code\x00" + id + "\x00" + code))
	return hex.EncodeToString(sum[:])
}

func ceilSecond(t time.Time) time.Time {
	u := t.UTC()
	if tr := u.Truncate(time.Second); !tr.Equal(u) {
		return tr.Add(time.Second)
	}
	return u
}

// Get returns confirmation id of userID (any user's when userID is 0); another user's
// is ErrConfirmationNotFound.
func (s *Service) Get(ctx context.Context, userID int64, id string) (*Confirmation, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, ErrConfirmationNotFound
	}
	c, err := s.d.ConfirmationPersister().GetConfirmation(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrConfirmationNotFound
	} else if err != nil {
		return nil, err
	}
	if userID != 0 && c.IdentityID != userID {
		return nil, ErrConfirmationNotFound
	}
	return c, nil
}

// Verify approves confirmation id of userID with a signature of its challenge by the
// user's active device deviceID and, when the confirmation was initiated with number
// matching, the match code. It returns the approved confirmation and its receipt.
func (s *Service) Verify(ctx context.Context, userID int64, id, deviceID, signature, matchCode string) (*Confirmation, string, error) {
	c, err := s.Get(ctx, userID, id)
	if err != nil {
		return nil, "", err
	}
	d, err := devicekey.ActiveDevice(ctx, s.d.DevicePersister(), userID, deviceID)
	if err != nil {
		return nil, "", err
	}
	meta := map[string]any{"event": "verify", "challengeHash": c.ChallengeHash, "signatureHash": audit.Hash(signature), "deviceId": d.ID}
	if err := d.VerifyChallenge(c.ChallengeHash, signature); err != nil {
		s.log(ctx, c, audit.ResultFailure, "signature verification failed", meta)
		return nil, "", devicekey.ErrBadSignature
	}
	if c.MatchCodeHash != nil {
		want, got := []byte(*c.MatchCodeHash), []byte(matchHash(c.ID, strings.TrimSpace(matchCode)))
		if subtle.ConstantTimeCompare(want, got) != 1 {
			return nil, "", s.matchFailure(ctx, c, meta)
		}
	}
	// What the conditional update will write, without reading it back (times as stored:
	// whole seconds in UTC), and its receipt, signed before the commit: nothing that can
	// fail may run after it, or an approval that happened would be answered an error.
	at := time.Now()
	stored := at.UTC().Truncate(time.Second)
	approved := *c
	approved.Status, approved.DeviceID, approved.ApprovedAt, approved.UpdatedAt = StatusApproved, &d.ID, &stored, stored
	receipt, err := s.signReceipt(&approved)
	if err != nil {
		return nil, "", err
	}
	meta["status"] = StatusApproved
	if err := s.decide(ctx, c, StatusApproved, &d.ID, nil, at, event(&approved, audit.ResultSuccess, "", meta)); err != nil {
		return nil, "", err
	}
	s.receipts.put(receiptKey(&approved), receipt)
	// lastUsedAt is for display: a minute's precision spares a write per approval.
	if d.LastUsedAt == nil || at.Sub(*d.LastUsedAt) >= time.Minute {
		_ = s.d.DevicePersister().TouchDevice(ctx, d.ID, at)
	}
	return &approved, receipt, nil
}

// matchFailure counts a wrong or missing match code; the MaxMatchFailures-th rejects
// the confirmation. Both are conditional updates: concurrent wrong codes are each
// counted once, and exactly one of them rejects.
func (s *Service) matchFailure(ctx context.Context, c *Confirmation, meta map[string]any) error {
	now := time.Now()
	p := s.d.ConfirmationPersister()
	al := s.d.AuditLogger()
	// The count and its event, then a rejection and its event, each commit together.
	var ok bool
	meta["matchCode"] = "mismatch"
	if err := al.Tx(ctx, func(ctx context.Context) error {
		var err error
		if ok, err = p.CountMatchFailure(ctx, c.ID, now); err != nil || !ok {
			return err
		}
		return al.LogTx(ctx, event(c, audit.ResultFailure, "match code mismatch", meta))
	}); err != nil {
		return err
	}
	if !ok {
		return s.loser(ctx, c.ID, now)
	}
	var rejected bool
	if err := al.Tx(ctx, func(ctx context.Context) error {
		var err error
		if rejected, err = p.RejectOnMatchFailures(ctx, c.ID, MaxMatchFailures, "too many wrong match codes", now); err != nil || !rejected {
			return err
		}
		return al.LogTx(ctx, event(c, audit.ResultSuccess, "too many wrong match codes",
			map[string]any{"event": "reject", "status": StatusRejected, "by": "match_code"}))
	}); err != nil {
		return err
	}
	if rejected {
		s.hub.notify(c.ID)
	}
	return ErrMatchCodeMismatch
}

// Reject rejects confirmation id of userID.
func (s *Service) Reject(ctx context.Context, userID int64, id, reason string) (*Confirmation, error) {
	c, err := s.Get(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	var r *string
	if reason != "" {
		r = &reason
	}
	ev := event(c, audit.ResultSuccess, reason, map[string]any{"event": "reject", "status": StatusRejected})
	at := time.Now()
	if err := s.decide(ctx, c, StatusRejected, nil, r, at, ev); err != nil {
		return nil, err
	}
	// What the update wrote, without reading it back: nothing that can fail runs after
	// the commit, or a rejection that happened would be answered an error (as Verify).
	rejected := *c
	rejected.Status, rejected.Reason, rejected.UpdatedAt = StatusRejected, r, at.UTC().Truncate(time.Second)
	return &rejected, nil
}

// decide applies a decision exactly once, in one transaction with its event ev; the
// loser of a race, or a late caller, learns why: 400 when the time has passed, 409 when
// someone already decided.
func (s *Service) decide(ctx context.Context, c *Confirmation, status string, deviceID, reason *string, now time.Time, ev audit.Event) error {
	var ok bool
	al := s.d.AuditLogger()
	err := al.Tx(ctx, func(ctx context.Context) error {
		var err error
		if ok, err = s.d.ConfirmationPersister().DecideConfirmation(ctx, c.ID, status, deviceID, reason, now); err != nil || !ok {
			return err
		}
		return al.LogTx(ctx, ev)
	})
	if err != nil {
		return err
	}
	if !ok {
		return s.loser(ctx, c.ID, now)
	}
	s.hub.notify(c.ID)
	return nil
}

func (s *Service) loser(ctx context.Context, id string, now time.Time) error {
	cur, err := s.d.ConfirmationPersister().GetConfirmation(ctx, id)
	if err != nil {
		return err
	}
	if cur.EffectiveStatus(now) == StatusExpired {
		return ErrExpired
	}
	return ErrNotPending
}

// Consume marks an approved confirmation consumed, exactly once across replicas: the
// asking service acts on the approval only when this succeeds.
func (s *Service) Consume(ctx context.Context, id string) (*Confirmation, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, ErrConfirmationNotFound
	}
	// Read first: once the update below commits nothing that can fail may run, or a
	// consumption that happened would be answered an error and its retry refused. The
	// consumption and its event commit together.
	c, err := s.Get(ctx, 0, id)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	stored := now.UTC().Truncate(time.Second)
	consumed := *c
	consumed.ConsumedAt, consumed.UpdatedAt = &stored, stored
	var ok bool
	al := s.d.AuditLogger()
	err = al.Tx(ctx, func(ctx context.Context) error {
		var err error
		if ok, err = s.d.ConfirmationPersister().ConsumeConfirmation(ctx, id, now); err != nil || !ok {
			return err
		}
		return al.LogTx(ctx, event(&consumed, audit.ResultSuccess, "", map[string]any{"event": "consume", "status": c.Status}))
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		if cur, err := s.Get(ctx, 0, id); err == nil {
			c = cur // what the winner left, for the log
		}
		s.log(ctx, c, audit.ResultFailure, "not approved or already consumed", map[string]any{"event": "consume", "status": c.EffectiveStatus(time.Now())})
		return nil, ErrNotConsumable
	}
	s.hub.notify(c.ID)
	return &consumed, nil
}

// Receipt is the signed proof of an approval (API.md §3): a JWT signed by the current
// access-token key, typ pvauth-confirmation+jwt; "" unless c is approved.
func (s *Service) Receipt(c *Confirmation) (string, error) {
	if c.Status != StatusApproved || c.ApprovedAt == nil {
		return "", nil
	}
	// An approval does not change: its receipt is signed once per process (status and
	// events read it again and again), and any signature of a listed key verifies.
	if r, ok := s.receipts.get(receiptKey(c)); ok {
		return r, nil
	}
	r, err := s.signReceipt(c)
	if err == nil {
		s.receipts.put(receiptKey(c), r)
	}
	return r, err
}

func receiptKey(c *Confirmation) string {
	return c.ID + "@" + strconv.FormatInt(c.ApprovedAt.UnixNano(), 10)
}

func (s *Service) signReceipt(c *Confirmation) (string, error) {
	did := ""
	if c.DeviceID != nil {
		did = *c.DeviceID
	}
	iat := c.ApprovedAt.Unix()
	return s.d.Tokens().Keys().SignTyped(ReceiptType, map[string]any{
		"iss":         s.d.Config().Issuer(),
		"sub":         strconv.FormatInt(c.IdentityID, 10),
		"jti":         c.ID,
		"iat":         iat,
		"exp":         iat + int64(s.d.Config().TTL.ConfirmationReceipt/time.Second),
		"action_type": c.ActionType,
		"action_hash": c.Hash(),
		"did":         did,
		"amr":         []string{session.AMRHardware},
	})
}

// Subscribe returns a subscription that is woken whenever confirmation id may have
// changed, on this replica at once, on another within about PollInterval. Close it.
func (s *Service) Subscribe(id string) *Subscription { return s.hub.subscribe(id) }

// Done is closed when the service shuts down.
func (s *Service) Done() <-chan struct{} { return s.done }

// Wait blocks until confirmation id of userID (any user's when 0) is final — approved,
// rejected or expired — and returns it; or until ctx ends. For callers in Go (CIBA).
func (s *Service) Wait(ctx context.Context, userID int64, id string) (*Confirmation, error) {
	sub := s.Subscribe(id)
	defer sub.Close()
	for {
		c, err := s.Get(ctx, userID, id)
		if err != nil {
			return nil, err
		}
		if c.Final(time.Now()) {
			return c, nil
		}
		sub.Seen(c)
		t := time.NewTimer(time.Until(c.ExpiresAt))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-s.done:
			t.Stop()
			return nil, errors.New("confirmation service shut down")
		case <-sub.C:
		case <-t.C:
		}
		t.Stop()
	}
}

// SetHeartbeatInterval sets how often an event stream sends a comment line (15 s by
// default; tests shorten it).
func (s *Service) SetHeartbeatInterval(d time.Duration) { s.heartbeat.Store(d) }

// HeartbeatInterval is the current heartbeat interval.
func (s *Service) HeartbeatInterval() time.Duration { return s.heartbeat.Load() }

// log writes an event that changes nothing in the background.
func (s *Service) log(ctx context.Context, c *Confirmation, result, reason string, md map[string]any) {
	s.d.AuditLogger().Log(ctx, event(c, result, reason, md))
}

func event(c *Confirmation, result, reason string, md map[string]any) audit.Event {
	if md == nil {
		md = map[string]any{}
	}
	md["confirmationId"] = c.ID
	md["actionType"] = c.ActionType
	ev := audit.Event{Type: audit.TypeConfirmation, UserID: audit.Int64(c.IdentityID), Result: result, Reason: reason, Metadata: md}
	if did, ok := md["deviceId"].(string); ok {
		ev.DeviceID = &did
	}
	return ev
}

// receiptCache keeps signed receipts, bounded: when full it starts over.
type receiptCache struct {
	mu sync.Mutex
	m  map[string]string
}

const receiptCacheSize = 4096

func (c *receiptCache) get(k string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[k]
	return r, ok
}

func (c *receiptCache) put(k, r string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= receiptCacheSize {
		c.m = make(map[string]string, 64)
	}
	c.m[k] = r
}
