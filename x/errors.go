// Package x holds the small HTTP pieces every handler shares: the JSON envelope, the
// error type, body decoding with limits, routers, middleware and client IP resolution.
package x

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is the one error type handlers return. It carries what the client sees
// (status, machine code, message) and, separately, the internal cause that is only logged.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when set, becomes the Retry-After header (seconds).
	RetryAfter int
	cause      error
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

func newErr(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// The error kinds of the contract. Handlers copy them with WithMessage.
var (
	ErrBadRequest       = newErr(http.StatusBadRequest, "bad_request", "The request is invalid.")
	ErrUnauthorized     = newErr(http.StatusUnauthorized, "unauthorized", "Authentication is required.")
	ErrForbidden        = newErr(http.StatusForbidden, "forbidden", "This action is not allowed.")
	ErrNotFound         = newErr(http.StatusNotFound, "not_found", "The resource was not found.")
	ErrMethodNotAllowed = newErr(http.StatusMethodNotAllowed, "method_not_allowed", "The method is not allowed for this resource.")
	ErrConflict         = newErr(http.StatusConflict, "conflict", "The resource is in a conflicting state.")
	ErrTooLarge         = newErr(http.StatusRequestEntityTooLarge, "payload_too_large", "The request body is larger than 1 MiB.")
	ErrUnsupportedMedia = newErr(http.StatusUnsupportedMediaType, "unsupported_media_type", "The request body must be application/json.")
	ErrTooManyRequests  = newErr(http.StatusTooManyRequests, "rate_limited", "Too many requests. Try again later.")
	ErrInternal         = newErr(http.StatusInternalServerError, "internal_error", "An internal error occurred.")
	ErrUnavailable      = newErr(http.StatusServiceUnavailable, "service_unavailable", "A dependency is unavailable. Try again later.")
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
		c := *e
		c.RetryAfter = unavailableRetryAfter
		e = &c
	}
	return e
}
