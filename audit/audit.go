// Package audit records security events. The event of a state change is written in the
// transaction that makes the change (LogTx), so that one never commits without the other;
// an event that changes nothing (a failed login) is queued and stored by a background
// worker (Log), which retries while the database is away and counts what it drops.
package audit

import (
	"context"
	"encoding/json"
	"errors"
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

// Transactor is implemented by a persister that carries write transactions in the
// context (persistence/sql): LogTx writes into the one ctx carries, and Tx opens one.
type Transactor interface {
	// GroupTransaction runs fn in a write transaction carried by the context fn gets,
	// joining the one ctx carries (on SQLite, possibly shared with concurrent callers).
	GroupTransaction(ctx context.Context, fn func(ctx context.Context) error) error
	// InTransaction reports whether ctx carries a write transaction.
	InTransaction(ctx context.Context) bool
	// AfterCommit runs fn once the transaction ctx carries has committed, never if it
	// rolls back (at once outside a transaction).
	AfterCommit(ctx context.Context, fn func())
}

// Pinger is implemented by a persister that can tell whether its database answers. The
// background writer asks it after a failed write: an outage is waited out, while a
// write that fails against a database that answers has a bad event in it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// ErrNoTransaction is LogTx's error when ctx carries no write transaction: the event of
// a state change must commit with the change, so there is nothing sensible to fall
// back to.
var ErrNoTransaction = errors.New("audit: LogTx needs a write transaction in the context")

// LoggerProvider is implemented by the registry.
type LoggerProvider interface {
	AuditLogger() *Logger
}

// Logger writes events: in the caller's transaction (LogTx), or queued and written in
// batches by a background writer (Log).
type Logger struct {
	p     Persister
	queue chan Event
	wg    sync.WaitGroup
	// giveUp is closed when Close has waited shutdownWait: the writer stops retrying and
	// counts what it still holds as dropped.
	giveUp       chan struct{}
	giveUpOnce   sync.Once
	base         context.Context // canceled when giving up
	cancelBase   context.CancelFunc
	shutdownWait atomic.Int64 // nanoseconds
	// mu guards closed against the close of queue: Log holds it shared, Close exclusively.
	mu     sync.RWMutex
	closed bool
	// pending counts events queued but not yet stored (Flush waits for zero).
	pending atomic.Int64
	dropped atomic.Int64
	// lastDropLog (unix nanoseconds) spaces the log lines of events refused at the queue:
	// during an outage they come by thousands a second, and each is counted anyway.
	lastDropLog atomic.Int64
	onDrop      atomic.Pointer[func()]
	onLog       atomic.Pointer[func(Event)]
}

// QueueSize bounds memory; when full, events are dropped with a log line rather than
// slowing requests down.
const QueueSize = 8192

// Retry of the background writer while the database is away: the first wait, doubling
// up to the last. Short enough that events land soon after the database is back, long
// enough not to hammer a database that is starting.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 2 * time.Second
)

// DefaultShutdownWait bounds how long Close (and Flush) wait for queued events while
// the database does not take them; what is left then is dropped and counted.
const DefaultShutdownWait = 10 * time.Second

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
	l := &Logger{p: p, queue: make(chan Event, QueueSize), giveUp: make(chan struct{})}
	l.shutdownWait.Store(int64(DefaultShutdownWait))
	l.base, l.cancelBase = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.run()
	return l
}

// SetShutdownWait sets how long Close and Flush wait for the background writer while
// the database does not take its events (DefaultShutdownWait).
func (l *Logger) SetShutdownWait(d time.Duration) { l.shutdownWait.Store(int64(d)) }

// OnDrop registers fn to be called for every event dropped: the queue was full, the
// database refused the event itself, or shutdown came while the database was away (the
// metrics counter pvauth_audit_dropped_total). It is safe to call at any time.
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

// Dropped returns how many events were dropped (see OnDrop).
func (l *Logger) Dropped() int64 { return l.dropped.Load() }

func (l *Logger) drop(n int, msg string, args ...any) {
	if n <= 0 {
		return
	}
	l.dropped.Add(int64(n))
	if fn := l.onDrop.Load(); fn != nil {
		for range n {
			(*fn)()
		}
	}
	slog.Error(msg, append([]any{"dropped", n}, args...)...)
}

// dropAtQueue counts one event refused by Log, logging at most once a second.
func (l *Logger) dropAtQueue(msg string, e Event) {
	total := l.dropped.Add(1)
	if fn := l.onDrop.Load(); fn != nil {
		(*fn)()
	}
	now, last := time.Now().UnixNano(), l.lastDropLog.Load()
	if now-last >= int64(time.Second) && l.lastDropLog.CompareAndSwap(last, now) {
		slog.Error(msg, "type", e.Type, "droppedTotal", total)
	}
}

// Log queues e, filling id, time and defaults, for the background writer. It never
// blocks. It is for events that change nothing (a failed login, a refused request):
// the event of a state change goes through LogTx.
func (l *Logger) Log(ctx context.Context, e Event) {
	e = l.prepare(ctx, e)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropAtQueue("audit event logged after shutdown; dropped", e)
		return
	}
	l.pending.Add(1)
	select {
	case l.queue <- e:
	default:
		l.pending.Add(-1)
		l.dropAtQueue("audit queue full; events dropped (counted in pvauth_audit_dropped_total)", e)
	}
}

