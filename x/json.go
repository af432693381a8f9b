package x

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/julienschmidt/httprouter"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
)

// StatusClientClosedRequest is what the access log and the metrics record for a request
// whose client disconnected before the answer (nginx's 499); the client never sees it.
const StatusClientClosedRequest = 499

// MaxBodyBytes is the largest request body any endpoint accepts.
const MaxBodyBytes = 1 << 20

// ErrorBody is the contract's error body.
type ErrorBody struct {
	Message    string `json:"message"`
	StatusCode int    `json:"statusCode"`
	Error      string `json:"error"`
}

type envelope struct {
	Data any `json:"data"`
}

// WriteData writes {"data": v} with the given status.
func WriteData(w http.ResponseWriter, status int, v any) {
	WriteJSON(w, status, envelope{Data: v})
}

// Reply is the end of an x.Handle handler: it writes {"data": v} with status when err is
// nil, and returns err (which x.Handle writes) otherwise.
func Reply(w http.ResponseWriter, status int, v any, err error) error {
	if err == nil {
		WriteData(w, status, v)
	}
	return err
}

// WriteJSON writes v as JSON without the envelope (OAuth2 shapes, health).
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encoding response failed", "error", err)
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorBody{Message: ErrInternal.Message, StatusCode: status, Error: ErrInternal.Code})
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// WriteError writes the contract's error body. 5xx causes are logged with the request id;
// nothing the client sent is echoed into the log line.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e := AsError(err)
	if e.Status >= 500 && r.Context().Err() == context.Canceled {
		// The client left (its request context ends with the connection), so whatever
		// failed failed for that reason: not a server error in the logs or the metrics.
		slog.InfoContext(r.Context(), "client disconnected", "request_id", RequestID(r.Context()),
			"method", r.Method, "path", r.URL.Path, "error", err.Error())
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	if e.Status >= 500 {
		logFailure(r, e.Status, err)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	WriteJSON(w, e.Status, ErrorBody{Message: e.Message, StatusCode: e.Status, Error: e.Code})
}

// Validator is implemented by request structs that check their own fields after decoding.
type Validator interface {
	Validate() error
}

// DecodeJSON reads a JSON body into v (at most MaxBodyBytes), then runs v.Validate when
// v implements Validator. Every failure is a 4xx *Error whose message names the problem.
func DecodeJSON(r *http.Request, v any) error {
	ct := r.Header.Get("Content-Type")
	if ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return ErrUnsupportedMedia
		}
	}
	raw, err := readBody(r)
	if err != nil {
		return err
	}
	// A body without a Content-Type is what a browser sends cross-site without a CORS
	// preflight ("simple" request): refusing it keeps web pages from forging JSON calls.
	if ct == "" && len(bytes.TrimSpace(raw)) > 0 {
		return ErrUnsupportedMedia
	}
	// PostgreSQL cannot store NUL in text, and no field of ours needs it.
	hasNUL := bytes.IndexByte(raw, 0) >= 0 || bytes.Contains(raw, []byte(`\u0000`))
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	// Trailing garbage after the object is malformed JSON too.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return ErrTooLarge
		}
		return ErrBadRequest.WithMessage("Malformed JSON: unexpected data after the JSON object.")
	}
	if hasNUL {
		if f := nulField(reflect.ValueOf(v), ""); f != "" {
			return ErrBadRequest.WithMessagef("Field '%s' must not contain NUL characters.", f)
		}
		return ErrBadRequest.WithMessage("Strings in the request body must not contain NUL characters.")
	}
	if val, ok := v.(Validator); ok {
		if err := val.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// readBody reads at most MaxBodyBytes of r's body; more is ErrTooLarge.
func readBody(r *http.Request) ([]byte, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, ErrTooLarge
		}
		return nil, ErrBadRequest.WithMessage("The request body could not be read.")
	}
	return raw, nil
}

// nulField names the first decoded string field that holds a NUL character.
func nulField(v reflect.Value, prefix string) string {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return ""
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name := strings.Split(sf.Tag.Get("json"), ",")[0]
		if name == "" || name == "-" {
			name = sf.Name
		}
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.String:
			if strings.IndexByte(fv.String(), 0) >= 0 {
				return prefix + name
			}
		case reflect.Slice:
			for j := 0; j < fv.Len(); j++ {
				if e := fv.Index(j); e.Kind() == reflect.String && strings.IndexByte(e.String(), 0) >= 0 {
					return prefix + name
				}
			}
		case reflect.Struct, reflect.Pointer:
			if f := nulField(fv, prefix+name+"."); f != "" {
				return f
			}
		}
	}
	return ""
}

// DecodeJSONOptional is DecodeJSON for endpoints whose body may be left out: an absent
// or empty body (also an empty chunked one) leaves v as it is.
func DecodeJSONOptional(r *http.Request, v any) error {
	if r.Body == nil || r.ContentLength == 0 {
		return validateOnly(v)
	}
	raw, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return validateOnly(v)
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	r.ContentLength = int64(len(raw))
	return DecodeJSON(r, v)
}

func validateOnly(v any) error {
	if val, ok := v.(Validator); ok {
		return val.Validate()
	}
	return nil
}

func decodeError(err error) error {
	var (
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		mbe  *http.MaxBytesError
		inva *json.InvalidUnmarshalError
	)
	switch {
	case errors.As(err, &mbe):
		return ErrTooLarge
	case errors.Is(err, io.EOF):
		return ErrBadRequest.WithMessage("The request body is empty; a JSON object is required.")
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF):
		return ErrBadRequest.WithMessage("Malformed JSON in the request body.")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return ErrBadRequest.WithMessagef("The request body must be a JSON object, not %s.", typ.Value)
		}
		return ErrBadRequest.WithMessagef("Field '%s' must be of type %s, not %s.", field, jsonTypeName(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &inva):
		return ErrInternal.WithCause(err)
	default:
		return ErrBadRequest.WithMessage("Malformed JSON in the request body.").WithCause(err)
	}
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "map", "struct", "ptr":
		return "object"
	default:
		return "number"
	}
}

// Field validation helpers that return 400s naming the field.

// Required fails when s is empty.
func Required(field, s string) error {
	if strings.TrimSpace(s) == "" {
		return ErrBadRequest.WithMessagef("Field '%s' is required.", field)
	}
	return nil
}

// MaxLen fails when s is longer than n characters.
func MaxLen(field, s string, n int) error {
	if len([]rune(s)) > n {
		return ErrBadRequest.WithMessagef("Field '%s' must be at most %d characters.", field, n)
	}
	return nil
}

// RequiredMaxLen fails when s is empty or longer than n characters.
func RequiredMaxLen(field, s string, n int) error {
	return FirstError(Required(field, s), MaxLen(field, s, n))
}

// OneOf fails when s is not one of the allowed values.
func OneOf(field, s string, allowed ...string) error {
	for _, a := range allowed {
		if s == a {
			return nil
		}
	}
	return ErrBadRequest.WithMessagef("Field '%s' must be one of: %s.", field, strings.Join(allowed, ", "))
}

// FirstError returns the first non-nil error.
func FirstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// RequireForm answers 415 (with an RFC 6749 error body) to a request whose body is not
// application/x-www-form-urlencoded: the OAuth2 endpoints take forms, and refusing other
// bodies keeps a browser's "simple" cross-site requests (text/plain) out, as DecodeJSON
// does for the JSON API.
func RequireForm(next httprouter.Handle) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/x-www-form-urlencoded" {
				WriteJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "invalid_request",
					"error_description": "The request body must be application/x-www-form-urlencoded."})
				return
			}
		}
		next(w, r, ps)
	}
}
