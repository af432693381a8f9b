// Package x holds the small HTTP pieces every handler shares: the JSON envelope, the
// error type, body decoding with limits, routers, middleware and client IP resolution.
package x

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/julienschmidt/httprouter"
)

// Error is the one error type handlers return. It carries what the client sees
// (status, machine code, message) and, separately, the internal cause that is only logged.
//
// Every Error has a kind, its identity for errors.Is: copies made by WithMessage,
// WithCause or WithRetryAfter keep it, so a sentinel still matches after a handler has
// reworded it or attached a cause. Derive makes a new kind below an existing one:
// errors.Is(ErrBadOTP, ErrUnauthorized) holds, errors.Is(ErrUnauthorized, ErrBadOTP) does not.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when set, becomes the Retry-After header (seconds).
	RetryAfter int
	cause      error
	kind       *kind
}

// kind is an error identity; parent links a derived kind to the one it refines.
type kind struct{ parent *kind }

// Is reports whether target is an *Error of e's kind or of a kind e's kind derives from.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t.kind == nil {
		return false
	}
	for k := e.kind; k != nil; k = k.parent {
		if k == t.kind {
			return true
		}
	}
	return false
}

// Derive returns a new kind of error below e with its own message: the sentinel a
// package declares (var ErrBadOTP = x.ErrUnauthorized.Derive("Invalid one-time code.")).
func (e *Error) Derive(msg string) *Error {
	c := *e
	c.Message = msg
	c.cause = nil
	c.kind = &kind{parent: e.kind}
	return &c
}

// WithRetryAfter returns a copy that asks the client to wait seconds before retrying.
func (e *Error) WithRetryAfter(seconds int) *Error {
	c := *e
	c.RetryAfter = seconds
	return &c
}

func (e *Error) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.cause)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.cause }

// WithCause returns a copy that remembers the internal cause for the log line.
func (e *Error) WithCause(err error) *Error {
	c := *e
	c.cause = err
	return &c
}

// WithMessage returns a copy with a different client-facing message.
func (e *Error) WithMessage(msg string) *Error {
	c := *e
	c.Message = msg
	return &c
}

// WithMessagef is WithMessage with formatting.
func (e *Error) WithMessagef(format string, args ...any) *Error {
	return e.WithMessage(fmt.Sprintf(format, args...))
}

// NewError is a new root kind; the contract's kinds below are the usual bases for Derive.
func NewError(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg, kind: &kind{}}
}

// The error kinds of the contract. Handlers copy them with WithMessage.
var (
	ErrBadRequest       = NewError(http.StatusBadRequest, "bad_request", "The request is invalid.")
	ErrUnauthorized     = NewError(http.StatusUnauthorized, "unauthorized", "Authentication is required.")
	ErrForbidden        = NewError(http.StatusForbidden, "forbidden", "This action is not allowed.")
	ErrNotFound         = NewError(http.StatusNotFound, "not_found", "The resource was not found.")
	ErrMethodNotAllowed = NewError(http.StatusMethodNotAllowed, "method_not_allowed", "The method is not allowed for this resource.")
	ErrConflict         = NewError(http.StatusConflict, "conflict", "The resource is in a conflicting state.")
	ErrTooLarge         = NewError(http.StatusRequestEntityTooLarge, "payload_too_large", "The request body is larger than 1 MiB.")
	ErrUnsupportedMedia = NewError(http.StatusUnsupportedMediaType, "unsupported_media_type", "The request body must be application/json.")
	ErrTooManyRequests  = NewError(http.StatusTooManyRequests, "rate_limited", "Too many requests. Try again later.")
	ErrInternal         = NewError(http.StatusInternalServerError, "internal_error", "An internal error occurred.")
	ErrUnavailable      = NewError(http.StatusServiceUnavailable, "service_unavailable", "A dependency is unavailable. Try again later.")
)

// AsError converts any error to *Error; unknown errors become 500s that keep the cause.
// A dependency failure anywhere in the chain (IsUnavailable) wins over what wraps it: a
// token lookup that failed is a 503, not the 401 of an unknown token. Every 503 carries
// a Retry-After.
func AsError(err error) *Error {
	var e *Error
	found := errors.As(err, &e)
	if !found || e.Status != http.StatusServiceUnavailable {
		if !IsUnavailable(err) {
			if found {
				return e
			}
			return ErrInternal.WithCause(err)
		}
		e = ErrUnavailable.WithCause(err)
	}
	if e.RetryAfter <= 0 {
		e = e.WithRetryAfter(unavailableRetryAfter)
	}
	return e
}

// HandleFunc is a handler that returns its failure instead of writing it.
type HandleFunc func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error

// Handle adapts a HandleFunc: a returned error is written once, here, as the contract's
// error body (WriteError), so handlers do not repeat that preamble on every branch. A
// handler that has already written its response returns nil.
func Handle(fn HandleFunc) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		if err := fn(w, r, ps); err != nil {
			WriteError(w, r, err)
		}
	}
}
