package x

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
)

// A database that is down, starting, shutting down, full of connections or too slow is
// not the caller's fault and not a bug: the contract answers it 503 with Retry-After,
// whatever a handler made of the error on its way out (a lookup that failed is not an
// unknown token). Errors say so by carrying the Unavailable mark, or by being recognised
// by a classifier the storage layer registers (it knows its driver's errors; x does not).

// unavailableRetryAfter is the Retry-After of a dependency failure: the database's dial
// backoff tops out at about a second, so a retry after one finds it back or fails fast.
const unavailableRetryAfter = 1

type unavailableError struct{ cause error }

func (e *unavailableError) Error() string { return "dependency unavailable: " + e.cause.Error() }
func (e *unavailableError) Unwrap() error { return e.cause }

// Is makes a marked error match ErrUnavailable (errors.Is(err, x.ErrUnavailable)).
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unavailable marks err as a dependency failure (503 with Retry-After). Nil stays nil.
func Unavailable(err error) error {
	if err == nil {
		return nil
	}
	return &unavailableError{cause: err}
}

var (
	classifiersMu sync.RWMutex
	classifiers   []func(error) bool
)

// RegisterUnavailable adds a classifier of dependency failures (the SQL persister
// registers one for its drivers' errors, as database/sql drivers register themselves).
func RegisterUnavailable(f func(error) bool) {
	classifiersMu.Lock()
	defer classifiersMu.Unlock()
	classifiers = append(classifiers, f)
}

// IsUnavailable reports whether err, or any error it wraps, is a dependency failure: an
// error marked with Unavailable, a 503 *Error, or one a registered classifier
// recognises. A cancelled context is not one: that is the client leaving.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	var e *Error
	if errors.As(err, &e) && e.Status == ErrUnavailable.Status {
		return true
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	classifiersMu.RLock()
	defer classifiersMu.RUnlock()
	for _, f := range classifiers {
		if f(err) {
			return true
		}
	}
	return false
}

// WriteOAuth2Unavailable answers err, when it is a dependency failure, the way the
// OAuth2 endpoints answer (RFC 6749 body): 503 temporarily_unavailable with Retry-After,
// where fosite would say 500 server_error, or 401 invalid_client for a client lookup
// that failed. A client that left gets nothing, as in WriteError. It reports whether it
// answered.
func WriteOAuth2Unavailable(w http.ResponseWriter, r *http.Request, err error) bool {
	if !IsUnavailable(err) {
		return false
	}
	if r.Context().Err() == context.Canceled {
		WriteError(w, r, err)
		return true
	}
	logFailure(r, http.StatusServiceUnavailable, err)
	w.Header().Set("Retry-After", strconv.Itoa(unavailableRetryAfter))
	WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable",
		"error_description": "The service is temporarily unavailable. Try again later."})
	return true
}

// logFailure logs a 5xx answer. A 503 is a warning (the database away, an overload: the
// client is told to retry, and the log names the cause); anything else is an error.
func logFailure(r *http.Request, status int, err error) {
	level, msg := slog.LevelError, "request failed"
	if status == http.StatusServiceUnavailable {
		level, msg = slog.LevelWarn, "request refused: dependency unavailable"
	}
	attrs := []slog.Attr{slog.String("request_id", RequestID(r.Context())), slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.Int("status", status), slog.String("error", err.Error())}
	// fosite's errors print only their RFC 6749 code: name the innermost cause too.
	if c := rootCause(err); c != err {
		attrs = append(attrs, slog.String("cause", c.Error()))
	}
	slog.LogAttrs(r.Context(), level, msg, attrs...)
}

// rootCause follows single-error wrapping to the innermost error.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
