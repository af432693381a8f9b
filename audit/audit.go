// Package audit records security events. Writes are queued and stored by a background
// worker, so an audit write never blocks or fails the request it describes.
package audit

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/x"
)

// Results.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// Event types. Dotted names group by domain so that the listing can filter by type.
const (
	TypeLogin            = "login"
	TypeOTPSetup         = "otp.setup"
	TypeOTPVerify        = "otp.verify"
	TypeOTPEnroll        = "otp.enroll"
	TypeServiceOTPVerify = "otp.service_verify"
	TypeTokenRefresh     = "token.refresh"
	TypeTokenReuse       = "token.refresh_reuse"
	TypeTokenRevoke      = "token.revoke"
	TypeLogout           = "logout"
	TypeIdentityCreate   = "admin.identity.create"
	TypeIdentityUpdate   = "admin.identity.update"
	TypeIdentityDelete   = "admin.identity.delete"
	TypeIdentityPassword = "admin.identity.password"
	TypeIdentityOTPReset = "admin.identity.otp_reset"
	TypeIdentitySessions = "admin.identity.sessions_revoke"
	TypeKeyRotate        = "admin.keys.rotate"
	TypeSignatureVerify  = "admin.signature.verify"
	TypeDeviceRegister   = "device.register"
	TypeDeviceDelete     = "device.delete"
	TypeBiometricLogin   = "biometric.login"
	TypeConfirmation     = "confirmation"
	TypePushFailure      = "push.failure"
	TypePasskey          = "passkey"
	TypeAdminAuthFailure = "admin.auth_failure"
	TypeRateLimited      = "ratelimit.exceeded"
	TypeStepUpRequired   = "step_up.required"
)

// Event is one audit record.
type Event struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"`
	UserID    *int64         `json:"userId"`
	DeviceID  *string        `json:"deviceId,omitempty"`
	IP        string         `json:"ip"`
	UserAgent string         `json:"userAgent"`
	Result    string         `json:"result"`
	Reason    string         `json:"reason,omitempty"`
	CreatedAt time.Time      `json:"createdAt"`
	Metadata  map[string]any `json:"metadata"`
}

// MarshalJSON writes the contract's shape: createdAt as RFC 3339 in UTC (whole seconds,
// as stored) and metadata as {} rather than null.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	out := struct {
		plain
		CreatedAt string `json:"createdAt"`
	}{plain: plain(e), CreatedAt: e.CreatedAt.UTC().Format(time.RFC3339)}
	if out.Metadata == nil {
		out.Metadata = map[string]any{}
	}
	return json.Marshal(out)
}

// Filter selects events for the admin listing; newest first.
type Filter struct {
	UserID *int64
	Type   string
	Since  *time.Time
	// BeforeID continues a listing: only events with a smaller (older) id.
	BeforeID string
	Limit    int
}

// Persister stores and lists events.
type Persister interface {
	InsertAuditEvents(ctx context.Context, events []Event) error
	ListAuditEvents(ctx context.Context, f Filter) ([]Event, error)
}

// LoggerProvider is implemented by the registry.
type LoggerProvider interface {
	AuditLogger() *Logger
}

// Logger queues events and writes them in batches.
type Logger struct {
	p     Persister
	queue chan Event
	wg    sync.WaitGroup
	// mu guards closed against the close of queue: Log holds it shared, Close exclusively.
	mu     sync.RWMutex
	closed bool
	// pending counts events queued but not yet stored (Flush waits for zero).
	pending atomic.Int64
	dropped atomic.Int64
	onDrop  atomic.Pointer[func()]
	onLog   atomic.Pointer[func(Event)]
}

// QueueSize bounds memory; when full, events are dropped with a log line rather than
// slowing requests down.
const QueueSize = 8192

// maxBatch is the most events one write stores.
const maxBatch = 256

// Column limits of audit_events, in characters.
const (
	maxType      = 64
	maxIP        = 64
	maxUserAgent = 512
	maxReason    = 255
)

// NewLogger starts the background writer.
func NewLogger(p Persister) *Logger {
	l := &Logger{p: p, queue: make(chan Event, QueueSize)}
	l.wg.Add(1)
	go l.run()
	return l
}