// LogTx writes e, with the defaults Log fills, in the write transaction ctx carries, so
// that it commits or rolls back with the change it records. Its error (no transaction,
// or the write failed) must fail that transaction.
func (l *Logger) LogTx(ctx context.Context, e Event) error {
	t, ok := l.p.(Transactor)
	if !ok || !t.InTransaction(ctx) {
		return ErrNoTransaction
	}
	if err := l.p.InsertAuditEvents(ctx, []Event{l.fill(ctx, e)}); err != nil {
		return err
	}
	// The metrics count what happened: the event of a change that rolls back is not.
	if fn := l.onLog.Load(); fn != nil {
		t.AfterCommit(ctx, func() { (*fn)(e) })
	}
	return nil
}

// Tx runs fn in a write transaction (joining the one ctx carries); fn makes a change
// and records it with LogTx. fn's error undoes both. fn should only touch the database:
// on SQLite the transaction may be shared with concurrent callers.
func (l *Logger) Tx(ctx context.Context, fn func(ctx context.Context) error) error {
	t, ok := l.p.(Transactor)
	if !ok {
		return ErrNoTransaction
	}
	return t.GroupTransaction(ctx, fn)
}

// prepare tells the OnLog hook of a background event and fills it (fill).
func (l *Logger) prepare(ctx context.Context, e Event) Event {
	if fn := l.onLog.Load(); fn != nil {
		(*fn)(e)
	}
	return l.fill(ctx, e)
}

// fill fills id, time and request defaults and cuts fields to their columns.
func (l *Logger) fill(ctx context.Context, e Event) Event {
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
	return e
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

// write stores a batch. While the database is away the batch is kept and retried with
// backoff (new events queue behind it up to QueueSize); a batch that fails against a
// database that answers has a bad event in it, so its events are stored one by one and
// only a refused one is dropped.
func (l *Logger) write(batch []Event) {
	defer l.pending.Add(-int64(len(batch)))
	err := l.retry(batch)
	if err == nil {
		return
	}
	if errors.Is(err, errGaveUp) {
		l.drop(len(batch), "audit events dropped: shutdown while the database was unreachable", "error", err)
		return
	}
	if len(batch) == 1 {
		l.drop(1, "audit event refused by the database; dropped", "type", batch[0].Type, "error", err)
		return
	}
	failed := 0
	for i := range batch {
		if err := l.retry(batch[i : i+1]); errors.Is(err, errGaveUp) {
			l.drop(len(batch)-i, "audit events dropped: shutdown while the database was unreachable", "error", err)
			return
		} else if err != nil {
			failed++
			l.drop(1, "audit event refused by the database; dropped", "type", batch[i].Type, "error", err)
		}
	}
	slog.Error("writing audit batch failed; stored events one by one", "count", len(batch), "failed", failed)
}

var errGaveUp = errors.New("audit: gave up waiting for the database (shutdown)")

// retry inserts events until it works, the database answers yet refuses them (that
// error is returned), or shutdown gives up (errGaveUp).
func (l *Logger) retry(events []Event) error {
	wait := retryFirst
	for {
		err := l.insert(events)
		if err == nil {
			return nil
		}
		if l.reachable() {
			return err
		}
		slog.Warn("audit write failed; database unreachable, retrying", "events", len(events), "in", wait, "error", err)
		select {
		case <-time.After(wait):
		case <-l.giveUp:
			return errGaveUp
		}
		wait = min(2*wait, retryMax)
	}
}

func (l *Logger) insert(events []Event) error {
	ctx, cancel := l.writeCtx(10 * time.Second)
	defer cancel()
	return l.p.InsertAuditEvents(ctx, events)
}

// reachable reports whether the database answers; a persister that cannot tell is
// taken to answer (its errors are the events' fault).
func (l *Logger) reachable() bool {
	pg, ok := l.p.(Pinger)
	if !ok {
		return true
	}
	ctx, cancel := l.writeCtx(2 * time.Second)
	defer cancel()
	return pg.Ping(ctx) == nil
}

// writeCtx bounds one database call of the writer; shutdown's give-up ends it.
func (l *Logger) writeCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(l.base, d)
}

// Flush waits until every queued event is stored (tests, shutdown), at most the
// shutdown wait; it reports whether the queue emptied.
func (l *Logger) Flush() bool {
	deadline := time.Now().Add(time.Duration(l.shutdownWait.Load()))
	for l.pending.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// Close stores what is queued and stops the writer. While the database is away it waits
// at most the shutdown wait, then drops (and counts) what is left rather than hang.
// Events logged after Close are dropped and counted; LogTx still works (it writes in
// the caller's transaction).
func (l *Logger) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Duration(l.shutdownWait.Load())):
		l.giveUpOnce.Do(func() { close(l.giveUp); l.cancelBase() })
		<-done
	}
	l.cancelBase()
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
