package x

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/julienschmidt/httprouter"
)

func TestErrorIdentity(t *testing.T) {
	errBadOTP := ErrUnauthorized.Derive("Invalid one-time code.")
	errBadPassword := ErrUnauthorized.Derive("Invalid email or password.")
	reworded := errBadOTP.WithMessage("Another wording.").WithCause(errors.New("db said no"))
	wrapped := fmt.Errorf("login: %w", reworded)

	for _, c := range []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"copy with message and cause is its sentinel", reworded, errBadOTP, true},
		{"wrapped copy is its sentinel", wrapped, errBadOTP, true},
		{"derived kind is its base", wrapped, ErrUnauthorized, true},
		{"base is not the derived kind", ErrUnauthorized, errBadOTP, false},
		{"siblings differ", errBadOTP, errBadPassword, false},
		{"same status, other root", ErrForbidden, ErrUnauthorized, false},
		{"not an *Error", errors.New("x"), ErrUnauthorized, false},
		{"retry-after copy keeps kind", ErrUnavailable.WithRetryAfter(3), ErrUnavailable, true},
	} {
		if got := errors.Is(c.err, c.target); got != c.want {
			t.Errorf("%s: errors.Is = %v, want %v", c.name, got, c.want)
		}
	}
	if errBadOTP.Status != http.StatusUnauthorized || errBadOTP.Code != "unauthorized" {
		t.Fatalf("Derive changed status or code: %+v", errBadOTP)
	}
}

func TestHandleWritesReturnedError(t *testing.T) {
	h := Handle(func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		if r.URL.Query().Get("ok") != "" {
			WriteData(w, http.StatusOK, "fine")
			return nil
		}
		return ErrConflict.WithMessage("Taken.")
	})
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/", nil), nil)
	if rec.Code != http.StatusConflict || rec.Body.String() != `{"message":"Taken.","statusCode":409,"error":"conflict"}`+"\n" {
		t.Fatalf("error: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/?ok=1", nil), nil)
	if rec.Code != http.StatusOK || rec.Body.String() != `{"data":"fine"}`+"\n" {
		t.Fatalf("success: %d %s", rec.Code, rec.Body)
	}
}