// OnDrop registers fn to be called for every event dropped because the queue was full
// (the metrics counter pvauth_audit_dropped_total). It is safe to call at any time.
func (l *Logger) OnDrop(fn func()) {
	if fn == nil {
		l.onDrop.Store(nil)
		return
	}
	l.onDrop.Store(&fn)
}

// OnLog sets a function called with every event as it is logged (metrics). It runs on
// the request's goroutine, so it must be cheap.
func (l *Logger) OnLog(fn func(Event)) {
	if fn == nil {
		l.onLog.Store(nil)
		return
	}
	l.onLog.Store(&fn)
}

// Dropped returns how many events were dropped because the queue was full.
func (l *Logger) Dropped() int64 { return l.dropped.Load() }

// Log queues e, filling id, time and defaults. It never blocks.
func (l *Logger) Log(ctx context.Context, e Event) {
	if fn := l.onLog.Load(); fn != nil {
		(*fn)(e)
	}
	if e.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			id = uuid.New()
		}
		e.ID = id.String()
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = time.Now().UTC()
	}
	if e.Result == "" {
		e.Result = ResultSuccess
	}
	if e.Metadata == nil {
		e.Metadata = map[string]any{}
	}
	if e.IP == "" {
		e.IP = x.ClientIPFromContext(ctx)
	}
	if e.UserAgent == "" {
		e.UserAgent = userAgentFromContext(ctx)
	}
	e.Type = truncate(e.Type, maxType)
	e.IP = truncate(e.IP, maxIP)
	e.UserAgent = truncate(e.UserAgent, maxUserAgent)
	e.Reason = truncate(e.Reason, maxReason)

	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return
	}
	l.pending.Add(1)
	select {
	case l.queue <- e:
	default:
		l.pending.Add(-1)
		l.dropped.Add(1)
		if fn := l.onDrop.Load(); fn != nil {
			(*fn)()
		}
		slog.Warn("audit queue full; event dropped", "type", e.Type)
	}
}

// truncate cuts s to at most n characters without splitting a UTF-8 sequence (PostgreSQL
// refuses invalid UTF-8), replacing invalid bytes.
func truncate(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

func (l *Logger) run() {
	defer l.wg.Done()
	batch := make([]Event, 0, maxBatch)
	for e := range l.queue {
		batch = append(batch[:0], e)
	drain:
		for len(batch) < cap(batch) {
			select {
			case e, ok := <-l.queue:
				if !ok {
					break drain
				}
				batch = append(batch, e)
			default:
				break drain
			}
		}
		l.write(batch)
	}
}

func (l *Logger) write(batch []Event) {
	defer l.pending.Add(-int64(len(batch)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := l.p.InsertAuditEvents(ctx, batch)
	if err == nil {
		return
	}
	if len(batch) == 1 {
		slog.Error("writing audit event failed", "type", batch[0].Type, "error", err)
		return
	}
	// One bad event must not lose the batch: store the events one by one.
	failed := 0
	for i := range batch {
		if err := l.p.InsertAuditEvents(ctx, batch[i:i+1]); err != nil {
			failed++
			slog.Error("writing audit event failed", "type", batch[i].Type, "error", err)
		}
	}
	slog.Error("writing audit batch failed; stored events one by one", "count", len(batch), "failed", failed)
}

// Flush waits until every queued event is stored (tests, shutdown).
func (l *Logger) Flush() {
	for l.pending.Load() > 0 {
		time.Sleep(2 * time.Millisecond)
	}
}

// Close stores what is queued and stops the writer. Events logged after Close are ignored.
func (l *Logger) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()
	l.wg.Wait()
}

// Hash is how challenges and signatures appear in audit metadata: hex SHA-256.
func Hash(s string) string { return x.SHA256Hex(s) }

type uaKey struct{}

// WithUserAgent middleware remembers the User-Agent for events logged with the context.
func WithUserAgent(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), uaKey{}, r.UserAgent())))
	})
}

func userAgentFromContext(ctx context.Context) string {
	s, _ := ctx.Value(uaKey{}).(string)
	return s
}

// Int64 is a helper for Event.UserID.
func Int64(v int64) *int64 { return &v }
